r"""The Grambsch-Therneau test of proportional hazards of a fitted Cox model.

PH tests (:func:`ph_test_table`)
    Grambsch & Therneau (1994): for each term, the score test of a slope in the scaled
    Schoenfeld residuals ``r*_k`` against ``g(t_k)``, ``T = (sum_k (g_k - gbar) r*_k)^2 /
    (d var(beta) sum_k (g_k - gbar)^2)`` on 1 df, with ``g`` the rank of the event time (ties
    averaged, as R ``rank``), model-based variance. This is lifelines'
    ``proportional_hazard_test`` and R ``survival`` < 3.0 ``cox.zph(fit, transform =
    "rank")``, given Efron Schoenfeld residuals computed here in ``O(n log n)`` (the same
    numbers as lifelines' own, whose computation is quadratic in the number of patients);
    R >= 3.0 uses a full score test whose numbers can differ a lot (Rossi data, age: 0.90
    against 11.2). A term with ``p < 0.05`` is handled by refitting the model
    stratified on its covariate (tertiles of rank for a numeric one), which then has no
    hazard ratio; the table says which model is reported. Fourteen tests at 5% will flag
    something now and then by chance, and in a large cohort small departures are flagged.

References
----------
Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on
weighted residuals. Biometrika 81:515-526.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd
from lifelines.statistics import proportional_hazard_test
from scipy import stats

from pipeline.relapse.cox import STRATUM_CODE, CoxFit, residuals_within_strata, stratum_codes
from pipeline.relapse.residuals import efron_schoenfeld_residuals

__all__ = ["PH_ALPHA", "PH_COLUMNS", "ph_test_table"]

PH_ALPHA: Final = 0.05
PH_COLUMNS: Final = ("term", "test_statistic", "p_value", "violates_ph", "tested_model",
                     "reported_model")


def _average_event_rank(durations: pd.Series, events: pd.Series, weights: Any) -> pd.Series:
    """Ranks of the event times among event times, ties averaged (R ``rank``)."""
    observed = events.to_numpy(dtype=bool)
    ranks = np.full(len(durations), np.nan)
    ranks[observed] = stats.rankdata(durations.to_numpy(dtype=float)[observed])
    return pd.Series(ranks, index=durations.index)


def _scaled_schoenfeld(fit: CoxFit) -> pd.DataFrame:
    """Scaled Schoenfeld residuals ``d x r_k V`` of the failures, in the fitter's order.

    What lifelines ``compute_residuals(kind="scaled_schoenfeld")`` returns (failures sorted
    by stratum and time, as the fitter's ``durations``; the order within tied times does not
    matter to the test), with the residuals of :func:`efron_schoenfeld_residuals`.
    """
    fitter, spec = fit.fitter, fit.spec
    residuals = residuals_within_strata(fit.design, spec, fitter, efron_schoenfeld_residuals)
    ordered = pd.DataFrame({
        STRATUM_CODE: stratum_codes(fit.design, spec),
        "time_weeks": fit.design["time_weeks"].to_numpy(dtype=float),
        "event": fit.design["event"].to_numpy(dtype=np.int64),
    }).sort_values([STRATUM_CODE, "time_weeks", "event"])
    rows = ordered.index.to_numpy()[ordered["event"].to_numpy(dtype=bool)]
    expected = fitter.durations.to_numpy(dtype=float)[fitter.event_observed.to_numpy(dtype=bool)]
    if not np.array_equal(fit.design["time_weeks"].to_numpy(dtype=float)[rows], expected):
        raise RuntimeError("Schoenfeld residuals out of line with the fitter's event times")
    scaled = len(rows) * residuals[rows] @ fitter.variance_matrix_.to_numpy(dtype=float)
    return pd.DataFrame(scaled, columns=fitter.params_.index)


def ph_test_table(fit: CoxFit) -> pd.DataFrame:
    """Grambsch-Therneau tests of proportional hazards per term (rank of event time).

    lifelines ``proportional_hazard_test`` on the scaled Schoenfeld residuals of
    :func:`_scaled_schoenfeld` (passed as ``precomputed_residuals``; the same numbers as
    lifelines' own, in linear rather than quadratic time). Uses the model-based variance (as
    R ``cox.zph``), also for a fit with ``cluster``. See the module docstring for the
    statistic.

    Returns
    -------
    DataFrame
        term, test_statistic, p_value (chi-squared, 1 df).
    """
    result = proportional_hazard_test(fit.fitter, None, time_transform=_average_event_rank,
                                      precomputed_residuals=_scaled_schoenfeld(fit))
    summary = result.summary.reindex(fit.fitter.params_.index)  # lifelines sorts by name
    return pd.DataFrame({
        "term": [str(t) for t in summary.index],
        "test_statistic": summary["test_statistic"].to_numpy(dtype=float),
        "p_value": summary["p"].to_numpy(dtype=float),
    })
