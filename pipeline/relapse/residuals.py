r"""Residuals of a Cox model with Efron's ties, in ``O(n log n)``.

Score residuals (for the Lin-Wei robust variance, :func:`pipeline.relapse.cox.fit_cox`) and
Schoenfeld residuals (for the proportional-hazards test, :mod:`pipeline.relapse.ph_test`),
from the fractional risk sets of every distinct event time (:func:`efron_time_sums`). Plain
arrays in and out: one stratum at a time (:func:`pipeline.relapse.cox.residuals_within_strata`).

References
----------
Efron B (1977). The efficiency of Cox's likelihood function for censored data. JASA 72:557.
Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model. JASA
84:1074-1078.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["efron_schoenfeld_residuals", "efron_score_residuals", "efron_time_sums"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class _EfronSums:
    """Efron's fractional risk sets summed per distinct event time (:func:`efron_time_sums`).

    Attributes
    ----------
    times : ndarray, shape (g,)
        Distinct event times, ascending.
    mean : ndarray, shape (g, p)
        ``mean_k m_k``: the covariate mean subtracted from the failures' covariates.
    survivor_weight, survivor_mean : ndarray, shapes (g,) and (g, p)
        ``sum_k 1/D_k`` and ``sum_k m_k/D_k``, for those at risk who do not fail then.
    failer_weight, failer_mean : ndarray, shapes (g,) and (g, p)
        ``sum_k (1 - k/d)/D_k`` and ``sum_k (1 - k/d) m_k/D_k``, for those who fail then.
    """

    times: FloatArray
    mean: FloatArray
    survivor_weight: FloatArray
    survivor_mean: FloatArray
    failer_weight: FloatArray
    failer_mean: FloatArray


def efron_time_sums(
    x: FloatArray, time: FloatArray, event: BoolArray, risk: FloatArray
) -> _EfronSums:
    r"""Efron's fractional risk sets at every distinct event time, without a loop over times.

    At an event time with ``d`` tied events, the k-th (k = 0..d-1) fractional risk set has
    ``D_k = S0 - (k/d) S0_dead`` and mean ``m_k = (S1 - (k/d) S1_dead) / D_k``, with ``S0 =
    sum r_i`` and ``S1 = sum r_i x_i`` over those at risk (``time >= t``) and the ``_dead``
    sums over the failures at ``t``. The sums are formed once per distinct time and
    accumulated from the last time backwards, so the cost is ``O(n log n)`` however many
    distinct times there are (masking everyone at risk at each time is ``O(n x times)``).

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Covariates.
    time : ndarray, shape (n,)
        Follow-up times.
    event : ndarray of bool, shape (n,)
        Event indicators.
    risk : ndarray, shape (n,)
        Relative risks ``exp(x' beta)``.

    Returns
    -------
    _EfronSums
        The sums per distinct event time (all empty without events).
    """
    if not event.any():
        none, nothing = np.zeros((0, x.shape[1])), np.zeros(0)
        return _EfronSums(nothing, none, nothing, none, nothing, none)
    order = np.argsort(time, kind="stable")
    all_times, starts = np.unique(time[order], return_index=True)
    at_risk = np.add.reduceat(risk[order], starts)[::-1].cumsum()[::-1]
    at_risk_x = np.add.reduceat(risk[order, None] * x[order], starts, axis=0)[::-1]
    at_risk_x = at_risk_x.cumsum(axis=0)[::-1]
    dead = np.flatnonzero(event)[np.argsort(time[event], kind="stable")]
    times, first, ties = np.unique(time[dead], return_index=True, return_counts=True)
    position = np.searchsorted(all_times, times)
    group = np.repeat(np.arange(len(times)), ties)
    fraction = (np.arange(len(dead)) - first[group]) / ties[group]
    dead_risk = np.add.reduceat(risk[dead], first)[group]
    dead_x = np.add.reduceat(risk[dead, None] * x[dead], first, axis=0)[group]
    denominator = at_risk[position][group] - fraction * dead_risk
    means = (at_risk_x[position][group] - fraction[:, None] * dead_x) / denominator[:, None]
    survivor, failer = 1.0 / denominator, (1.0 - fraction) / denominator
    return _EfronSums(
        times=times.astype(float),
        mean=np.add.reduceat(means, first, axis=0) / ties[:, None],
        survivor_weight=np.add.reduceat(survivor, first),
        survivor_mean=np.add.reduceat(survivor[:, None] * means, first, axis=0),
        failer_weight=np.add.reduceat(failer, first),
        failer_mean=np.add.reduceat(failer[:, None] * means, first, axis=0),
    )


def efron_score_residuals(
    x: FloatArray, time: FloatArray, event: BoolArray, beta: FloatArray
) -> FloatArray:
    r"""Score residuals of a Cox model with Efron's ties (R ``residuals(fit, "score")``).

    Subject i's residual is ``delta_i (x_i - mean_k m_k) - r_i sum_k w_ik (x_i - m_k) / D_k``
    summed over the event times up to its own (:func:`efron_time_sums`), with ``w_ik = 1``
    for those at risk and ``1 - k/d`` for those who fail then: cumulative sums over the
    event times, so ``O(n log n)``.
    """
    if not event.any():
        return np.zeros_like(x)
    risk = np.exp(x @ beta)
    sums = efron_time_sums(x, time, event, risk)
    last = np.searchsorted(sums.times, time, side="right") - 1  # last event time <= own
    seen = last >= 0
    at = np.where(seen, last, 0)
    before_weight = np.concatenate(([0.0], np.cumsum(sums.survivor_weight)))[at]
    before_mean = np.vstack([np.zeros((1, x.shape[1])),
                             np.cumsum(sums.survivor_mean, axis=0)])[at]
    own_weight = np.where(event, sums.failer_weight[at], sums.survivor_weight[at])
    own_mean = np.where(event[:, None], sums.failer_mean[at], sums.survivor_mean[at])
    weight = np.where(seen, before_weight + own_weight, 0.0)
    mean = np.where(seen[:, None], before_mean + own_mean, 0.0)
    residuals = -risk[:, None] * (x * weight[:, None] - mean)
    residuals[event] += x[event] - sums.mean[at[event]]
    return np.asarray(residuals, dtype=np.float64)


def efron_schoenfeld_residuals(
    x: FloatArray, time: FloatArray, event: BoolArray, beta: FloatArray
) -> FloatArray:
    r"""Schoenfeld residuals with Efron's ties, ``x_i - mean_k m_k`` for a failure, else 0.

    The residuals of lifelines ``CoxPHFitter.compute_residuals(kind="schoenfeld")`` (R
    ``residuals(fit, "schoenfeld")``), from :func:`efron_time_sums` in ``O(n log n)``:
    lifelines 0.30 grows its result with ``np.append`` once per subject, which copies the
    whole result each time and so is quadratic in the number of subjects (it was most of
    the relapse stage's time from 50,000 patients at risk on).
    """
    sums = efron_time_sums(x, time, event, np.exp(x @ beta))
    residuals = np.zeros_like(x)
    residuals[event] = x[event] - sums.mean[np.searchsorted(sums.times, time[event])]
    return residuals
