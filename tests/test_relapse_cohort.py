"""The relapse cohort of ``pipeline.relapse.analysis`` on a hand-built study of twelve patients.

Every patient starts on Monday 2024-01-01 (assessment, session 0, on 2023-12-28, PHQ-9 15)
and attends sessions 1-3 on 01-01, 01-08 and 01-15, so the time origin (last attended
acute-phase session) is 2024-01-15 unless said otherwise; follow-ups 91, 182 and 364 days
later are 13, 26 and 52 weeks. The end-of-treatment PHQ-9 is 3 (remission, < 5) except P08.

=====  ===========================================================  =======  =====
id     follow-ups after 2024-01-15                                   weeks    event
=====  ===========================================================  =======  =====
P01    13 w PHQ-9 4; 26 w PHQ-9 12 (>= 10: relapse); 52 w PHQ-9 3    26       1
P02    13 w PHQ-9 2; 26 w PHQ-9 9 (below 10)                         26       0
P03    8 w PHQ-9 8, clinician_relapse True, event relapse             8        1
P04    13 w PHQ-9 3; 21 w event died                                  21       2
P05    13 w PHQ-9 4; 17 w event withdrew (no scores)                  13       0
P06    session 4 on 01-22 not attended (origin stays 01-15);          13       0
       follow-ups on 01-10 (PHQ-9 14) and 01-12 (PHQ-9 11) are
       before the origin and ignored; 13 w PHQ-9 3
P07    no follow-up                                                   excluded
P08    endpoint PHQ-9 9: not in remission                             not at risk
P09    remission but still in treatment (ongoing)                     not at risk
P10    4 w event other_treatment                                      4        2
P11    13 w not reached (no scores); 26 w PHQ-9 2; 52 w not reached   26       0
P12    13 w PHQ-9 10 (= threshold: relapse)                           13       1
=====  ===========================================================  =======  =====

By hand, Kaplan-Meier of relapse (competing events censored): 8 at risk at 8 w, S = 7/8;
7 at 13 w, S = 0.75; 3 at 26 w, S = 0.5 (median 26 w). Aalen-Johansen: all-cause
S(4) = 8/9; CIF(8) = 8/9 * 1/8 = 1/9; S(8) = 7/9; CIF(13) = 1/9 + 7/9 * 1/7 = 2/9;
S(13) = 6/9, S(21) = 6/9 * 3/4 = 1/2; CIF(26) = 2/9 + 1/2 * 1/3 = 7/18.
R agrees (``tests/golden/relapse_golden.R``: ``survfit(Surv(time_weeks, event == 1) ~ 1,
conf.type = "log-log")`` and ``survfit(Surv(time_weeks, factor(event, 0:2)) ~ 1)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline import config
from pipeline.estimability import NotEstimable
from pipeline.outcomes import definitions as outcomes
from pipeline.relapse.analysis import analyse
from pipeline.relapse.cohort import relapse_cohort
from pipeline.relapse.competing import cumulative_incidence_table
from pipeline.relapse.kaplan_meier import kaplan_meier_table
from pipeline.report import relapse_plots
from pipeline.runner.stages import StageOutput

GOLDEN = json.loads((Path(__file__).parent / "golden" / "relapse_golden.json").read_text())
NaT = pd.NaT
IDS = [f"P{i:02d}" for i in range(1, 13)]
GROUP = {"P01", "P03", "P06", "P10"}
MAINTENANCE: dict[str, bool | None] = {
    "P01": True, "P02": False, "P03": False, "P04": True, "P05": False, "P06": True,
    "P07": False, "P08": False, "P09": None, "P10": False, "P11": None, "P12": True,
}
EXPECTED = {  # patient_id: (time_weeks, event)
    "P01": (26.0, 1), "P02": (26.0, 0), "P03": (8.0, 1), "P04": (21.0, 2), "P05": (13.0, 0),
    "P06": (13.0, 0), "P10": (4.0, 2), "P11": (26.0, 0), "P12": (13.0, 1),
}
FOLLOWUPS = [  # patient_id, date, phq9, clinician_relapse, event
    ("P01", "2024-04-15", 4, False, "none"), ("P01", "2024-07-15", 12, False, "none"),
    ("P01", "2025-01-13", 3, False, "none"),
    ("P02", "2024-04-15", 2, False, "none"), ("P02", "2024-07-15", 9, False, "none"),
    ("P03", "2024-03-11", 8, True, "relapse"),
    ("P04", "2024-04-15", 3, False, "none"), ("P04", "2024-06-10", None, None, "died"),
    ("P05", "2024-04-15", 4, False, "none"), ("P05", "2024-05-13", None, None, "withdrew"),
    ("P06", "2024-01-10", 14, False, "none"), ("P06", "2024-01-12", 11, False, "none"),
    ("P06", "2024-04-15", 3, False, "none"),
    ("P08", "2024-04-15", 15, True, "relapse"),
    ("P10", "2024-02-12", None, None, "other_treatment"),
    ("P11", "2024-04-15", None, None, None), ("P11", "2024-07-15", 2, False, "none"),
    ("P11", "2025-01-13", None, None, None),
    ("P12", "2024-04-15", 10, False, "none"),
]


def _patients() -> pd.DataFrame:
    ongoing = [i == "P09" for i in IDS]
    return pd.DataFrame({
        "patient_id": IDS,
        "site_id": "S1",
        "therapist_id": ["T1" if i in GROUP else f"T{2 + n % 3}" for n, i in enumerate(IDS)],
        "condition": ["major_depression"] * 6 + ["anxiety"] * 6,
        "format": ["group" if i in GROUP else "individual" for i in IDS],
        "group_id": ["G1" if i in GROUP else None for i in IDS],
        "problem_area": ["grief", "role_disputes", "role_transitions"] * 4,
        "secondary_problem_area": None,
        "referral_date": pd.Timestamp("2023-12-01"),
        "start_date": pd.Timestamp("2024-01-01"),
        "end_date": [NaT if o else pd.Timestamp("2024-01-22" if i == "P06" else "2024-01-15")
                     for i, o in zip(IDS, ongoing, strict=True)],
        "end_reason": ["ongoing" if o else "completed" for o in ongoing],
        "age": np.linspace(25.0, 58.0, 12).round(),
        "sex": ["female", "male"] * 6,
        "maintenance": pd.array([MAINTENANCE[i] for i in IDS], dtype="boolean"),
    })


def _sessions() -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    dates = ["2023-12-28", "2024-01-01", "2024-01-08", "2024-01-15"]
    for patient in IDS:
        end = 9.0 if patient == "P08" else 3.0
        for number, (date, phq9) in enumerate(zip(dates, [15.0, 10.0, 6.0, end], strict=True)):
            rows.append({"patient_id": patient, "session_number": number,
                         "session_date": pd.Timestamp(date), "attendance": "attended",
                         "phq9": phq9, "gad7": phq9 / 2})
        if patient == "P06":
            rows.append({"patient_id": patient, "session_number": 4,
                         "session_date": pd.Timestamp("2024-01-22"),
                         "attendance": "did_not_attend", "phq9": np.nan, "gad7": np.nan})
    frame = pd.DataFrame(rows)
    # every instrument scored somewhere: outcomes.derive fails on an all-empty score column
    return frame.assign(hamd17=frame["phq9"] + 2.0, bdi2=frame["phq9"] * 2.0)


def _followups() -> pd.DataFrame:
    frame = pd.DataFrame(FOLLOWUPS, columns=["patient_id", "followup_date", "phq9",
                                             "clinician_relapse", "event"])
    return frame.assign(
        followup_date=pd.to_datetime(frame["followup_date"]),
        phq9=frame["phq9"].astype(float),
        gad7=np.nan, hamd17=np.nan, bdi2=np.nan,
        clinician_relapse=frame["clinician_relapse"].astype("boolean"),
    )


@pytest.fixture(scope="module")
def study() -> dict[str, pd.DataFrame]:
    cfg = config.from_mapping(None)
    patients, sessions = _patients(), _sessions()
    return {"patients": patients, "sessions": sessions, "followups": _followups(),
            "patient_outcomes": outcomes.derive(patients, sessions, cfg)}


def _cohort(study: dict[str, pd.DataFrame], settings: dict[str, Any] | None = None,
            **replace: pd.DataFrame | None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    tables: dict[str, Any] = {**study, **replace}
    cfg = config.from_mapping({"relapse": settings} if settings else None)
    return relapse_cohort(tables["patients"], tables["sessions"], tables["followups"],
                          tables["patient_outcomes"], cfg)


def test_hand_derived_times_and_events(study: dict[str, pd.DataFrame]) -> None:
    cohort, _ = _cohort(study)
    got = {row.patient_id: (row.time_weeks, row.event) for row in cohort.itertuples()}
    assert got == EXPECTED
    assert cohort["event"].dtype == np.int64
    assert (cohort["origin_date"] == pd.Timestamp("2024-01-15")).all()  # P06's DNA ignored


def test_cohort_columns_and_covariates(study: dict[str, pd.DataFrame]) -> None:
    cohort, _ = _cohort(study)
    assert list(cohort.columns) == [
        "patient_id", "condition", "format", "problem_area", "age", "sex", "site_id",
        "therapist_id", "group_id", "residual_phq9", "maintenance", "origin_date",
        "exit_date", "time_weeks", "event"]
    assert (cohort["residual_phq9"] == 3.0).all()
    p11 = cohort.set_index("patient_id").loc["P11"]
    assert not p11["maintenance"]  # missing maintenance counts as none
    assert cohort["maintenance"].dtype == bool
    assert cohort.set_index("patient_id").loc["P01", "format"] == "group"


def test_messages_count_exclusions(study: dict[str, pd.DataFrame]) -> None:
    _, messages = _cohort(study)
    text = "\n".join(messages)
    assert ("10 patients at risk of relapse: treatment ended in remission on phq9 "
            "(1 in remission but still in treatment not counted)") in text
    assert ("2 follow-ups of 1 patient dated before the last attended acute-phase session "
            "ignored") in text
    assert "1 patient at risk without any follow-up after the end of treatment left out" in text
    assert "P07" not in text  # ids never reach messages (the report is shared)
    assert "maintenance not recorded for 1 patient at risk" in text
    assert "relapse cohort: 9 patients, 3 relapses, 2 competing events" in text


def test_threshold_option(study: dict[str, pd.DataFrame]) -> None:
    """With relapse at PHQ-9 >= 13, P01 (12 at 26 w) and P12 (10 at 13 w) do not relapse."""
    cohort, _ = _cohort(study, {"threshold": 13})
    got = cohort.set_index("patient_id")
    assert tuple(got.loc["P01", ["time_weeks", "event"]]) == (52.0, 0)
    assert tuple(got.loc["P12", ["time_weeks", "event"]]) == (13.0, 0)
    assert tuple(got.loc["P03", ["time_weeks", "event"]]) == (8.0, 1)  # clinician relapse


def test_response_at_risk_option(study: dict[str, pd.DataFrame]) -> None:
    """Response (PHQ-9 15 -> 9 is a 40% fall) keeps P08 out; 15 -> 3 responders are in."""
    cohort, messages = _cohort(study, {"at_risk": "response"})
    assert set(cohort["patient_id"]) == set(EXPECTED)
    assert any("ended in response on phq9" in m for m in messages)


def test_relapse_and_competing_on_one_followup_count_as_relapse(
    study: dict[str, pd.DataFrame],
) -> None:
    followups = study["followups"].copy()
    died = (followups["patient_id"] == "P04") & (followups["event"] == "died")
    followups.loc[died, "phq9"] = 14.0
    cohort, _ = _cohort(study, followups=followups)
    assert tuple(cohort.set_index("patient_id").loc["P04", ["time_weeks", "event"]]) == (21.0, 1)


def test_no_followup_table_is_not_estimable(study: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(NotEstimable, match="no follow-up table") as verdict:
        _cohort(study, followups=None)
    assert "followups table" in verdict.value.remedy


def test_no_followup_of_anyone_at_risk_is_not_estimable(study: dict[str, pd.DataFrame]) -> None:
    """Only P08 (not at risk) and P07's absence: nobody at risk has a follow-up."""
    followups = study["followups"].loc[study["followups"]["patient_id"] == "P08"]
    with pytest.raises(NotEstimable, match="none of the 10 patients at risk of relapse has a "
                                           "usable follow-up"):
        _cohort(study, followups=followups)


