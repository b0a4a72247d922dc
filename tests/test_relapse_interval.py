"""Tests of ``pipeline.relapse.interval`` (Turnbull NPMLE, interval-censored Weibull AFT) and
of the Kaplan-Meier figure's ``relapse.min_at_risk``.

Golden values come from R 4.2.2 with survival 3.5-3 (``tests/golden/interval_relapse_golden.R``,
run once; output in ``interval_relapse_golden.json`` and ``.Rout``), on intervals the
pipeline built (``interval_relapse_make_inputs.py``: ``beat_the_blues_followup`` and the
demo) and on the hand-built study of ``tests/test_relapse_cohort.py``. R is not needed to run
these tests.

Tolerances
----------
The Turnbull NPMLE is unique only at the ends of the observed intervals (not inside the
Turnbull intervals), so it is compared there, and two R references are used:

- R's self-consistency (EM) iteration run to a log-likelihood gain below 1e-13 per
  iteration (``em``): ``atol = 1e-6``. The pipeline runs the same iteration and stops at a
  gain below 1e-12 (``relapse_interval.NPMLE_TOLERANCE``); EM converges slowly, so both
  stop a little short of the maximum: measured at most 1.2e-7 (hand-built), 9e-8 (demo),
  1e-15 (Beat the Blues), 3e-16 (pharmacoSmoking, exact times: also R's Kaplan-Meier).
- R ``survfit(Surv(left, right, type = "interval2") ~ 1)`` (``survfit``): ``atol = 5e-3``.
  survfit stops its EM once no value of S moves by more than 5e-5 in an iteration, which on
  the demo is still up to 2.3e-3 from the maximum (measured: 5.1e-4 overall, 2.3e-3 and
  1.3e-3 by maintenance; 2.3e-3 on pharmacoSmoking, whose exact times make the NPMLE R's own
  Kaplan-Meier, which the pipeline matches to 3e-16; survfit's log-likelihood is lower than
  the converged one's); the
  pipeline's estimate is checked to have a log-likelihood at least as high as survfit's. On
  the small data sets survfit converges: 1.7e-7 (hand-built), 6e-10 (Beat the Blues).

The pipeline's iteration is lifelines' (``KaplanMeierFitter.fit_interval_censoring``),
vectorised; the two are compared at ``atol = 1e-6`` with lifelines run to ``tol = 1e-12``.

The Weibull AFT model is compared with ``survreg(..., dist = "weibull")`` at ``atol = 1e-4``
on coefficients, standard errors and log(scale): both maximise the same likelihood with
different optimisers and stopping rules (measured: coefficients 7e-6 on the demo, 1.2e-5 on
pharmacoSmoking; standard errors 1.8e-6; log(scale) 2.8e-6).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.exceptions import ConvergenceError

from pipeline import config
from pipeline.estimability import NotEstimable
from pipeline.relapse import interval as relapse_interval
from pipeline.relapse.cohort import relapse_cohort, relapse_visits
from pipeline.report import relapse_plots
from tests.conftest import GOLDEN_DIR
from tests.test_relapse_cohort import _followups, _patients, _sessions

GOLDEN: dict[str, Any] = json.loads((GOLDEN_DIR / "interval_relapse_golden.json").read_text())
EM_ATOL = 1e-6
SURVFIT_ATOL = 5e-3
AFT_ATOL = 1e-4
INF = np.inf
#: The hand-built study's intervals (tests/test_relapse_cohort.py docstring): patient: (L, R).
HAND_INTERVALS = {
    "P01": (13.0, 26.0),  # relapse at 26 w, relapse-free at 13 w
    "P02": (26.0, INF),   # censored at 26 w
    "P03": (0.0, 8.0),    # clinician relapse at 8 w, no visit before
    "P04": (13.0, INF),   # died at 21 w: relapse-free last seen at 13 w
    "P05": (13.0, INF),   # withdrew at 17 w, last assessed at 13 w
    "P06": (13.0, INF),
    "P10": (0.0, INF),    # other treatment at 4 w, no assessment before
    "P11": (26.0, INF),   # 13 w not reached, 26 w relapse-free
    "P12": (0.0, 13.0),   # PHQ-9 10 at 13 w
}


def _frame(left: list[float], right: list[float], **columns: Any) -> pd.DataFrame:
    left_a, right_a = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    return pd.DataFrame({"left_weeks": left_a, "right_weeks": right_a,
                         "exact": left_a == right_a, **columns})


def _hand_intervals(exact: bool = False) -> pd.DataFrame:
    patients, sessions, followups = _patients(), _sessions(), _followups()
    cfg = config.from_mapping({"relapse": {"clinician_relapse_exact": exact}})
    from pipeline.outcomes import definitions as outcomes

    po = outcomes.derive(patients, sessions, cfg)
    cohort, _ = relapse_cohort(patients, sessions, followups, po, cfg)
    visits = relapse_visits(followups, cohort, cfg)
    return relapse_interval.interval_data(cohort, visits, cfg.relapse.clinician_relapse_exact)


def _golden_frame(name: str) -> pd.DataFrame:
    return pd.read_csv(GOLDEN_DIR / f"interval_relapse_{name}.csv")


def _log_likelihood(data: pd.DataFrame, curve: pd.DataFrame) -> float:
    """log prod [S(L) - S(R)] of interval-censored data (no exact times) from the curve."""
    s = dict(zip(curve["time_weeks"].round(9), curve["relapse_free"], strict=True))
    s[INF] = 0.0
    left = data["left_weeks"].round(9)
    right = data["right_weeks"].where(np.isfinite(data["right_weeks"]), INF).round(9)
    return float(sum(np.log(s[a] - s[b]) for a, b in zip(left, right, strict=True)))


def _assert_matches_r(data: pd.DataFrame, golden: dict[str, Any]) -> None:
    curve = relapse_interval.turnbull_curve(data, golden["time"])
    estimate = curve["relapse_free"].to_numpy()
    assert not np.isnan(estimate).any()  # unique at every end of an observed interval
    np.testing.assert_allclose(estimate, golden["em"], rtol=0, atol=EM_ATOL)
    np.testing.assert_allclose(estimate, golden["survfit"], rtol=0, atol=SURVFIT_ATOL)
    if not data["exact"].any():
        assert _log_likelihood(data, curve) >= golden["loglik_survfit"] - 1e-9
        assert _log_likelihood(data, curve) == pytest.approx(golden["loglik_em"], abs=1e-6)


# --------------------------------------------------------------------------------------
# Interval data
# --------------------------------------------------------------------------------------


def test_interval_data_of_the_hand_built_study() -> None:
    data = _hand_intervals().set_index("patient_id")
    got = {p: (row.left_weeks, row.right_weeks) for p, row in data.iterrows()}
    assert got == HAND_INTERVALS
    assert not data["exact"].any()
    # the Kaplan-Meier times are untouched
    assert data.loc["P04", "time_weeks"] == 21.0 and data.loc["P04", "event"] == 2


def test_clinician_dated_relapse_stays_exact() -> None:
    """``relapse.clinician_relapse_exact: true``: P03's clinician-recorded relapse is dated
    8 w (L == R); P01 and P12 (score relapses found at visits) stay intervals."""
    data = _hand_intervals(exact=True).set_index("patient_id")
    assert data.loc["P03", ["left_weeks", "right_weeks"]].tolist() == [8.0, 8.0]
    assert data["exact"].tolist() == [p == "P03" for p in data.index]
    assert data.loc["P12", ["left_weeks", "right_weeks"]].tolist() == [0.0, 13.0]
    # exact at 8: nobody relapsed before 8 w, so S is determined (1) just before it;
    # found at 8 w after a relapse-free end of treatment: S before 8 w is not determined
    exact = relapse_interval.turnbull_curve(data, [7.5, 8.0])
    interval = relapse_interval.turnbull_curve(_hand_intervals(), [7.5, 8.0])
    assert exact["relapse_free"].iloc[0] == pytest.approx(1.0, abs=1e-9)
    assert np.isnan(interval["relapse_free"].iloc[0])
    assert interval[["relapse_free_low", "relapse_free_high"]].iloc[0].tolist() == \
        pytest.approx([0.75, 1.0], abs=EM_ATOL)
    np.testing.assert_allclose(exact["relapse_free"].iloc[1], 0.75, atol=EM_ATOL)


def test_visit_relapse_at_time_zero_is_exact() -> None:
    cohort = pd.DataFrame({"patient_id": ["A", "B"], "time_weeks": [0.0, 13.0],
                           "event": [1, 0]})
    visits = pd.DataFrame({"last_free_weeks": [0.0, 13.0], "clinician_relapse": False},
                          index=pd.Index(["A", "B"], name="patient_id"))
    data = relapse_interval.interval_data(cohort, visits)
    assert data[["left_weeks", "right_weeks"]].to_numpy().tolist() == [[0.0, 0.0], [13.0, INF]]
    assert data["exact"].tolist() == [True, False]


# --------------------------------------------------------------------------------------
# Turnbull: by hand and against R
# --------------------------------------------------------------------------------------


def test_turnbull_by_hand_and_against_r() -> None:
    """Turnbull intervals (0, 8], (13, 26], (26, inf) with masses p1, p2, p3; likelihood
    p1^2 p2 p3^2 (p2 + p3)^3 is maximal at p = (1/4, 1/4, 1/2): S(8) = S(13) = 3/4,
    S(26) = 1/2 (Kaplan-Meier on visit times: S(8) = 7/8)."""
    data = _hand_intervals()
    assert GOLDEN["hand"]["time"] == [0, 8, 13, 26]
    curve = relapse_interval.turnbull_curve(data, [0, 8, 13, 26])
    np.testing.assert_allclose(curve["relapse_free"], [1, 0.75, 0.75, 0.5], atol=EM_ATOL)
    _assert_matches_r(data, GOLDEN["hand"])
    _assert_matches_r(_hand_intervals(exact=True), GOLDEN["hand_exact"])
    for level in ("False", "True"):
        sub = data.loc[data["maintenance"].astype(str) == level]
        _assert_matches_r(sub, GOLDEN["hand_maintenance"][level])


def test_without_overlap_turnbull_is_the_empirical_distribution() -> None:
    """Relapses in (0, 13] x 2, (13, 26] x 3, (26, 52] x 5, nobody censored: the Turnbull
    intervals are the observation intervals themselves and S is the empirical survival
    function at their ends: 8/10, 5/10, 0."""
    data = _frame([0, 0, 13, 13, 13, 26, 26, 26, 26, 26],
                  [13, 13, 26, 26, 26, 52, 52, 52, 52, 52])
    curve = relapse_interval.turnbull_curve(data, [0, 13, 26, 52, 20])
    assert curve["time_weeks"].tolist() == [0, 13, 20, 26, 52]
    np.testing.assert_allclose(curve["relapse_free"].iloc[[0, 1, 3, 4]], [1, 0.8, 0.5, 0],
                               atol=1e-9)
    # inside (13, 26] the NPMLE is not unique: empty estimate, bounds 0.5 to 0.8
    assert np.isnan(curve["relapse_free"].iloc[2])
    np.testing.assert_allclose(curve[["relapse_free_low", "relapse_free_high"]].iloc[2],
                               [0.5, 0.8], atol=1e-9)


@pytest.mark.parametrize("name", ["hand", "hand_exact", "btb"])
def test_the_iteration_is_lifelines_npmle(name: str) -> None:
    """lifelines ``fit_interval_censoring`` (closed intervals; left-open ones shifted by
    ``OPEN``, as the pipeline does) gives the same curve at every observed end."""
    data = {"hand": _hand_intervals, "hand_exact": lambda: _hand_intervals(exact=True),
            "btb": lambda: _golden_frame("btb")}[name]()
    times = np.asarray(GOLDEN[name]["time"], dtype=float)
    lower = np.where(data["exact"], data["left_weeks"],
                     data["left_weeks"] + relapse_interval.OPEN)
    fitter = KaplanMeierFitter().fit_interval_censoring(
        lower, data["right_weeks"], timeline=times + relapse_interval.JUST_AFTER, tol=1e-12)
    lifelines_curve = fitter.survival_function_.iloc[:, 1].to_numpy()  # <label>_lower
    ours = relapse_interval.turnbull_curve(data, times.tolist())["relapse_free"]
    np.testing.assert_allclose(ours, lifelines_curve, rtol=0, atol=EM_ATOL)


def test_exact_times_give_kaplan_meier() -> None:
    times = [2.0, 3.0, 3.0, 5.0, 8.0, 9.0, 12.0]
    relapsed = [True, True, False, True, False, True, False]
    data = _frame([*times], [t if r else INF for t, r in zip(times, relapsed, strict=True)])
    km = KaplanMeierFitter().fit(times, relapsed).survival_function_.iloc[:, 0]
    curve = relapse_interval.turnbull_curve(data, km.index.tolist())
    np.testing.assert_allclose(curve["relapse_free"], km.to_numpy(), atol=EM_ATOL)


def test_clinician_dated_relapses_stay_exact_and_give_kaplan_meier() -> None:
    """pharmacoSmoking with ``relapse.clinician_relapse_exact: true``: every relapse is
    exact (12 at time 0), so the Turnbull curve is the Kaplan-Meier curve (R survfit on
    Surv(time, status) and lifelines), and matches R's interval2 fit."""
    data = _golden_frame("smoking")
    relapsed = np.isfinite(data["right_weeks"])
    assert (data.loc[relapsed, "left_weeks"] == data.loc[relapsed, "right_weeks"]).all()
    golden = GOLDEN["smoking"]
    _assert_matches_r(data, golden)
    curve = relapse_interval.turnbull_curve(data, golden["time"])["relapse_free"]
    np.testing.assert_allclose(curve, GOLDEN["smoking_km"]["surv"], rtol=0, atol=EM_ATOL)
    assert curve.iloc[0] == pytest.approx(1 - 12 / 125)


