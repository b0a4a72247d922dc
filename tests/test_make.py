"""Make targets depend on content: a second `make report` does no work, nor does `touch` on a
data file; changing the config redoes what depends on it (validation too when the key is
one every stage reads: the contract's instruments and conditions come from the config), and
`make report` validates once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _make(*args: str, installed: Path) -> subprocess.CompletedProcess[str]:
    """make with this checkout's code run by this interpreter (no virtualenv needed)."""
    command = f"{sys.executable} -m pipeline"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), f"IPT={command}",
                           f"INSTALLED={installed}", *args], env=environment,
                          capture_output=True, text=True, check=False, timeout=1500)


def test_report_targets_only_redo_what_changed(tmp_path: Path) -> None:
    data, out, config = tmp_path / "data", tmp_path / "out", tmp_path / "study.yaml"
    installed = tmp_path / "installed"
    assert main(["demo", "--out", str(data), "--patients", "300"]) == 0
    installed.touch()
    config.write_text("suppress_below: 5\n")
    variables = [f"DATA={data}", f"OUT={out}", f"CONFIG={config}"]
    built = _make("report", *variables, installed=installed)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (out / "report.html").exists() and (out / "paper" / "tables.docx").exists()
    assert built.stdout.count("validation OK") == 1  # validated once, then read back
    assert built.stdout.count("validation: reused") == 4
    targets = [str(out / "report.html"), str(out / "paper" / "tables.docx")]
    up_to_date = _make("-q", *targets, *variables, installed=installed)
    assert up_to_date.returncode == 0, "a second make report would do work"
    for path in data.glob("*.csv"):  # a new time, the same content: nothing to redo
        os.utime(path, (path.stat().st_atime + 100, path.stat().st_mtime + 100))
    assert _make("-q", *targets, *variables, installed=installed).returncode == 0
    config.write_text("suppress_below: 5\nrelapse:\n  min_at_risk: 7\n")
    planned = _make("-n", "report", *variables, installed=installed).stdout
    assert " relapse " in planned and " report " in planned and " paper " in planned
    for stage in ("validate", "outcomes", "models", "audit"):
        assert f" {stage} " not in planned, stage
    config.write_text("suppress_below: 6\n")
    planned = _make("-n", "report", *variables, installed=installed).stdout
    for stage in ("validate", "outcomes", "models", "relapse", "audit", "report", "paper"):
        assert f"pipeline {stage} " in planned, stage
    assert "--config" in planned