def test_followups_without_scores_or_event_columns(study: dict[str, pd.DataFrame]) -> None:
    """Only dates and clinician judgements: relapse comes from clinician_relapse alone."""
    followups = study["followups"][["patient_id", "followup_date", "clinician_relapse"]]
    cohort, _ = _cohort(study, followups=followups)
    got = cohort.set_index("patient_id")
    assert tuple(got.loc["P03", ["time_weeks", "event"]]) == (8.0, 1)
    assert tuple(got.loc["P01", ["time_weeks", "event"]]) == (52.0, 0)
    assert "P10" not in got.index  # other_treatment unknown without the event column


def test_kaplan_meier_and_cif_by_hand_and_r(study: dict[str, pd.DataFrame]) -> None:
    """R: survfit(Surv(time_weeks, event == 1) ~ 1, data = hand, conf.type = "log-log") and
    survfit(Surv(time_weeks, factor(event, 0:2)) ~ 1, data = hand)."""
    cohort, _ = _cohort(study)
    km, _ = kaplan_meier_table(cohort, (13.0, 26.0), by=())
    row = km.iloc[0]
    golden = GOLDEN["hand_km"]
    assert row["relapse_free_13w"] == pytest.approx(0.75, abs=1e-12)
    assert row["relapse_free_26w"] == pytest.approx(0.5, abs=1e-12)
    np.testing.assert_allclose([row["ci_low_13w"], row["ci_low_26w"]], golden["lower"],
                               rtol=1e-8)
    np.testing.assert_allclose([row["ci_high_13w"], row["ci_high_26w"]], golden["upper"],
                               rtol=1e-8)
    assert row["median_weeks"] == golden["median"] == 26.0
    assert row["median_ci_low"] == golden["median_lower"] == 8.0
    assert np.isnan(row["median_ci_high"]) and golden["median_upper"] == "NA"
    cif, _ = cumulative_incidence_table(cohort, by=())
    assert cif["time_weeks"].tolist() == [0.0, 8.0, 13.0, 26.0]
    np.testing.assert_allclose(cif["cif"], [0.0, 1 / 9, 2 / 9, 7 / 18], atol=1e-12)
    np.testing.assert_allclose(cif["cif"].iloc[1:], GOLDEN["hand_cif"]["cif"], atol=1e-12)
    assert cif["at_risk"].tolist() == [9, 8, 7, 3]


