r"""Funnel plots for comparing units (sites, therapists) on a proportion, with an
over-dispersion correction.

Control limits (Spiegelhalter 2005a, section 3, normal approximation to the binomial)
    For a target proportion :math:`p_0` (the overall rate) and a unit with :math:`n`
    patients, the limits at two-sided level :math:`1 - \alpha` are

    .. math::

        p_0 \pm z_{1-\alpha/2}\,\sqrt{\phi\,\frac{p_0(1 - p_0)}{n}},

    clipped to [0, 1], with :math:`z = 1.960` (95%, "warning") and :math:`z = 3.090`
    (99.8%, "alarm"), and :math:`\phi = 1` unless over-dispersion is found. A unit's
    z-score is :math:`z_i = (y_i - p_0) / \sqrt{p_0(1 - p_0)/n_i}`; a unit is outside a limit
    when :math:`|z_i| / \sqrt{\phi}` exceeds its :math:`z`.

Over-dispersion (Spiegelhalter 2005b, multiplicative model)
    Case-mix adjustment never removes all between-unit variation, and with many patients
    per unit even small true differences push most units outside the limits. Following
    Spiegelhalter (2005b) the z-scores are Winsorised (those below the 10th percentile set
    to it, those above the 90th set to it, so that genuine outliers do not inflate the
    estimate), and

    .. math::

        \hat\phi = \frac{1}{I}\sum_{i=1}^{I} z_{i,W}^2 .

    Under no over-dispersion :math:`I\hat\phi` is approximately :math:`\chi^2_{I-1}`
    (the target is estimated from the same units). The limits are widened by
    :math:`\sqrt{\hat\phi}` only when :math:`\hat\phi > 1` *and* this chi-square test
    rejects at level ``alpha`` (default 0.05), with at least ``min_units`` units; otherwise
    :math:`\phi = 1`. The multiplicative model was chosen over the additive random-effects
    (:math:`\tau^2`) version because it keeps the limits' funnel shape and needs no
    moment estimator that can hit its boundary with few units.

References
----------
Spiegelhalter DJ (2005a). Funnel plots for comparing institutional performance.
Statistics in Medicine 24:1185-1202. doi:10.1002/sim.1970
Spiegelhalter DJ (2005b). Handling over-dispersion of performance indicators. Quality and
Safety in Health Care 14:347-351. doi:10.1136/qshc.2005.013755
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

FloatArray = npt.NDArray[np.float64]

LEVELS: Final = (0.95, 0.998)
WITHIN: Final = "within"
TOO_SMALL: Final = "too_small"


def z_value(level: float) -> float:
    """Two-sided normal quantile: ``z_value(0.95) = 1.95996``, ``z_value(0.998) = 3.09023``."""
    return float(stats.norm.ppf(1 - (1 - level) / 2))


def control_limits(
    p0: float, n: npt.ArrayLike, level: float, phi: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    r"""Lower and upper funnel limits :math:`p_0 \pm z\sqrt{\phi p_0(1-p_0)/n}` in [0, 1].

    Parameters
    ----------
    p0 : float
        Target proportion (the overall rate).
    n : array_like
        Numbers of patients (positive).
    level : float
        Two-sided coverage, e.g. 0.95 or 0.998.
    phi : float
        Multiplicative over-dispersion factor (1: none).

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper limits.

    Examples
    --------
    >>> low, high = control_limits(0.5, [100], 0.95)
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.402, 0.598)
    """
    size = np.asarray(n, dtype=float)
    half = z_value(level) * np.sqrt(phi * p0 * (1 - p0) / size)
    return np.clip(p0 - half, 0, 1).astype(np.float64), np.clip(p0 + half, 0, 1).astype(
        np.float64
    )


def z_scores(rate: npt.ArrayLike, n: npt.ArrayLike, p0: float) -> FloatArray:
    r"""Unadjusted z-scores :math:`(y_i - p_0) / \sqrt{p_0(1 - p_0)/n_i}`."""
    y = np.asarray(rate, dtype=float)
    size = np.asarray(n, dtype=float)
    return ((y - p0) / np.sqrt(p0 * (1 - p0) / size)).astype(np.float64)


def winsorise(values: npt.ArrayLike, fraction: float = 0.10) -> FloatArray:
    """Set values below the ``fraction`` quantile to it and above ``1 - fraction`` to that.

    Quantiles as R's default (type 7, linear interpolation), as in Spiegelhalter (2005b)
    and the FunnelPlotR package.
    """
    x = np.asarray(values, dtype=float)
    low, high = (float(q) for q in np.quantile(x, [fraction, 1 - fraction]))
    clipped: FloatArray = np.clip(x, low, high).astype(np.float64)
    return clipped


@dataclass(frozen=True)
class Overdispersion:
    """The multiplicative over-dispersion estimate and its test.

    Attributes
    ----------
    phi_hat : float
        Mean squared Winsorised z-score.
    statistic : float
        ``I * phi_hat``, compared with chi-square on ``df = I - 1``.
    df : int
        Degrees of freedom.
    p_value : float
        Upper tail probability of ``statistic``.
    applied : bool
        Whether the limits were widened (``phi_hat > 1``, ``p_value < alpha``, enough units).
    phi : float
        The factor in force: ``phi_hat`` when applied, else 1.
    """

    phi_hat: float
    statistic: float
    df: int
    p_value: float
    applied: bool
    phi: float


def overdispersion(
    z: npt.ArrayLike, fraction: float = 0.10, alpha: float = 0.05, min_units: int = 3
) -> Overdispersion:
    r"""Estimate and test multiplicative over-dispersion (Spiegelhalter 2005b).

    :math:`\hat\phi = I^{-1}\sum_i z_{i,W}^2` from Winsorised z-scores; the test refers
    :math:`I\hat\phi` to :math:`\chi^2_{I-1}`. Applied only when :math:`\hat\phi > 1`, the
    test rejects at ``alpha`` and there are at least ``min_units`` units.

    Examples
    --------
    >>> result = overdispersion([-3.0, -1.0, 0.0, 1.0, 3.0])
    >>> round(result.phi_hat, 4), result.df
    (2.336, 4)
    """
    values = np.asarray(z, dtype=float)
    values = values[np.isfinite(values)]
    units = len(values)
    if units == 0:
        return Overdispersion(float("nan"), float("nan"), 0, float("nan"), False, 1.0)
    phi_hat = float(np.mean(winsorise(values, fraction) ** 2))
    statistic = units * phi_hat
    df = max(units - 1, 1)
    p_value = float(stats.chi2.sf(statistic, df))
    applied = bool(phi_hat > 1 and p_value < alpha and units >= min_units)
    return Overdispersion(phi_hat, statistic, df, p_value, applied, phi_hat if applied else 1.0)


def classify(z_adjusted: npt.ArrayLike, levels: tuple[float, ...] = LEVELS) -> list[str]:
    """Label each unit by the widest limit it lies outside: ``above_99.8``, ``below_95``,
    ... or ``within``; missing z-scores stay ``within``."""
    z = np.asarray(z_adjusted, dtype=float)
    labels = [WITHIN] * len(z)
    for level in sorted(levels):
        bound = z_value(level)
        name = f"{100 * level:g}"
        for i, value in enumerate(z):
            if value > bound:
                labels[i] = f"above_{name}"
            elif value < -bound:
                labels[i] = f"below_{name}"
    return labels


@dataclass(frozen=True, eq=False)
class FunnelResult:
    """A funnel analysis of one level (sites or therapists).

    Attributes
    ----------
    units : DataFrame
        unit, n, rate, z_score (unadjusted), z_adjusted (divided by sqrt(phi)), on_funnel,
        limit_hit (``too_small`` for units below ``min_n``).
    p0 : float
        Target (overall rate of the units).
    dispersion : Overdispersion
        Estimate and test, from the units on the funnel.
    levels : tuple of float
        The control-limit levels.
    """

    units: pd.DataFrame
    p0: float
    dispersion: Overdispersion
    levels: tuple[float, ...]


def analyse(
    units: pd.DataFrame,
    p0: float,
    min_n: int = 5,
    levels: tuple[float, ...] = LEVELS,
    fraction: float = 0.10,
    alpha: float = 0.05,
    adjust: bool = True,
) -> FunnelResult:
    """Place units (columns unit, n, rate) on a funnel around ``p0`` and classify them.

    Units with ``n < min_n`` (or without a rate) are not placed: ``limit_hit = too_small``.
    Over-dispersion is estimated from the placed units and applied as described in the
    module docstring (``adjust=False``: never applied).
    """
    table = units[["unit", "n", "rate"]].copy().reset_index(drop=True)
    n = table["n"].to_numpy(dtype=float)
    rate = table["rate"].to_numpy(dtype=float)
    placed = (n >= min_n) & np.isfinite(rate) & (0 < p0 < 1)
    z = np.full(len(table), np.nan)
    z[placed] = z_scores(rate[placed], n[placed], p0)
    dispersion = overdispersion(z[placed], fraction, alpha)
    if not adjust:
        dispersion = Overdispersion(dispersion.phi_hat, dispersion.statistic, dispersion.df,
                                    dispersion.p_value, False, 1.0)
    z_adjusted = z / np.sqrt(dispersion.phi)
    labels = classify(z_adjusted, levels)
    table["z_score"] = z
    table["z_adjusted"] = z_adjusted
    table["on_funnel"] = placed
    table["limit_hit"] = [label if ok else TOO_SMALL for label, ok in zip(labels, placed,
                                                                          strict=True)]
    return FunnelResult(units=table, p0=p0, dispersion=dispersion, levels=levels)