def test_beat_the_blues_matches_r() -> None:
    data = _golden_frame("btb")
    assert len(data) == GOLDEN["btb"]["n"] and not data["exact"].any()
    _assert_matches_r(data, GOLDEN["btb"])


def test_demo_matches_r_overall_and_by_maintenance() -> None:
    data = _golden_frame("demo")
    _assert_matches_r(data, GOLDEN["demo"])
    for level in ("False", "True"):
        sub = data.loc[data["maintenance"].astype(str) == level]
        _assert_matches_r(sub, GOLDEN["demo_maintenance"][level])


def test_turnbull_table_strata_and_horizons() -> None:
    data = _golden_frame("demo")
    table, notes = relapse_interval.turnbull_table(data, (26.0, 52.0, 500.0))
    assert list(table.columns) == list(relapse_interval.TURNBULL_COLUMNS)
    assert table.drop_duplicates(["stratum_variable", "stratum"])[
        ["stratum_variable", "stratum"]].to_numpy().tolist() == [
        ["all", "all"], ["maintenance", "False"], ["maintenance", "True"]]
    overall = table.loc[table["stratum_variable"] == "all"].set_index("time_weeks")
    assert 500.0 not in overall.index  # beyond follow-up: not reported
    assert overall.loc[0.0, "relapse_free"] == 1.0
    assert (overall["relapse_free_low"] <= overall["relapse_free_high"] + 1e-12).all()
    assert overall["relapse_free_low"].is_monotonic_decreasing
    assert table.loc[table["stratum_variable"] == "all", "events"].iloc[0] == 50
    assert notes == ["Turnbull (interval-censored) relapse-free curve: 50 relapses, 50 of "
                     "them known only to lie between two visits, 0 dated exactly"]


