"""Convenience for analysts in notebooks: load a study folder, validated, in one call.

This is an edge module (it reads files); the stages themselves stay pure.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
