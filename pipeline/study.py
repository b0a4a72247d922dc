"""Convenience for analysts in notebooks: a study folder validated in one call
(:func:`load`), or a finished run's artifacts (:func:`load_run`, :func:`demo_run`) so a
notebook reads what the pipeline computed instead of recomputing it.

This is an edge module (it reads files); the stages themselves stay pure.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import io
from pipeline.demo import generate as demo
from pipeline.ingest import validate
from pipeline.ingest.validate import TABLE_ORDER, ValidationResult


def demo_folder(n_patients: int = 2000, seed: int = 20261122) -> Path:
    """A folder holding the demo cohort: ``$IPT_DATA`` or ``data/demo`` when they exist,
    else a cohort written once to the temporary folder (``$IPT_DEMO_PATIENTS`` patients)."""
    for candidate in (os.environ.get("IPT_DATA"), "data/demo", "../data/demo"):
        if candidate and (Path(candidate) / "patients.csv").exists():
            return Path(candidate)
    n = int(os.environ.get("IPT_DEMO_PATIENTS", n_patients))
    folder = Path(tempfile.gettempdir()) / f"ipt-demo-{n}-{seed}"
    if not (folder / "patients.csv").exists():
        cohort = demo.generate_cohort(demo.DemoConfig(n_patients=n, seed=seed))
        io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                        "followups": cohort.followups}, folder)
        io.write_json(cohort.truth, folder / "truth.json")
    return folder


def load(data_dir: Path, date_format: str | None = None) -> ValidationResult:
    """Read and validate a study folder (valid tables in ``result.tables``)."""
    raw = io.read_study(Path(data_dir), TABLE_ORDER, validate.REQUIRED_TABLES)
    return validate.run(raw, date_format=date_format)


@dataclass(frozen=True, eq=False)
class Run:
    """The artifacts of a finished run, as ``tar_read`` would give them.

    Attributes
    ----------
    tables : dict of str to DataFrame
        The validated tables (``patients``, ``sessions``, ``followups``), with real ids:
        internal artifacts of the run, never to be shared.
    patient_outcomes : DataFrame or None
        The per-patient outcomes every analysis started from.
    outputs : dict of str to DataFrame
        Every table the stages wrote (``OUT/tables/*.csv`` and ``OUT/audit/*.csv``, by
        name): the shared, protected versions.
    manifest : dict
        The run's manifest (config, inputs, row counts).
    folder : Path
        OUT.
    """

    tables: dict[str, pd.DataFrame]
    patient_outcomes: pd.DataFrame | None
    outputs: dict[str, pd.DataFrame]
    manifest: dict[str, Any]
    folder: Path

    def figure(self, name: str) -> Path:
        """The PNG of figure ``name`` as the report side drew it (``OUT/figures``)."""
        return self.folder / "figures" / f"{name}.png"


def load_run(out: Path, data_dir: Path | None = None, config: Path | None = None) -> Run:
    """The artifacts of the run in ``out`` (validated tables, per-patient outcomes and the
    stage tables), instead of recomputing them in a notebook.

    With ``data_dir``, the run is first brought up to date (``ipt-outcomes run``, which
    reruns only what changed, and nothing when nothing did).

    Raises
    ------
    FileNotFoundError
        When ``out`` holds no finished run (and no ``data_dir`` was given).
    pipeline.runner.run_folder.FolderInconsistentError
        When the run in ``out`` was interrupted or mixes runs.
    """
    from pipeline.runner import artifacts, run_folder

    out = Path(out)
    if data_dir is not None:
        from pipeline.cli import main

        command = ["run", str(data_dir), "--out", str(out)]
        if main([*command, *(["--config", str(config)] if config else [])]) not in (0, 4):
            raise RuntimeError(f"the run of {data_dir} into {out} failed; see its run log")
    manifest = io.read_json(out / "manifest.json")
    if not manifest:
        raise FileNotFoundError(f"{out}: no finished run (run `ipt-outcomes run` first)")
    run_folder.check_consistent(out, manifest)
    kept = artifacts.read(out, artifacts.meta_of(out).get("fingerprint", ""))
    if kept is None:
        raise FileNotFoundError(f"{out}: no validated tables (rerun `ipt-outcomes run`)")
    outputs = {p.stem: pd.read_csv(p) for folder in ("tables", "audit")
               for p in sorted((out / folder).glob("*.csv"))}
    return Run(kept.tables, kept.patient_outcomes, outputs, manifest, out)


def demo_run(out: Path | None = None) -> Run:
    """The run of the demo cohort (:func:`demo_folder`), made or brought up to date first:
    ``$IPT_OUT`` or a folder in the temporary directory."""
    data = demo_folder()
    digest = hashlib.sha256(str(data.resolve()).encode("utf-8")).hexdigest()[:12]
    default = Path(tempfile.gettempdir()) / f"ipt-run-{digest}"
    target = out or Path(os.environ.get("IPT_OUT", default))
    return load_run(target, data_dir=data)
