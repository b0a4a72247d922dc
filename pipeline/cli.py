"""The ``ipt-outcomes`` command line: the only place that parses arguments and decides
what the user sees. Each subcommand reads at the edge (``pipeline.io``), calls pure stage
functions (``pipeline.runner.stages``), writes their outputs and returns an exit code:

- 0: done (data valid, or the quarantined share within ``--max-quarantine``);
- 1: data invalid beyond that share (or any fault with ``--strict``);
- 2: unusable input (missing file or column, empty file, unreadable encoding) or a bad
  option or configuration;
- 3: an internal error outside any analysis (a bug: please report it);
- 4: at least one analysis failed unexpectedly (a bug: its traceback is in the log); every
  other analysis ran and wrote its outputs, and ``tables/analyses.csv`` says which failed.

An analysis that the data cannot support is *not estimable*, not an error: the run exits 0
and ``tables/analyses.csv`` (and the report) give the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline import io
from pipeline.config import ConfigError
from pipeline.runner import run
from pipeline.runner.run import ANALYSIS_STAGES, Console, RunRequest
from pipeline.sharing.publish import SharingOptions

if TYPE_CHECKING:
    from pipeline.config import StudyConfig
    from pipeline.estimability import AnalysisRecord

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_INVALID, EXIT_ANALYSIS_FAILED = (run.EXIT_OK, run.EXIT_INVALID,
                                               run.EXIT_ANALYSIS_FAILED)
EXIT_UNUSABLE, EXIT_INTERNAL = 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
BENCHMARK_EXAMPLE = Path(__file__).parent / "resources" / "benchmarks_example.csv"
__all__ = ["ANALYSIS_STAGES", "build_parser", "main"]


class UsageError(Exception):
    """A bad option or configuration (exit code 2)."""


# --------------------------------------------------------------------------- options


def _folder(text: str) -> Path:
    """A folder path: not empty, no NUL byte (the operating system cannot name either)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a folder")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL byte: {text!r}")
    return Path(text)


def _folder_or_url(text: str) -> Path | str:
    """A folder, or a URL (``scheme://...``) that the columnar engine reads itself."""
    return text if "://" in text else _folder(text)


def _share(text: str) -> float:
    """``--max-quarantine``: a share in [0, 1] (not nan, inf or a percentage)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:  # also false for nan
        raise argparse.ArgumentTypeError(f"a share between 0 and 1 (0.05 = 5%), got {text!r}")
    return value


def _date_format(text: str) -> str:
    """``--date-format``: a strftime format that writes a date and reads it back."""
    import datetime

    sample = datetime.datetime(2024, 3, 17)
    try:
        written = sample.strftime(text)
        ok = pd.to_datetime(written, format=text) == pd.Timestamp(sample)
    except (ValueError, TypeError, OverflowError, re.error):
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot write and read back a date (unknown or incomplete directives); "
            "use strftime directives for day, month and year, e.g. %d/%m/%Y")
    return text


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=_folder, help="study folder with patients, sessions "
                        "and (optionally) followups as .csv or .parquet")
    parser.add_argument("--out", type=_folder, required=True, help="output folder")
    parser.add_argument("--date-format", default=None, type=_date_format, help="strftime "
                        "format of non-ISO dates in the input, e.g. %%d/%%m/%%Y (default: ISO "
                        "YYYY-MM-DD only)")
    parser.add_argument("--max-quarantine", type=_share, default=0.05, help="largest share "
                        "of any table's rows that may be quarantined before the data count "
                        "as invalid (exit 1); default 0.05")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any fault at all")
    parser.add_argument("--keep-ids", action="store_true", help="keep real patient ids in "
                        "the outputs (default: keyed pseudonyms); for a secure machine only")
    parser.add_argument("--pseudonymise-therapists", action="store_true",
                        help="replace therapist ids by keyed pseudonyms too")


def _add_analysis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="study config YAML "
                        "(default: published conventions; see `ipt-outcomes config --example`)")
    parser.add_argument("--no-suppress", action="store_true", help="show small counts (1-4) "
                        "in shared tables; for researchers on their own data, not for sharing")
    parser.add_argument("--engine", choices=("auto", "statsmodels", "mixedlm"), default=None,
                        help="mixed-model engine (default: the config's, normally auto)")


def _sharing(args: argparse.Namespace) -> SharingOptions:
    return SharingOptions(keep_ids=args.keep_ids, no_suppress=getattr(args, "no_suppress", False),
                          pseudonymise_therapists=args.pseudonymise_therapists)


def _config(args: argparse.Namespace) -> StudyConfig:
    from pipeline import config

    try:
        return config.load(getattr(args, "config", None))
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _key(args: argparse.Namespace) -> bytes:
    return b"" if args.keep_ids else io.load_or_create_key(args.out)


def _benchmarks(study: StudyConfig) -> tuple[pd.DataFrame, str]:
    """The benchmark rates (``benchmarks`` of the config, else the example) and the file's
    SHA-256 (an edit of the file reruns the outcomes stage)."""
    path = Path(study.benchmarks) if study.benchmarks else BENCHMARK_EXAMPLE
    raw = io.read_table(path, "benchmarks").frame
    missing = {"condition", "outcome", "rate", "source"} - set(raw.columns)
    if missing:
        raise UsageError(f"{path}: benchmark columns missing: {', '.join(sorted(missing))}")
    rate = pd.to_numeric(raw["rate"], errors="coerce")
    if rate.isna().any() or not rate.between(0, 1).all():
        bad = raw.index[rate.isna() | ~rate.between(0, 1)].tolist()
        raise UsageError(f"{path}: rate must be a share in [0, 1] (lines {bad})")
    return raw.assign(rate=rate).reset_index(drop=True), io.file_sha256(path)


def _request(args: argparse.Namespace, benchmarks: bool = True) -> RunRequest:
    """The run's inputs and options from the command line."""
    study = _config(args)
    table, digest = _benchmarks(study) if benchmarks else (pd.DataFrame(), "")
    return RunRequest(
        data_dir=args.data_dir, out=args.out, study=study, sharing=_sharing(args),
        key=_key(args), config_path=getattr(args, "config", None),
        date_format=args.date_format, max_quarantine=args.max_quarantine,
        strict=args.strict, engine=getattr(args, "engine", None), benchmarks=table,
        benchmarks_hash=digest)


