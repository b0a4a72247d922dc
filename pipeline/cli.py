"""The ``ipt-outcomes`` command line: the only place that parses arguments and decides
what the user sees. Each subcommand reads at the edge (``pipeline.io``), calls pure stage
functions, writes its outputs and returns an exit code:

- 0: done (data valid, or the quarantined share within ``--max-quarantine``);
- 1: data invalid beyond that share (or any fault with ``--strict``);
- 2: unusable input (missing file or column, empty file, unreadable encoding) or a bad
  option or configuration;
- 3: an internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline import io

if TYPE_CHECKING:
    from pipeline.config import StudyConfig
    from pipeline.validate import ValidationResult

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_INVALID, EXIT_UNUSABLE, EXIT_INTERNAL = 0, 1, 2, 3
TABLES = ("patients", "sessions", "followups")
REQUIRED_TABLES = ("patients", "sessions")
BENCHMARK_EXAMPLE = Path(__file__).parent / "resources" / "benchmarks_example.csv"


class UsageError(Exception):
    """A bad option or configuration (exit code 2)."""


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=Path, help="study folder with patients, sessions "
                        "and (optionally) followups as .csv or .parquet")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--date-format", default=None, help="strftime format of non-ISO "
                        "dates in the input, e.g. %%d/%%m/%%Y (default: ISO YYYY-MM-DD only)")
    parser.add_argument("--max-quarantine", type=float, default=0.05, help="largest share "
                        "of any table's rows that may be quarantined before the data count "
                        "as invalid (exit 1); default 0.05")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any fault at all")


def _validated(args: argparse.Namespace) -> tuple[ValidationResult, int]:
    """Read and validate DATA_DIR, write the validation report, return (result, exit code)."""
    from pipeline import validate

    raw = io.read_study(args.data_dir, TABLES, REQUIRED_TABLES)
    result = validate.run(raw, date_format=args.date_format)
    summary = dict(result.summary)
    summary["inputs"] = {t.path.name: io.file_sha256(t.path) for t in raw.values()}
    folder = args.out / "validation"
    io.write_csv(result.failure_cases, folder / "failure_cases.csv")
    io.write_json(summary, folder / "summary.json")
    for name, rows in result.quarantine.items():
        io.write_csv(rows, folder / "quarantine" / f"{name}.csv")
    worst = max(result.quarantined_share(name) for name in result.tables)
    invalid = worst > args.max_quarantine or (args.strict and result.summary["n_failures"] > 0)
    _print_validation(result.summary, folder, invalid, args.max_quarantine)
    return result, EXIT_INVALID if invalid else EXIT_OK


def _print_validation(summary: dict[str, Any], folder: Path, invalid: bool, limit: float) -> None:
    print(f"{'table':<10} {'rows in':>9} {'valid':>9} {'quarantined':>12}")
    for name, counts in summary["tables"].items():
        print(f"{name:<10} {counts['rows_in']:>9} {counts['rows_valid']:>9} "
              f"{counts['rows_quarantined']:>12}")
        for note in counts["notes"]:
            print(f"  note: {note}")
    checks = sorted(summary["failures_by_check"], key=lambda r: -r["n"])
    if checks:
        print("\nfaults by rule:")
        for row in checks[:12]:
            print(f"  {row['table']:<10} {row['check']:<36} {row['n']:>7}")
        if len(checks) > 12:
            print(f"  ... and {len(checks) - 12} more rules, see failure_cases.csv")
    verdict = "INVALID" if invalid else "OK"
    print(f"\nvalidation {verdict} (limit {limit:.0%} quarantined per table); "
          f"report: {folder}/ (summary.json, failure_cases.csv, quarantine/)")


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a study folder and write the validation report."""
    _result, code = _validated(args)
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the synthetic demo cohort."""
    from pipeline import demo

    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=args.patients, seed=args.seed))
    faults = None
    if args.with_faults:
        cohort, faults = demo.inject_faults(cohort, seed=args.seed)
    tables = {"patients": cohort.patients, "sessions": cohort.sessions,
              "followups": cohort.followups}
    io.write_study(tables, args.out, fmt=args.format)
    io.write_json(cohort.truth, args.out / "truth.json")
    if faults is not None:
        io.write_csv(faults, args.out / "injected_faults.csv")
    print(f"demo cohort: {len(cohort.patients)} patients, {len(cohort.sessions)} sessions, "
          f"{len(cohort.followups)} follow-ups -> {args.out}/")
    return EXIT_OK


def cmd_dictionary(args: argparse.Namespace) -> int:
    """Write the data dictionary and the empty CSV templates."""
    from data_schemas.dictionary import render_dictionary, template_frames

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "DATA_DICTIONARY.md").write_text(render_dictionary())
    for name, frame in template_frames().items():
        io.write_csv(frame, args.out / "templates" / f"{name}.csv")
    print(f"wrote {args.out}/DATA_DICTIONARY.md and {args.out}/templates/")
    return EXIT_OK


def _config(args: argparse.Namespace) -> StudyConfig:
    from pipeline import config

    try:
        return config.load(args.config)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from exc


def cmd_config(args: argparse.Namespace) -> int:
    """Print a commented example study config (the defaults, with their sources)."""
    from pipeline import config

    if args.example:
        print(config.EXAMPLE, end="")
        return EXIT_OK
    resolved = config.resolved(_config(args))
    print(json.dumps(resolved, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_outcomes(args: argparse.Namespace) -> int:
    """Validate, then derive per-patient outcomes and rates by condition and format."""
    from pipeline import outcome_tables, outcomes

    study = _config(args)
    result, code = _validated(args)
    if code != EXIT_OK:
        print("outcomes not derived: fix the data or raise --max-quarantine", file=sys.stderr)
        return code
    patient_outcomes = outcomes.derive(result.tables["patients"], result.tables["sessions"],
                                       study)
    tables = outcome_tables.build(patient_outcomes, study, _benchmarks(study))
    folder = args.out / "tables"
    io.write_csv(patient_outcomes, folder / "patient_outcomes.csv")
    for name, table in tables.items():
        shared = outcome_tables.for_sharing(name, table, study.suppress_below)
        io.write_csv(table if args.no_suppress else shared, folder / f"{name}.csv")
    print(f"outcomes: {len(patient_outcomes)} patients -> {folder}/ "
          f"({', '.join(['patient_outcomes', *tables])})"
          + ("" if args.no_suppress else f"; counts below {study.suppress_below} suppressed"))
    return EXIT_OK


def _benchmarks(study: StudyConfig) -> pd.DataFrame:
    path = Path(study.benchmarks) if study.benchmarks else BENCHMARK_EXAMPLE
    raw = io.read_table(path, "benchmarks").frame
    missing = {"condition", "outcome", "rate", "source"} - set(raw.columns)
    if missing:
        raise UsageError(f"{path}: benchmark columns missing: {', '.join(sorted(missing))}")
    rate = pd.to_numeric(raw["rate"], errors="coerce")
    if rate.isna().any() or not rate.between(0, 1).all():
        bad = raw.index[rate.isna() | ~rate.between(0, 1)].tolist()
        raise UsageError(f"{path}: rate must be a share in [0, 1] (lines {bad})")
    return raw.assign(rate=rate).reset_index(drop=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ipt-outcomes",
        description="Outcomes research for Interpersonal Psychotherapy: validate a study, "
        "derive outcomes, fit models and render reports.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a study folder against the data contract",
                       description=cmd_validate.__doc__)
    _add_data_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("demo", help="write the synthetic demo cohort",
                       description=cmd_demo.__doc__)
    p.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    p.add_argument("--patients", type=int, default=2000, help="number of patients")
    p.add_argument("--seed", type=int, default=20261122, help="random seed")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format")
    p.add_argument("--with-faults", action="store_true",
                   help="add a few deliberately faulty rows to demonstrate validation")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("outcomes", help="per-patient outcomes, response rates, adjusted "
                       "comparison, benchmarks and attendance", description=cmd_outcomes.__doc__)
    _add_data_options(p)
    p.add_argument("--config", type=Path, default=None, help="study config YAML "
                   "(default: published conventions; see `ipt-outcomes config --example`)")
    p.add_argument("--no-suppress", action="store_true", help="show small counts (1-4) in "
                   "the rate tables; for researchers on their own data, not for sharing")
    p.set_defaults(func=cmd_outcomes)

    p = sub.add_parser("config", help="print the example study config or the resolved one",
                       description=cmd_config.__doc__)
    p.add_argument("--example", action="store_true", help="print a commented example")
    p.add_argument("--config", type=Path, default=None, help="config file to resolve")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("dictionary", help="write the data dictionary and CSV templates",
                       description=cmd_dictionary.__doc__)
    p.add_argument("--out", type=Path, default=Path("data_schemas"), help="output folder")
    p.set_defaults(func=cmd_dictionary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never raise on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except io.InputError as exc:
        print(f"error: {exc.path}: {exc.problem}", file=sys.stderr)
        return EXIT_UNUSABLE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except Exception as exc:  # a bug of ours: say so briefly, the details go to the log
        log.debug("internal error", exc_info=True)
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the "
              "traceback, and please report it)", file=sys.stderr)
        if args.verbose:
            raise
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
