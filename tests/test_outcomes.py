"""Per-patient outcomes on a hand-built fixture that sits on every rule boundary.

Each patient below is one boundary case; the expected values are written by hand from the
published rules (PHQ-9 caseness >= 10, remission < 5, response >= 50% fall, reliable change
>= 6; GAD-7 caseness >= 8, reliable change >= 4; HAM-D-17 remission <= 7; BDI-II response
>= 50% fall, remission <= 13 and Jacobson-Truax with r = 0.92, SD = 12.75:
S_diff = sqrt(2) * 12.75 * sqrt(0.08) = 5.1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from data_schemas import Patients, SessionsInContext
from data_schemas.outcomes import per_instrument_schema
from pipeline import config as study_config
from pipeline.outcomes import definitions as outcomes

START = pd.Timestamp("2024-01-08")
NA = None
Visit = tuple[int, str, dict[str, float]]


def _att(number: int, **scores: float) -> Visit:
    return (number, "attended", scores)


def _dna(number: int) -> Visit:
    return (number, "did_not_attend", {})


def _weekly(first: int, last: int, phq9: list[float] | None = None) -> list[Visit]:
    visits = []
    for k, number in enumerate(range(first, last + 1)):
        scores = {"phq9": phq9[k]} if phq9 is not None else {}
        visits.append(_att(number, **scores))
    return visits


CASES: dict[str, dict[str, Any]] = {
    "A_exactly_half": {"visits": [_att(0, phq9=20, gad7=10), _att(1, phq9=16, gad7=9),
                                  _att(2), _att(3, phq9=10, gad7=6)]},
    "B_just_short": {"visits": [_att(0, phq9=21, gad7=9), _att(1), _att(2, phq9=11, gad7=7)]},
    "C_caseness_exact": {"visits": [_att(0, phq9=10, gad7=7), _att(1), _att(2, phq9=4, gad7=3)]},
    "D_below_caseness": {"visits": [_att(0, phq9=9, gad7=7), _att(1), _att(2, phq9=3, gad7=2)]},
    "E_gad_caseness": {"visits": [_att(0, phq9=8, gad7=8), _att(1), _att(2, phq9=7, gad7=3)]},
    "F_single_session": {"visits": [_att(1, phq9=15, gad7=12)]},
    "G_missing_gad7": {"visits": [_att(0, phq9=18), _att(1, phq9=12), _att(2, phq9=8)]},
    "H_mixed": {"visits": [_att(0, phq9=12, gad7=15), _att(1), _att(2, phq9=18, gad7=9)]},
    "I_zero_baseline": {"visits": [_att(0, phq9=0, gad7=0), _att(1), _att(2, phq9=2, gad7=0)]},
    "J_last_only": {"visits": [_att(0), _att(1), _att(2), _att(3, phq9=14, gad7=10)]},
    "K_no_assessment_score": {"visits": [_att(0), _att(1, phq9=16, gad7=12), _dna(2),
                                         _att(3, phq9=6, gad7=5)]},
    "L_dropout": {"visits": [_att(0, phq9=20, gad7=15), _att(1, phq9=19, gad7=14), _dna(2),
                             _dna(3)], "end_reason": "dropped_out"},
    "M_completer": {
        "visits": [_att(0, phq9=22, gad7=16), *_weekly(1, 13), _att(14, phq9=4, gad7=4)]
    },
    "N_eleven": {"visits": [_att(0, phq9=15, gad7=9), *_weekly(1, 10), _att(11, phq9=9, gad7=8)]},
    "O_gap": {"visits": [_att(0, phq9=17, gad7=12), _att(1), _att(2, phq9=15, gad7=11)],
              "end_weeks_after_last": 6, "end_reason": "other"},
    "P_ongoing": {"visits": [_att(0, phq9=15, gad7=10), _att(1), _att(2, phq9=12, gad7=9)],
                  "end_reason": "ongoing"},
    "Q_never_started": {"visits": [_att(0, phq9=14, gad7=9), _dna(1)],
                        "end_reason": "dropped_out"},
    "R_group": {"visits": [_att(0, phq9=15, gad7=9), _att(1), _att(2, phq9=7, gad7=5)],
                "format": "group", "group_id": "G1"},
    "S_hamd_remit": {"visits": [_att(0, phq9=14, hamd17=20), _att(1), _att(2, phq9=13, hamd17=7)]},
    "T_hamd_boundary": {"visits": [_att(0, hamd17=16), _att(1), _att(2, hamd17=8)]},
    "U_bdi_recovered": {"visits": [_att(0, bdi2=30), _att(1), _att(2, bdi2=10)]},
    "V_bdi_unchanged": {"visits": [_att(0, bdi2=20), _att(1), _att(2, bdi2=12)]},
}


def _session_date(number: int) -> pd.Timestamp:
    return START - pd.Timedelta(days=3) if number == 0 else START + pd.Timedelta(
        days=7 * (number - 1))


def build_fixture() -> tuple[pd.DataFrame, pd.DataFrame]:
    patient_rows, session_rows = [], []
    for pid, case in CASES.items():
        visits = case["visits"]
        last_date = _session_date(max(v[0] for v in visits))
        reason = case.get("end_reason", "completed")
        end = None if reason == "ongoing" else last_date + pd.Timedelta(
            weeks=case.get("end_weeks_after_last", 0))
        patient_rows.append({
            "patient_id": pid, "site_id": "S1", "therapist_id": "T1",
            "condition": "major_depression", "format": case.get("format", "individual"),
            "group_id": case.get("group_id"), "problem_area": "grief",
            "secondary_problem_area": None, "referral_date": START - pd.Timedelta(days=14),
            "start_date": START, "end_date": end, "end_reason": reason, "age": 40.0,
            "sex": "female", "maintenance": pd.NA, "arm": None,
        })
        for number, attended, scores in visits:
            session_rows.append({"patient_id": pid, "session_number": float(number),
                                 "session_date": _session_date(number), "attendance": attended,
                                 **{k: float(scores.get(k, np.nan))
                                    for k in ("phq9", "gad7", "hamd17", "bdi2")}})
    patients = pd.DataFrame(patient_rows)
    patients["end_date"] = pd.to_datetime(patients["end_date"])
    patients["maintenance"] = patients["maintenance"].astype("boolean")
    return patients, pd.DataFrame(session_rows)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    patients, sessions = build_fixture()
    return outcomes.derive(patients, sessions, study_config.from_mapping(None)).set_index(
        "patient_id")


def test_fixture_satisfies_the_input_contract() -> None:
    patients, sessions = build_fixture()
    Patients.validate(patients, lazy=True)
    first = patients.set_index("patient_id")
    SessionsInContext.validate(sessions.assign(
        ctx_patient_known=True, ctx_start_date=sessions["patient_id"].map(first["start_date"]),
        ctx_end_date=sessions["patient_id"].map(first["end_date"])), lazy=True)


def test_output_satisfies_the_outcomes_contract(table: pd.DataFrame) -> None:
    per_instrument_schema().validate(table.reset_index(), lazy=True)
    assert len(table) == len(CASES)


# (patient, column, expected); None means missing (not known), never False
EXPECTED: list[tuple[str, str, Any]] = [
    ("A_exactly_half", "phq9_baseline", 20), ("A_exactly_half", "phq9_endpoint", 10),
    ("A_exactly_half", "phq9_change", -10), ("A_exactly_half", "phq9_pct_change", -50.0),
    ("A_exactly_half", "phq9_response", True), ("A_exactly_half", "phq9_remission", False),
    ("A_exactly_half", "phq9_reliable_improvement", True),
    ("A_exactly_half", "phq9_jt_class", "improved"),
    ("A_exactly_half", "gad7_reliable_improvement", True),  # exactly 4 points
    ("A_exactly_half", "gad7_response", None),  # no response rule for GAD-7
    ("A_exactly_half", "caseness_at_start", True), ("A_exactly_half", "recovery", False),
    ("A_exactly_half", "reliable_improvement", True),
    ("A_exactly_half", "reliable_recovery", False),
    ("B_just_short", "phq9_response", False), ("B_just_short", "phq9_reliable_improvement", True),
    ("B_just_short", "gad7_reliable_improvement", False), ("B_just_short", "recovery", False),
    ("C_caseness_exact", "caseness_at_start", True), ("C_caseness_exact", "phq9_response", True),
    ("C_caseness_exact", "phq9_remission", True), ("C_caseness_exact", "recovery", True),
    ("C_caseness_exact", "reliable_recovery", True),
    ("C_caseness_exact", "phq9_jt_class", "recovered"),
    ("D_below_caseness", "caseness_at_start", False), ("D_below_caseness", "recovery", None),
    ("D_below_caseness", "reliable_recovery", None),
    ("D_below_caseness", "reliable_improvement", True),
    ("D_below_caseness", "phq9_jt_class", "improved"),
    ("E_gad_caseness", "caseness_at_start", True), ("E_gad_caseness", "recovery", True),
    ("E_gad_caseness", "reliable_improvement", True),
    ("E_gad_caseness", "reliable_recovery", True),
    ("F_single_session", "phq9_baseline", 15), ("F_single_session", "phq9_endpoint", None),
    ("F_single_session", "phq9_response", None), ("F_single_session", "recovery", None),
    ("F_single_session", "caseness_at_start", True),
    ("F_single_session", "reliable_improvement", None),
    ("F_single_session", "started", True), ("F_single_session", "finished_course", False),
    ("G_missing_gad7", "phq9_response", True), ("G_missing_gad7", "caseness_at_start", True),
    ("G_missing_gad7", "reliable_improvement", None),
    ("G_missing_gad7", "reliable_deterioration", None), ("G_missing_gad7", "recovery", None),
    ("G_missing_gad7", "gad7_baseline", None),
    ("H_mixed", "phq9_reliable_deterioration", True),
    ("H_mixed", "gad7_reliable_improvement", True),
    ("H_mixed", "reliable_improvement", False), ("H_mixed", "reliable_deterioration", True),
    ("H_mixed", "recovery", False), ("H_mixed", "reliable_recovery", False),
    ("H_mixed", "phq9_jt_class", "deteriorated"), ("H_mixed", "gad7_jt_class", "improved"),
    ("I_zero_baseline", "phq9_pct_change", None), ("I_zero_baseline", "phq9_response", None),
    ("I_zero_baseline", "phq9_remission", True), ("I_zero_baseline", "caseness_at_start", False),
    ("I_zero_baseline", "recovery", None), ("I_zero_baseline", "reliable_improvement", False),
    ("I_zero_baseline", "phq9_jt_class", "unchanged"),
    ("J_last_only", "phq9_baseline", 14), ("J_last_only", "phq9_endpoint", None),
    ("J_last_only", "recovery", None),
    ("K_no_assessment_score", "phq9_baseline", 16), ("K_no_assessment_score", "phq9_endpoint", 6),
    ("K_no_assessment_score", "recovery", True),
    ("K_no_assessment_score", "sessions_did_not_attend", 1),
    ("L_dropout", "dropout", True), ("L_dropout", "finished_course", False),
    ("L_dropout", "sessions_scheduled", 3), ("L_dropout", "sessions_attended", 1),
    ("L_dropout", "sessions_did_not_attend", 2), ("L_dropout", "phq9_response", False),
    ("M_completer", "completers", True), ("M_completer", "finished_course", True),
    ("M_completer", "dropout", False), ("M_completer", "sessions_attended", 14),
    ("M_completer", "phq9_remission", True),
    ("N_eleven", "completers", False), ("N_eleven", "dropout", False),
    ("N_eleven", "finished_course", True),
    ("O_gap", "dropout", True), ("O_gap", "finished_course", True),
    ("P_ongoing", "ended", False), ("P_ongoing", "finished_course", False),
    ("P_ongoing", "started", True), ("P_ongoing", "phq9_change", -3),
    ("Q_never_started", "started", False), ("Q_never_started", "dropout", False),
    ("Q_never_started", "phq9_endpoint", None),
    ("R_group", "phq9_response", True), ("R_group", "recovery", True),
    ("S_hamd_remit", "hamd17_response", True), ("S_hamd_remit", "hamd17_remission", True),
    ("T_hamd_boundary", "hamd17_response", True), ("T_hamd_boundary", "hamd17_remission", False),
    ("U_bdi_recovered", "bdi2_reliable_improvement", True),
    ("U_bdi_recovered", "bdi2_jt_class", "recovered"),
    ("V_bdi_unchanged", "bdi2_reliable_improvement", False),
    ("V_bdi_unchanged", "bdi2_jt_class", "unchanged"),
    ("V_bdi_unchanged", "phq9_jt_class", None),
    # BDI-II response (fall >= 50%) and remission (<= 13) from the catalogue
    ("U_bdi_recovered", "bdi2_response", True), ("U_bdi_recovered", "bdi2_remission", True),
    ("V_bdi_unchanged", "bdi2_response", False), ("V_bdi_unchanged", "bdi2_remission", True),
]


@pytest.mark.parametrize(("patient", "column", "expected"), EXPECTED,
                         ids=[f"{p}-{c}" for p, c, _ in EXPECTED])
def test_boundary_value(table: pd.DataFrame, patient: str, column: str, expected: Any) -> None:
    value = table.at[patient, column]
    if expected is None:
        assert pd.isna(value), f"{patient}.{column} = {value!r}, expected missing"
    else:
        assert not pd.isna(value), f"{patient}.{column} is missing, expected {expected!r}"
        assert value == expected, f"{patient}.{column} = {value!r}, expected {expected!r}"


def test_attendance_rate(table: pd.DataFrame) -> None:
    assert table.at["L_dropout", "attendance_rate"] == pytest.approx(1 / 3)
    assert table.at["F_single_session", "attendance_rate"] == 1.0


def test_outcome_columns_use_missing_not_false(table: pd.DataFrame) -> None:
    for column in ("recovery", "reliable_improvement", "phq9_response"):
        assert str(table[column].dtype) == "boolean"


def test_reliable_change_index_matches_hand_value() -> None:
    rules = study_config.DEFAULT_RULES["bdi2"]
    rci = outcomes.reliable_change_index(pd.Series([-20.0, -8.0]), rules)
    assert rci.tolist() == pytest.approx([-20 / 5.1, -8 / 5.1])


def test_jt_cutoffs_by_hand() -> None:
    rules = study_config.DEFAULT_RULES["bdi2"]
    assert outcomes.jt_cutoff(rules) == pytest.approx((12.75 * 12.56 + 9.93 * 22.45) / 22.68)
    a = study_config.InstrumentRules(clinical_mean=22.45, clinical_sd=12.75, jt_cutoff="a")
    assert outcomes.jt_cutoff(a) == pytest.approx(22.45 - 25.5)
    b = study_config.InstrumentRules(functional_mean=12.56, functional_sd=9.93, jt_cutoff="b")
    assert outcomes.jt_cutoff(b) == pytest.approx(12.56 + 19.86)


def test_config_changes_the_definitions() -> None:
    patients, sessions = build_fixture()
    stricter = study_config.from_mapping(
        {"instruments": {"phq9": {"response_reduction": 0.6, "caseness": 11}},
         "baseline_rule": "first_treatment"})
    table = outcomes.derive(patients, sessions, stricter).set_index("patient_id")
    assert not table.at["A_exactly_half", "phq9_response"]  # 50% < 60%
    caseness = table.at["C_caseness_exact", "caseness_at_start"]
    assert caseness is not pd.NA and not caseness  # PHQ-9 10 < 11 and GAD-7 7 < 8
    # first_treatment ignores the assessment: A's baseline is then session 1 (16)
    assert table.at["A_exactly_half", "phq9_baseline"] == 16


def test_endpoint_at_a_week() -> None:
    patients, sessions = build_fixture()
    at_week = study_config.from_mapping({"endpoint": {"rule": "week", "week": 1,
                                                      "window_weeks": 0.5}})
    table = outcomes.derive(patients, sessions, at_week).set_index("patient_id")
    # A: session 2 (week 1) has no score, session 1 (week 0) is 1 week away: outside window
    assert pd.isna(table.at["A_exactly_half", "phq9_endpoint"])
    # K: the scored session 3 is at week 2: outside; G: session 2 at week 1 scored 8
    assert table.at["G_missing_gad7", "phq9_endpoint"] == 8


def test_instrument_never_measured_gives_missing_not_a_crash() -> None:
    patients, sessions = build_fixture()
    sessions["hamd17"] = np.nan
    no_bdi = sessions.drop(columns=["bdi2"])
    table = outcomes.derive(patients, no_bdi, study_config.from_mapping(None))
    assert table["hamd17_baseline"].isna().all()
    assert not any(c.startswith("bdi2_") for c in table.columns)  # no column, no outcomes
    assert table["phq9_baseline"].notna().any()


# --------------------------------------------------------------------------- trial populations
#: An assessment-only trial: PHQ-9 at baseline (session 0) and at weeks 8 and 16, recorded
#: as session_number 8 and 16; no treatment sessions, no end of episode (end_reason empty).
TRIAL: dict[str, tuple[str, dict[int, float | None]]] = {  # arm, {week: PHQ-9}
    "R1": ("A", {0: 20, 8: 12, 16: 8}),      # 60% fall: response
    "R2": ("A", {0: 15, 8: 6, 16: 4}),       # response and remission
    "R3": ("B", {0: 18, 8: 16, 16: None}),   # week 16 missed: endpoint 16, no response
    "R4": ("B", {0: 22}),                    # lost after baseline: not assessed
    "R5": ("B", {}),                         # randomised, never assessed
    "R6": ("A", {0: 12, 16: 6}),             # exactly 50%: response
}


def _trial() -> tuple[pd.DataFrame, pd.DataFrame]:
    patients = pd.DataFrame([{
        "patient_id": pid, "site_id": "S1", "therapist_id": None,
        "condition": "major_depression", "format": "individual", "group_id": None,
        "problem_area": "grief", "secondary_problem_area": None,
        "referral_date": START - pd.Timedelta(days=14), "start_date": START,
        "end_date": pd.NaT, "end_reason": None, "age": 40.0, "sex": "female", "arm": arm,
    } for pid, (arm, _) in TRIAL.items()])
    sessions = pd.DataFrame([{
        "patient_id": pid, "session_number": float(week),
        "session_date": START + pd.Timedelta(weeks=week),
        "attendance": "did_not_attend" if phq9 is None else "attended",
        "phq9": np.nan if phq9 is None else float(phq9), "gad7": np.nan,
    } for pid, (_, weeks) in TRIAL.items() for week, phq9 in weeks.items()])
    return patients, sessions


def test_assessment_only_trial_gets_trial_populations() -> None:
    """Service definitions find nobody who finished a course (and call the week-16
    assessment a 'final phase' session); the trial definition has 6 randomised and 4
    assessed (R1, R2, R3, R6). PHQ-9 response among the randomised: observed 3 of 4 (R1, R2,
    R6 of those with an endpoint), itt 3 of 5 (R5 has no baseline, so is not eligible)."""
    from pipeline.outcomes import rates

    patients, sessions = _trial()
    service = outcomes.derive(patients, sessions, study_config.from_mapping(None))
    assert not service["finished_course"].any() and "randomised" not in service
    [note] = outcomes.population_notes(service, study_config.from_mapping(None))
    assert note.startswith("no patient finished a course")
    assert "set populations.definition: trial" in note
    cfg = study_config.from_mapping({"populations": {"definition": "trial"}})
    trial = outcomes.derive(patients, sessions, cfg).set_index("patient_id")
    per_instrument_schema().validate(trial.reset_index(), lazy=True)
    assert trial["randomised"].all()
    assert trial.index[trial["assessed"]].tolist() == ["R1", "R2", "R3", "R6"]
    assert trial["phq9_response"].astype(object).where(trial["phq9_response"].notna(), None)\
        .tolist() == [True, True, False, None, None, True]
    assert outcomes.main_population(cfg) == "randomised"
    assert outcomes.population_columns(cfg)[:2] == ("randomised", "assessed")
    assert outcomes.population_notes(trial.reset_index(), cfg) == [
        "trial populations: 6 randomised (intention to treat, the main population), 4 "
        "assessed after baseline on phq9"]
    table = rates.response_rates(trial.reset_index(), ["phq9"],
                                 populations=outcomes.population_columns(cfg))
    cell = table.loc[(table["population"] == "randomised") & (table["instrument"] == "phq9")
                     & (table["outcome"] == "response") & (table["condition"] == "all")
                     & (table["format"] == "all")].set_index("denominator")
    assert (cell.loc["observed", "n"], cell.loc["observed", "events"]) == (4, 3)
    assert (cell.loc["itt", "n"], cell.loc["itt", "events"]) == (5, 3)


def test_only_baseline_assessments_say_so() -> None:
    """Only session 0 recorded: nobody started, and the note says how to fix it."""
    patients, sessions = _trial()
    baseline_only = sessions.loc[sessions["session_number"] == 0]
    table = outcomes.derive(patients, baseline_only, study_config.from_mapping(None))
    [note] = outcomes.population_notes(table, study_config.from_mapping(None))
    assert note.startswith("no patient attended a treatment session (session_number >= 1)")
    cfg = study_config.from_mapping({"populations": {"definition": "trial"}})
    trial = outcomes.derive(patients, baseline_only, cfg)
    assert trial["randomised"].all() and not trial["assessed"].any()
