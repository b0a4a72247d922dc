"""Shared fixtures: a tiny, hand-checkable valid study written as CSV text, and the R data
sets of the relapse golden tests."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
PATIENT_COLUMNS = [
    "patient_id", "site_id", "therapist_id", "condition", "format", "group_id",
    "problem_area", "secondary_problem_area", "referral_date", "start_date", "end_date",
    "end_reason", "age", "sex", "maintenance", "employment",
]
SESSION_COLUMNS = [
    "patient_id", "session_number", "session_date", "attendance", "phq9", "gad7",
    "hamd17", "bdi2",
]
FOLLOWUP_COLUMNS = ["patient_id", "followup_date", "phq9", "gad7", "clinician_relapse", "event"]


def base_patients() -> list[dict[str, str]]:
    rows = [
        ["P1", "S1", "T1", "major_depression", "individual", "", "grief", "",
         "2024-01-02", "2024-01-10", "2024-04-10", "completed", "34", "female", "yes",
         "employed"],
        ["P2", "S1", "T2", "anxiety", "group", "G1", "role_disputes", "grief",
         "2024-01-03", "2024-01-11", "", "ongoing", "51", "male", "", "retired"],
        ["P3", "S1", "T2", "dysthymia", "group", "G1", "role_transitions", "",
         "2024-01-03", "2024-01-11", "2024-04-11", "completed", "27", "female", "no",
         "student"],
    ]
    return [dict(zip(PATIENT_COLUMNS, r, strict=True)) for r in rows]


def base_sessions() -> list[dict[str, str]]:
    rows = [
        ["P1", "0", "2024-01-05", "attended", "15", "12", "18", ""],
        ["P1", "1", "2024-01-10", "attended", "14", "11", "", ""],
        ["P1", "2", "2024-01-17", "did_not_attend", "", "", "", ""],
        ["P1", "3", "2024-01-24", "attended", "10", "9", "", ""],
        ["P2", "0", "2024-01-08", "attended", "12", "15", "", "30"],
        ["P2", "1", "2024-01-11", "attended", "11", "14", "", ""],
        ["P3", "0", "2024-01-08", "attended", "20", "10", "", ""],
        ["P3", "1", "2024-01-11", "attended", "18", "9", "", ""],
        ["P3", "2", "2024-01-18", "cancelled_by_service", "", "", "", ""],
    ]
    return [dict(zip(SESSION_COLUMNS, r, strict=True)) for r in rows]


def base_followups() -> list[dict[str, str]]:
    rows = [
        ["P1", "2024-07-10", "6", "5", "no", "none"],
        ["P3", "2024-07-11", "12", "9", "yes", "relapse"],
    ]
    return [dict(zip(FOLLOWUP_COLUMNS, r, strict=True)) for r in rows]


def to_csv(rows: list[dict[str, str]], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


StudyWriter = Callable[..., Path]


@pytest.fixture(autouse=True, scope="session")
def _pseudonym_key_outside_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never create or read a key in the user's home folder."""
    import os

    key_dir = tmp_path_factory.mktemp("key")
    os.environ["IPT_PSEUDONYM_KEY_FILE"] = str(key_dir / "pseudonym.key")
    os.environ.pop("IPT_PSEUDONYM_KEY", None)


@pytest.fixture
def write_study(tmp_path: Path) -> StudyWriter:
    """Write a study folder; tables default to the valid base study."""

    def write(
        patients: list[dict[str, str]] | None = None,
        sessions: list[dict[str, str]] | None = None,
        followups: list[dict[str, str]] | None = None,
        folder: str = "study",
    ) -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        tables = {
            "patients": patients if patients is not None else base_patients(),
            "sessions": sessions if sessions is not None else base_sessions(),
            "followups": followups if followups is not None else base_followups(),
        }
        for name, rows in tables.items():
            (root / f"{name}.csv").write_text(to_csv(rows))
        return root

    return write


def read_golden(name: str) -> pd.DataFrame:
    """A CSV under ``tests/golden`` (empty cells missing, ``NA`` kept as text)."""
    return pd.read_csv(GOLDEN_DIR / name, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    """R's ``lung``; time in days stands in for ``time_weeks`` (the unit does not matter)."""
    frame = read_golden("relapse_lung.csv")
    return frame.rename(columns={"time": "time_weeks", "status": "event", "ph.ecog": "ecog"})


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    """R's ``Rossi`` (survival::rossi)."""
    return read_golden("relapse_rossi.csv").rename(
        columns={"week": "time_weeks", "arrest": "event"})


@pytest.fixture(scope="module")
def demo_cohort() -> pd.DataFrame:
    """The demo relapse cohort that R's golden values were computed on."""
    frame = read_golden("relapse_demo_cohort.csv")
    return frame.assign(time_weeks=frame["time_days"] / 7.0)