def test_turnbull_analysis_of_nobody_is_not_estimable() -> None:
    with pytest.raises(NotEstimable, match="no patients"):
        relapse_interval.turnbull_analysis(_frame([], []), config.from_mapping(None))


def test_turnbull_that_did_not_converge_is_not_estimable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An EM iteration stopped at its limit gives no curve (not a partly iterated one)."""
    data = _golden_frame("demo")
    with pytest.raises(ConvergenceError, match="did not converge in 3"):
        relapse_interval.fit_turnbull(data, max_iterations=3)
    real = relapse_interval.fit_turnbull
    monkeypatch.setattr(relapse_interval, "fit_turnbull",
                        lambda frame: real(frame, max_iterations=3))
    with pytest.raises(NotEstimable, match="Turnbull relapse-free curve is not used: the "
                                           "Turnbull NPMLE did not converge in 3 iterations"):
        relapse_interval.turnbull_analysis(data, config.from_mapping(None))


# --------------------------------------------------------------------------------------
# Weibull AFT
# --------------------------------------------------------------------------------------


def _assert_aft_matches_survreg(data: pd.DataFrame, golden: dict[str, Any]) -> pd.DataFrame:
    terms = [c for c in data.columns if c.startswith("x_")]
    design = data[terms].assign(time_weeks=0.0, event=0)
    table = relapse_interval.aft_table(data, design, "test").set_index("term")
    order = ["(Intercept)", *terms]
    assert golden["terms"] == order
    np.testing.assert_allclose(table.loc[order, "coef"], golden["coef"], rtol=0, atol=AFT_ATOL)
    np.testing.assert_allclose(table.loc[order, "se"], golden["se"], rtol=0, atol=AFT_ATOL)
    assert table.loc["log(scale)", "coef"] == pytest.approx(golden["log_scale"], abs=AFT_ATOL)
    assert table.loc["log(scale)", "se"] == pytest.approx(golden["log_scale_se"], abs=AFT_ATOL)
    assert (table["n"] == golden["n"]).all() and (table["events"] == golden["events"]).all()
    return table


def test_weibull_aft_with_clinician_dated_relapses_matches_survreg() -> None:
    """pharmacoSmoking, exact relapse dates (12 at time 0, taken as (0, 1 day] by both).
    R: survreg(Surv(left, right, type = "interval2") ~ x_sex_male + x_age,
    dist = "weibull")."""
    data = _golden_frame("smoking")
    assert data["exact"].sum() == 89 and (data["right_weeks"] == 0).sum() == 12
    _assert_aft_matches_survreg(data, GOLDEN["smoking_aft"])


def test_weibull_aft_matches_survreg_on_the_demo() -> None:
    """R: survreg(Surv(left, right, type = "interval2") ~ x_format_group +
    x_maintenance_True + x_residual_phq9, dist = "weibull")."""
    data = _golden_frame("demo")
    golden = GOLDEN["demo_aft"]
    _assert_aft_matches_survreg(data, golden)
    terms = [c for c in data.columns if c.startswith("x_")]
    design = data[terms].assign(time_weeks=0.0, event=0)
    table = relapse_interval.aft_table(data, design, "test").set_index("term")
    order = ["(Intercept)", *terms]
    assert golden["terms"] == order
    np.testing.assert_allclose(table.loc[order, "coef"], golden["coef"], rtol=0, atol=AFT_ATOL)
    np.testing.assert_allclose(table.loc[order, "se"], golden["se"], rtol=0, atol=AFT_ATOL)
    assert table.loc["log(scale)", "coef"] == pytest.approx(golden["log_scale"], abs=AFT_ATOL)
    assert table.loc["log(scale)", "se"] == pytest.approx(golden["log_scale_se"], abs=AFT_ATOL)
    ratio = table.loc["x_maintenance_True"]
    assert ratio["time_ratio"] == pytest.approx(np.exp(ratio["coef"]))
    assert ratio["ci_low"] < ratio["time_ratio"] < ratio["ci_high"]
    assert (table["n"] == golden["n"]).all() and (table["events"] == golden["events"]).all()


def _aft_demo_data() -> pd.DataFrame:
    """The demo's interval data with the Cox model's columns (format, maintenance,
    residual_phq9, event, time_weeks)."""
    data = _golden_frame("demo").drop(columns=[c for c in _golden_frame("demo").columns
                                               if c.startswith("x_")])
    demo_terms = _golden_frame("demo")
    return data.assign(format=np.where(demo_terms["x_format_group"] == 1, "group",
                                       "individual"),
                       residual_phq9=demo_terms["x_residual_phq9"],
                       event=np.where(np.isfinite(data["right_weeks"]), 1, 0),
                       time_weeks=np.where(np.isfinite(data["right_weeks"]),
                                           data["right_weeks"], data["left_weeks"]))


def test_aft_analysis_uses_the_cox_terms() -> None:
    data = _aft_demo_data()
    table, notes = relapse_interval.aft_analysis(data, "phq9", config.from_mapping(None))
    assert table["term"].tolist() == ["format[group]", "maintenance[True]", "residual_phq9",
                                      "(Intercept)", "log(scale)"]
    np.testing.assert_allclose(table["coef"].iloc[:3], GOLDEN["demo_aft"]["coef"][1:],
                               atol=AFT_ATOL)
    assert table["model"].iloc[0].startswith("Weibull AFT (interval-censored): format + ")
    assert any("time ratios" in note for note in notes)


def test_aft_that_did_not_converge_is_not_estimable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimiser (scipy, through lifelines) allowed one iteration: lifelines raises
    ConvergenceError and the model is reported as not estimable, with no table."""
    from lifelines import WeibullAFTFitter

    data = _aft_demo_data()
    monkeypatch.setattr(WeibullAFTFitter, "_scipy_fit_options", {"maxiter": 1})
    with pytest.raises(NotEstimable, match="interval-censored Weibull model did not "
                                           "converge"):
        relapse_interval.aft_analysis(data, "phq9", config.from_mapping(None))


