"""Tests of the synthetic IPT cohort generator (``pipeline.demo.generate``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data_schemas.vocab import ATTENDANCE, CONDITIONS, END_REASONS, PROBLEM_AREAS
from pipeline.demo.config import CONDITION_PREVALENCE, EVENTS
from pipeline.demo.generate import DemoCohort, DemoConfig, generate_cohort, inject_faults

SCORE_MAX = {"phq9": 27, "gad7": 21, "hamd17": 52, "bdi2": 63}
PATIENT_COLUMNS = [
    "patient_id", "site_id", "therapist_id", "condition", "format", "group_id", "problem_area",
    "secondary_problem_area", "referral_date", "start_date", "end_date", "end_reason", "age",
    "sex", "employment", "maintenance",
]
SESSION_COLUMNS = [
    "patient_id", "session_number", "session_date", "attendance", "phq9", "gad7", "hamd17",
    "bdi2",
]
FOLLOWUP_COLUMNS = [
    "patient_id", "followup_date", "phq9", "gad7", "hamd17", "bdi2", "clinician_relapse",
    "event",
]
CATEGORIES = {
    "condition": set(CONDITIONS),
    "format": {"individual", "group"},
    "problem_area": set(PROBLEM_AREAS),
    "end_reason": set(END_REASONS),
    "sex": {"female", "male"},
    "employment": {"employed", "unemployed", "student", "retired"},
}
Fault = tuple[str, str, str, str]


@pytest.fixture(scope="module")
def small() -> DemoCohort:
    return generate_cohort(DemoConfig(n_patients=300, expected_rates_n=5_000))


@pytest.fixture(scope="module")
def big() -> DemoCohort:
    """The default configuration (n = 2000, 200,000-patient expected-rate population)."""
    return generate_cohort(DemoConfig())


@pytest.fixture(params=["small", "big"])
def cohort(request: pytest.FixtureRequest) -> DemoCohort:
    result: DemoCohort = request.getfixturevalue(request.param)
    return result


def last_session(cohort: DemoCohort) -> pd.DataFrame:
    """Per patient: last session row merged with the patient's row."""
    ses = cohort.sessions.sort_values(["patient_id", "session_number"])
    last = ses.groupby("patient_id").tail(1)
    return last.merge(cohort.patients, on="patient_id", how="left")


def last_observed_phq9(cohort: DemoCohort) -> pd.Series:
    ses = cohort.sessions
    treated = ses[(ses["session_number"] >= 1) & ses["phq9"].notna()]
    return treated.sort_values("session_number").groupby("patient_id")["phq9"].last()


def find_faults(cohort: DemoCohort) -> set[Fault]:
    """An independent check of the contract rules that ``inject_faults`` can break."""
    pat, ses, fol = cohort.patients, cohort.sessions, cohort.followups
    found: set[Fault] = set()
    for col, hi in SCORE_MAX.items():
        for name, frame in (("sessions", ses), ("followups", fol)):
            values = frame[col]
            bad = values.notna() & ((values < 0) | (values > hi) | (values != values.round()))
            found |= {(name, p, col, "out_of_range") for p in frame.loc[bad, "patient_id"]}
        missed = (ses["attendance"] != "attended") & ses[col].notna()
        found |= {("sessions", p, col, "score_on_non_attended_session")
                  for p in ses.loc[missed, "patient_id"]}
    known = set(pat["patient_id"])
    for name, frame in (("sessions", ses), ("followups", fol)):
        unknown = ~frame["patient_id"].isin(known)
        found |= {(name, p, "patient_id", "unknown_patient_id")
                  for p in frame.loc[unknown, "patient_id"]}
    dup = ses.duplicated(["patient_id", "session_number"])
    found |= {("sessions", p, "session_number", "duplicate_session")
              for p in ses.loc[dup, "patient_id"]}
    extra_group = (pat["format"] != "group") & pat["group_id"].notna()
    found |= {("patients", p, "group_id", "unexpected_group_id")
              for p in pat.loc[extra_group, "patient_id"]}
    for col, allowed in CATEGORIES.items():
        bad = ~pat[col].isin(allowed)
        found |= {("patients", p, col, "invalid_category") for p in pat.loc[bad, "patient_id"]}
    end = ses["patient_id"].map(pat.set_index("patient_id")["end_date"])
    after = ses["session_date"] > end
    found |= {("sessions", p, "session_date", "session_after_end_date")
              for p in ses.loc[after, "patient_id"]}
    last = fol["patient_id"].map(ses.groupby("patient_id")["session_date"].max())
    early = fol["followup_date"] < last  # on the day of the last session is allowed
    found |= {("followups", p, "followup_date", "followup_before_last_session")
              for p in fol.loc[early, "patient_id"]}
    return found


