r"""Relapse-free survival: Kaplan-Meier, numbers at risk, log-rank tests and RMST.

Each function takes the relapse cohort (:func:`pipeline.relapse.cohort.relapse_cohort`:
``time_weeks``, ``event`` and the stratifying columns) and returns a DataFrame and messages.
Competing events are censored throughout (the relapse-free survival "if competing events
were prevented"; their cumulative incidence is in :mod:`pipeline.relapse.competing`).

Relapse-free survival (:func:`kaplan_meier_table`)
    Kaplan-Meier, ``S(t) = prod_{t_j <= t} (1 - d_j / n_j)``, with competing events censored
    (the relapse-free survival "if competing events were prevented"). Pointwise 95% limits
    use the exponential Greenwood (log(-log)) transform, lifelines' only method and R
    ``survfit(..., conf.type = "log-log")``: ``exp(-exp(log(-log S) +- z se))`` with
    ``se^2 = sum d_j / (n_j (n_j - d_j)) / (log S)^2`` (Kalbfleisch & Prentice 2002). The
    median's limits are where the limits of S cross 0.5 (Brookmeyer & Crowley 1982).
Log-rank (:func:`logrank_table`)
    ``chi^2 = (O - E)' V^- (O - E)`` on ``k - 1`` df (Mantel 1966), R ``survdiff``.
RMST (:func:`rmst_table`)
    ``RMST(tau) = int_0^tau S(t) dt`` of the Kaplan-Meier curve (lifelines
    ``restricted_mean_survival_time``) with the Greenwood-type variance ``Var = sum_{t_j <=
    tau} A_j^2 d_j / (n_j (n_j - d_j))``, ``A_j = int_{t_j}^tau S(t) dt`` (Klein &
    Moeschberger 2003, 4.5; R ``print(survfit, rmean = tau)``, survRM2), normal limits; the
    difference between two groups has variance ``Var_1 + Var_0``. lifelines' own
    ``return_variance`` is the variance of ``min(T, tau)`` in the population, not of the
    estimate, so it is not used.

References
----------
Brookmeyer R, Crowley J (1982). A confidence interval for the median survival time.
Biometrics 38:29-41.
Kalbfleisch JD, Prentice RL (2002). The Statistical Analysis of Failure Time Data, 2nd ed.
Klein JP, Moeschberger ML (2003). Survival Analysis, 2nd ed. Springer.
Mantel N (1966). Cancer Chemother Rep 50:163-170.
Royston P, Parmar MKB (2013). Restricted mean survival time. BMC Med Res Methodol 13:152.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import median_survival_times, restricted_mean_survival_time
from scipy import stats

from pipeline.config import StudyConfig
from pipeline.estimability import require
from pipeline.relapse.cohort import COMPETING, RELAPSE
from pipeline.relapse.strata import ALL, strata, stratum_labels

__all__ = ["at_risk_table", "kaplan_meier_table", "km_analysis", "logrank_analysis",
           "logrank_table", "rmst_analysis", "rmst_table", "step_values"]

FloatArray = npt.NDArray[np.float64]

KM_STRATA: Final = ("condition", "format", "maintenance")
RMST_GROUPS: Final = ("format", "maintenance")
Z95: Final = float(stats.norm.ppf(0.975))
KM_COLUMNS: Final = ("stratum_variable", "stratum", "n", "events", "competing", "median_weeks",
                     "median_ci_low", "median_ci_high")
AT_RISK_COLUMNS: Final = ("stratum_variable", "stratum", "time_weeks", "at_risk")
LOGRANK_COLUMNS: Final = ("variable", "groups", "n", "events", "test_statistic", "df",
                          "p_value")
RMST_COLUMNS: Final = ("variable", "group", "n", "events", "tau_weeks", "rmst", "se", "ci_low",
                       "ci_high")


def _horizon(h: float) -> str:
    """Column suffix of a horizon, e.g. ``26w``."""
    return f"{h:g}w"



def _finite(value: Any) -> float:
    """``value`` as float, NaN when infinite (a median or limit not reached)."""
    number = float(value)
    return number if np.isfinite(number) else float("nan")


def step_values(frame: pd.DataFrame, times: FloatArray) -> FloatArray:
    """Rows of a step function (indexed by time) in force at each of ``times``."""
    position = np.searchsorted(frame.index.to_numpy(dtype=float), times, side="right") - 1
    return np.asarray(frame.iloc[np.maximum(position, 0)].to_numpy(dtype=float))


def _step_value(frame: pd.DataFrame, t: float) -> FloatArray:
    """Row of a step function (indexed by time) in force at time ``t``."""
    row: FloatArray = step_values(frame, np.array([t], dtype=float))[0]
    return row


def _km_row(sub: pd.DataFrame, horizons: Sequence[float]) -> tuple[dict[str, Any], list[str]]:
    """One stratum's Kaplan-Meier summary: counts, median with limits, S at the horizons."""
    kmf = KaplanMeierFitter().fit(sub["time_weeks"], sub["event"] == RELAPSE)
    limits = median_survival_times(kmf.confidence_interval_survival_function_)
    row: dict[str, Any] = {
        "n": len(sub),
        "events": int((sub["event"] == RELAPSE).sum()),
        "competing": int((sub["event"] == COMPETING).sum()),
        "median_weeks": _finite(kmf.median_survival_time_),
        "median_ci_low": _finite(limits.iloc[0, 0]),
        "median_ci_high": _finite(limits.iloc[0, 1]),
    }
    notes = []
    survival = kmf.survival_function_
    bands = kmf.confidence_interval_survival_function_
    longest = float(sub["time_weeks"].max())
    for h in horizons:
        s = float(_step_value(survival, h)[0])
        low, high = _step_value(bands, h)
        if s >= 1.0:
            low = high = 1.0
        if h > longest:
            s = low = high = float("nan")
            notes.append(f"follow-up shorter than {h:g} weeks")
        key = _horizon(h)
        row.update({f"relapse_free_{key}": s, f"ci_low_{key}": low, f"ci_high_{key}": high})
    return row, notes