def test_aft_with_five_relapses_is_not_estimable() -> None:
    data = _golden_frame("btb").assign(
        event=lambda d: np.where(np.isfinite(d["right_weeks"]), 1, 0),
        time_weeks=lambda d: np.where(np.isfinite(d["right_weeks"]), d["right_weeks"],
                                      d["left_weeks"]),
        residual_bdi2=np.linspace(1.0, 9.0, 22))
    with pytest.raises(NotEstimable, match="too few relapses for the interval-censored "
                       "Weibull model"):
        relapse_interval.aft_analysis(data, "bdi2", config.from_mapping(None))


def test_aft_takes_a_relapse_at_time_zero_as_within_the_first_day() -> None:
    rng = np.random.default_rng(7)
    times = np.round(rng.weibull(1.2, 60) * 20, 1)
    times[:3] = 0.0
    relapsed = times < 25
    data = _frame(times.tolist(), np.where(relapsed, times, INF).tolist())
    design = pd.DataFrame({"x": rng.normal(size=60), "time_weeks": 0.0, "event": 0})
    table = relapse_interval.aft_table(data, design, "test")
    assert np.isfinite(table[["coef", "se"]].to_numpy()).all()


# --------------------------------------------------------------------------------------
# The Kaplan-Meier figure
# --------------------------------------------------------------------------------------


