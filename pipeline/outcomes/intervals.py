"""Confidence intervals of a proportion (Wilson score) and of a mean (Student t).

Wilson score interval for ``events / n`` at level ``1 - alpha``, with ``z = z_{1-alpha/2}``::

    (p + z^2/(2n) -/+ z * sqrt(p(1-p)/n + z^2/(4n^2))) / (1 + z^2/n)

It keeps its coverage near the nominal level for small ``n`` and rates near 0 or 1, where
the Wald interval fails (Newcombe 1998). The mean's interval is
``mean -/+ t_{1-alpha/2, n-1} * sd / sqrt(n)``.

References
----------
Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
JASA 22:209-212.
Newcombe RG (1998). Two-sided confidence intervals for the single proportion: comparison
of seven methods. Statistics in Medicine 17:857-872.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------
# Wilson interval
# --------------------------------------------------------------------------------------


def wilson_interval(
    events: npt.ArrayLike, n: npt.ArrayLike, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    r"""Wilson score interval for binomial proportions, vectorised.

    .. math::

        \frac{\hat p + z^2/(2n)}{1 + z^2/n} \pm
        \frac{z}{1 + z^2/n}\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}},
        \qquad \hat p = x/n,\; z = \Phi^{-1}(1 - \alpha/2).

    Computed by ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.
    Unlike the Wald interval it stays inside [0, 1] and keeps close to nominal coverage for
    small ``n`` and proportions near 0 or 1 (Newcombe 1998).

    Parameters
    ----------
    events, n : array_like
        Numbers of events and of trials (broadcast against each other).
    alpha : float
        One minus the confidence level.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper limits, float arrays of the broadcast shape; NaN where ``n == 0``.

    References
    ----------
    Wilson EB (1927). JASA 22:209-212. Newcombe RG (1998). Stat Med 17:857-872.

    Examples
    --------
    >>> low, high = wilson_interval([8, 0, 3], [10, 10, 0])
    >>> np.round(low, 4).tolist(), np.round(high, 4).tolist()
    ([0.4902, 0.0, nan], [0.9433, 0.2775, nan])
    """
    x, trials = np.broadcast_arrays(
        np.asarray(events, dtype=float), np.asarray(n, dtype=float)
    )
    empty = ~(trials > 0)
    safe_trials = np.where(empty, 1.0, trials)
    safe_events = np.where(empty, 0.0, x)
    low, high = proportion_confint(safe_events, safe_trials, alpha=alpha, method="wilson")
    # exact at the edges: statsmodels' closed form leaves ~1e-16 beyond 0 and 1
    low_arr = np.where(safe_events <= 0, 0.0, np.clip(np.asarray(low, dtype=float), 0, 1))
    high_arr = np.where(safe_events >= safe_trials, 1.0,
                        np.clip(np.asarray(high, dtype=float), 0, 1))
    low_arr = np.where(empty, np.nan, low_arr)
    high_arr = np.where(empty, np.nan, high_arr)
    return low_arr.astype(np.float64), high_arr.astype(np.float64)


# --------------------------------------------------------------------------------------
# t interval of a mean
# --------------------------------------------------------------------------------------


def t_interval(
    mean: pd.Series, sd: pd.Series, n: pd.Series, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    """``mean -/+ t_{1-alpha/2, n-1} * sd / sqrt(n)``; NaN when ``n < 2``."""
    count = n.to_numpy(dtype=float)
    dof = np.where(count >= 2, count - 1, np.nan)
    half = stats.t.ppf(1 - alpha / 2, dof) * sd.to_numpy(dtype=float) / np.sqrt(count)
    centre = mean.to_numpy(dtype=float)
    return (centre - half).astype(np.float64), (centre + half).astype(np.float64)
