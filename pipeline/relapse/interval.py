r"""Relapse as an interval-censored time: the Turnbull NPMLE and a Weibull AFT sensitivity model.

A relapse in this pipeline is found at a follow-up visit (about 13, 26 and 52 weeks after the
end of acute treatment), so it happened at some time after the last visit at which the
patient was relapse-free and no later than the visit that found it. The Kaplan-Meier curve
and the Cox model (:mod:`pipeline.relapse.kaplan_meier`, :mod:`pipeline.relapse.cox`) use the
visit's time as if it were the time of relapse; the analyses here use the interval itself.

Interval data (:func:`interval_data`)
    One row per patient of the relapse cohort, with ``left_weeks`` ``L`` and ``right_weeks``
    ``R``:

    - relapse found at a visit: ``L`` = time of the last follow-up at which the patient was
      known to be relapse-free (0, the end of treatment, when there is none:
      :func:`pipeline.relapse.cohort.relapse_visits`), ``R`` = time of the visit that found it;
      the relapse happened in ``(L, R]``;
    - relapse dated by the clinician (``relapse.clinician_relapse_exact: true``: the
      follow-up date of a clinician-recorded relapse is the day it began), or found with no
      relapse-free visit between it and the last one (``L == R``, e.g. at time 0): exact,
      ``L == R``;
    - no relapse (censored, or a competing event, which is censored as in the Kaplan-Meier
      curve): ``L`` = time of the last relapse-free follow-up, ``R = inf``: relapse after
      ``L`` if ever. For a censored patient that is the Kaplan-Meier censoring time; for a
      competing event (death, other treatment) it is the last follow-up that found the
      patient relapse-free, which may be before the event (the Kaplan-Meier curve censors at
      the event's date, as if the patient were known relapse-free until then).

Turnbull estimate (:func:`turnbull_table`)
    The nonparametric maximum likelihood estimate (NPMLE) of the relapse-free survival
    ``S(t) = P(T > t)`` maximises ``prod_i [S(L_i) - S(R_i)]`` (``S(L_i-) - S(L_i)`` for an
    exact time; ``S(L_i)`` for ``R_i = inf``) over all survival functions (Turnbull 1976). It
    puts mass ``p_j`` only on the Turnbull intervals ``(q_j, p_j]``: a left end ``q_j`` with
    no other end between it and the next right end ``p_j``, found by the self-consistency
    (EM) iteration ``p_j <- (1/n) sum_i alpha_ij p_j / sum_k alpha_ik p_k``, with
    ``alpha_ij = 1`` when Turnbull interval ``j`` lies within observation ``i``'s interval.
    ``S`` is unique outside the Turnbull intervals (in particular at every observed end
    ``L_i``, ``R_i``), not inside them: there the table gives the bounds (mass at the right
    end: ``relapse_free_high``; at the left end: ``relapse_free_low``) and leaves
    ``relapse_free`` empty. With exact times only it is the Kaplan-Meier estimate (Efron's
    self-consistency); with no censoring at all, the empirical distribution.
    Computed by :func:`fit_turnbull`, the iteration of lifelines
    ``KaplanMeierFitter.fit_interval_censoring`` on the same Turnbull intervals, vectorised
    (lifelines' Python loop takes a minute on a cohort of 4,000; the tests check that both
    agree, and agree with R), until the log-likelihood gains less than
    :data:`NPMLE_TOLERANCE` in an iteration. Like lifelines it takes closed intervals ``[L,
    R]``: an interval open on the left, ``(L, R]``, is passed as ``[L + OPEN, R]`` with
    :data:`OPEN` a millionth of a week (lifelines' documented way to open an interval), so
    that a patient censored at ``L`` and one relapsing in ``(L, R]`` are not given mass at
    ``L`` itself, as R ``survfit(Surv(L, R, type = "interval2"))`` does.

    The Turnbull estimate is the correct nonparametric estimator of the relapse-free curve
    when relapse is only seen at visits; the Kaplan-Meier curve on visit times is kept beside
    it for comparability with published relapse curves, which are almost all Kaplan-Meier
    on visit (or assessment) times. Kaplan-Meier on visit times places each relapse at the
    visit that found it, so it is biased upwards between visits; at the visit times
    themselves the two differ only through patients censored between visits.

Weibull accelerated failure time model (:func:`aft_table`)
    ``log T = x' beta + sigma W``, ``W`` standard extreme-value, i.e. ``S(t | x) = exp(-(t /
    lambda(x))^rho)`` with ``lambda(x) = exp(x' beta)`` and ``rho = 1 / sigma``, fitted by
    maximum likelihood to the intervals: ``S(L) - S(R)`` for ``(L, R]``, ``f(t)`` for an
    exact ``t``, ``S(L)`` for ``R = inf`` (lifelines ``WeibullAFTFitter.fit_interval_censoring``;
    R ``survreg(Surv(L, R, type = "interval2") ~ x, dist = "weibull")``, whose coefficients
    are the same ``beta`` and whose ``scale`` is ``sigma``). The terms are those of the Cox
    model (:func:`pipeline.relapse.cox_selection.cox_terms`: maintenance IPT, format, condition,
    residual score ...), so it is a parametric sensitivity analysis of the Cox model that treats
    relapse times as intervals and does not assume proportional hazards of the visit-time
    data. ``exp(beta)`` is a time ratio: above 1, relapse comes later (a Weibull AFT is also
    a proportional hazards model, with hazard ratio ``exp(-rho beta)``). An exact relapse at
    time 0 has no Weibull density; since dates are recorded to the day it is passed as the
    interval ``(0, 1 day]``.

References
----------
Turnbull BW (1976). The empirical distribution function with arbitrarily grouped, censored
and truncated data. JRSS B 38:290-295.
Anderson-Bergman C (2017). An efficient implementation of the EMICM algorithm for the
interval censored NPMLE. J Comput Graph Stat 26:135-144 (lifelines' algorithm).
Efron B (1967). The two sample problem with censored data. Proc 5th Berkeley Symp 4:831-853.
Kalbfleisch JD, Prentice RL (2002). The Statistical Analysis of Failure Time Data, 2nd ed.
Wiley (the Weibull AFT model).
lifelines documentation: ``KaplanMeierFitter.fit_interval_censoring`` and
``WeibullAFTFitter.fit_interval_censoring``, https://lifelines.readthedocs.io.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from lifelines import WeibullAFTFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy import stats

from pipeline.config import StudyConfig
from pipeline.estimability import NotEstimable, require
from pipeline.relapse.cox import cox_design
from pipeline.relapse.cox_selection import cox_terms

__all__ = ["AFT_COLUMNS", "INTERVAL_COLUMNS", "TURNBULL_COLUMNS", "TurnbullFit", "aft_analysis",
           "aft_table", "fit_turnbull", "interval_data", "turnbull_analysis", "turnbull_curve",
           "turnbull_table"]

FloatArray = npt.NDArray[np.float64]

RELAPSE: Final = 1
ALL: Final = "all"
#: Strata of the Turnbull table (those of the relapse figure).
TURNBULL_STRATA: Final = ("format", "maintenance")
#: How far (weeks) a left-open interval's lower end is moved to close it for lifelines.
OPEN: Final = 1e-6
#: Below every gap between distinct times (days / 7), above rounding: where S(t) is read.
JUST_AFTER: Final = 1e-9
#: EM stops when the log-likelihood gains less than this in an iteration (lifelines' ``tol``,
#: whose default 1e-5 leaves the estimate up to 3e-2 from the maximum on visit data).
NPMLE_TOLERANCE: Final = 1e-12
MAX_ITERATIONS: Final = 1_000_000
#: A relapse recorded on the day of the origin: the interval (0, 1 day] for the Weibull model.
ONE_DAY: Final = 1.0 / 7.0
Z95: Final = float(stats.norm.ppf(0.975))

INTERVAL_COLUMNS: Final = ("left_weeks", "right_weeks", "exact")
TURNBULL_COLUMNS: Final = ("stratum_variable", "stratum", "n", "events", "time_weeks",
                           "relapse_free", "relapse_free_low", "relapse_free_high")
AFT_COLUMNS: Final = ("term", "time_ratio", "ci_low", "ci_high", "p_value", "coef", "se", "n",
                      "events", "model")


def interval_data(cohort: pd.DataFrame, visits: pd.DataFrame,
                  clinician_exact: bool = False) -> pd.DataFrame:
    """The relapse cohort with the interval in which each relapse happened.

    Parameters
    ----------
    cohort : DataFrame
        :func:`pipeline.relapse.cohort.relapse_cohort`: patient_id, time_weeks, event (1 relapse;
        0 censored and 2 competing are both censored here) and covariates.
    visits : DataFrame
        :func:`pipeline.relapse.cohort.relapse_visits`, indexed by patient_id: last_free_weeks,
        clinician_relapse.
    clinician_exact : bool
        ``config.relapse.clinician_relapse_exact``: a clinician-recorded relapse is dated at
        onset and stays exact.

    Returns
    -------
    DataFrame
        The cohort (same rows and order) with ``left_weeks``, ``right_weeks`` (``inf`` without
        a relapse) and ``exact`` (bool, ``left_weeks == right_weeks``); rules in the module
        docstring.
    """
    ids = cohort["patient_id"].astype(str)
    last_free = visits["last_free_weeks"].reindex(ids).fillna(0.0).to_numpy(dtype=float)
    clinician = visits["clinician_relapse"].reindex(ids).fillna(False).to_numpy(dtype=bool)
    time = cohort["time_weeks"].to_numpy(dtype=float)
    relapsed = (cohort["event"] == RELAPSE).to_numpy()
    left = np.minimum(last_free, time)
    exact = relapsed & ((clinician & clinician_exact) | (left >= time))
    left = np.where(exact, time, left)
    right = np.where(relapsed, time, np.inf)
    return cohort.assign(left_weeks=left, right_weeks=right, exact=exact)


def _labels(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), "missing").astype(str)


def _strata(data: pd.DataFrame, by: Sequence[str]) -> list[tuple[str, str, pd.DataFrame]]:
    """``("all", "all", data)`` then every level of every ``by`` variable present."""
    groups = [(ALL, ALL, data)]
    for variable in by:
        if variable in data:
            labels = _labels(data[variable])
            order = ("False", "True") if variable == "maintenance" else ()
            levels = [v for v in order if v in set(labels)] + sorted(set(labels) - set(order))
            groups += [(variable, level, data.loc[labels == level]) for level in levels]
    return groups


@dataclass(frozen=True)
class TurnbullFit:
    """A fitted Turnbull NPMLE: the Turnbull intervals ``[low_j, high_j]`` (closed, after
    :data:`OPEN`) with their masses, the log-likelihood and the iterations used."""

    low: FloatArray
    high: FloatArray
    mass: FloatArray
    log_likelihood: float
    iterations: int

    def survival(self, times: Sequence[float] | FloatArray) -> tuple[FloatArray, FloatArray]:
        """Bounds of ``S(t) = P(T > t)``: mass at the left ends (low) and at the right ends
        (high) of the Turnbull intervals; equal outside them. Read :data:`JUST_AFTER` ``t``,
        so that a time rounded in its last digits (R's 15) still reads the right step."""
        t = np.asarray(times, dtype=float)[:, None] + JUST_AFTER
        low = 1.0 - (self.mass[None, :] * (self.low[None, :] <= t)).sum(axis=1)
        high = 1.0 - (self.mass[None, :] * (self.high[None, :] <= t)).sum(axis=1)
        return (np.clip(np.asarray(low, dtype=float), 0.0, 1.0),
                np.clip(np.asarray(high, dtype=float), 0.0, 1.0))


def _turnbull_intervals(lower: FloatArray, upper: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Turnbull intervals of closed observation intervals ``[lower, upper]``: a left end
    followed, in the ordered ends, by a right end (a left end sorts before a right end at the
    same value), as lifelines ``npmle.create_turnbull_intervals``."""
    values = np.concatenate([lower, upper])
    is_right = np.concatenate([np.zeros(lower.size, bool), np.ones(upper.size, bool)])
    order = np.lexsort((is_right, values))
    values, is_right = values[order], is_right[order]
    starts = np.flatnonzero(~is_right[:-1] & is_right[1:])
    return values[starts], values[starts + 1]


def fit_turnbull(data: pd.DataFrame, tolerance: float = NPMLE_TOLERANCE,
                 max_iterations: int = MAX_ITERATIONS) -> TurnbullFit:
    r"""The Turnbull NPMLE by the self-consistency (EM) iteration, accelerated (module
    docstring).

    lifelines ``KaplanMeierFitter.fit_interval_censoring`` runs the same iteration over the
    same Turnbull intervals, but loops in Python over the observations at every step: 60 s
    on the 4,060-patient cohort of a 20,000-patient demo. Here each observation covers a
    contiguous run of Turnbull intervals, so one step is two cumulative sums over the
    distinct observations (``tests/test_relapse_interval.py`` checks the two agree).

    The plain iteration converges linearly and, on a registry's cohort, slowly (tens of
    thousands of steps per curve); it is accelerated by SQUAREM (Varadhan and Roland 2008,
    scheme S3): from masses :math:`p`, two steps give :math:`r = F(p) - p` and
    :math:`v = F(F(p)) - 2F(p) + p`, the extrapolation
    :math:`p' = p - 2\alpha r + \alpha^2 v` with :math:`\alpha = -\max(1, \|r\|/\|v\|)`
    (the plain double step at :math:`\alpha = -1`) is halved towards the plain step until
    its masses are non-negative, and one more step from it is kept only when it raises
    the log-likelihood at least as much as the plain double step (so the likelihood never
    falls). The fixed point, the NPMLE, is the same; the stopping rule is the plain one,
    a gain below ``tolerance`` over a cycle.

    Raises
    ------
    lifelines.exceptions.ConvergenceError
        Not converged within ``max_iterations`` steps of the iteration.

    References
    ----------
    Varadhan R, Roland C (2008). Simple and globally convergent methods for accelerating
    the convergence of any EM algorithm. Scandinavian Journal of Statistics 35:335-353.
    """
    left = data["left_weeks"].to_numpy(dtype=float)
    right = data["right_weeks"].to_numpy(dtype=float)
    lower = np.where(data["exact"].to_numpy(dtype=bool), left, left + OPEN)
    pairs, weight = np.unique(np.column_stack([lower, right]), axis=0, return_counts=True)
    low, high = _turnbull_intervals(lower, right)
    first = np.searchsorted(low, pairs[:, 0], side="left")
    last = np.searchsorted(high, pairs[:, 1], side="right") - 1
    n, m = float(weight.sum()), low.size

    def step(mass: FloatArray) -> tuple[FloatArray, float]:
        """One self-consistency step from ``mass`` and the log-likelihood at ``mass``."""
        cumulative = np.concatenate([[0.0], np.cumsum(mass)])
        covered = cumulative[last + 1] - cumulative[first]
        with np.errstate(divide="ignore"):
            log_likelihood = float((weight * np.log(covered)).sum())
        ratio = np.divide(weight, covered, out=np.zeros_like(covered), where=covered > 0)
        share = (np.bincount(first, ratio, minlength=m + 1)
                 - np.bincount(last + 1, ratio, minlength=m + 1))
        return mass * np.cumsum(share)[:m] / n, log_likelihood

    mass = np.full(m, 1.0 / m)
    once, log_likelihood = step(mass)
    steps = 1
    while steps < max_iterations:
        twice, _ = step(once)
        r, v = once - mass, twice - 2 * once + mass
        size = float(np.sqrt(v @ v))
        alpha = -max(1.0, float(np.sqrt(r @ r)) / size) if size > 0 else -1.0
        extrapolated = mass - 2 * alpha * r + alpha**2 * v
        while alpha < -1.0 and (extrapolated <= 0).any():
            alpha = (alpha - 1.0) / 2 if alpha < -1.5 else -1.0
            extrapolated = mass - 2 * alpha * r + alpha**2 * v
        candidate, plain_likelihood = step(twice)
        steps += 2
        if alpha < -1.0:
            # the extrapolation amplifies rounding in the total (alpha can be 1e4): a
            # likelihood compares only distributions
            accelerated, accelerated_likelihood = step(extrapolated / extrapolated.sum())
            steps += 1
            if accelerated_likelihood >= plain_likelihood:
                candidate = accelerated
        # the next cycle's first step, and the likelihood at the candidate
        following, new_likelihood = step(candidate)
        steps += 1
        if new_likelihood - log_likelihood < tolerance:
            return TurnbullFit(low, high, candidate, new_likelihood, steps)
        mass, once, log_likelihood = candidate, following, new_likelihood
    raise ConvergenceError(f"the Turnbull NPMLE did not converge in {max_iterations} "
                           "iterations")


def turnbull_curve(data: pd.DataFrame, times: Sequence[float]) -> pd.DataFrame:
    """The Turnbull NPMLE of relapse-free survival at ``times`` (module docstring).

    Parameters
    ----------
    data : DataFrame
        :func:`interval_data` (left_weeks, right_weeks, exact).
    times : sequence of float
        Where to read the estimate (weeks, >= 0).

    Returns
    -------
    DataFrame
        time_weeks (sorted, distinct), relapse_free (``S(t)`` where the NPMLE determines it,
        else NaN), relapse_free_low and relapse_free_high (the range of NPMLEs at ``t``:
        equal where it is unique).
    """
    grid = np.asarray(sorted(set(map(float, times))), dtype=float)
    low, high = fit_turnbull(data).survival(grid)
    unique = np.isclose(low, high, rtol=0.0, atol=1e-12)
    return pd.DataFrame({"time_weeks": grid, "relapse_free": np.where(unique, low, np.nan),
                         "relapse_free_low": low, "relapse_free_high": high})


def _grid(data: pd.DataFrame, horizons: Sequence[float]) -> list[float]:
    """0, every finite interval end and the horizons within follow-up."""
    ends = np.concatenate([data["left_weeks"].to_numpy(dtype=float),
                           data["right_weeks"].to_numpy(dtype=float)])
    ends = ends[np.isfinite(ends)]
    longest = float(ends.max()) if ends.size else 0.0
    return sorted({0.0, *map(float, ends), *(float(h) for h in horizons if h <= longest)})


def turnbull_table(data: pd.DataFrame, horizons: Sequence[float] = (),
                   by: Sequence[str] = TURNBULL_STRATA) -> tuple[pd.DataFrame, list[str]]:
    """The Turnbull relapse-free curve overall and by stratum.

    Parameters
    ----------
    data : DataFrame
        :func:`interval_data`.
    horizons : sequence of float
        Weeks added to the times of the table (those within the stratum's follow-up).
    by : sequence of str
        Stratifying columns (those absent are skipped).

    Returns
    -------
    (DataFrame, list of str)
        :data:`TURNBULL_COLUMNS`: per stratum (``"all"`` first) its n and relapses, and at
        time 0, every end of an observed interval and the horizons, the estimate (where
        unique) and its bounds. And messages.
    """
    rows = []
    notes = []
    for variable, level, sub in _strata(data, by):
        curve = turnbull_curve(sub, _grid(sub, horizons))
        events = int((sub["right_weeks"] < np.inf).sum())
        rows.append(curve.assign(stratum_variable=variable, stratum=level, n=len(sub),
                                 events=events))
    table = pd.concat(rows, ignore_index=True)[list(TURNBULL_COLUMNS)]
    overall = data["right_weeks"] < np.inf
    exact = int((data["exact"] & overall).sum())
    relapses = int(overall.sum())
    notes.append(f"Turnbull (interval-censored) relapse-free curve: {relapses} "
                 f"relapse{'' if relapses == 1 else 's'}, {relapses - exact} of them known "
                 f"only to lie between two visits, {exact} dated exactly")
    return table.astype({"n": np.int64, "events": np.int64}), notes


def turnbull_analysis(data: pd.DataFrame,
                      config: StudyConfig) -> tuple[pd.DataFrame, list[str]]:
    """:func:`turnbull_table` at ``relapse.horizon_weeks``.

    Raises
    ------
    NotEstimable
        An empty cohort, or an NPMLE that did not converge within ``MAX_ITERATIONS`` (in
        any stratum: no curve of the table is used then).
    """
    require(len(data) > 0, "no patients in the relapse cohort",
            "patients at risk of relapse with follow-up")
    try:
        return turnbull_table(data, config.relapse.horizon_weeks)
    except ConvergenceError as error:  # no curve from an iteration that stopped short
        raise NotEstimable(f"the Turnbull relapse-free curve is not used: {error}",
                           "more follow-up visits per patient (a less ambiguous interval "
                           "for each relapse)") from error


def _aft_frame(data: pd.DataFrame, design: pd.DataFrame) -> pd.DataFrame:
    """Design columns plus L and R for lifelines (an exact 0 becomes ``(0, 1 day]``)."""
    left = data["left_weeks"].to_numpy(dtype=float)
    right = data["right_weeks"].to_numpy(dtype=float)
    at_zero = right == 0.0
    right = np.where(at_zero, ONE_DAY, right)
    terms = design.drop(columns=["time_weeks", "event"])
    return terms.assign(left_weeks=left, right_weeks=right)


def aft_table(data: pd.DataFrame, design: pd.DataFrame, description: str) -> pd.DataFrame:
    """Fit the interval-censored Weibull AFT model (module docstring) and tidy it.

    Parameters
    ----------
    data : DataFrame
        :func:`interval_data` rows of the model (left_weeks, right_weeks, exact).
    design : DataFrame
        :func:`pipeline.relapse.cox.cox_design` of the same rows (numeric term columns, plus
        time_weeks and event, which are not used).
    description : str
        The ``model`` column.

    Returns
    -------
    DataFrame
        :data:`AFT_COLUMNS`: per term ``exp(beta)`` (time ratio) with Wald 95% limits
        ``exp(beta +- z se)``, its p-value, beta and se; then ``log(scale)``, R's
        ``Log(scale)`` (``-log rho``; time_ratio and limits empty). n and relapses.

    Raises
    ------
    lifelines.exceptions.ConvergenceError
        When the likelihood has no finite maximum.
    """
    frame = _aft_frame(data, design)
    fitter = WeibullAFTFitter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fitter.fit_interval_censoring(frame, "left_weeks", "right_weeks")
    summary = fitter.summary
    coef = summary.loc["lambda_", "coef"]
    se = summary.loc["lambda_", "se(coef)"]
    log_rho = float(summary.loc[("rho_", "Intercept"), "coef"])
    log_rho_se = float(summary.loc[("rho_", "Intercept"), "se(coef)"])
    terms = [t for t in coef.index if t != "Intercept"]
    rows: list[dict[str, Any]] = []
    for term in [*terms, "Intercept"]:
        b, s = float(coef[term]), float(se[term])
        rows.append({"term": "(Intercept)" if term == "Intercept" else term,
                     "time_ratio": np.exp(b), "ci_low": np.exp(b - Z95 * s),
                     "ci_high": np.exp(b + Z95 * s),
                     "p_value": float(2 * stats.norm.sf(abs(b / s))), "coef": b, "se": s})
    rows.append({"term": "log(scale)", "time_ratio": np.nan, "ci_low": np.nan,
                 "ci_high": np.nan, "p_value": np.nan, "coef": -log_rho, "se": log_rho_se})
    table = pd.DataFrame(rows)
    if not np.isfinite(table[["coef", "se"]].to_numpy(dtype=float)).all():
        raise ConvergenceError("no finite maximum of the Weibull likelihood")
    events = int((data["right_weeks"] < np.inf).sum())
    table = table.assign(n=len(data), events=events, model=description)
    return table[list(AFT_COLUMNS)]


def aft_analysis(data: pd.DataFrame, instrument: str,
                 config: StudyConfig) -> tuple[pd.DataFrame, list[str]]:
    """The interval-censored Weibull AFT model with the Cox model's terms.

    Returns
    -------
    (DataFrame, list of str)
        :func:`aft_table` and messages.

    Raises
    ------
    NotEstimable
        No relapses, too few per parameter (as for the Cox model), or no finite maximum.
    """
    try:
        model_data, spec, _ = cox_terms(data, instrument, config,
                                        model="interval-censored Weibull model")
    except NotEstimable as verdict:  # the Cox model's verdict, about this model
        raise NotEstimable(verdict.reason.replace(
            "a Cox model", "the interval-censored Weibull model (the Cox model's terms)"),
            verdict.remedy) from verdict
    design = cox_design(model_data, spec)
    description = ("Weibull AFT (interval-censored): "
                   + " + ".join(spec.covariates))
    try:
        table = aft_table(model_data, design, description)
    except (ConvergenceError, ConvergenceWarning, np.linalg.LinAlgError) as error:
        raise NotEstimable(f"the interval-censored Weibull model did not converge ({error})",
                           "more relapses, or fewer sparse covariate levels") from error
    notes = [f"interval-censored Weibull AFT sensitivity model: {description.split(': ')[1]} "
             "(time ratios: above 1, relapse later)"]
    zero = int((model_data["right_weeks"] == 0.0).sum())
    if zero:
        notes.append(f"{zero} relapse{'' if zero == 1 else 's'} at time 0 enter the Weibull "
                     "model as relapses within the first day")
    return table, notes