def kaplan_meier_table(
    cohort: pd.DataFrame, horizons: Sequence[float], by: Sequence[str] = KM_STRATA
) -> tuple[pd.DataFrame, list[str]]:
    """Kaplan-Meier relapse-free survival overall and by stratum (competing events censored).

    Parameters
    ----------
    cohort : DataFrame
        Columns time_weeks, event (1 = relapse; 0 and 2 are censored here) and ``by``.
    horizons : sequence of float
        Weeks at which relapse-free survival is reported.
    by : sequence of str
        Stratifying columns (those absent are skipped).

    Returns
    -------
    (DataFrame, list of str)
        stratum_variable, stratum (``"all"`` first), n, events, competing, median_weeks,
        median_ci_low, median_ci_high and, per horizon h, relapse_free_<h>w, ci_low_<h>w,
        ci_high_<h>w (95% log(-log) limits, R ``conf.type = "log-log"``; 1 when no relapse
        has happened yet). A median or limit that is not reached within follow-up is
        missing (NaN), as in R; horizons beyond a stratum's follow-up are missing too. The
        messages say where.
    """
    columns = [*KM_COLUMNS, *(f"{p}_{_horizon(h)}" for h in horizons
                              for p in ("relapse_free", "ci_low", "ci_high"))]
    rows, notes = [], []
    for variable, level, sub in strata(cohort, by) if len(cohort) else ():
        row, more = _km_row(sub, horizons)
        rows.append({"stratum_variable": variable, "stratum": level, **row})
        where = "overall" if variable == ALL else f"{variable} = {level}"
        notes += [f"{note} ({where}): relapse-free proportion not estimated" for note in more]
        if row["events"] == 0:
            notes.append(f"no relapses ({where}): relapse-free survival stays at 1")
    table = pd.DataFrame(rows, columns=columns)
    unreached = int(table["median_weeks"].isna().sum())
    if unreached:
        notes.append(f"median relapse-free time not reached in {unreached} of {len(table)} "
                     "strata (left empty)")
    return table.astype({"n": np.int64, "events": np.int64, "competing": np.int64}), notes