# --------------------------------------------------------------------------- printing


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


def _progress(step: int, total: int, name: str, seconds: float | None = None) -> None:
    """A progress line per stage (a bar on a terminal, plain lines in logs and CI)."""
    done = f" done in {seconds:.1f} s" if seconds is not None else " ..."
    if sys.stderr.isatty():
        filled = int(20 * (step - (0 if seconds is not None else 1)) / total)
        print(f"\r[{'#' * filled}{' ' * (20 - filled)}] {step}/{total} {name}{done}   ",
              end="\n" if seconds is not None else "", file=sys.stderr, flush=True)
    else:
        print(f"stage {step}/{total} {name}{done}", file=sys.stderr, flush=True)


def _failed(record: AnalysisRecord) -> None:
    print(f"analysis failed: {record.stage}/{record.analysis}: {record.reason} (see the "
          "run log with -v; please report it)", file=sys.stderr)


CONSOLE = Console(progress=_progress, validation=_print_validation, note=print,
                  refused=lambda text: print(text, file=sys.stderr), failed=_failed,
                  report=lambda path: print(f"report: {path}"))


# --------------------------------------------------------------------------- stages


@contextlib.contextmanager
def _owned(args: argparse.Namespace, command: str) -> Iterator[None]:
    """A stage command's hold on OUT: the lock, and OUT marked incomplete until it ends."""
    from pipeline.runner import run_folder

    with run_folder.locked(args.out), run_folder.marked_incomplete(args.out, command):
        yield


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a study folder; write the validation report, and the validated tables and
    per-patient outcomes under OUT/validated/ for the analysis commands (internal artifacts
    of the run, never shared)."""
    from pipeline.runner import run_folder

    with _owned(args, "validate"):
        run_folder.clear_derived(args.out)  # the analyses of the previous data are void
        _validated, code = run.validate(_request(args, benchmarks=False), CONSOLE)
    return code


def _stage_command(args: argparse.Namespace, stage: str) -> int:
    with _owned(args, stage):
        return run.run_stages(_request(args, stage == "outcomes"), [stage], render=False,
                              console=CONSOLE)


def cmd_outcomes(args: argparse.Namespace) -> int:
    """Derive per-patient outcomes and rates by condition and format (from the validated
    tables under OUT/validated/ when current; else validate first)."""
    return _stage_command(args, "outcomes")


def cmd_models(args: argparse.Namespace) -> int:
    """Fit the mixed-effects trajectory models (validating first only when needed)."""
    return _stage_command(args, "models")


def cmd_relapse(args: argparse.Namespace) -> int:
    """Analyse relapse after acute treatment (validating first only when needed)."""
    return _stage_command(args, "relapse")


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit sites and therapists, privacy by default (validating first only when needed)."""
    return _stage_command(args, "audit")


