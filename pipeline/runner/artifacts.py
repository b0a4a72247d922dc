"""The validated tables of a run, kept so that validation runs once per run.

``validate`` (and ``run``) write ``OUT/validated/``: ``patients``, ``sessions`` and
``followups`` (when present) as validated, ``patient_outcomes`` as derived, each as
Parquet, and ``inputs.json`` with what they were made from (the content hashes of the
input files, the fingerprint of the data, config and options, and the validated row
counts). Every later stage reads them instead of validating again, as long as they were
made from the current inputs and config (:func:`read` returns ``None`` otherwise).

These are **internal artifacts of the run, not shared outputs**: they hold real patient and
therapist ids and every valid row, exactly as the analyses see them. Nothing under
``validated/`` is ever published (the shared tables pass ``pipeline.sharing``), and the
folder must not leave the secure machine the analysis runs on.

Parquet keeps pandas dtypes (categoricals, datetimes, nullable integers, strings) and the
index, so a stage reading the artifacts computes exactly what it would on freshly validated
tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import io

log = logging.getLogger(__name__)

FOLDER = "validated"
META = "inputs.json"
OUTCOMES = "patient_outcomes"


@dataclass(frozen=True, eq=False)
class Validated:
    """The validated tables of a run and what they were made from.

    Attributes
    ----------
    tables : dict of str to DataFrame
        ``patients``, ``sessions`` and (when present) ``followups``, validated.
    patient_outcomes : DataFrame or None
        The per-patient outcomes (``None`` when they could not be derived).
    meta : dict
        ``inputs`` (file name to SHA-256), ``fingerprint`` and ``rows`` (valid rows per table).
    """

    tables: dict[str, pd.DataFrame]
    patient_outcomes: pd.DataFrame | None
    meta: dict[str, Any]


def write(out: Path, validated: Validated) -> Path:
    """Write ``validated`` under ``OUT/validated/`` (the metadata last: it marks them whole)."""
    folder = out / FOLDER
    discard(out)
    for name, table in validated.tables.items():
        io.write_frame(table, folder / f"{name}.parquet")
    if validated.patient_outcomes is not None:
        io.write_frame(validated.patient_outcomes, folder / f"{OUTCOMES}.parquet")
    io.write_json(validated.meta, folder / META)
    return folder


def discard(out: Path) -> None:
    """Remove the artifacts under OUT (before validating anew: they would be stale)."""
    folder = out / FOLDER
    (folder / META).unlink(missing_ok=True)
    for stale in folder.glob("*.parquet"):
        stale.unlink()


def meta_of(out: Path) -> dict[str, Any]:
    """The metadata of the artifacts under OUT (empty when there are none)."""
    return io.read_json(out / FOLDER / META)


def read(out: Path, fingerprint: str) -> Validated | None:
    """The artifacts under OUT when made with ``fingerprint``; ``None`` when absent or stale."""
    folder = out / FOLDER
    meta = meta_of(out)
    if meta.get("fingerprint") != fingerprint:
        if meta:
            log.info("%s: made from other inputs or config; validating anew", folder)
        return None
    tables = {name: io.read_frame(folder / f"{name}.parquet") for name in meta["tables"]}
    outcomes_path = folder / f"{OUTCOMES}.parquet"
    patient_outcomes = io.read_frame(outcomes_path) if outcomes_path.exists() else None
    log.info("%s: validated tables reused", folder)
    return Validated(tables, patient_outcomes, meta)


def make_meta(inputs: Mapping[str, str], fingerprint: str,
              rows: Mapping[str, int], tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The metadata written beside the artifacts."""
    return {"inputs": dict(inputs), "fingerprint": fingerprint, "rows": dict(rows),
            "tables": list(tables)}