# --------------------------------------------------------------------------- determinism


def test_same_config_gives_identical_cohort() -> None:
    config = DemoConfig(n_patients=300, expected_rates_n=2_000)
    a, b = generate_cohort(config), generate_cohort(config)
    pd.testing.assert_frame_equal(a.patients, b.patients)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    pd.testing.assert_frame_equal(a.followups, b.followups)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)


def test_different_seeds_differ() -> None:
    a = generate_cohort(DemoConfig(n_patients=300, seed=1, expected_rates_n=0))
    b = generate_cohort(DemoConfig(n_patients=300, seed=2, expected_rates_n=0))
    assert not a.patients.equals(b.patients)
    assert not a.sessions["phq9"].equals(b.sessions["phq9"])


def test_rejects_empty_cohort() -> None:
    with pytest.raises(ValueError):
        generate_cohort(DemoConfig(n_patients=0))


def test_tiny_cohort_without_groups() -> None:
    tiny = generate_cohort(DemoConfig(n_patients=4, expected_rates_n=0))
    assert len(tiny.patients) == 4
    assert (tiny.patients["format"] == "individual").all()
    assert tiny.patients["group_id"].isna().all()


# --------------------------------------------------------------------------- patients


def test_patient_columns_and_dtypes(cohort: DemoCohort) -> None:
    pat = cohort.patients
    assert list(pat.columns) == PATIENT_COLUMNS
    assert "arm" not in pat.columns
    for col in ("referral_date", "start_date", "end_date"):
        assert pat[col].dtype == "datetime64[ns]"
        assert (pat[col].dropna() == pat[col].dropna().dt.normalize()).all()
    assert pat["maintenance"].dtype == "boolean"
    assert pat["age"].dtype == "float64"
    assert pat["patient_id"].is_unique
    assert pat["patient_id"].str.fullmatch(r"P\d{6}").all()
    assert pat["site_id"].str.fullmatch(r"S0[1-6]").all()
    assert pat["therapist_id"].str.fullmatch(r"T\d{2}").all()


def test_patient_categories(cohort: DemoCohort) -> None:
    pat = cohort.patients
    for col, allowed in CATEGORIES.items():
        assert set(pat[col]) <= allowed, col
    second = pat["secondary_problem_area"].dropna()
    assert set(second) <= set(PROBLEM_AREAS)
    assert (second != pat.loc[second.index, "problem_area"]).all()
    assert ((pat["age"] >= 18) & (pat["age"] <= 80) & (pat["age"] == pat["age"].round())).all()


def test_therapists_nested_in_sites(big: DemoCohort) -> None:
    pat = big.patients
    assert (pat.groupby("therapist_id")["site_id"].nunique() == 1).all()
    assert 25 <= pat["therapist_id"].nunique() <= 30
    sizes = pat["site_id"].value_counts()
    assert len(sizes) == 6
    assert sizes.max() > 2 * sizes.min()


def test_groups(cohort: DemoCohort) -> None:
    pat = cohort.patients
    is_group = pat["format"] == "group"
    assert (pat["group_id"].notna() == is_group).all()
    groups = pat[is_group].groupby("group_id")
    assert groups.size().between(6, 9).all()
    for col in ("site_id", "therapist_id", "start_date"):
        assert (groups[col].nunique() == 1).all(), col
    ses = cohort.sessions.merge(pat[["patient_id", "group_id"]], on="patient_id")
    treat = ses[ses["group_id"].notna() & (ses["session_number"] >= 1)]
    assert (treat.groupby(["group_id", "session_number"])["session_date"].nunique() == 1).all()


