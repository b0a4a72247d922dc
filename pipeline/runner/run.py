"""The orchestration of a run: validate once, run the stages, write, record, render.

This is an edge module (it writes under OUT through ``pipeline.io``); the command line is its
only user and decides what the user sees, through a :class:`Console` of callbacks.

- **Validation runs once.** The validated tables and the per-patient outcomes are kept as
  artifacts under ``OUT/validated/`` (``pipeline.runner.artifacts``); a stage command reads
  them when they were made from the current inputs and config, and validates (once) and
  writes them otherwise.
- **A whole run reruns only what changed** (``pipeline.runner.freshness``): each stage's
  fingerprint (inputs, its config, its code) is recorded in the manifest; a rerun with
  nothing changed runs nothing, a change of one stage's code or config reruns that stage
  and the report, in a staging folder seeded with the previous run and swapped in whole.
- Each analysis runs at its own boundary (``pipeline.estimability``): one that the data
  cannot support is recorded as not estimable, one that fails unexpectedly as failed (its
  traceback in the run log), and the others still run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline import io
from pipeline.runner import artifacts, freshness, run_folder
from pipeline.runner.artifacts import Validated
from pipeline.sharing import publish
from pipeline.sharing.publish import SharingOptions

if TYPE_CHECKING:
    from pipeline.config import StudyConfig
    from pipeline.estimability import AnalysisRecord
    from pipeline.ingest.validate import ValidationResult
    from pipeline.runner.runlog import RunLog
    from pipeline.runner.stages import StageOutput

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_INVALID, EXIT_ANALYSIS_FAILED = 0, 1, 4
ANALYSIS_STAGES = freshness.ANALYSIS_STAGES


def _ignore(*_args: Any) -> None:
    return None


@dataclass(frozen=True)
class Console:
    """What the user sees, decided by the command line (every callback optional).

    ``progress(step, total, stage, seconds)``, ``validation(summary, folder, invalid,
    limit)``, ``note(text)`` (a line for the user: reused artifacts, nothing to rerun, ...),
    ``refused(text)`` and ``failed(record)`` (stderr), ``report(path)``.
    """

    progress: Callable[[int, int, str, float | None], None] = _ignore
    validation: Callable[[dict[str, Any], Path, bool, float], None] = _ignore
    note: Callable[[str], None] = _ignore
    refused: Callable[[str], None] = _ignore
    failed: Callable[[AnalysisRecord], None] = _ignore
    report: Callable[[Path], None] = _ignore


@dataclass(frozen=True, eq=False)
class RunRequest:
    """One command's inputs: where to read and write, the config and the options."""

    data_dir: Path
    out: Path
    study: StudyConfig
    sharing: SharingOptions
    key: bytes
    shown_out: Path | None = None
    config_path: Path | None = None
    date_format: str | None = None
    max_quarantine: float = 0.05
    strict: bool = False
    engine: str | None = None
    benchmarks: pd.DataFrame = field(default_factory=pd.DataFrame)
    benchmarks_hash: str = ""

    @property
    def shown(self) -> Path:
        """OUT as the user named it (not the staging folder)."""
        return self.shown_out or self.out

    def options(self) -> dict[str, bool]:
        """The sharing options, as the manifest records them."""
        return {"keep_ids": self.sharing.keep_ids, "no_suppress": self.sharing.no_suppress,
                "pseudonymise_therapists": self.sharing.pseudonymise_therapists}


# --------------------------------------------------------------------------- fingerprints


def input_hashes(data_dir: Path) -> dict[str, str]:
    """SHA-256 of each input table file present in DATA_DIR, by file name."""
    from pipeline.ingest.validate import TABLE_ORDER

    paths = [io.find_table(data_dir, name) for name in TABLE_ORDER] if data_dir.is_dir() else []
    return {p.name: io.file_sha256(p) for p in paths if p is not None and p.is_file()}


def _resolved(request: RunRequest) -> dict[str, Any]:
    from pipeline import config

    plain: dict[str, Any] = json.loads(json.dumps(config.resolved(request.study), default=str))
    return plain


