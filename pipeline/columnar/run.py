"""``ipt-outcomes columnar``: the per-patient outcomes and the rates on a columnar engine.

The edge of the columnar route: read the tables into the engine, derive
``patient_outcomes`` there and write it straight from the engine (Parquet, never through
pandas), compute the rates from the engine's cell sums, and write the shared version of the
rates (small counts hidden by ``pipeline.sharing``, as in ``ipt-outcomes run``).

Files under ``OUT/columnar/``:

``patient_outcomes.parquet``
    one row per patient, ordered by ``patient_id``; patient-level, internal to the run,
    never shared (Spark writes a folder of parts of that name);
``response_rates.csv``
    the shared rates (contract ``data_schemas.outputs``), the same bytes as
    ``tables/response_rates.csv`` of ``ipt-outcomes run`` on the same data and config;
``model_sample/patients.parquet``, ``model_sample/sessions.parquet``
    with ``model_sample=m``: the study restricted to the ``m`` patients of the keyed-hash
    sample (:func:`pipeline.modelling.sampling.hash_sample`, the in-memory route's own
    rule), a study folder for the mixed models (``ipt-outcomes models``), which need the
    session rows in memory: the models fit on a stated sample of the registry;
``columnar_log.json``
    the engine, the rows in and out, the seconds of each step and the process's peak
    resident memory.

The input folder holds tables that meet the contract: the validated tables of a run
(``OUT/validated/``) or a registry's extract that was validated where it lives. The
row-level validation with its quarantine is the in-memory route's (``ipt-outcomes
validate``); here the rules the derivation relies on are counted on the engine
(:mod:`pipeline.columnar.checks`) and any breach refuses the run, naming the file, the
rule, the rows and the first of them.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from pipeline import io
from pipeline.columnar import checks, patient_outcomes, rates
from pipeline.columnar import engine as engines
from pipeline.config import StudyConfig, for_data
from pipeline.modelling.sampling import hash_sample
from pipeline.sharing import outcome_tables


@dataclass
class ColumnarRun:
    """What a columnar run did: rows, the unshared rates and the step timings."""

    engine: str
    patients: int
    sessions: int
    response_rates: pd.DataFrame
    shared_rates: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def resolve_primary(tables: engines.Tables, config: StudyConfig) -> tuple[StudyConfig, list[str]]:
    """The config with a primary instrument that the data score (``config.for_data``),
    the scored instruments counted on the engine."""
    sessions = tables.sessions
    present = list(config.instruments_in(sessions.columns))
    if not present:
        return for_data(config, [])
    counts = sessions.aggregate(**{i: sessions[i].count() for i in present}).to_pandas()
    return for_data(config, [i for i in present if int(counts[i].iloc[0]) > 0])


def run(data: Path | str, out: Path, config: StudyConfig, engine: engines.Engine = "duckdb", *,
        master: str = "local[2]", memory_limit: str | None = None,
        suppress_below: int | None = None, model_sample: int | None = None) -> ColumnarRun:
    """Derive and write the columnar outputs of ``data`` under ``out/columnar/``.

    Parameters
    ----------
    data : Path or str
        Folder with ``patients`` and ``sessions`` (Parquet, a folder of Parquet parts, or
        CSV) that meet the contract, or a URL the engine reads (``s3a://...``).
    out : Path
        The run folder.
    config : StudyConfig
        The definitions in force.
    engine, master, memory_limit
        See :func:`pipeline.columnar.engine.connect`.
    suppress_below : int, optional
        Hide counts of 1 .. ``suppress_below - 1`` in the shared rates (default: the
        config's ``suppress_below``).
    model_sample : int, optional
        Also write the study restricted to this many patients (module docstring).
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    folder = out / "columnar"
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / ".spill"
    backend = engines.connect(engine, master=master, memory_limit=memory_limit,
                              temp_directory=temp)
    read = engines.read_tables(backend, data)
    numbers = ("session_number", "age", *config.instruments_in(read.sessions.columns))
    tables = engines.typed_tables(read, numbers)
    study, notes = resolve_primary(tables, config)
    seconds["read"] = time.perf_counter() - started

    step = time.perf_counter()
    checks.check(tables.patients, tables.sessions, study, str(data))
    seconds["checks"] = time.perf_counter() - step

    step = time.perf_counter()
    per_patient = patient_outcomes.derive(tables.patients, tables.sessions, study)
    target = folder / "patient_outcomes.parquet"
    _remove(target)
    backend.to_parquet(per_patient, str(target))
    seconds["patient_outcomes"] = time.perf_counter() - step

    step = time.perf_counter()
    written = backend.read_parquet(
        str(target / "*.parquet") if target.is_dir() else str(target))
    table = rates.response_rates(written, study)
    seconds["response_rates"] = time.perf_counter() - step

    high = (study.suppress_below if suppress_below is None else suppress_below) - 1
    shared, _summary = outcome_tables.share({"response_rates": table}, high,
                                            study.primary_instrument)
    io.write_csv(shared["response_rates"], folder / "response_rates.csv")
    if model_sample is not None:
        step = time.perf_counter()
        notes.append(write_model_sample(tables, model_sample, folder / "model_sample"))
        seconds["model_sample"] = time.perf_counter() - step
    counts = backend.execute(tables.patients.count()), backend.execute(tables.sessions.count())
    seconds["total"] = time.perf_counter() - started
    result = ColumnarRun(engine, int(counts[0]), int(counts[1]), table,
                         shared["response_rates"], seconds, notes)
    (folder / "columnar_log.json").write_text(json.dumps(_log(result), indent=2) + "\n")
    shutil.rmtree(temp, ignore_errors=True)
    return result


def write_model_sample(tables: engines.Tables, limit: int, folder: Path) -> str:
    """Write ``patients`` and ``sessions`` of the ``limit`` patients of the keyed-hash
    sample to ``folder``; only the ids come to pandas (the rule is the in-memory one)."""
    ids = tables.patients.select("patient_id").to_pandas()["patient_id"]
    chosen = ids.iloc[hash_sample(ids, limit)].sort_values()
    picked = ibis.memtable(pd.DataFrame({"patient_id": chosen.to_numpy()}))
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("patients", tables.patients), ("sessions", tables.sessions)):
        target = folder / f"{name}.parquet"
        _remove(target)
        kept = table.semi_join(picked, "patient_id")
        if "line" in kept.columns:  # the source line of validated tables: not a study column
            kept = kept.drop("line")
        raws = [c for c in kept.columns if c.startswith(engines.RAW_PREFIX)]
        if raws:  # the study as it was read, not as the engine converted it
            kept = kept.mutate(**{c[len(engines.RAW_PREFIX):]: kept[c] for c in raws}
                               ).drop(*raws)
        order = ["patient_id", "session_number"] if name == "sessions" else ["patient_id"]
        tables.backend.to_parquet(kept.order_by(order), str(target))
    return (f"model sample: {len(chosen):,} of {len(ids):,} patients by keyed hash of the id "
            f"(pipeline.modelling.sampling) in {folder}")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _log(result: ColumnarRun) -> dict[str, Any]:
    # the engine runs in this process (DuckDB), so its memory is this process's peak; a
    # Spark cluster's executors are other processes (their memory is not counted here)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"engine": result.engine, "patients": result.patients, "sessions": result.sessions,
            "rate_rows": len(result.response_rates), "notes": result.notes,
            "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
            "peak_rss_mb": round(peak_mb, 1)}