def at_risk_table(
    cohort: pd.DataFrame, horizons: Sequence[float], by: Sequence[str] = KM_STRATA,
    step: float = 13.0,
) -> pd.DataFrame:
    """Numbers at risk every ``step`` weeks up to the last horizon, as under the KM figure.

    ``at_risk`` counts patients still followed just after ``t`` without relapse or competing
    event, ``#(time_weeks > t)`` (``n`` at 0): lifelines ``add_at_risk_counts``, whose numbers
    are printed under :func:`pipeline.report.relapse_plots.km_figure`. R's ``summary(survfit,
    times = t)$n.risk`` counts ``time >= t`` instead, which differs at the follow-up dates
    (13, 26, 52 weeks).

    Returns
    -------
    DataFrame
        stratum_variable, stratum, time_weeks, at_risk.
    """
    last = max(horizons, default=step)
    grid = sorted({0.0, *map(float, horizons), *np.arange(step, last + 1e-9, step).tolist()})
    rows = [
        {"stratum_variable": variable, "stratum": level, "time_weeks": t,
         "at_risk": int((sub["time_weeks"] > t).sum()) if t > 0 else len(sub)}
        for variable, level, sub in (strata(cohort, by) if len(cohort) else ())
        for t in grid
    ]
    return pd.DataFrame(rows, columns=list(AT_RISK_COLUMNS))


def logrank_table(
    cohort: pd.DataFrame, by: Sequence[str] = KM_STRATA
) -> tuple[pd.DataFrame, list[str]]:
    """Log-rank tests of relapse-free survival across the levels of each variable.

    lifelines ``multivariate_logrank_test`` (R ``survdiff``); competing events censored.

    Returns
    -------
    (DataFrame, list of str)
        variable, groups, n, events, test_statistic, df, p_value; variables with fewer than
        two levels or no relapses are left out with a message.
    """
    rows, notes = [], []
    relapsed = cohort["event"] == RELAPSE
    for variable in by:
        if variable not in cohort or len(cohort) == 0:
            continue
        labels = stratum_labels(cohort[variable])
        if labels.nunique() < 2 or not relapsed.any():
            notes.append(f"no log-rank test by {variable}: "
                         + ("only one level" if labels.nunique() < 2 else "no relapses"))
            continue
        result = multivariate_logrank_test(cohort["time_weeks"], labels, relapsed)
        rows.append({"variable": variable, "groups": int(labels.nunique()), "n": len(cohort),
                     "events": int(relapsed.sum()),
                     "test_statistic": float(result.test_statistic),
                     "df": int(result.degrees_of_freedom), "p_value": float(result.p_value)})
    return pd.DataFrame(rows, columns=list(LOGRANK_COLUMNS)), notes



def _rmst(sub: pd.DataFrame, tau: float) -> tuple[float, float]:
    """RMST to ``tau`` of the relapse-free Kaplan-Meier curve and its Greenwood variance."""
    kmf = KaplanMeierFitter().fit(sub["time_weeks"], sub["event"] == RELAPSE)
    rmst = float(restricted_mean_survival_time(kmf, t=tau))
    curve = kmf.survival_function_.iloc[:, 0]
    times = curve.index.to_numpy(dtype=float)
    keep = times < tau
    knots = np.append(times[keep], tau)
    area = curve.to_numpy(dtype=float)[keep] * np.diff(knots)
    after = np.cumsum(area[::-1])[::-1]  # A_j = integral of S from t_j to tau
    table = kmf.event_table.loc[times[keep]]
    deaths = table["observed"].to_numpy(dtype=float)
    at_risk = table["at_risk"].to_numpy(dtype=float)
    safe = np.where(at_risk > deaths, at_risk - deaths, 1.0)
    term = np.where(at_risk > deaths, deaths / (at_risk * safe), 0.0)
    return rmst, float(np.sum(after**2 * term))


