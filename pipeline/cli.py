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
from pipeline.sharing import publish
from pipeline.sharing.publish import SharingOptions

if TYPE_CHECKING:
    from pipeline.config import StudyConfig
    from pipeline.estimability import AnalysisRecord
    from pipeline.ingest.validate import ValidationResult
    from pipeline.runner.runlog import RunLog
    from pipeline.runner.stages import StageOutput

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_INVALID, EXIT_UNUSABLE, EXIT_INTERNAL, EXIT_ANALYSIS_FAILED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
BENCHMARK_EXAMPLE = Path(__file__).parent / "resources" / "benchmarks_example.csv"
ANALYSIS_STAGES = ("outcomes", "models", "relapse", "audit")


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
    return b"" if args.keep_ids else io.load_or_create_key(getattr(args, "final_out", args.out))


# --------------------------------------------------------------------------- writing


def _write_validation(result: ValidationResult, args: argparse.Namespace, key: bytes,
                      inputs: dict[str, str]) -> Path:
    folder: Path = args.out / "validation"
    options = _sharing(args)
    failures = publish.failures(result.failure_cases, options, key)
    io.write_csv(failures, folder / "failure_cases.csv")
    io.write_json({**result.summary, "inputs": inputs}, folder / "summary.json")
    for name, rows in result.quarantine.items():
        io.write_csv(publish.table(rows, options, key),
                     folder / "quarantine" / f"{name}.csv")
    return folder


def _emit(output: StageOutput, args: argparse.Namespace, key: bytes, stage: str) -> None:
    """Write a stage's tables, figures and messages under OUT (and nowhere else: every
    path passes :func:`pipeline.io.inside`), and remove what the stage wrote last time but
    not now (an analysis now not estimable leaves no stale table)."""
    from pipeline.report.figures import png_bytes, svg_bytes
    from pipeline.runner import run_folder

    written: list[Path] = []
    for name, table in output.tables.items():
        safe = publish.table(table, _sharing(args), key, output.pseudonymised)
        written.append(io.write_csv(safe, io.inside(args.out, output.folder, f"{name}.csv")))
    for name, figure in output.figures.items():
        written.append(io.write_bytes(png_bytes(figure),
                                      io.inside(args.out, "figures", f"{name}.png")))
        written.append(io.write_bytes(svg_bytes(figure),
                                      io.inside(args.out, "figures", f"{name}.svg")))
    written.append(io.write_text(json.dumps(list(output.messages), indent=2) + "\n",
                                 io.inside(args.out, "messages", f"{stage}.json")))
    run_folder.replace_stage_outputs(args.out, stage, written)


def _update_manifest(args: argparse.Namespace, study: StudyConfig, inputs: dict[str, str],
                     stage_rows: dict[str, dict[str, int]]) -> None:
    from pipeline import config
    from pipeline.report import manifest
    from pipeline.runner import run_folder

    path = args.out / "manifest.json"
    current = io.read_json(path)
    current.update(manifest.base(study=config.resolved(study), sources=config.SOURCES,
                                 inputs=inputs, data_dir=args.data_dir,
                                 options={"keep_ids": args.keep_ids,
                                          "no_suppress": getattr(args, "no_suppress", False),
                                          "pseudonymise_therapists":
                                              args.pseudonymise_therapists}))
    current.setdefault("stages", {}).update(stage_rows)
    fingerprint = run_folder.fingerprint(inputs, current["config"], current.get("options", {}))
    current.setdefault("fingerprints", {}).update(
        {stage: fingerprint for stage in stage_rows if stage != "validate"})
    io.write_json(current, path)


def _update_run_log(args: argparse.Namespace, runlog: RunLog) -> None:
    path = args.out / "run_log.json"
    current = io.read_json(path)
    current.setdefault("stages", {}).update(runlog.stages)
    io.write_json(current, path)


# --------------------------------------------------------------------------- validation


def _validated(args: argparse.Namespace, key: bytes) -> tuple[ValidationResult, int, dict[str,
                                                                                           str]]:
    """Read and validate DATA_DIR, write the validation report, return (result, code, hashes)."""
    from pipeline.ingest import validate

    raw = io.read_study(args.data_dir, validate.TABLE_ORDER, validate.REQUIRED_TABLES)
    result = validate.run(raw, date_format=args.date_format, config=_config(args))
    inputs = {t.path.name: io.file_sha256(t.path) for t in raw.values()}
    folder = _write_validation(result, args, key, inputs)
    folder = getattr(args, "final_out", args.out) / folder.relative_to(args.out)  # as shown
    worst = max(result.quarantined_share(name) for name in result.tables)
    invalid = worst > args.max_quarantine or (args.strict and result.summary["n_failures"] > 0)
    _print_validation(result.summary, folder, invalid, args.max_quarantine)
    return result, EXIT_INVALID if invalid else EXIT_OK, inputs


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
    from pipeline.runner import run_folder

    with _owned(args, "validate"):
        run_folder.clear_derived(args.out)  # the analyses of the previous data are void
        _result, code, _inputs = _validated(args, _key(args))
    return code


