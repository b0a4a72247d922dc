r"""Cumulative incidence of relapse with death and other treatment as competing risks.

Cumulative incidence (:func:`cumulative_incidence_table`)
    Aalen-Johansen, ``CIF(t) = sum_{t_j <= t} S(t_j-) d_{1j} / n_j`` with ``S`` the
    all-cause Kaplan-Meier (R ``survfit(Surv(time, factor(status)) ~ 1)``), limits from
    lifelines' Greenwood-type delta-method variance on the log(-log) scale (Collett 2015,
    p. 411; R's survfit uses an infinitesimal-jackknife SE instead, so the limits differ a
    little while the estimates agree). lifelines jitters tied times of different event
    types at random; here each relapse time is moved earlier by a tiny deterministic amount
    instead, which leaves the estimate unchanged (both ``S`` and ``CIF`` telescope over tied
    events) and makes reruns identical.

References
----------
Aalen OO, Johansen S (1978). Scand J Stat 5:141-150.
Collett D (2015). Modelling Survival Data in Medical Research, 3rd ed. CRC Press.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd
from lifelines import AalenJohansenFitter

from pipeline.estimability import require
from pipeline.relapse.cohort import RELAPSE
from pipeline.relapse.kaplan_meier import step_values
from pipeline.relapse.strata import strata

__all__ = ["CIF_COLUMNS", "cif_analysis", "cumulative_incidence_table"]

CIF_GROUPS: Final = ("format",)
CIF_COLUMNS: Final = ("stratum_variable", "stratum", "time_weeks", "at_risk", "cif", "ci_low",
                      "ci_high")


def _untied_times(times: pd.Series, events: pd.Series) -> tuple[pd.Series, float]:
    """Relapse times moved earlier by a deterministic ``epsilon`` (see module docstring),
    and the shift of the whole time axis that keeps them at or after 0.

    ``epsilon`` is 1/100 of the smallest gap between distinct times (and of the smallest
    time), so no moved time reaches another; lifelines then finds no ties to jitter. A
    relapse at time 0 (a follow-up on the day treatment ended) would move to or below 0,
    where lifelines' Aalen-Johansen does not count it; then every time is moved
    ``2 epsilon`` later (returned as the shift, to be added to the times at which the curve
    is read, so each reading sees the same events as without the shift).
    """
    distinct = np.unique(times.to_numpy(dtype=float))
    gaps = np.diff(distinct)
    candidates = [*gaps[gaps > 0], *distinct[distinct > 0]]
    epsilon = (min(candidates) if candidates else 1.0) / 100.0
    relapse = (events == RELAPSE).to_numpy()
    shift = 2 * epsilon if bool((times.to_numpy(dtype=float)[relapse] <= 0).any()) else 0.0
    return times.astype(float) - np.where(relapse, epsilon, 0.0) + shift, shift


def _aalen_johansen(sub: pd.DataFrame) -> pd.DataFrame:
    """Cumulative incidence of relapse at 0 and at each distinct relapse time of ``sub``."""
    times = sub["time_weeks"].astype(float)
    events = sub["event"].astype(np.int64)
    ajf = AalenJohansenFitter(calculate_variance=True, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # log(0) in CI where CIF = 0
        untied, shift = _untied_times(times, events)
        ajf.fit(untied, events, event_of_interest=RELAPSE)
    curve = pd.concat([ajf.cumulative_density_, ajf.confidence_interval_], axis=1)
    grid = np.unique(np.append(0.0, times[events == RELAPSE].to_numpy()))
    values = step_values(curve, grid + shift)
    cif = values[:, 0]
    lower, upper = np.fmin(values[:, 1], values[:, 2]), np.fmax(values[:, 1], values[:, 2])
    zero = cif <= 0
    return pd.DataFrame({
        "time_weeks": grid,
        "at_risk": len(times) - np.searchsorted(np.sort(times.to_numpy()), grid, side="left"),
        "cif": cif,
        "ci_low": np.where(zero, 0.0, lower),
        "ci_high": np.where(zero, 0.0, upper),
    })


def cumulative_incidence_table(
    cohort: pd.DataFrame, by: Sequence[str] = CIF_GROUPS
) -> tuple[pd.DataFrame, list[str]]:
    """Aalen-Johansen cumulative incidence of relapse, competing events as competing risks.

    Returns
    -------
    (DataFrame, list of str)
        stratum_variable, stratum, time_weeks (0 and each relapse time), at_risk, cif,
        ci_low, ci_high (95% log(-log) limits; 0 while the incidence is 0). Deterministic:
        ties are broken as described in the module docstring, never at random.
    """
    pieces, notes = [], []
    for variable, level, sub in (strata(cohort, by) if len(cohort) else ()):
        piece = _aalen_johansen(sub)
        pieces.append(piece.assign(stratum_variable=variable, stratum=level))
        if piece[["ci_low", "ci_high"]].isna().any().any():
            notes.append(f"cumulative incidence limits not estimable at the last time "
                         f"({variable} = {level}): everyone left had an event")
    if not pieces:
        return pd.DataFrame(columns=list(CIF_COLUMNS)), notes
    return pd.concat(pieces, ignore_index=True)[list(CIF_COLUMNS)], notes


def cif_analysis(cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Aalen-Johansen cumulative incidence (:func:`cumulative_incidence_table`)."""
    require(len(cohort) > 0, "the relapse cohort is empty", "patients at risk with follow-up")
    return cumulative_incidence_table(cohort)