def test_dates_and_end_reasons(cohort: DemoCohort) -> None:
    pat = cohort.patients
    wait = (pat["start_date"] - pat["referral_date"]).dt.days
    assert wait.between(7, 60).all()
    ongoing = pat["end_reason"] == "ongoing"
    assert (ongoing == pat["end_date"].isna()).all()
    assert (pat["end_date"].dropna() >= pat.loc[pat["end_date"].notna(), "start_date"]).all()
    completed = pat["end_reason"] == "completed"
    assert (pat["maintenance"].notna() == completed).all()


def test_service_shape_on_2000(big: DemoCohort) -> None:
    pat = big.patients
    span = (pat["start_date"].max() - pat["start_date"].min()).days
    assert 650 <= span <= 730
    reasons = pat["end_reason"].value_counts(normalize=True)
    assert 0.005 < reasons["ongoing"] < 0.10
    assert reasons["transferred"] < 0.05 and reasons["other"] < 0.05
    ended = pat[pat["end_reason"] != "ongoing"]
    assert 0.20 <= (ended["end_reason"] == "dropped_out").mean() <= 0.30
    maintenance = pat.loc[pat["end_reason"] == "completed", "maintenance"].astype(bool)
    assert 0.30 <= maintenance.mean() <= 0.40
    assert 0.60 <= (pat["sex"] == "female").mean() <= 0.70
    assert 0.20 <= pat["secondary_problem_area"].notna().mean() <= 0.30


def test_prevalence_and_group_share(big: DemoCohort) -> None:
    pat = big.patients
    shares = pat["condition"].value_counts(normalize=True)
    for condition, expected in zip(CONDITIONS, CONDITION_PREVALENCE, strict=True):
        assert abs(shares.get(condition, 0.0) - expected) < 0.03, condition
    assert 0.27 <= (pat["format"] == "group").mean() <= 0.31


# --------------------------------------------------------------------------- sessions


def test_session_table_shape(cohort: DemoCohort) -> None:
    ses = cohort.sessions
    assert list(ses.columns) == SESSION_COLUMNS
    assert ses["session_number"].dtype == "int64"
    assert ses["session_date"].dtype == "datetime64[ns]"
    for col in SCORE_MAX:
        assert ses[col].dtype == "float64"
    assert not ses.duplicated(["patient_id", "session_number"]).any()
    assert set(ses["attendance"]) <= set(ATTENDANCE)
    assert set(ses["patient_id"]) == set(cohort.patients["patient_id"])
    assert ses["session_number"].between(0, 16).all()


def test_session_numbers_are_consecutive(cohort: DemoCohort) -> None:
    ses = cohort.sessions
    per = ses.groupby("patient_id")["session_number"]
    assert (per.min() == 0).all()
    assert (per.max() + 1 == per.size()).all()


def test_session_dates(cohort: DemoCohort) -> None:
    ses = cohort.sessions.merge(cohort.patients, on="patient_id")
    first = ses[ses["session_number"] == 0]
    before = (first["start_date"] - first["session_date"]).dt.days
    assert before.between(1, 14).all()
    one = ses[ses["session_number"] == 1]
    assert (one["session_date"] == one["start_date"]).all()
    ordered = ses.sort_values(["patient_id", "session_number"])
    gaps = ordered.groupby("patient_id")["session_date"].diff().dropna()
    assert (gaps > pd.Timedelta(0)).all()
    assert (ses["session_date"] >= ses["start_date"] - pd.Timedelta(days=90)).all()
    ended = ses["end_date"].notna()
    assert (ses.loc[ended, "session_date"] <= ses.loc[ended, "end_date"]).all()
    extract = pd.Timestamp(cohort.truth["extract_date"])
    assert (ses["session_date"] <= extract).all()
    assert (ses.loc[ses["session_number"] >= 1, "session_date"]
            >= ses.loc[ses["session_number"] >= 1, "start_date"]).all()


