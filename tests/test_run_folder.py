"""A run owns its OUT: staging, the lock, the incomplete mark, no report from mixed runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.runner import run_folder


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo120")
    assert main(["demo", "--out", str(folder), "--patients", "120"]) == 0
    return folder


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name not in ("run_log.json", "run.log")}


def test_a_killed_run_leaves_the_previous_out_as_it_was(small_demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(small_demo), "--out", str(out)]) == 0
    before = _snapshot(out)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(small_demo), "--out", str(out),
         "--config", str(_config(tmp_path))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = out.with_name(f".out.staging-{process.pid}")
    deadline = time.monotonic() + 120
    while not (staging / "tables" / "patient_outcomes.csv").exists():
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _snapshot(out) == before  # not one byte of the killed run in OUT
    assert main(["report", "--out", str(out)]) == 0  # the lock of the dead run is taken over


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text("suppress_below: 10\n")
    return path


def test_a_stage_command_killed_midway_marks_out_incomplete(small_demo: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["validate", str(small_demo), "--out", str(out)]) == 0
    assert main(["outcomes", str(small_demo), "--out", str(out)]) == 0
    assert main(["report", "--out", str(out)]) == 0
    (out / run_folder.INCOMPLETE).write_text("models\n")  # what a killed `models` leaves
    assert main(["report", "--out", str(out)]) == 2
    assert main(["models", str(small_demo), "--out", str(out)]) == 0
    assert not (out / run_folder.INCOMPLETE).exists()
    assert main(["report", "--out", str(out)]) == 0


def test_stages_run_on_different_configs_are_not_reported_together(
        small_demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["outcomes", str(small_demo), "--out", str(out)]) == 0
    assert main(["models", str(small_demo), "--out", str(out), "--config",
                 str(_config(tmp_path))]) == 0
    assert main(["report", "--out", str(out)]) == 2
    assert "different inputs or configurations" in capsys.readouterr().err
    assert main(["paper", "--out", str(out)]) == 2
    assert "different inputs or configurations" in capsys.readouterr().err


def test_a_rerun_whose_validation_fails_leaves_no_earlier_report(
        small_demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(small_demo), "--out", str(out)]) == 0
    assert (out / "paper" / "tables.docx").exists()  # `run` writes the tables for papers
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("patients.csv", "sessions.csv", "followups.csv"):
        (broken / name).write_bytes((small_demo / name).read_bytes())
    text = (broken / "sessions.csv").read_text().splitlines()
    header = text[0].split(",")
    date = header.index("session_date")
    rows = [line.split(",") for line in text[1:]]
    for row in rows[: len(rows) // 5]:
        row[date] = "not a date"
    (broken / "sessions.csv").write_text("\n".join([text[0], *map(",".join, rows)]) + "\n")
    assert main(["run", str(broken), "--out", str(out)]) == 1
    assert (out / "validation" / "failure_cases.csv").exists()
    for stale in ("report.html", "manifest.json", "tables", "figures", "paper"):
        assert not (out / stale).exists(), stale
    assert main(["report", "--out", str(out)]) == 0 or not (out / "report.html").exists()


def test_a_live_lock_stops_a_second_writer(small_demo: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.with_name("out.lock").write_text(str(sleeper.pid))
        assert main(["run", str(small_demo), "--out", str(out)]) == 2
        assert f"pid {sleeper.pid}" in capsys.readouterr().err
        assert not out.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["validate", str(small_demo), "--out", str(out)]) == 0  # stale: taken over
    assert not out.with_name("out.lock").exists()


def test_out_that_is_a_file_is_refused(small_demo: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.write_text("not a folder")
    assert main(["run", str(small_demo), "--out", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_stage_outputs_no_longer_produced_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    old, kept = out / "tables" / "mixed_x_fixed.csv", out / "tables" / "mixed_growth_fixed.csv"
    old.write_text("a\n")
    kept.write_text("a\n")
    run_folder.replace_stage_outputs(out, "models", [old, kept])
    run_folder.replace_stage_outputs(out, "models", [kept])
    assert kept.exists() and not old.exists()


def test_an_edited_output_record_never_removes_files_outside_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / ".outputs").mkdir(parents=True)
    victim = tmp_path / "victim.csv"
    victim.write_text("keep me\n")
    (out / ".outputs" / "models.txt").write_text(f"../victim.csv\n{victim}\n..\n")
    run_folder.replace_stage_outputs(out, "models", [])
    assert victim.read_text() == "keep me\n" and out.is_dir()


def test_staged_swaps_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), run_folder.staged(out) as staging:
        (staging / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with run_folder.staged(out) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or retired folders
    assert os.getpid() > 0