def test_km_curves_stop_where_fewer_than_min_at_risk_remain() -> None:
    data = _golden_frame("demo")
    cohort = data.assign(
        time_weeks=np.where(np.isfinite(data["right_weeks"]), data["right_weeks"],
                            data["left_weeks"]),
        event=np.where(np.isfinite(data["right_weeks"]), 1, 0),
        maintenance=data["maintenance"].astype(bool))
    turnbull, _ = relapse_interval.turnbull_table(data)
    for min_at_risk in (10, 100):
        figure = relapse_plots.km_figure(cohort, ("maintenance",), min_at_risk, turnbull)
        panels = [axes for axes in figure.axes if axes.get_title()]  # not the at-risk rows
        assert [a.get_title() for a in panels] == ["All patients at risk", "By maintenance IPT"]
        for axes, groups in zip(panels, ([cohort], [cohort.loc[~cohort["maintenance"]],
                                                    cohort.loc[cohort["maintenance"]]]),
                                strict=True):
            lines = [line for line in axes.get_lines() if len(line.get_xdata()) > 1]
            curves = [line for line in lines if "Turnbull" not in str(line.get_label())]
            dashed = [line for line in lines if "Turnbull" in str(line.get_label())]
            assert len(curves) == len(dashed) == len(groups)
            for line, npmle, rows in zip(curves, dashed, groups, strict=True):
                times = rows["time_weeks"].to_numpy()
                at_risk = np.array([(times >= t).sum() for t in times])
                last = times[at_risk >= min_at_risk].max()
                assert max(line.get_xdata()) <= last
                assert max(line.get_xdata()) == pytest.approx(last)
                assert max(npmle.get_xdata()) <= last