def test_analyse_with_three_relapses_is_descriptive_only(
    study: dict[str, pd.DataFrame],
) -> None:
    result = analyse(study["patients"], study["sessions"], study["followups"],
                     study["patient_outcomes"], config.from_mapping(None))
    assert "relapse_cox" not in result.tables and "relapse_ph_test" not in result.tables
    status = {r.analysis: r.status for r in result.records}
    assert status == {"cohort": "done", "km": "done", "logrank": "done",
                      "cox": "not estimable", "rmst": "done", "cif": "done",
                      "turnbull": "done", "aft_interval": "not estimable"}
    cox = next(r for r in result.records if r.analysis == "cox")
    assert cox.reason.startswith("too few relapses for a Cox model: 3 relapses")
    assert "relapses per model parameter" in cox.remedy
    figures = relapse_plots.stage_figures(StageOutput(result.tables), config.from_mapping(None),
                                          [])
    assert set(figures) == {"relapse_km", "relapse_cif"}
    km = result.tables["relapse_km"]
    assert km.loc[km["stratum_variable"] == "all", "events"].item() == 3


def test_response_at_risk_times_by_hand(study: dict[str, pd.DataFrame]) -> None:
    """Every endpoint of 3 is a >= 50% fall from 15: the responders are the remitters, with
    the same times and events; P08 (15 -> 9, 40%) is out."""
    cohort, _ = _cohort(study, {"at_risk": "response"})
    got = {row.patient_id: (row.time_weeks, row.event) for row in cohort.itertuples()}
    assert got == EXPECTED