@contextlib.contextmanager
def _owned(args: argparse.Namespace, command: str) -> Iterator[None]:
    """A stage command's hold on OUT: the lock, and OUT marked incomplete until it ends."""
    from pipeline.runner import run_folder

    with run_folder.locked(args.out), run_folder.marked_incomplete(args.out, command):
        yield


# --------------------------------------------------------------------------- analysis


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


def _progress(step: int, total: int, name: str, seconds: float | None = None) -> None:
    """A progress line per stage (a bar on a terminal, plain lines in logs and CI)."""
    done = f" done in {seconds:.1f} s" if seconds is not None else " ..."
    if sys.stderr.isatty():
        filled = int(20 * (step - (0 if seconds is not None else 1)) / total)
        print(f"\r[{'#' * filled}{' ' * (20 - filled)}] {step}/{total} {name}{done}   ",
              end="\n" if seconds is not None else "", file=sys.stderr, flush=True)
    else:
        print(f"stage {step}/{total} {name}{done}", file=sys.stderr, flush=True)


def _write_analyses(args: argparse.Namespace, records: Sequence[AnalysisRecord]) -> None:
    """Merge this run's records into ``OUT/tables/analyses.csv`` (records of stages not run
    now are kept, so separate ``make`` targets build one table)."""
    from pipeline import estimability

    path = args.out / "tables" / "analyses.csv"
    fresh = estimability.records_table(records)
    if path.exists():
        previous = pd.read_csv(path, dtype=str, keep_default_na=False)
        kept = previous[~previous["stage"].isin(set(fresh["stage"]))]
        fresh = pd.concat([kept, fresh], ignore_index=True)
    order = {stage: i for i, stage in enumerate(("derive", *ANALYSIS_STAGES, "report"))}
    fresh = fresh.sort_values("stage", key=lambda s: s.map(order), kind="stable")
    io.write_csv(fresh.reset_index(drop=True), path)


def _run_stages(args: argparse.Namespace, stages: Sequence[str], render: bool) -> int:
    """Validate, then run ``stages`` in order, writing each one's outputs; maybe render.

    Each analysis runs at its own boundary (``pipeline.estimability``): one that the data
    cannot support is recorded as not estimable, one that fails unexpectedly as failed (its
    traceback in the log), and the others still run. Exit 0 when every analysis was done or
    not estimable, ``EXIT_ANALYSIS_FAILED`` when any failed.
    """
    from pipeline import config, estimability
    from pipeline.report import html as report
    from pipeline.report import paper_export
    from pipeline.runner import stages as stage_functions
    from pipeline.runner.runlog import RunLog

    study = _config(args)
    benchmarks = _benchmarks(study) if "outcomes" in stages else pd.DataFrame()
    key = _key(args)
    _log_to_file(args.out / "run.log")
    runlog = RunLog()
    with runlog.stage("validate"):
        result, code, inputs = _validated(args, key)
    if code != EXIT_OK:
        from pipeline.runner import run_folder

        run_folder.clear_derived(args.out)  # no report of earlier data beside this failure
        print("analysis not run: fix the data or raise --max-quarantine", file=sys.stderr)
        return code
    (args.out / "report.html").unlink(missing_ok=True)  # rendered anew from these outputs
    tables, sharing = result.tables, _sharing(args)
    try:
        config.check_columns(study, list(tables["patients"].columns))
    except config.ConfigError as exc:
        raise UsageError(f"{args.config or 'config'}: {exc}") from exc
    study, run_notes = _resolve_primary(study, tables["sessions"])
    io.write_text(json.dumps(run_notes, indent=2) + "\n", args.out / "messages" / "run.json")
    rows: dict[str, dict[str, int]] = {"validate": {
        name: counts["rows_valid"] for name, counts in result.summary["tables"].items()}}
    records: list[AnalysisRecord] = []
    with runlog.stage("outcomes"):
        patient_outcomes = estimability.attempt(
            "derive", "patient_outcomes",
            lambda: stage_functions.derive_outcomes(tables, study), records)
    runners: dict[str, Callable[[pd.DataFrame], StageOutput]] = {
        "outcomes": lambda po: stage_functions.run_outcomes(tables, po, study, benchmarks,
                                                            sharing),
        "models": lambda po: stage_functions.run_models(tables, po, study, args.engine),
        "relapse": lambda po: stage_functions.run_relapse(tables, po, study, sharing),
        "audit": lambda po: stage_functions.run_audit(tables, po, study, sharing, key),
    }
    total = len(stages) + int(render)
    for step, name in enumerate(stages, start=1):
        _progress(step, total, name)
        with runlog.stage(name if name != "outcomes" else "outcomes_write"):
            output = _drawn(name, _stage_output(name, runners[name], patient_outcomes,
                                                records), study)
            _emit(output, args, key, name)
        records += output.records
        rows[name] = output.rows
        _write_analyses(args, records)
        _update_run_log(args, runlog)  # after every stage, so a crashed run still tells
        _progress(step, total, name, runlog.stages.get(name, {}).get("seconds", 0.0))
    _update_manifest(args, study, inputs, rows)
    if render:
        _progress(total, total, "report")
        with runlog.stage("report"):
            path = estimability.attempt("report", "report.html",
                                        lambda: report.write(args.out), records)
            estimability.attempt("report", "paper tables",
                                 lambda: paper_export.write(args.out), records)
        _write_analyses(args, records)
        _progress(total, total, "report", runlog.stages["report"]["seconds"])
        if path is not None:
            print(f"report: {getattr(args, 'final_out', args.out) / 'report.html'}")
    _update_run_log(args, runlog)
    return _analyses_exit_code(records)


