"""The faster routes of ``pipeline.relapse.analysis`` give the same answers as the routes they
replace.

- Efron score residuals (robust variance): cumulative sums over event times
  (``efron_score_residuals``) against the previous loop over event times, kept
  here as :func:`_loop_score_residuals`.
- Proportional-hazards test: Schoenfeld residuals computed in ``O(n log n)`` and handed to
  lifelines ``proportional_hazard_test`` as ``precomputed_residuals`` against lifelines
  computing them itself (quadratic in the number of patients).
- Stratified Cox fits: the strata columns given to lifelines as one column of stratum
  numbers against the columns themselves.
- Aalen-Johansen numbers at risk: one sorted search against a count per time.

Data: R's ``lung`` and ``Rossi`` (few ties), the demo relapse cohort (many ties) and a small
simulated cohort with two strata and heavy ties.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import proportional_hazard_test

from pipeline.relapse.competing import cumulative_incidence_table
from pipeline.relapse.cox import (
    FIT_OPTIONS,
    CoxFit,
    CoxSpec,
    _lifelines_frame,
    cox_design,
    fit_cox,
    residuals_within_strata,
    stratum_codes,
)
from pipeline.relapse.ph_test import _average_event_rank, _scaled_schoenfeld, ph_test_table
from pipeline.relapse.residuals import efron_schoenfeld_residuals, efron_score_residuals

FloatArray = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def lung(lung: pd.DataFrame) -> pd.DataFrame:
    """The shared ``lung`` without the patients missing ``ph.ecog``."""
    return lung.dropna(subset=["ecog"])


@pytest.fixture(scope="module")
def tied() -> pd.DataFrame:
    """400 patients, times 1-8 (heavy ties), two strata variables, relapses and censoring."""
    rng = np.random.default_rng(7)
    n = 400
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "format": rng.choice(["individual", "group"], n),
        "maintenance": rng.choice([False, True], n),
        "site_id": rng.choice(["A", "B", "C"], n),
        "residual_phq9": rng.integers(0, 5, n).astype(float),
        "age": rng.normal(40.0, 12.0, n),
        "therapist_id": [f"T{i % 9}" for i in range(n)],
        "time_weeks": rng.integers(1, 9, n).astype(float),
        "event": rng.choice([0, 1, 2], n, p=[0.5, 0.4, 0.1]),
    })


def _loop_score_residuals(
    x: FloatArray, time: FloatArray, event: npt.NDArray[np.bool_], beta: FloatArray
) -> FloatArray:
    """The previous ``efron_score_residuals``: one pass over everyone per event time."""
    risk = np.exp(x @ beta)
    residuals = np.where(event[:, None], x, 0.0)
    for t in np.unique(time[event]):
        at_risk, dead = time >= t, event & (time == t)
        fraction = np.arange(dead.sum()) / dead.sum()
        denominator = risk[at_risk].sum() - fraction * risk[dead].sum()
        means = ((risk[at_risk] @ x[at_risk])[None, :]
                 - fraction[:, None] * (risk[dead] @ x[dead])[None, :]) / denominator[:, None]
        residuals[dead] -= means.mean(axis=0)
        for rows, weight in ((at_risk & ~dead, 1.0 / denominator),
                             (dead, (1.0 - fraction) / denominator)):
            residuals[rows] -= risk[rows, None] * (x[rows] * weight.sum() - weight @ means)
    return residuals


def _cases(lung: pd.DataFrame, rossi: pd.DataFrame, demo: pd.DataFrame,
           tied: pd.DataFrame) -> list[tuple[pd.DataFrame, CoxSpec]]:
    """Data and models: few and many ties, shuffled rows, one and two strata columns."""
    demo_terms: dict[str, Any] = {"categorical": ("format", "maintenance"),
                                  "numeric": ("residual_phq9",)}
    return [
        (lung, CoxSpec(numeric=("age", "sex", "ecog"))),
        (lung, CoxSpec(numeric=("age", "ecog"), strata=("sex",))),
        (rossi, CoxSpec(numeric=("fin", "age", "race", "wexp", "mar", "paro", "prio"))),
        (demo, CoxSpec(**demo_terms, cluster="therapist_id")),
        (demo.sample(frac=1.0, random_state=5), CoxSpec(**demo_terms)),
        (demo, CoxSpec(categorical=("format",), numeric=("residual_phq9",),
                       strata=("maintenance",))),
        (tied, CoxSpec(categorical=("site_id",), numeric=("residual_phq9", "age"),
                       strata=("format", "maintenance"), cluster="therapist_id")),
        (tied, CoxSpec(categorical=("format", "maintenance", "site_id"),
                       numeric=("residual_phq9", "age"))),
    ]


@pytest.fixture(scope="module")
def fits(lung: pd.DataFrame, rossi: pd.DataFrame, demo_cohort: pd.DataFrame,
         tied: pd.DataFrame) -> list[CoxFit]:
    return [fit_cox(data, spec) for data, spec in _cases(lung, rossi, demo_cohort, tied)]


def _arrays(fit: CoxFit) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_],
                                  FloatArray]:
    terms = list(fit.fitter.params_.index)
    return (fit.design[terms].to_numpy(dtype=float),
            fit.design["time_weeks"].to_numpy(dtype=float),
            fit.design["event"].to_numpy(dtype=bool),
            fit.fitter.params_.to_numpy(dtype=float))


def test_score_residuals_match_the_loop_over_event_times(fits: list[CoxFit]) -> None:
    for fit in fits:
        x, time, event, beta = _arrays(fit)
        np.testing.assert_allclose(efron_score_residuals(x, time, event, beta),
                                   _loop_score_residuals(x, time, event, beta),
                                   rtol=1e-9, atol=1e-12)
        within = residuals_within_strata(fit.design, fit.spec, fit.fitter,
                                         efron_score_residuals)
        np.testing.assert_allclose(
            within, residuals_within_strata(fit.design, fit.spec, fit.fitter,
                                            _loop_score_residuals),
            rtol=1e-9, atol=1e-12)


def test_score_residuals_without_events_or_before_the_first_event() -> None:
    x = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    time = np.array([1.0, 2.0, 2.0, 3.0])
    beta = np.array([0.3, -0.2])
    none = np.zeros(4, dtype=bool)
    assert (efron_score_residuals(x, time, none, beta) == 0.0).all()
    assert (efron_schoenfeld_residuals(x, time, none, beta) == 0.0).all()
    late = np.array([False, True, True, False])  # the first subject is censored before
    np.testing.assert_allclose(efron_score_residuals(x, time, late, beta),
                               _loop_score_residuals(x, time, late, beta), rtol=1e-12)


def test_scaled_schoenfeld_residuals_match_lifelines(fits: list[CoxFit]) -> None:
    """Same numbers, in the order of the fitter's event times."""
    for fit in fits:
        training = _lifelines_frame(fit.design, fit.spec)
        theirs = fit.fitter.compute_residuals(training, kind="scaled_schoenfeld")
        ours = _scaled_schoenfeld(fit)
        assert list(ours.columns) == list(theirs.columns)
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=1e-9, atol=1e-9)