def cmd_run(args: argparse.Namespace) -> int:
    """Run everything (validate, outcomes, models, relapse, audit) and render the report,
    rerunning only the stages whose inputs, config or code changed since the run in OUT
    (nothing at all when nothing changed).

    The run is written into a staging folder beside OUT and replaces OUT only when it
    completes, so an interrupted run leaves the previous OUT as it was.
    """
    return run.run_all(_request(args), CONSOLE)


def cmd_columnar(args: argparse.Namespace) -> int:
    """Derive the per-patient outcomes and the response rates on a columnar engine (DuckDB
    embedded and out of core, or Spark), for registries beyond one machine's memory; from
    tables that meet the contract (e.g. OUT/validated/ of a run). Writes OUT/columnar/."""
    from pipeline.columnar import checks, patient_outcomes
    from pipeline.columnar import run as columnar

    try:
        done = columnar.run(args.data_dir, args.out, _config(args), args.on,
                            master=args.master, memory_limit=args.memory_limit,
                            suppress_below=1 if args.no_suppress else None,
                            model_sample=args.model_sample)
    except patient_outcomes.ColumnarUnsupportedError as exc:
        raise UsageError(str(exc)) from exc
    except checks.RegistryRefusedError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"columnar ({done.engine}): {done.patients:,} patients, {done.sessions:,} "
          f"sessions -> {args.out / 'columnar'} in {done.seconds['total']:.1f} s")
    for note in done.notes:
        print(note)
    return EXIT_OK


def cmd_stamps(args: argparse.Namespace) -> int:
    """Write OUT/.stamps/<stage>.hash, each stage's fingerprint (inputs, config, code),
    rewriting a stamp only when it changed: what `make` targets depend on."""
    request = _request(args)
    prints = run.stage_fingerprints(request, run.input_hashes(args.data_dir))
    for stage, value in prints.items():
        path = args.out / ".stamps" / f"{stage}.hash"
        if not path.exists() or path.read_text(encoding="utf-8").strip() != value:
            io.write_text(value + "\n", path)
    return EXIT_OK


@contextlib.contextmanager
def _finished_run(out: Path, what: str) -> Iterator[None]:
    """Hold OUT's lock while reading a finished run's outputs, refusing an empty OUT or
    one whose stages were run on different inputs or configurations."""
    from pipeline.runner import run_folder

    if not (out / "validation" / "summary.json").exists():
        raise UsageError(f"{out}: no outputs to {what}; run the stages first")
    with run_folder.locked(out):
        try:
            run_folder.check_consistent(out, io.read_json(out / "manifest.json"))
        except run_folder.FolderInconsistentError as exc:
            raise UsageError(str(exc)) from exc
        yield


def cmd_report(args: argparse.Namespace) -> int:
    """Render OUT/report.html from the outputs already under OUT."""
    from pipeline.report import html as report

    with _finished_run(args.out, "report on"):
        path: Path = report.write(args.out)
    print(f"report: {path}")
    return EXIT_OK


def cmd_paper(args: argparse.Namespace) -> int:
    """Write the tables for papers under OUT/paper: Table 1 (baseline characteristics by
    format), outcomes by condition and format, the adjusted comparison, the growth model and
    relapse, each as LaTeX (.tex) and as printed (.csv), and all five in tables.docx."""
    from pipeline.report import paper_export

    with _finished_run(args.out, "build tables from"):
        paper_export.write(args.out)
    print(f"tables for papers: {args.out / paper_export.FOLDER}/ ({paper_export.DOCX_NAME}, "
          ".tex and .csv per table)")
    return EXIT_OK