def _rmst_row(variable: str, group: str, sub: pd.DataFrame, tau: float) -> dict[str, Any]:
    rmst, variance = _rmst(sub, tau)
    se = float(np.sqrt(variance))
    return {"variable": variable, "group": group, "n": len(sub),
            "events": int((sub["event"] == RELAPSE).sum()), "tau_weeks": tau, "rmst": rmst,
            "se": se, "ci_low": rmst - Z95 * se, "ci_high": rmst + Z95 * se}


def _difference_row(variable: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Second level minus the first (reference): ``se = sqrt(se_1^2 + se_0^2)``."""
    reference, other = rows[0], rows[1]
    estimate = other["rmst"] - reference["rmst"]
    se = float(np.hypot(other["se"], reference["se"]))
    return {"variable": variable, "group": f"{other['group']} - {reference['group']}",
            "n": other["n"] + reference["n"], "events": other["events"] + reference["events"],
            "tau_weeks": reference["tau_weeks"], "rmst": estimate, "se": se,
            "ci_low": estimate - Z95 * se, "ci_high": estimate + Z95 * se}


def rmst_table(
    cohort: pd.DataFrame, tau: float, by: Sequence[str] = RMST_GROUPS
) -> tuple[pd.DataFrame, list[str]]:
    """Restricted mean relapse-free time to ``tau`` weeks by group, with the difference.

    Returns
    -------
    (DataFrame, list of str)
        variable (``all`` first), group, n, events, tau_weeks, rmst, se, ci_low, ci_high
        (normal 95% limits). For a variable with two levels a row ``"<other> - <reference>"``
        (reference: individual format, no maintenance) holds the difference. A group whose
        follow-up ends before ``tau`` has its curve carried forward flat (as R does), with a
        message.
    """
    rows, notes = [], []
    pieces: dict[str, list[dict[str, Any]]] = {}
    for variable, level, sub in (strata(cohort, by) if len(cohort) else ()):
        row = _rmst_row(variable, level, sub, tau)
        rows.append(row)
        pieces.setdefault(variable, []).append(row)
        if float(sub["time_weeks"].max()) < tau:
            where = "overall" if variable == ALL else f"{variable} = {level}"
            notes.append(f"follow-up ({where}) ends before {tau:g} weeks: RMST carries the last "
                         "relapse-free proportion forward")
    for variable in by:
        levels = pieces.get(variable, [])
        if len(levels) == 2:
            rows.append(_difference_row(variable, levels))
        elif levels:
            notes.append(f"no RMST difference by {variable}: {len(levels)} level(s) present")
    return pd.DataFrame(rows, columns=list(RMST_COLUMNS)), notes



def km_analysis(
    cohort: pd.DataFrame, config: StudyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Kaplan-Meier tables (:func:`kaplan_meier_table`, :func:`at_risk_table`).

    Estimable with no relapse (relapse-free survival then stays at 1, as the tables say);
    :class:`NotEstimable` only for an empty cohort.
    """
    require(len(cohort) > 0, "the relapse cohort is empty", "patients at risk with follow-up")
    km, notes = kaplan_meier_table(cohort, config.relapse.horizon_weeks)
    return km, at_risk_table(cohort, config.relapse.horizon_weeks), notes


def logrank_analysis(cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Log-rank tests (:func:`logrank_table`); :class:`NotEstimable` without relapses or
    without any variable with two levels."""
    require(bool((cohort["event"] == RELAPSE).any()),
            "no relapses in the relapse cohort: nothing for a log-rank test to compare",
            "longer follow-up of the patients at risk")
    table, notes = logrank_table(cohort)
    require(len(table) > 0,
            f"no variable of {', '.join(KM_STRATA)} has two levels in the relapse cohort",
            "patients at risk in more than one format, condition or maintenance group")
    return table, notes


def rmst_analysis(cohort: pd.DataFrame, config: StudyConfig) -> tuple[pd.DataFrame, list[str]]:
    """Restricted mean relapse-free time (:func:`rmst_table`); :class:`NotEstimable` for an
    empty cohort (a curve without relapses gives RMST = tau, which is an estimate)."""
    require(len(cohort) > 0, "the relapse cohort is empty", "patients at risk with follow-up")
    return rmst_table(cohort, config.relapse.rmst_weeks)
