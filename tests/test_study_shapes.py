"""Any real study runs end to end: ``ipt-outcomes run`` on generated study shapes.

For every shape (tests/study_shapes.py) the run exits 0 with a report, every analysis in
``tables/analyses.csv`` is *done* or *not estimable* with a reason, validation accounts for
every row (and, the data being valid, quarantines none), and no traceback or internal error
reaches the user.

The property test is deterministic (``derandomize``) and does not shrink, so a failing run
stays cheap. To explore further, or to shrink a failure to its minimal shape::

    IPT_SHAPES_EXAMPLES=100 IPT_SHAPES_SHRINK=1 pytest tests/test_study_shapes.py -k property
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from pipeline import io
from pipeline.cli import main
from pipeline.estimability import RECORD_COLUMNS
from pipeline.ingest import validate
from tests.study_shapes import (
    NAMED_SHAPES,
    StudyShape,
    currently_valid,
    study_shapes,
    study_tables,
    write_study,
)

KEY = "5eedc0ffee5eedc0ffee5eedc0ffee00"
ACCEPTED = {"done", "not estimable"}
MAX_EXAMPLES = int(os.environ.get("IPT_SHAPES_EXAMPLES", "12"))
PHASES = (Phase.explicit, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("IPT_SHAPES_SHRINK") else ())
END_TO_END = settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large])


@pytest.fixture
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed key in the environment, as a CI run would have."""
    monkeypatch.setenv(io.KEY_ENV, KEY)


def _analyses_problems(path: Path) -> list[str]:
    if not path.exists():
        return ["no tables/analyses.csv"]
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != list(RECORD_COLUMNS):
        return [f"analyses.csv columns {list(table.columns)} != {list(RECORD_COLUMNS)}"]
    problems = [f"analysis {r.stage}/{r.analysis} is {r.status!r}: {r.reason}"
                for r in table.itertuples() if r.status not in ACCEPTED]
    problems += [f"analysis {r.stage}/{r.analysis} not estimable without a reason"
                 for r in table.itertuples()
                 if r.status == "not estimable" and not r.reason.strip()]
    return problems


def _validation_problems(path: Path) -> list[str]:
    if not path.exists():
        return ["no validation/summary.json"]
    summary = json.loads(path.read_text())
    problems = []
    for name, counts in summary["tables"].items():
        if counts["rows_in"] != counts["rows_valid"] + counts["rows_quarantined"]:
            problems.append(f"{name}: rows_in {counts['rows_in']} != valid "
                            f"{counts['rows_valid']} + quarantined {counts['rows_quarantined']}")
        if counts["rows_quarantined"]:
            rules = [f"{r['check']} ({r['n']})" for r in summary["failures_by_check"]
                     if r["table"] == name]
            problems.append(f"{name}: {counts['rows_quarantined']} valid rows quarantined "
                            f"by {', '.join(rules)}")
    return problems


def run_end_to_end(shape: StudyShape, root: Path, capsys: pytest.CaptureFixture[str],
                   caplog: pytest.LogCaptureFixture) -> list[str]:
    """Run ``ipt-outcomes run`` on the shape's study; return what went wrong (empty: ok)."""
    folder = write_study(shape, root / "study")
    out = root / "out"
    capsys.readouterr()
    caplog.clear()
    try:
        code = main(["run", str(folder), "--out", str(out)])
    finally:
        plt.close("all")
    captured = capsys.readouterr()
    said = captured.out + captured.err + caplog.text
    problems = [] if code == 0 else [f"exit code {code}"]
    problems += [line for line in captured.err.splitlines()
                 if "internal error" in line or "analysis not run" in line]
    if "Traceback" in said:
        problems.append("a traceback was shown or logged")
    if not (out / "report.html").exists():
        problems.append("no report.html")
    problems += _validation_problems(out / "validation" / "summary.json")
    problems += _analyses_problems(out / "tables" / "analyses.csv")
    return problems


def _explain(shape: StudyShape, problems: list[str]) -> str:
    return f"{shape}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", list(NAMED_SHAPES))
def test_named_shape_runs_end_to_end(name: str, tmp_path: Path, pseudonym_key: None,
                                     capsys: pytest.CaptureFixture[str],
                                     caplog: pytest.LogCaptureFixture) -> None:
    shape = NAMED_SHAPES[name]
    problems = run_end_to_end(shape, tmp_path, capsys, caplog)
    assert not problems, _explain(shape, problems)


@END_TO_END
@given(shape=study_shapes())
def test_property_any_study_shape_runs_end_to_end(
        shape: StudyShape, pseudonym_key: None, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        problems = run_end_to_end(shape, Path(tmp), capsys, caplog)
    assert not problems, _explain(shape, problems)


# --------------------------------------------------------------------------- the generator


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(shape=study_shapes(future_valid=False, max_patients=60))
def test_generated_studies_are_valid_today(shape: StudyShape) -> None:
    """The shapes are about the analyses: today's contract accepts every row."""
    assert currently_valid(shape)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_study(shape, Path(tmp))
        result = validate.run(io.read_study(folder, validate.TABLE_ORDER,
                                            validate.REQUIRED_TABLES))
    assert result.summary["n_failures"] == 0, result.summary["failures_by_check"]


@pytest.mark.parametrize("name", list(NAMED_SHAPES))
def test_named_shapes_say_whether_they_are_valid_today(name: str, tmp_path: Path) -> None:
    shape = NAMED_SHAPES[name]
    folder = write_study(shape, tmp_path)
    result = validate.run(io.read_study(folder, validate.TABLE_ORDER, validate.REQUIRED_TABLES))
    assert (result.summary["n_failures"] == 0) == currently_valid(shape), \
        result.summary["failures_by_check"]


def test_a_shape_is_the_same_study_every_time() -> None:
    shape = NAMED_SHAPES["gad7_only_with_followups"]
    first, second = study_tables(shape), study_tables(shape)
    assert first.keys() == second.keys()
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_named_shapes_look_as_named() -> None:
    one = study_tables(NAMED_SHAPES["one_patient"])
    assert len(one["patients"]) == 1
    trial = study_tables(NAMED_SHAPES["bdi2_sparse_trial_no_therapists"])
    assert "therapist_id" not in trial["patients"]
    assert trial["sessions"].groupby("patient_id").size().max() == 3
    assert (trial["sessions"][["phq9", "gad7", "hamd17"]] == "").all().all()
    groups = study_tables(NAMED_SHAPES["group_without_group_ids"])["patients"]
    assert (groups["format"] == "group").all() and (groups["group_id"] == "").all()
    single = study_tables(NAMED_SHAPES["one_post_baseline_score"])["sessions"]
    scored = single[single["phq9"] != ""]
    assert scored.groupby("patient_id").size().le(2).all()
    blank = study_tables(NAMED_SHAPES["all_endpoints_missing"])["sessions"]
    assert (blank.loc[blank["session_number"] != "0", ["phq9", "gad7"]] == "").all().all()
    plain = study_tables(NAMED_SHAPES["one_condition_one_format"])["patients"]
    assert plain["condition"].nunique() == 1 and plain["format"].nunique() == 1
    flat = study_tables(NAMED_SHAPES["no_one_responds"])["sessions"]
    assert flat.groupby("patient_id")["phq9"].nunique().eq(1).all()
    falling = study_tables(NAMED_SHAPES["everyone_responds"])["sessions"]
    scores = falling.assign(phq9=falling["phq9"].astype(int)).groupby("patient_id")["phq9"]
    assert (scores.last() <= scores.first() / 2).all()