def test_end_date_is_last_scheduled_session(cohort: DemoCohort) -> None:
    last = last_session(cohort)
    ended = last["end_date"].notna()
    assert (last.loc[ended, "session_date"] == last.loc[ended, "end_date"]).all()
    completed = last[last["end_reason"] == "completed"]
    assert completed["session_number"].between(12, 16).all()
    dropped = last[last["end_reason"] == "dropped_out"]
    assert (dropped["attendance"] != "attended").all()
    assert (dropped["session_number"] <= 15).all()


def test_scores_rules(cohort: DemoCohort) -> None:
    ses = cohort.sessions
    attended = ses["attendance"] == "attended"
    for col, hi in SCORE_MAX.items():
        values = ses[col].dropna()
        assert values.between(0, hi).all(), col
        assert (values == values.round()).all(), col
        assert ses.loc[~attended, col].isna().all(), col
    assert (ses.loc[ses["session_number"] == 0, "attendance"] == "attended").all()
    assert 0.95 < ses.loc[attended, "phq9"].notna().mean() < 1.0
    assert (ses["phq9"].notna() == ses["gad7"].notna()).all()
    assert (ses["hamd17"].notna() == ses["bdi2"].notna()).all()


def test_clinician_scores_only_at_research_sites(big: DemoCohort) -> None:
    ses = big.sessions.merge(big.patients[["patient_id", "site_id"]], on="patient_id")
    research = set(big.truth["config"]["research_sites"])
    has = ses["hamd17"].notna()
    assert set(ses.loc[has, "site_id"]) == research
    per_patient = ses[has].groupby("patient_id").size()
    assert per_patient.max() <= 3
    baseline = ses[(ses["session_number"] == 0) & ses["site_id"].isin(research)]
    assert baseline["hamd17"].notna().all()
    assert ses["bdi2"].notna().sum() == has.sum()


def test_attendance_rates(big: DemoCohort) -> None:
    ses = big.sessions
    treat = ses[ses["session_number"] >= 1]["attendance"].value_counts(normalize=True)
    assert 0.80 <= treat["attended"] <= 0.90
    assert 0.06 <= treat["did_not_attend"] <= 0.13
    assert 0.025 <= treat["cancelled_by_patient"] <= 0.07
    assert 0.01 <= treat["cancelled_by_service"] <= 0.035


def test_dropouts_have_worse_last_phq9(big: DemoCohort) -> None:
    last = last_observed_phq9(big)
    reason = big.patients.set_index("patient_id")["end_reason"]
    dropped = last[reason.reindex(last.index) == "dropped_out"]
    completed = last[reason.reindex(last.index) == "completed"]
    assert len(dropped) > 100
    assert dropped.mean() > completed.mean() + 2.0


def test_group_format_improves_less(big: DemoCohort) -> None:
    rates = big.truth["expected_rates"]["phq9_response_finished_course"]["by_format"]
    assert rates["individual"] > rates["group"]


# --------------------------------------------------------------------------- follow-ups


def test_followup_table(cohort: DemoCohort) -> None:
    fol = cohort.followups
    assert list(fol.columns) == FOLLOWUP_COLUMNS
    assert fol["followup_date"].dtype == "datetime64[ns]"
    assert fol["clinician_relapse"].dtype == "boolean"
    assert set(fol["event"].dropna()) <= set(EVENTS)
    for col, hi in SCORE_MAX.items():
        values = fol[col].dropna()
        assert values.between(0, hi).all() and (values == values.round()).all(), col
    last = cohort.sessions.groupby("patient_id")["session_date"].max()
    assert (fol["followup_date"] > fol["patient_id"].map(last)).all()
    assert (fol["followup_date"] <= pd.Timestamp(cohort.truth["extract_date"])).all()
    reason = fol["patient_id"].map(cohort.patients.set_index("patient_id")["end_reason"])
    assert (reason != "ongoing").all()
    assert fol.groupby("patient_id").size().max() <= 3