# --------------------------------------------------------------------------- utilities


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the synthetic demo cohort."""
    from pipeline.demo import generate as demo

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

    io.write_text(render_dictionary(), args.out / "DATA_DICTIONARY.md")
    for name, frame in template_frames().items():
        io.write_csv(frame, args.out / "templates" / f"{name}.csv")
    print(f"wrote {args.out}/DATA_DICTIONARY.md and {args.out}/templates/")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    """Print a commented example study config (the defaults, with their sources)."""
    from pipeline import config

    if args.example:
        print(config.EXAMPLE, end="")
        return EXIT_OK
    print(json.dumps(config.resolved(_config(args)), indent=2, sort_keys=True))
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _analysis_parser(sub: Any, name: str, func: Callable[[argparse.Namespace], int],
                     summary: str) -> None:
    p = sub.add_parser(name, help=summary, description=func.__doc__)
    _add_data_options(p)
    _add_analysis_options(p)
    p.set_defaults(func=func)


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
    p.add_argument("--config", type=Path, default=None, help="study config YAML: its "
                   "instruments and conditions extend the contract (default: the catalogue)")
    p.set_defaults(func=cmd_validate)
    _analysis_parser(sub, "outcomes", cmd_outcomes, "per-patient outcomes, response rates, "
                     "adjusted comparison, benchmarks and attendance")
    _analysis_parser(sub, "models", cmd_models, "mixed-effects models of symptom trajectories")
    _analysis_parser(sub, "relapse", cmd_relapse, "relapse after treatment: KM, Cox, RMST, CIF")
    _analysis_parser(sub, "audit", cmd_audit, "clinic audit: case mix, funnels, not on track")
    _analysis_parser(sub, "run", cmd_run, "run every stage and render the report")

    p = sub.add_parser("stamps", help="write OUT/.stamps/<stage>.hash for make (rewritten "
                       "only when a stage's inputs, config or code changed)",
                       description=cmd_stamps.__doc__)
    _add_data_options(p)
    _add_analysis_options(p)
    p.set_defaults(func=cmd_stamps)

    p = sub.add_parser("columnar", help="per-patient outcomes and rates on DuckDB or Spark "
                       "(registry scale)", description=cmd_columnar.__doc__)
    p.add_argument("data_dir", type=_folder_or_url, help="folder with patients and "
                   "sessions (.parquet, a folder of .parquet parts, or .csv) that meet the "
                   "contract, or a URL the engine reads (s3a://bucket/registry)")
    p.add_argument("--out", type=_folder, required=True, help="output folder")
    p.add_argument("--config", type=Path, default=None, help="study config YAML")
    p.add_argument("--on", choices=("duckdb", "pyspark"), default="duckdb",
                   help="the engine (default: duckdb, embedded)")
    p.add_argument("--master", default="local[2]", help="Spark cluster URL (default local[2])")
    p.add_argument("--memory-limit", default=None, help="DuckDB memory before it spills to "
                   "disk, e.g. 8GB (default: DuckDB's, 80%% of RAM)")
    p.add_argument("--no-suppress", action="store_true", help="show small counts in the rates")
    p.add_argument("--model-sample", type=int, default=None, metavar="N", help="also write "
                   "the study restricted to a keyed-hash sample of N patients, for the models")
    p.set_defaults(func=cmd_columnar)

    p = sub.add_parser("report", help="render OUT/report.html from existing outputs",
                       description=cmd_report.__doc__)
    p.add_argument("--out", type=_folder, required=True, help="output folder of a run")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("paper", help="write the tables for papers (LaTeX, Word) under "
                       "OUT/paper from existing outputs", description=cmd_paper.__doc__)
    p.add_argument("--out", type=_folder, required=True, help="output folder of a run")
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser("demo", help="write the synthetic demo cohort",
                       description=cmd_demo.__doc__)
    p.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder")
    p.add_argument("--patients", type=int, default=2000, help="number of patients")
    p.add_argument("--seed", type=int, default=20261122, help="random seed")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format")
    p.add_argument("--with-faults", action="store_true",
                   help="add a few deliberately faulty rows to demonstrate validation")
    p.set_defaults(func=cmd_demo)

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


def _busy_error() -> type[Exception]:
    from pipeline.runner.run_folder import OutputFolderError

    return OutputFolderError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (never raise on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # the terminal: tracebacks only with -v
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _busy_error() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except io.InputError as exc:
        print(f"error: {exc.path}: {exc.problem}", file=sys.stderr)
        return EXIT_UNUSABLE
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:  # the system refused a path: OUT under a file, name too long...
        log.debug("operating system error", exc_info=True)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("interrupted: a whole run leaves OUT as it was before; a stage command leaves "
              "OUT marked incomplete (rerun it)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours: say so briefly, the details go to the log
        log.debug("internal error", exc_info=True)
        if args.verbose:
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with -v for the "
              "traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