def test_last_time_at_risk() -> None:
    times = pd.Series([1.0, 2.0, 2.0, 5.0, 9.0])
    assert relapse_plots.last_time_at_risk(times, 3) == 2.0  # 3 at risk at 2, 2 at 5
    assert relapse_plots.last_time_at_risk(times, 1) == 9.0
    assert relapse_plots.last_time_at_risk(times, 6) is None


def _plain_em(data: pd.DataFrame, tolerance: float = 1e-12) -> tuple[float, Any, int, Any]:
    """The unaccelerated self-consistency iteration, written out independently (lifelines'
    update on the Turnbull intervals): log-likelihood, masses, steps and the membership
    matrix (observation x Turnbull interval)."""
    fit = relapse_interval.fit_turnbull(data)  # for its Turnbull intervals only
    left = data["left_weeks"].to_numpy(dtype=float)
    lower = np.where(data["exact"].to_numpy(dtype=bool), left, left + relapse_interval.OPEN)
    upper = data["right_weeks"].to_numpy(dtype=float)
    member = (fit.low[None, :] >= lower[:, None]) & (fit.high[None, :] <= upper[:, None])
    mass, previous = np.full(fit.low.size, 1.0 / fit.low.size), -np.inf
    for steps in range(1, 1_000_000):
        covered = member @ mass
        likelihood = float(np.log(covered).sum())
        if likelihood - previous < tolerance:
            return likelihood, mass, steps, member
        previous = likelihood
        mass = mass * (member / covered[:, None]).sum(axis=0) / len(data)
    raise AssertionError("plain EM did not converge")


