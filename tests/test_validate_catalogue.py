"""Validation against the contract built from the study: catalogue score columns, the
study's own instruments and conditions (``pipeline.ingest.validate`` with a ``StudyConfig``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import config as study_config
from pipeline import io
from pipeline.ingest import validate
from pipeline.ingest.validate import ValidationResult
from tests.conftest import base_patients, to_csv

#: Three patients (see ``tests/conftest.py``), each with an assessment and one session.
SESSION_DATES = {"P1": ("2024-01-05", "2024-01-10"), "P2": ("2024-01-08", "2024-01-11"),
                 "P3": ("2024-01-08", "2024-01-11")}


def sessions(column: str, scores: dict[str, tuple[str, str]]) -> list[dict[str, str]]:
    """Two attended sessions per patient with the given ``column`` scores."""
    rows = []
    for pid, (first, second) in scores.items():
        for number, (date, score) in enumerate(zip(SESSION_DATES[pid], (first, second),
                                                   strict=True)):
            rows.append({"patient_id": pid, "session_number": str(number),
                         "session_date": date, "attendance": "attended", column: score})
    return rows


def run(root: Path, patients: list[dict[str, str]], session_rows: list[dict[str, str]],
        config: study_config.StudyConfig | None = None) -> ValidationResult:
    root.mkdir(parents=True, exist_ok=True)
    (root / "patients.csv").write_text(to_csv(patients))
    (root / "sessions.csv").write_text(to_csv(session_rows))
    raw = io.read_study(root, validate.TABLE_ORDER, validate.REQUIRED_TABLES)
    return validate.run(raw, config=config)


def failures(result: ValidationResult, check: str) -> pd.DataFrame:
    cases = result.failure_cases
    return cases[cases["check"] == check]


def test_madrs_only_study_validates_with_only_its_column(tmp_path: Path) -> None:
    result = run(tmp_path, base_patients(),
                 sessions("MADRS", {"P1": ("30", "14"), "P2": ("24", "9"), "P3": ("20", "10")}))
    assert result.summary["n_failures"] == 0
    columns = set(result.tables["sessions"].columns)
    assert "madrs" in columns  # matched case-insensitively and renamed to the catalogue's
    assert not columns & {"phq9", "gad7", "hamd17", "bdi2", "core10"}  # no empty columns


def test_out_of_range_score_names_the_catalogue_range(tmp_path: Path) -> None:
    result = run(tmp_path, base_patients(),
                 sessions("madrs", {"P1": ("61", "14"), "P2": ("24", "9"), "P3": ("20", "10")}))
    bad = failures(result, "less_than_or_equal_to")
    assert bad[["table", "line", "column", "value"]].values.tolist() == \
        [["sessions", 2, "madrs", "61"]]
    assert "above the maximum 60" in bad["message"].iloc[0]
    assert "MADRS scores range 0-60" in bad["message"].iloc[0]
    assert result.summary["tables"]["sessions"]["rows_quarantined"] == 1


def test_core10_range_and_whole_numbers_come_from_the_catalogue(tmp_path: Path) -> None:
    result = run(tmp_path, base_patients(),
                 sessions("core10", {"P1": ("41", "12"), "P2": ("14", "8.5"),
                                     "P3": ("10", "17")}))
    assert failures(result, "less_than_or_equal_to")["line"].tolist() == [2]
    whole = failures(result, "whole_score")
    assert whole[["line", "column", "value"]].values.tolist() == [[5, "core10", "8.5"]]
    assert whole["message"].iloc[0] == "This score must be a whole number."


def test_mobility_inventory_accepts_mean_scores(tmp_path: Path) -> None:
    result = run(tmp_path, base_patients(),
                 sessions("mi", {"P1": ("3.2", "2.1"), "P2": ("2.5", "1.4"),
                                 "P3": ("0.5", "2")}))
    below = failures(result, "greater_than_or_equal_to")
    assert below["line"].tolist() == [6]
    assert "Mobility Inventory (alone) scores range 1-5" in below["message"].iloc[0]
    assert failures(result, "whole_score").empty


def test_missed_session_rule_covers_every_score_column(tmp_path: Path) -> None:
    rows = sessions("madrs", {"P1": ("30", "14"), "P2": ("24", "9"), "P3": ("20", "10")})
    rows[1]["attendance"] = "did_not_attend"
    result = run(tmp_path, base_patients(), rows)
    missed = failures(result, "no_score_on_missed_session")
    assert missed[["line", "column"]].values.tolist() == [[3, "attendance"]]
    assert missed["message"].iloc[0] == "A session that was not attended cannot carry a score."


def test_config_declared_scale_is_checked_against_its_range(tmp_path: Path) -> None:
    config = study_config.from_mapping({"instruments": {"wellbeing": {
        "label": "Wellbeing", "min": 14, "max": 70, "direction": "higher_is_better",
        "reliable_change": 8}}})
    rows = sessions("wellbeing", {"P1": ("30", "45"), "P2": ("50", "44"), "P3": ("35", "71")})
    result = run(tmp_path, base_patients(), rows, config)
    bad = failures(result, "less_than_or_equal_to")
    assert bad["line"].tolist() == [7]
    assert "Wellbeing scores range 14-70" in bad["message"].iloc[0]
    # without the config the column is an ordinary covariate, not a score
    plain = run(tmp_path / "plain", base_patients(), rows)
    assert plain.summary["n_failures"] == 0


def test_config_declared_condition_is_accepted(tmp_path: Path) -> None:
    patients = base_patients()
    patients[1]["condition"] = "Social Anxiety"
    rows = sessions("phq9", {"P1": ("15", "10"), "P2": ("12", "11"), "P3": ("20", "18")})
    undeclared = run(tmp_path / "a", patients, rows)
    bad = failures(undeclared, "isin")
    assert bad[["table", "line", "column", "value"]].values.tolist() == \
        [["patients", 3, "condition", "Social Anxiety"]]
    assert bad["message"].iloc[0].startswith("'Social Anxiety' is not an allowed value")
    assert "social_anxiety" not in bad["message"].iloc[0]
    declared = run(tmp_path / "b", patients, rows,
                   study_config.from_mapping({"conditions": ["social_anxiety"]}))
    assert declared.summary["n_failures"] == 0
    assert declared.tables["patients"]["condition"].tolist()[1] == "social_anxiety"


def test_cli_validate_takes_the_study_config(tmp_path: Path) -> None:
    from pipeline.cli import main

    patients = base_patients()
    patients[1]["condition"] = "social_anxiety"
    rows = sessions("phq9", {"P1": ("15", "10"), "P2": ("12", "11"), "P3": ("20", "18")})
    root = tmp_path / "study"
    root.mkdir()
    (root / "patients.csv").write_text(to_csv(patients))
    (root / "sessions.csv").write_text(to_csv(rows))
    config = tmp_path / "study.yaml"
    config.write_text("conditions: [social_anxiety]\n")
    assert main(["validate", str(root), "--out", str(tmp_path / "a"), "--keep-ids"]) == 1
    assert main(["validate", str(root), "--out", str(tmp_path / "b"), "--keep-ids",
                 "--config", str(config)]) == 0
    config.write_text("conditions: [Social Anxiety]\n")
    assert main(["validate", str(root), "--out", str(tmp_path / "c"), "--keep-ids",
                 "--config", str(config)]) == 2