def test_followup_events(cohort: DemoCohort) -> None:
    fol = cohort.followups.sort_values(["patient_id", "followup_date"])
    relapse = fol["event"] == "relapse"
    assert (fol.loc[relapse, "phq9"] >= 10).all()
    assert fol.loc[relapse, "clinician_relapse"].astype(bool).all()
    assert not fol.loc[fol["event"] == "none", "clinician_relapse"].astype(bool).any()
    ending = fol["event"].isin(["relapse", "died", "other_treatment", "withdrew"])
    is_last = ~fol["patient_id"].duplicated(keep="last")
    assert is_last[ending].all()
    assert fol.loc[fol["event"] == "died", "phq9"].isna().all()


def test_followups_by_patient_group(big: DemoCohort) -> None:
    fol, pat = big.followups, big.patients
    followed = set(fol["patient_id"])
    completed = pat.loc[pat["end_reason"] == "completed", "patient_id"]
    assert completed.isin(followed).mean() > 0.85
    first = fol.groupby("patient_id")["followup_date"].min()
    starts = pat.set_index("patient_id")["start_date"]
    late = starts > starts.max() - pd.Timedelta(days=365)
    count = fol.groupby("patient_id").size()
    assert count[late.reindex(count.index)].mean() < count[~late.reindex(count.index)].mean()
    assert len(first) == len(followed)


def test_relapse_depends_on_maintenance_and_residual(big: DemoCohort) -> None:
    fol, pat = big.followups, big.patients
    relapsed = set(fol.loc[fol["event"] == "relapse", "patient_id"])
    completers = pat[pat["end_reason"] == "completed"].set_index("patient_id")
    flag = completers.index.isin(list(relapsed))
    maintenance = completers["maintenance"].astype(bool).to_numpy()
    assert flag[maintenance].mean() < flag[~maintenance].mean()
    end_phq = last_observed_phq9(big).reindex(completers.index)
    high = (end_phq >= 10).to_numpy()
    assert flag[high].mean() > flag[~high].mean()


# --------------------------------------------------------------------------- truth


def test_truth_is_json_and_complete(cohort: DemoCohort) -> None:
    truth = cohort.truth
    json.dumps(truth, allow_nan=False)
    for key in ("seed", "n_patients", "config", "model", "parameters", "expected_rates",
                "realised", "extract_date"):
        assert key in truth
    model = truth["model"]
    assert model["mean_slope_by_format"] == {"individual": -0.55, "group": -0.45}
    assert model["relapse_model"]["b"] > 0 > model["relapse_model"]["c_maintenance_log_hr"]
    assert model["dropout_model"]["b"] < 0
    assert set(model["random_effects"]) >= {"sd_intercept", "sd_slope", "corr_intercept_slope"}
    params = truth["parameters"]
    assert set(params["baseline_phq9_by_condition"]) == set(CONDITIONS)
    assert set(params["slope_shift_by_problem_area"]) == set(PROBLEM_AREAS)


def test_expected_rates(cohort: DemoCohort) -> None:
    rates = cohort.truth["expected_rates"]
    for name in ("phq9_response_finished_course", "phq9_remission_finished_course",
                 "recovery_finished_course"):
        block = rates[name]
        values: list[Any] = [block["all"], *block["by_format"].values(),
                             *block["by_condition"].values()]
        assert set(block["by_format"]) == {"individual", "group"}
        assert set(block["by_condition"]) == set(CONDITIONS)
        assert all(0.0 < v < 1.0 for v in values), name


def test_expected_rates_are_plausible(big: DemoCohort) -> None:
    rates = big.truth["expected_rates"]
    assert rates["population_n"] == 200_000
    assert 0.45 <= rates["phq9_response_finished_course"]["all"] <= 0.60
    assert 0.45 <= rates["recovery_finished_course"]["all"] <= 0.55
    assert 0.20 <= rates["dropout_share_of_ended"] <= 0.30
    realised = big.truth["realised"]["rates"]["phq9_response_finished_course"]["all"]
    assert abs(realised - rates["phq9_response_finished_course"]["all"]) < 0.06


