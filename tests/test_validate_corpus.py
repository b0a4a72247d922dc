"""The faulty-input corpus: each fault triggers exactly the rule it breaks, on the right
line and column, and every row is accounted for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import io
from pipeline.ingest import validate
from tests.conftest import StudyWriter, base_followups, base_patients, base_sessions

Rows = list[dict[str, str]]


@dataclass(frozen=True)
class Fault:
    name: str
    table: str
    row: int  # 0-based data row; the source line is row + 2
    column: str
    value: str | None  # None: mutate with `edit` instead
    check: str
    edit: Callable[[Rows], None] | None = None
    also: frozenset[str] = frozenset()  # other rules the same fault rightly triggers


def _set(row: int, **cells: str) -> Callable[[Rows], None]:
    def edit(rows: Rows) -> None:
        rows[row].update(cells)

    return edit


def _append(row: dict[str, str]) -> Callable[[Rows], None]:
    def edit(rows: Rows) -> None:
        rows.append(dict(row))

    return edit


CORPUS = [
    Fault("empty patient id", "patients", 0, "patient_id", "", "not_nullable",
          also=frozenset({"patient_exists"})),
    Fault("duplicate patient", "patients", 3, "patient_id", None, "field_uniqueness",
          _append({**base_patients()[0], "site_id": "S2"})),
    Fault("misspelt condition", "patients", 0, "condition", "depresion", "isin"),
    Fault("unknown format", "patients", 0, "format", "couple", "isin"),
    Fault("individual with group_id", "patients", 0, "group_id", "G9",
          "group_id_matches_format"),
    Fault("unknown problem area", "patients", 0, "problem_area", "loneliness", "isin"),
    Fault("secondary equals primary", "patients", 1, "secondary_problem_area",
          "role_disputes", "secondary_differs_from_primary"),
    Fault("ambiguous date", "patients", 0, "referral_date", "03/04/2024", "date_format"),
    Fault("impossible date", "patients", 0, "referral_date", "2024-02-30", "date_format"),
    Fault("date with braces", "patients", 0, "referral_date", "{2024}-01-0}", "date_format"),
    Fault("start before referral", "patients", 0, "start_date", "2023-12-01",
          "start_not_before_referral"),
    Fault("end before start", "patients", 0, "end_date", "2024-01-09", "end_not_before_start",
          also=frozenset({"session_not_after_end"})),
    Fault("completed without end date", "patients", 0, "end_date", "",
          "end_date_matches_end_reason"),
    Fault("ongoing with end date", "patients", 1, "end_date", "2024-05-01",
          "end_date_matches_end_reason"),
    Fault("unknown end reason", "patients", 0, "end_reason", "moved_away", "isin"),
    Fault("age too low", "patients", 0, "age", "9", "greater_than_or_equal_to"),
    Fault("age too high", "patients", 0, "age", "150", "less_than_or_equal_to"),
    Fault("fractional age", "patients", 0, "age", "34.5", "whole_years"),
    Fault("age not a number", "patients", 0, "age", "thirty", "not_a_number"),
    Fault("maintenance not boolean", "patients", 0, "maintenance", "maybe", "not_a_boolean"),
    Fault("group across sites", "patients", 2, "group_id", None, "group_in_one_site",
          _set(2, site_id="S2")),
    Fault("missing site", "patients", 0, "site_id", "", "not_nullable"),
    Fault("unknown patient", "sessions", 9, "patient_id", None, "patient_exists",
          _append({**base_sessions()[1], "patient_id": "P99"})),
    Fault("duplicate session number", "sessions", 1, "session_number", "0",
          "multiple_fields_uniqueness"),
    Fault("negative session number", "sessions", 1, "session_number", "-1",
          "greater_than_or_equal_to"),
    Fault("fractional session number", "sessions", 1, "session_number", "1.5", "whole_number"),
    Fault("unknown attendance", "sessions", 1, "attendance", "maybe", "isin"),
    Fault("PHQ-9 above 27", "sessions", 1, "phq9", "28", "less_than_or_equal_to"),
    Fault("GAD-7 below 0", "sessions", 1, "gad7", "-1", "greater_than_or_equal_to"),
    Fault("fractional PHQ-9", "sessions", 1, "phq9", "12.5", "whole_score"),
    Fault("BDI-II above 63", "sessions", 4, "bdi2", "64", "less_than_or_equal_to"),
    Fault("score on missed session", "sessions", 2, "attendance", None,
          "no_score_on_missed_session", _set(2, phq9="9")),
    Fault("session after end", "sessions", 3, "session_date", "2024-04-20",
          "session_not_after_end"),
    Fault("assessment long before start", "sessions", 0, "session_date", "2023-09-01",
          "session_not_long_before_start"),
    Fault("treatment session before start", "sessions", 1, "session_date", "2024-01-06",
          "treatment_session_not_before_start"),
    Fault("PHQ-9 not a number", "sessions", 1, "phq9", "abc", "not_a_number"),
    Fault("missing session date", "sessions", 1, "session_date", "", "not_nullable"),
    Fault("follow-up before last session", "followups", 0, "followup_date", "2024-01-20",
          "followup_after_last_session"),
    Fault("follow-up unknown patient", "followups", 0, "patient_id", "P42", "patient_exists"),
    Fault("unknown follow-up event", "followups", 0, "event", "moved", "isin"),
    Fault("clinician relapse not boolean", "followups", 1, "clinician_relapse", "perhaps",
          "not_a_boolean"),
]


def _study(write_study: StudyWriter, fault: Fault) -> Path:
    tables = {"patients": base_patients(), "sessions": base_sessions(),
              "followups": base_followups()}
    rows = tables[fault.table]
    if fault.edit is not None:
        fault.edit(rows)
    else:
        rows[fault.row][fault.column] = str(fault.value)
    return write_study(**tables)


def _validate(folder: Path) -> validate.ValidationResult:
    raw = io.read_study(folder, ("patients", "sessions", "followups"), ("patients", "sessions"))
    return validate.run(raw)


def test_corpus_has_at_least_30_distinct_faults() -> None:
    assert len({f.name for f in CORPUS}) >= 30
    assert len({f.check for f in CORPUS}) >= 20


def test_base_study_is_valid(write_study: StudyWriter) -> None:
    result = _validate(write_study())
    assert result.failure_cases.empty, result.failure_cases.to_string()
    assert {n: len(t) for n, t in result.tables.items()} == {
        "patients": 3, "sessions": 9, "followups": 2}


@pytest.mark.parametrize("fault", CORPUS, ids=[f.name for f in CORPUS])
def test_fault_triggers_its_rule(write_study: StudyWriter, fault: Fault) -> None:
    result = _validate(_study(write_study, fault))
    cases = result.failure_cases
    own = cases[(cases["table"] == fault.table) & (cases["line"] == fault.row + 2)]
    assert (fault.check, fault.column) in set(zip(own["check"], own["column"], strict=True)), (
        cases.to_string()
    )
    # the fault is the only direct fault in the study (cascades aside)
    direct = cases[cases["check"] != "patient_quarantined"]
    assert set(direct["check"]) == {fault.check} | fault.also, direct.to_string()
    for name, counts in result.summary["tables"].items():
        assert counts["rows_in"] == counts["rows_valid"] + counts["rows_quarantined"], name
    quarantined = result.quarantine[fault.table]
    assert fault.row + 2 in set(quarantined["line"])
    assert quarantined["reason"].str.contains(fault.check).all()


def test_rejected_patient_takes_sessions_and_followups(write_study: StudyWriter) -> None:
    patients = base_patients()
    patients[2]["condition"] = "unknown_thing"  # P3: 3 sessions, 1 follow-up
    result = _validate(write_study(patients=patients))
    counts = result.summary["tables"]
    assert counts["patients"]["rows_quarantined"] == 1
    assert counts["sessions"]["rows_quarantined"] == 3
    assert counts["followups"]["rows_quarantined"] == 1
    reasons = result.quarantine["sessions"]["reason"]
    assert reasons.str.contains("its patient was quarantined \\(patients line 4\\)").all()
    assert not reasons.str.contains("P3").any()  # ids travel as fields, never in messages
    cascade = result.failure_cases[result.failure_cases["check"] == "patient_quarantined"]
    assert set(cascade["value"]) == {"P3"}


def test_quarantine_has_declared_columns_only_under_contract_names(
        write_study: StudyWriter) -> None:
    """An NHS number or a name never reaches the quarantine; ``" Patient_ID "`` is
    ``patient_id`` there (so it is pseudonymised like any id)."""
    patients = base_patients()
    for row in patients:
        row["nhs_number"] = "943 476 5919"
        row["full_name"] = "Jane Doe"
    patients[0]["condition"] = "nonsense"
    folder = write_study(patients=patients)
    text = (folder / "patients.csv").read_text().replace("patient_id", " Patient_ID ", 1)
    (folder / "patients.csv").write_text(text)
    quarantine = _validate(folder).quarantine["patients"]
    assert "nhs_number" not in quarantine.columns and "full_name" not in quarantine.columns
    assert quarantine["patient_id"].tolist() == ["P1"]
    assert list(quarantine.columns[:2]) == ["line", "patient_id"]


def test_quarantine_keeps_the_row_unchanged(write_study: StudyWriter) -> None:
    sessions = base_sessions()
    sessions[1]["phq9"] = " 28 "
    sessions[1]["attendance"] = "Attended"
    result = _validate(write_study(sessions=sessions))
    row = result.quarantine["sessions"].iloc[0]
    assert row["phq9"] == " 28 "
    assert row["attendance"] == "Attended"
    assert row["line"] == 3
    message = result.failure_cases.iloc[0]["message"]
    assert message == " 28  is above the maximum 27".replace("  ", " ", 1) or "27" in message


def test_ambiguous_date_message_gives_an_example(write_study: StudyWriter) -> None:
    patients = base_patients()
    patients[0]["referral_date"] = "03/04/2024"
    result = _validate(write_study(patients=patients))
    message = result.failure_cases.iloc[0]["message"]
    assert "ambiguous" in message and "--date-format" in message and "%d/%m/%Y" in message


def test_date_format_option_parses_day_first(write_study: StudyWriter) -> None:
    patients = base_patients()
    for row in patients:
        for column in ("referral_date", "start_date", "end_date"):
            if row[column]:
                y, m, d = row[column].split("-")
                row[column] = f"{d}/{m}/{y}"
    folder = write_study(patients=patients)
    raw = io.read_study(folder, ("patients", "sessions", "followups"), ("patients",))
    with pytest.raises(AssertionError):
        assert validate.run(raw).failure_cases.empty
    # sessions still ISO: the format applies to every table, so write those day-first too
    sessions = base_sessions()
    for row in sessions:
        y, m, d = row["session_date"].split("-")
        row["session_date"] = f"{d}/{m}/{y}"
    followups = base_followups()
    for row in followups:
        y, m, d = row["followup_date"].split("-")
        row["followup_date"] = f"{d}/{m}/{y}"
    folder = write_study(patients=patients, sessions=sessions, followups=followups,
                         folder="dayfirst")
    raw = io.read_study(folder, ("patients", "sessions", "followups"), ("patients",))
    result = validate.run(raw, date_format="%d/%m/%Y")
    assert result.failure_cases.empty, result.failure_cases.to_string()
    assert str(result.tables["patients"]["start_date"].iloc[0].date()) == "2024-01-10"


def test_group_patient_without_group_id_is_valid(write_study: StudyWriter) -> None:
    """Many services do not record the therapy group: accepted (analyses that cluster by
    group say they could not); a group_id on an individual patient is still rejected."""
    patients = base_patients()
    patients[1]["group_id"] = ""  # P2, group format
    result = _validate(write_study(patients=patients))
    assert result.failure_cases.empty, result.failure_cases.to_string()
    assert result.tables["patients"]["group_id"].isna().sum() == 2  # P1 (individual) and P2


def test_followup_on_the_day_of_the_last_session_is_valid(write_study: StudyWriter) -> None:
    """P1's last session is on 2024-01-24: a follow-up that day is kept, the day before is
    quarantined."""
    followups = base_followups()
    followups[0]["followup_date"] = "2024-01-24"
    result = _validate(write_study(followups=followups))
    assert result.failure_cases.empty, result.failure_cases.to_string()
    assert len(result.tables["followups"]) == 2
    followups[0]["followup_date"] = "2024-01-23"
    result = _validate(write_study(followups=followups, folder="day_before"))
    assert set(result.failure_cases["check"]) == {"followup_after_last_session"}
    assert result.quarantine["followups"]["line"].tolist() == [2]