def validated_fingerprint(request: RunRequest, inputs: dict[str, str]) -> str:
    """What the validated artifacts depend on: inputs, the common config, how dates are read
    and which share of quarantined rows is acceptable."""
    return run_folder.fingerprint(
        inputs, freshness.common_config(_resolved(request)),
        {"date_format": request.date_format, "max_quarantine": request.max_quarantine,
         "strict": request.strict})


def data_fingerprint(request: RunRequest, inputs: dict[str, str]) -> str:
    """What every stage of one run shares: inputs, the common config and the options."""
    return run_folder.fingerprint(inputs, freshness.common_config(_resolved(request)),
                                  {**request.options(), "date_format": request.date_format})


def stage_fingerprints(request: RunRequest, inputs: dict[str, str]) -> dict[str, str]:
    """Each stage's fingerprint (``pipeline.runner.freshness.fingerprints``)."""
    return freshness.fingerprints(data_fingerprint(request, inputs), _resolved(request),
                                  {"outcomes": request.benchmarks_hash,
                                   "models": request.engine or ""})


# --------------------------------------------------------------------------- validation


def _write_validation(result: ValidationResult, request: RunRequest,
                      inputs: dict[str, str]) -> Path:
    folder: Path = request.out / "validation"
    failures = publish.failures(result.failure_cases, request.sharing, request.key)
    io.write_csv(failures, folder / "failure_cases.csv")
    io.write_json({**result.summary, "inputs": inputs}, folder / "summary.json")
    for name, rows in result.quarantine.items():
        io.write_csv(publish.table(rows, request.sharing, request.key),
                     folder / "quarantine" / f"{name}.csv")
    return folder


def validate(request: RunRequest, console: Console) -> tuple[Validated | None, int]:
    """Read and validate DATA_DIR, write the validation report and (when the data are valid
    enough to analyse) the validated artifacts with the per-patient outcomes."""
    from pipeline.ingest import validate as validation

    artifacts.discard(request.out)
    raw = io.read_study(request.data_dir, validation.TABLE_ORDER, validation.REQUIRED_TABLES)
    result = validation.run(raw, date_format=request.date_format, config=request.study)
    inputs = {t.path.name: io.file_sha256(t.path) for t in raw.values()}
    folder = _write_validation(result, request, inputs)
    worst = max(result.quarantined_share(name) for name in result.tables)
    invalid = worst > request.max_quarantine or (request.strict
                                                 and result.summary["n_failures"] > 0)
    console.validation(result.summary, request.shown / folder.relative_to(request.out),
                       invalid, request.max_quarantine)
    if invalid:
        return None, EXIT_INVALID
    rows = {name: counts["rows_valid"] for name, counts in result.summary["tables"].items()}
    meta = artifacts.make_meta(inputs, validated_fingerprint(request, inputs), rows,
                               result.tables)
    patient_outcomes, derived = _derive_early(result.tables, request)
    if derived is not None:
        meta["derive"] = [dataclasses.asdict(r) for r in derived]
    validated = Validated(dict(result.tables), patient_outcomes, meta)
    artifacts.write(request.out, validated)
    return validated, EXIT_OK


def _derive_early(tables: dict[str, pd.DataFrame], request: RunRequest
                  ) -> tuple[pd.DataFrame | None, list[AnalysisRecord] | None]:
    """The per-patient outcomes and their record, or (None, None) when the config does not
    fit the data (the analysis commands then say why)."""
    from pipeline import config, estimability
    from pipeline.runner import stages as stage_functions

    try:
        config.check_columns(request.study, list(tables["patients"].columns))
    except config.ConfigError:
        return None, None
    study, _notes = resolve_primary(request.study, tables["sessions"])
    records: list[AnalysisRecord] = []
    patient_outcomes = estimability.attempt(
        "derive", "patient_outcomes", lambda: stage_functions.derive_outcomes(tables, study),
        records)
    return patient_outcomes, records