def test_accelerated_npmle_is_at_least_the_plain_iterations_optimum() -> None:
    r"""SQUAREM reaches a log-likelihood no lower than the plain iteration's (to 1e-9), in
    fewer steps, on visit-censored data with many intervals; the optimality (KKT)
    condition of the NPMLE, :math:`\sum_i 1[j \in i] / P_i \le n` for every Turnbull
    interval j with equality where its mass is positive, holds to 1e-4 (the plain
    iteration's stopping point, slow near zero masses, is within 1e-4 of the curve)."""
    rng = np.random.default_rng(7)
    n = 250
    visits = np.round(np.sort(rng.uniform(0, 52, (n, 5)), axis=1)) + np.arange(5) * 0.01
    seen = (visits < (rng.weibull(1.3, n) * 40)[:, None]).sum(axis=1)
    rows = np.arange(n)
    data = pd.DataFrame({
        "left_weeks": np.where(seen > 0, visits[rows, np.maximum(seen - 1, 0)], 0.0),
        "right_weeks": np.where(seen < 5, visits[rows, np.minimum(seen, 4)], np.inf),
        "exact": np.zeros(n, dtype=bool)})
    fit = relapse_interval.fit_turnbull(data)
    likelihood, mass, steps, member = _plain_em(data)
    assert fit.log_likelihood >= likelihood - 1e-9
    assert fit.iterations < steps
    gradient = (member / (member @ fit.mass)[:, None]).sum(axis=0) / n
    assert gradient.max() <= 1 + 1e-4
    assert np.abs(gradient[fit.mass > 1e-6] - 1).max() <= 1e-4
    np.testing.assert_allclose(np.cumsum(fit.mass), np.cumsum(mass), atol=1e-4)
