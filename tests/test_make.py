"""Make targets are real files: a second `make report` does no work, and changing the
config redoes what depends on it (validation too: the contract's instruments and conditions
come from the config)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, check=False, timeout=900)


def test_report_targets_only_redo_what_changed(tmp_path: Path) -> None:
    data, out, config = tmp_path / "data", tmp_path / "out", tmp_path / "study.yaml"
    assert main(["demo", "--out", str(data), "--patients", "300"]) == 0
    config.write_text("suppress_below: 5\n")
    variables = [f"DATA={data}", f"OUT={out}", f"CONFIG={config}"]
    built = _make("report", *variables)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (out / "report.html").exists() and (out / "paper" / "tables.docx").exists()
    up_to_date = _make("-q", str(out / "report.html"), str(out / "paper" / "tables.docx"),
                       *variables)
    assert up_to_date.returncode == 0, "a second make report would do work"
    config.write_text("suppress_below: 6\n")
    planned = _make("-n", "report", *variables).stdout
    assert "ipt-outcomes outcomes" in planned and "ipt-outcomes report" in planned
    assert "ipt-outcomes paper" in planned
    assert "ipt-outcomes validate" in planned and "--config" in planned