def test_completed_at_risk_by_hand(study: dict[str, pd.DataFrame]) -> None:
    """With completers at >= 3 sessions every ended patient completed (P09 is ongoing);
    P08 (endpoint 9, below the threshold 10, not in remission) is now at risk and relapses
    at 13 w (PHQ-9 15); P07 still has no follow-up. At threshold 9, P08 is out (nothing to
    relapse from) and P02 (9 at 26 w) relapses."""
    cfg_values: dict[str, Any] = {"populations": {"completer_min_sessions": 3},
                                  "relapse": {"at_risk": "completed"}}
    cfg = config.from_mapping(cfg_values)
    po = outcomes.derive(study["patients"], study["sessions"], cfg)
    assert po.loc[po["completers"], "patient_id"].tolist() == IDS  # P09 has not ended
    cohort, messages = relapse_cohort(study["patients"], study["sessions"],
                                      study["followups"], po, cfg)
    got = {row.patient_id: (row.time_weeks, row.event) for row in cohort.itertuples()}
    assert got == {**EXPECTED, "P08": (13.0, 1)}
    assert ("11 patients at risk of relapse: treatment completed the acute course (1 "
            "completer but still in treatment not counted)") in messages
    cfg = config.from_mapping({**cfg_values, "relapse": {"at_risk": "completed",
                                                         "threshold": 9}})
    cohort, messages = relapse_cohort(study["patients"], study["sessions"],
                                      study["followups"], po, cfg)
    got = {row.patient_id: (row.time_weeks, row.event) for row in cohort.itertuples()}
    assert got == {**EXPECTED, "P02": (26.0, 1)}
    assert any(m.startswith("1 completer not counted as at risk: ended treatment at or above "
                            "the relapse threshold (phq9 >= 9") for m in messages)