def _prepared(request: RunRequest, console: Console) -> tuple[Validated | None, int]:
    """The validated artifacts under OUT when current, else validation (once)."""
    reused = artifacts.read(request.out, validated_fingerprint(request,
                                                               input_hashes(request.data_dir)))
    if reused is None:
        return validate(request, console)
    console.note(f"validation: reused {request.shown / artifacts.FOLDER}/ (made from these "
                 "inputs and config)")
    return reused, EXIT_OK


def resolve_primary(study: StudyConfig, sessions: pd.DataFrame
                    ) -> tuple[StudyConfig, list[str]]:
    """The study config with a primary instrument that the data score, and notes."""
    from pipeline import config

    scored = [i for i in study.instruments_in(sessions.columns) if sessions[i].notna().any()]
    resolved, notes = config.for_data(study, scored)
    for note in notes:
        log.warning("%s", note)
    return resolved, notes


# --------------------------------------------------------------------------- writing


def emit(output: StageOutput, out: Path, sharing: SharingOptions, key: bytes,
         stage: str, figures: Mapping[str, bytes] | None = None) -> None:
    """Write a stage's tables, figure files (``report.stage_figures.render``) and messages
    under OUT (and nowhere else: every path passes :func:`pipeline.io.inside`), and remove
    what the stage wrote last time but not now (an analysis now not estimable leaves no
    stale table)."""
    written: list[Path] = []
    for name, table in output.tables.items():
        safe = publish.table(table, sharing, key, output.pseudonymised)
        written.append(io.write_csv(safe, io.inside(out, output.folder, f"{name}.csv")))
    for file_name, data in (figures or {}).items():
        written.append(io.write_bytes(data, io.inside(out, "figures", file_name)))
    written.append(io.write_text(json.dumps(list(output.messages), indent=2) + "\n",
                                 io.inside(out, "messages", f"{stage}.json")))
    run_folder.replace_stage_outputs(out, stage, written)


def _update_manifest(request: RunRequest, inputs: dict[str, str],
                     stage_rows: dict[str, dict[str, int]]) -> None:
    from pipeline import config
    from pipeline.report import manifest

    path = request.out / "manifest.json"
    current = io.read_json(path)
    current.update(manifest.base(study=config.resolved(request.study), sources=config.SOURCES,
                                 inputs=inputs, data_dir=request.data_dir,
                                 options=request.options()))
    current.setdefault("stages", {}).update(stage_rows)
    data = data_fingerprint(request, inputs)
    prints = stage_fingerprints(request, inputs)
    current.setdefault("fingerprints", {}).update(
        {stage: {"data": data, "stage": prints[stage]} for stage in stage_rows
         if stage != "validate"})
    io.write_json(current, path)


def _update_run_log(out: Path, runlog: RunLog) -> None:
    path = out / "run_log.json"
    current = io.read_json(path)
    current.setdefault("stages", {}).update(runlog.stages)
    io.write_json(current, path)


def _write_analyses(out: Path, records: Sequence[AnalysisRecord]) -> None:
    """Merge this run's records into ``OUT/tables/analyses.csv`` (records of stages not run
    now are kept, so separate ``make`` targets build one table)."""
    from pipeline import estimability

    path = out / "tables" / "analyses.csv"
    fresh = estimability.records_table(records)
    if path.exists():
        previous = pd.read_csv(path, dtype=str, keep_default_na=False)
        kept = previous[~previous["stage"].isin(set(fresh["stage"]))]
        fresh = pd.concat([kept, fresh], ignore_index=True)
    order = {stage: i for i, stage in enumerate(("derive", *ANALYSIS_STAGES, "report"))}
    fresh = fresh.sort_values("stage", key=lambda s: s.map(order), kind="stable")
    io.write_csv(fresh.reset_index(drop=True), path)


def log_to_file(path: Path) -> None:
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


# --------------------------------------------------------------------------- stages