def test_ph_test_matches_lifelines_computing_its_own_residuals(
    fits: list[CoxFit],
) -> None:
    for fit in fits:
        training = _lifelines_frame(fit.design, fit.spec)
        theirs = proportional_hazard_test(fit.fitter, training,
                                          time_transform=_average_event_rank)
        summary = theirs.summary.reindex(fit.fitter.params_.index)
        ours = ph_test_table(fit)
        assert ours["term"].tolist() == [str(t) for t in summary.index]
        np.testing.assert_allclose(ours["test_statistic"], summary["test_statistic"],
                                   rtol=1e-9)
        np.testing.assert_allclose(ours["p_value"], summary["p"], rtol=1e-9)


def test_one_stratum_column_gives_the_same_fit(fits: list[CoxFit]) -> None:
    """lifelines given the strata columns themselves (the previous route) fits the same."""
    for fit in (f for f in fits if f.spec.strata):
        direct = CoxPHFitter().fit(
            fit.design.drop(columns=[fit.spec.cluster] if fit.spec.cluster else []),
            duration_col="time_weeks", event_col="event", strata=list(fit.spec.strata),
            fit_options=FIT_OPTIONS)
        np.testing.assert_allclose(fit.fitter.params_, direct.params_, rtol=1e-12)
        np.testing.assert_allclose(fit.fitter.variance_matrix_, direct.variance_matrix_,
                                   rtol=1e-10)
        np.testing.assert_allclose(fit.fitter.log_likelihood_, direct.log_likelihood_,
                                   rtol=1e-12)


def test_stratum_codes_follow_the_sorted_strata(tied: pd.DataFrame) -> None:
    spec = CoxSpec(numeric=("age",), strata=("format", "maintenance"))
    design = cox_design(tied, spec)
    codes = stratum_codes(design, spec)
    keys = list(zip(design["format"], design["maintenance"], strict=True))
    ranks = {key: rank for rank, key in enumerate(sorted(set(keys)))}
    assert codes.tolist() == [ranks[key] for key in keys]


def test_cif_numbers_at_risk_count_everyone_still_followed(demo_cohort: pd.DataFrame) -> None:
    cif, _ = cumulative_incidence_table(demo_cohort)
    for stratum, rows in cif.groupby("stratum"):
        sub = demo_cohort if stratum == "all" else demo_cohort.loc[
            demo_cohort["format"] == stratum]
        times = sub["time_weeks"].to_numpy(dtype=float)
        assert rows["at_risk"].tolist() == [int((times >= t).sum()) for t in rows["time_weeks"]]