def _drawn(stage: str, output: StageOutput, study: StudyConfig) -> StageOutput:
    """``output`` with its figures, drawn on the report side from the returned data."""
    import dataclasses

    from pipeline.report import stage_figures

    figures, records = stage_figures.draw(stage, output, study)
    return dataclasses.replace(output, figures=figures, records=(*output.records, *records))


def _resolve_primary(study: StudyConfig, sessions: pd.DataFrame
                     ) -> tuple[StudyConfig, list[str]]:
    """The study config with a primary instrument that the data score, and notes."""
    from pipeline import config

    scored = [i for i in study.instruments_in(sessions.columns) if sessions[i].notna().any()]
    resolved, notes = config.for_data(study, scored)
    for note in notes:
        log.warning("%s", note)
    return resolved, notes


def _stage_output(name: str, runner: Callable[[pd.DataFrame], StageOutput],
                  patient_outcomes: pd.DataFrame | None,
                  records: list[AnalysisRecord]) -> StageOutput:
    """The stage's output, or an empty one recording why it could not run."""
    from pipeline import estimability
    from pipeline.runner.stages import StageOutput

    folder = "audit" if name == "audit" else "tables"
    if patient_outcomes is None:
        record = estimability.AnalysisRecord(
            name, name, estimability.FAILED, "the per-patient outcomes could not be derived",
            "see the derive/patient_outcomes record and the run log")
        return StageOutput({}, folder=folder, records=(record,))
    stage_records: list[AnalysisRecord] = []
    output = estimability.attempt(name, name, lambda: runner(patient_outcomes), stage_records)
    return output if output is not None else StageOutput({}, folder=folder,
                                                          records=tuple(stage_records))


def _log_to_file(path: Path) -> None:
    """Send every message of the package, tracebacks of failed analyses included, to
    ``path`` (the run log), whatever the verbosity on the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in [h for h in log.handlers if isinstance(h, logging.FileHandler)]:
        log.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def _analyses_exit_code(records: Sequence[AnalysisRecord]) -> int:
    """0 when every analysis was done or not estimable; ``EXIT_ANALYSIS_FAILED`` otherwise."""
    from pipeline import estimability

    failed = [r for r in records if r.status == estimability.FAILED]
    for record in failed:
        print(f"analysis failed: {record.stage}/{record.analysis}: {record.reason} (see the "
              "run log with -v; please report it)", file=sys.stderr)
    return EXIT_ANALYSIS_FAILED if failed else EXIT_OK


def cmd_outcomes(args: argparse.Namespace) -> int:
    """Validate, then derive per-patient outcomes and rates by condition and format."""
    with _owned(args, "outcomes"):
        return _run_stages(args, ["outcomes"], render=False)


def cmd_models(args: argparse.Namespace) -> int:
    """Validate, derive outcomes, then fit the mixed-effects trajectory models."""
    with _owned(args, "models"):
        return _run_stages(args, ["models"], render=False)


def cmd_relapse(args: argparse.Namespace) -> int:
    """Validate, derive outcomes, then analyse relapse after acute treatment."""
    with _owned(args, "relapse"):
        return _run_stages(args, ["relapse"], render=False)


def cmd_audit(args: argparse.Namespace) -> int:
    """Validate, derive outcomes, then audit sites and therapists (privacy by default)."""
    with _owned(args, "audit"):
        return _run_stages(args, ["audit"], render=False)


def cmd_run(args: argparse.Namespace) -> int:
    """Run everything (validate, outcomes, models, relapse, audit) and render the report.

    The run is written into a staging folder beside OUT and replaces OUT only when it
    completes, so an interrupted run leaves the previous OUT as it was.
    """
    from pipeline.runner import run_folder

    final = args.out
    with run_folder.locked(final), run_folder.staged(final) as staging:
        args.final_out, args.out = final, staging
        try:
            return _run_stages(args, list(ANALYSIS_STAGES), render=True)
        finally:
            args.out = final


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
    except UsageError as exc:
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