def _derived(validated: Validated, tables: dict[str, pd.DataFrame], study: StudyConfig,
             records: list[AnalysisRecord]) -> pd.DataFrame | None:
    """The per-patient outcomes: from the artifacts (with the record made when they were
    derived), else derived now at their own boundary."""
    from pipeline import estimability
    from pipeline.runner import stages as stage_functions

    made = validated.meta.get("derive")
    if made is not None:
        records += [estimability.AnalysisRecord(**record) for record in made]
        return validated.patient_outcomes
    return estimability.attempt("derive", "patient_outcomes",
                                lambda: stage_functions.derive_outcomes(tables, study), records)


def run_stages(request: RunRequest, stages: Sequence[str], render: bool,
               console: Console) -> int:
    """Validate (or reuse the validated artifacts), then run ``stages`` in order, writing
    each one's outputs; maybe render the report and the tables for papers.

    Returns
    -------
    int
        ``EXIT_OK`` when every analysis was done or not estimable, ``EXIT_INVALID`` when the
        data are invalid, ``EXIT_ANALYSIS_FAILED`` when any analysis failed.

    Raises
    ------
    pipeline.config.ConfigError
        When the config names columns the data lack.
    """
    from pipeline import config
    from pipeline.runner.runlog import RunLog

    out = request.out
    log_to_file(out / "run.log")
    runlog = RunLog()
    with runlog.stage("validate"):
        validated, code = _prepared(request, console)
    if validated is None:
        run_folder.clear_derived(out)  # no report of earlier data beside this failure
        console.refused("analysis not run: fix the data or raise --max-quarantine")
        return code
    (out / "report.html").unlink(missing_ok=True)  # rendered anew from these outputs
    tables = validated.tables
    try:
        config.check_columns(request.study, list(tables["patients"].columns))
    except config.ConfigError as exc:
        raise config.ConfigError(f"{request.config_path or 'config'}: {exc}") from exc
    study, run_notes = resolve_primary(request.study, tables["sessions"])
    io.write_text(json.dumps(run_notes, indent=2) + "\n", out / "messages" / "run.json")
    rows: dict[str, dict[str, int]] = {"validate": dict(validated.meta["rows"])}
    records: list[AnalysisRecord] = []
    with runlog.stage("outcomes"):
        patient_outcomes = _derived(validated, tables, study, records)
    runners = _runners(request, tables, study)
    total = len(stages) + int(render)
    for step, name in enumerate(stages, start=1):
        console.progress(step, total, name, None)
        with runlog.stage(name if name != "outcomes" else "outcomes_write"):
            output, figures = _drawn(name, _stage_output(name, runners[name],
                                                         patient_outcomes, records), study)
            emit(output, out, request.sharing, request.key, name, figures)
        records += output.records
        rows[name] = output.rows
        _write_analyses(out, records)
        _update_run_log(out, runlog)  # after every stage, so a crashed run still tells
        console.progress(step, total, name, runlog.stages.get(name, {}).get("seconds", 0.0))
    _update_manifest(request, dict(validated.meta["inputs"]), rows)
    if render:
        _render(request, console, runlog, records, total)
    _update_run_log(out, runlog)
    return _analyses_exit_code(records, console)


def _runners(request: RunRequest, tables: dict[str, pd.DataFrame], study: StudyConfig
             ) -> dict[str, Callable[[pd.DataFrame], StageOutput]]:
    from pipeline.runner import stages as stage_functions

    sharing, key = request.sharing, request.key
    return {
        "outcomes": lambda po: stage_functions.run_outcomes(tables, po, study,
                                                            request.benchmarks, sharing),
        "models": lambda po: stage_functions.run_models(tables, po, study, request.engine,
                                                        request.sharing),
        "relapse": lambda po: stage_functions.run_relapse(tables, po, study, sharing),
        "audit": lambda po: stage_functions.run_audit(tables, po, study, sharing, key),
    }


def _render(request: RunRequest, console: Console, runlog: RunLog,
            records: list[AnalysisRecord], total: int) -> None:
    """The report and the tables for papers, each at its own boundary."""
    from pipeline import estimability
    from pipeline.report import html as report
    from pipeline.report import paper_export

    out = request.out
    console.progress(total, total, "report", None)
    with runlog.stage("report"):
        path = estimability.attempt("report", "report.html", lambda: report.write(out),
                                    records)
        estimability.attempt("report", "paper tables", lambda: paper_export.write(out),
                             records)
    _write_analyses(out, records)
    console.progress(total, total, "report", runlog.stages["report"]["seconds"])
    if path is not None:
        _record_report(request)
        console.report(request.shown / "report.html")