def test_expected_rates_match_tables(small: DemoCohort) -> None:
    """The array-based rates agree with the same definitions computed from the tables."""
    ses = small.sessions
    pat = small.patients.set_index("patient_id")
    treat = ses[(ses["session_number"] >= 1) & (ses["attendance"] == "attended")]
    n_treat = treat.groupby("patient_id").size().reindex(pat.index, fill_value=0)
    finished = (pat["end_reason"] != "ongoing") & (n_treat >= 2)
    base = ses[ses["session_number"] == 0].set_index("patient_id")["phq9"]
    end = last_observed_phq9(small).reindex(pat.index)
    ok = finished & base.reindex(pat.index).notna() & end.notna() & (base > 0)
    response = (end[ok] <= 0.5 * base.reindex(pat.index)[ok]).mean()
    realised = small.truth["realised"]["rates"]["phq9_response_finished_course"]
    assert realised["n"] == int(ok.sum())
    assert realised["all"] == pytest.approx(response)


# --------------------------------------------------------------------------- faults


def test_clean_cohort_has_no_faults(cohort: DemoCohort) -> None:
    assert find_faults(cohort) == set()


def test_inject_faults_lists_exactly_what_it_breaks(cohort: DemoCohort) -> None:
    before = cohort.sessions.copy()
    faulty, faults = inject_faults(cohort, seed=7)
    assert list(faults.columns) == ["table", "patient_id", "column", "fault"]
    assert len(faults) == 8
    assert faults["fault"].is_unique
    listed = set(faults.itertuples(index=False, name=None))
    assert find_faults(faulty) == listed
    pd.testing.assert_frame_equal(cohort.sessions, before)
    assert len(faulty.sessions) == len(cohort.sessions) + 2
    assert (faulty.patients["condition"] == "depresion").sum() == 1


def test_inject_faults_is_deterministic(small: DemoCohort) -> None:
    a, fa = inject_faults(small, seed=3)
    b, fb = inject_faults(small, seed=3)
    pd.testing.assert_frame_equal(fa, fb)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    _, fc = inject_faults(small, seed=4)
    assert not fa.equals(fc)


# --------------------------------------------------------------------------- contract


def test_vocabulary_matches_contract() -> None:
    from data_schemas import vocab

    assert set(vocab.CONDITIONS) == set(CONDITIONS)
    assert set(vocab.PROBLEM_AREAS) == set(PROBLEM_AREAS)
    assert set(vocab.END_REASONS) == set(END_REASONS)
    assert set(vocab.ATTENDANCE) == set(ATTENDANCE)
    assert set(vocab.FOLLOWUP_EVENTS) == set(EVENTS)


def test_tables_pass_pandera_contract(small: DemoCohort) -> None:
    import data_schemas as schemas

    pat = small.patients
    schemas.Patients.validate(pat, lazy=True)
    ses = small.sessions.assign(
        ctx_patient_known=True,
        ctx_start_date=small.sessions["patient_id"].map(pat.set_index("patient_id")["start_date"]),
        ctx_end_date=small.sessions["patient_id"].map(pat.set_index("patient_id")["end_date"]),
        session_number=small.sessions["session_number"].astype(float),
    )
    schemas.SessionsInContext.validate(ses, lazy=True)
    last = small.sessions.groupby("patient_id")["session_date"].max()
    fol = small.followups.assign(
        ctx_patient_known=True, ctx_last_session_date=small.followups["patient_id"].map(last)
    )
    schemas.FollowupsInContext.validate(fol, lazy=True)


def test_scores_are_not_degenerate(big: DemoCohort) -> None:
    ses = big.sessions
    base = ses.loc[ses["session_number"] == 0, "phq9"]
    assert 13 <= base.mean() <= 17
    assert base.std() > 3
    corr = ses[["phq9", "gad7"]].dropna().corr().iloc[0, 1]
    assert 0.5 < corr < 0.95
    assert np.isfinite(ses["hamd17"].dropna()).all()