def test_completed_without_completers_is_not_estimable(study: dict[str, pd.DataFrame]) -> None:
    """Three sessions of a 12-16 session course: nobody completed it (default populations)."""
    with pytest.raises(NotEstimable, match="nobody is at risk of relapse: no patient's "
                                           "treatment completed the acute course"):
        _cohort(study, {"at_risk": "completed"})


def test_gad7_only_study_with_remission_at_risk_is_not_estimable(
    study: dict[str, pd.DataFrame],
) -> None:
    """GAD-7 defines no remission (nor response): not estimable, with the way out."""
    sessions = study["sessions"].drop(columns=["phq9", "hamd17", "bdi2"])
    followups = study["followups"].drop(columns=["phq9", "hamd17", "bdi2"]).assign(gad7=3.0)
    cfg = config.from_mapping({"primary_instrument": "gad7"})
    po = outcomes.derive(study["patients"], sessions, cfg)
    with pytest.raises(NotEstimable) as verdict:
        relapse_cohort(study["patients"], sessions, followups, po, cfg)
    assert verdict.value.reason.startswith("gad7 defines no remission")
    assert verdict.value.remedy.startswith("set relapse.at_risk: completed")
    result = analyse(study["patients"], sessions, followups, po, cfg)
    assert result.tables == {}
    assert [(r.analysis, r.status) for r in result.records] == [("cohort", "not estimable")]
    with pytest.raises(NotEstimable, match="gad7 defines no response"):
        relapse_cohort(study["patients"], sessions, followups, po,
                       config.from_mapping({"primary_instrument": "gad7",
                                            "relapse": {"at_risk": "response"}}))