def _record_report(request: RunRequest) -> None:
    """Record the report's fingerprint in the manifest (a rerun with nothing changed then
    renders nothing)."""
    path = request.out / "manifest.json"
    current = io.read_json(path)
    inputs = dict(current.get("inputs", {}))
    current.setdefault("fingerprints", {})["report"] = {
        "data": data_fingerprint(request, inputs),
        "stage": stage_fingerprints(request, inputs)["report"]}
    io.write_json(current, path)


def _drawn(stage: str, output: StageOutput, study: StudyConfig
           ) -> tuple[StageOutput, dict[str, bytes]]:
    """``output`` with the records of its figures, and the figure files, drawn on the
    report side from the returned data."""
    from pipeline.report import stage_figures

    files, records = stage_figures.render(stage, output, study)
    return dataclasses.replace(output, records=(*output.records, *records)), files


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


def _analyses_exit_code(records: Sequence[AnalysisRecord], console: Console) -> int:
    """0 when every analysis was done or not estimable; ``EXIT_ANALYSIS_FAILED`` otherwise."""
    from pipeline import estimability

    failed = [r for r in records if r.status == estimability.FAILED]
    for record in failed:
        console.failed(record)
    return EXIT_ANALYSIS_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- whole runs


def stages_to_rerun(request: RunRequest, inputs: dict[str, str]) -> tuple[list[str], bool]:
    """The analysis stages whose fingerprint differs from the previous run's under OUT, and
    whether the report must be rendered anew."""
    out = request.out
    previous: dict[str, Any] = {}
    if not (out / run_folder.INCOMPLETE).exists():
        previous = io.read_json(out / "manifest.json").get("fingerprints", {})
    prints = stage_fingerprints(request, inputs)

    def recorded(stage: str) -> Any:
        entry = previous.get(stage)
        return entry.get("stage") if isinstance(entry, dict) else None

    todo = [stage for stage in ANALYSIS_STAGES if recorded(stage) != prints[stage]]
    render = bool(todo) or recorded("report") != prints["report"] \
        or not (out / "report.html").exists()
    return todo, render


def _previous_exit_code(out: Path) -> int:
    """The exit code of the run whose outputs are under OUT (from ``analyses.csv``)."""
    from pipeline import estimability

    path = out / "tables" / "analyses.csv"
    if not path.exists():
        return EXIT_OK
    statuses = set(pd.read_csv(path, dtype=str, keep_default_na=False)["status"])
    return EXIT_ANALYSIS_FAILED if estimability.FAILED in statuses else EXIT_OK


def run_all(request: RunRequest, console: Console) -> int:
    """Every stage and the report, rerunning only what changed since the run under OUT.

    The run is written into a staging folder beside OUT (seeded with the previous run when
    its validated tables are still current) that replaces OUT only when it completes, so an
    interrupted run leaves the previous OUT as it was. The lock is held throughout.
    """
    final = request.out
    with run_folder.locked(final):
        inputs = input_hashes(request.data_dir)
        todo, render = stages_to_rerun(request, inputs)
        if not todo and not render:
            console.note(f"up to date: inputs, config and code unchanged since the run in "
                         f"{final}; nothing rerun")
            return _previous_exit_code(final)
        current = artifacts.meta_of(final).get("fingerprint") == validated_fingerprint(
            request, inputs)
        if current and len(todo) < len(ANALYSIS_STAGES):
            console.note(f"rerunning {' and '.join([*todo, 'the report'])}; the other stages "
                         "are up to date")
        else:
            todo = list(ANALYSIS_STAGES)
        with run_folder.staged(final, seed=final if current else None) as staging:
            staged = dataclasses.replace(request, out=staging, shown_out=final)
            return run_stages(staged, todo, render=True, console=console)
