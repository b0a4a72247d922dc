"""Validation runs once per run (``OUT/validated/``), and a run reruns only what changed
(``pipeline.runner.artifacts``, ``pipeline.runner.freshness``, ``pipeline.runner.run``)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import io, study
from pipeline.cli import main
from pipeline.runner import artifacts


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo80")
    assert main(["demo", "--out", str(folder), "--patients", "80"]) == 0
    return folder


def test_parquet_round_trip_keeps_every_dtype(tmp_path: Path) -> None:
    index = pd.Index([2, 5, 7], name="line")
    frame = pd.DataFrame({
        "site": pd.Categorical(["a", "b", "a"], categories=["b", "a"], ordered=True),
        "start": pd.to_datetime(["2024-01-02", None, "2024-03-04"]),
        "sessions": pd.array([3, None, 12], dtype="Int64"),
        "finished": pd.array([True, None, False], dtype="boolean"),
        "phq9": [10.0, np.nan, 4.5],
        "text": ["x", None, "z"],
        "all_nan": pd.Series([np.nan] * 3, index=index, dtype=object),
        "all_none": pd.Series([None] * 3, index=index, dtype=object),
    }, index=index)
    back = io.read_frame(io.write_frame(frame, tmp_path / "t.parquet"))
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    for column in ("all_nan", "all_none", "text"):
        assert [type(v) for v in back[column]] == [type(v) for v in frame[column]], column


def test_validated_artifacts_equal_a_fresh_validation(tiny_demo: Path, tmp_path: Path) -> None:
    from pipeline import config
    from pipeline.ingest import validate
    from pipeline.runner import stages

    out = tmp_path / "out"
    assert main(["validate", str(tiny_demo), "--out", str(out)]) == 0
    meta = artifacts.meta_of(out)
    assert set(meta["inputs"]) == {"patients.csv", "sessions.csv", "followups.csv"}
    kept = artifacts.read(out, meta["fingerprint"])
    assert kept is not None and kept.patient_outcomes is not None
    raw = io.read_study(tiny_demo, validate.TABLE_ORDER, validate.REQUIRED_TABLES)
    fresh = validate.run(raw, config=config.load(None))
    for name, table in fresh.tables.items():
        pd.testing.assert_frame_equal(kept.tables[name], table, check_exact=True)
    derived = stages.derive_outcomes(fresh.tables, config.load(None))
    pd.testing.assert_frame_equal(kept.patient_outcomes, derived, check_exact=True)
    assert artifacts.read(out, "another fingerprint") is None
    assert "validated" not in (out / "validation" / "summary.json").read_text()


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count calls of the validation and of each stage function."""
    from pipeline.ingest import validate
    from pipeline.runner import stages

    calls: Counter[str] = Counter()

    def counted(name: str, module: object, attribute: str) -> None:
        original = getattr(module, attribute)

        def wrapper(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, attribute, wrapper)

    counted("validate", validate, "run")
    for stage in ("outcomes", "models", "relapse", "audit"):
        counted(stage, stages, f"run_{stage}")
    from pipeline.report import html

    counted("report", html, "write")
    return calls


def test_a_run_validates_once_and_reruns_only_what_changed(
        tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, out, config = tmp_path / "data", tmp_path / "out", tmp_path / "study.yaml"
    data.mkdir()
    for path in tiny_demo.glob("*.csv"):
        (data / path.name).write_bytes(path.read_bytes())
    config.write_text("suppress_below: 5\n")
    calls = _counting(monkeypatch)
    command = ["run", str(data), "--out", str(out), "--config", str(config)]
    assert main(command) == 0
    assert calls == Counter(validate=1, outcomes=1, models=1, relapse=1, audit=1, report=1)
    first = (out / "tables" / "response_rates.csv").read_bytes()

    calls.clear()
    assert main(command) == 0  # nothing changed
    assert calls == Counter()
    assert "up to date" in capsys.readouterr().out

    for path in data.glob("*.csv"):  # a new time, the same content
        os.utime(path, (path.stat().st_atime + 100, path.stat().st_mtime + 100))
    assert main(command) == 0
    assert calls == Counter()

    config.write_text("suppress_below: 5\nrelapse:\n  min_at_risk: 7\n")
    assert main(command) == 0  # the relapse section: relapse and the report only
    assert calls == Counter(relapse=1, report=1)
    assert (out / "tables" / "response_rates.csv").read_bytes() == first
    assert main(["report", "--out", str(out)]) == 0  # one consistent run

    config.write_text("suppress_below: 6\nrelapse:\n  min_at_risk: 7\n")
    calls.clear()
    assert main(command) == 0  # a key every stage reads: all again, validation once
    assert calls == Counter(validate=1, outcomes=1, models=1, relapse=1, audit=1, report=1)

    loaded = study.load_run(out)  # what a notebook reads instead of recomputing
    assert calls["validate"] == 1
    assert set(loaded.tables) == {"patients", "sessions", "followups"}
    assert loaded.patient_outcomes is not None and len(loaded.patient_outcomes) == 80
    assert {"response_rates", "analyses"} <= set(loaded.outputs)
    assert loaded.manifest["config"]["suppress_below"] == 6


def test_stage_commands_validate_once(tiny_demo: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    calls = _counting(monkeypatch)
    assert main(["validate", str(tiny_demo), "--out", str(out)]) == 0
    for stage in ("outcomes", "relapse"):
        assert main([stage, str(tiny_demo), "--out", str(out)]) == 0
    assert calls == Counter(validate=1, outcomes=1, relapse=1)
    main(["relapse", str(tiny_demo), "--out", str(out), "--date-format", "%d/%m/%Y"])
    # dates read otherwise: validated anew (the ISO dates then fail; the exit code says so)
    assert calls["validate"] == 2