def test_followup_on_the_day_treatment_ended_is_time_zero(
    study: dict[str, pd.DataFrame],
) -> None:
    """P02's only follow-up is on 2024-01-15, the origin, with PHQ-9 12: a relapse at time 0.

    By hand, KM: S(0) = 8/9; at 8 w 7 at risk, S = 8/9 * 6/7; at 13 w 6 at risk,
    S(13) = 8/9 * 6/7 * 5/6 = 40/63; at 26 w 2 at risk, S(26) = 20/63. Aalen-Johansen:
    CIF(0) = 1/9; P10's competing event at 4 w gives S = 7/9; CIF(8) = 1/9 + 7/9 * 1/7 =
    2/9, S = 6/9; CIF(13) = 3/9, S = 5/9;
    P04's competing event at 21 w (3 at risk) gives S = 10/27; CIF(26) = 1/3 + 10/27 * 1/2
    = 14/27.
    """
    followups = study["followups"]
    followups = pd.concat([
        followups.loc[followups["patient_id"] != "P02"],
        followups.loc[followups["patient_id"] == "P02"].iloc[:1].assign(
            followup_date=pd.Timestamp("2024-01-15"), phq9=12.0)], ignore_index=True)
    cohort, messages = _cohort(study, followups=followups)
    got = {row.patient_id: (row.time_weeks, row.event) for row in cohort.itertuples()}
    assert got == {**EXPECTED, "P02": (0.0, 1)}
    assert any(m.startswith("1 patient left follow-up on the day treatment ended (time 0), "
                            "1 of them with a relapse") for m in messages)
    result = analyse(study["patients"], study["sessions"], followups,
                     study["patient_outcomes"], config.from_mapping(None))
    km = result.tables["relapse_km"].iloc[0]
    assert km["relapse_free_26w"] == pytest.approx(40 / 63 / 2, abs=1e-12)  # 2 at risk at 26
    cif = result.tables["relapse_cif"]
    cif = cif.loc[cif["stratum_variable"] == "all"]
    assert cif["time_weeks"].tolist() == [0.0, 8.0, 13.0, 26.0]
    np.testing.assert_allclose(cif["cif"], [1 / 9, 2 / 9, 3 / 9, 14 / 27], atol=1e-12)
    assert cif["at_risk"].tolist() == [9, 7, 6, 2]
    rmst = result.tables["relapse_rmst"]
    assert rmst.loc[rmst["variable"] == "all", "rmst"].item() < 52 * 8 / 9


def test_relapse_cohort_table_leaves_dates_out(study: dict[str, pd.DataFrame]) -> None:
    result = analyse(study["patients"], study["sessions"], study["followups"],
                     study["patient_outcomes"], config.from_mapping(None))
    table = result.tables["relapse_cohort"]
    assert list(table.columns) == [
        "patient_id", "condition", "format", "problem_area", "age", "sex", "site_id",
        "therapist_id", "group_id", "residual_phq9", "maintenance", "time_weeks", "event"]
    assert sorted(table["patient_id"]) == sorted(EXPECTED)


def test_remission_on_an_instrument_never_scored_is_not_estimable(
    study: dict[str, pd.DataFrame],
) -> None:
    """HAM-D-17 defines remission, but nobody has an end-of-treatment HAM-D-17 score."""
    sessions = study["sessions"].assign(hamd17=np.nan)
    cfg = config.from_mapping({"relapse": {"instrument": "hamd17"}})
    po = outcomes.derive(study["patients"], sessions, cfg)
    with pytest.raises(NotEstimable, match="no end-of-treatment hamd17 score in the data"):
        relapse_cohort(study["patients"], sessions, study["followups"], po, cfg)


def test_completed_without_end_of_treatment_scores_is_not_estimable(
    study: dict[str, pd.DataFrame],
) -> None:
    """A study without scores on the relapse instrument (pharmacoSmoking's shape) and
    ``at_risk: completed`` with a threshold: not estimable, never a KeyError."""
    unscored = study["patient_outcomes"].drop(
        columns=[c for c in study["patient_outcomes"].columns if c.startswith("phq9_")])
    with pytest.raises(NotEstimable, match="no end-of-treatment phq9 score"):
        _cohort(study, {"at_risk": "completed"}, patient_outcomes=unscored)
