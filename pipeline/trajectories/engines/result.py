r"""The fitted model in tidy form, the same for every engine, and contrasts of its estimates.

- :class:`MixedFit` -- fixed effects, variance components, diagnostics, fitted values;
- :func:`linear_combinations` -- Wald estimates of :math:`L\hat\beta`.

Imports nothing from the engines at run time (the design and warm-start types are named in
annotations only), so every engine module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from pipeline.trajectories.engines.design import FixedDesign
    from pipeline.trajectories.engines.large import WarmStart
    from pipeline.trajectories.engines.spec import MixedSpec

__all__ = ["Z_95", "MixedFit", "linear_combinations"]

Z_95: Final = float(stats.norm.ppf(0.975))


@dataclass(frozen=True, eq=False)
class MixedFit:
    """A fitted mixed model in tidy form, the same for every engine.

    Attributes
    ----------
    spec : MixedSpec
        The model.
    engine : str
        ``"mixedlm"`` or ``"statsmodels"``.
    fixed : DataFrame
        term, estimate, std_error, ci_low, ci_high, p_value (Wald, 95%). Terms are named
        readably: ``(Intercept)``, ``weeks``, ``format[group]``, ``weeks:format[group]``.
    variance : DataFrame
        level, term, variance, sd, correlation, icc. One row per random term (its variance
        and SD), one ``cor(a, b)`` row per pair of correlated terms (covariance in
        ``variance``, correlation in ``correlation``), the ``Residual`` row, and one ``ICC``
        row per level with a random intercept: that level's intercept variance over the sum
        of all intercept variances and the residual variance (the share of the variance at
        time 0 that lies between units of the level).
    diagnostics : DataFrame
        One row: engine, method, converged, singular, optimizer, iterations, loglik, aic,
        bic, n_obs, n_patients, n_groups (``level=count; ...``), warnings (every warning and
        note, `` | ``-separated).
    fitted : DataFrame
        Indexed like the rows of the data that were used: fitted (with the random effects),
        fitted_fixed (fixed effects only), residual (outcome minus fitted).
    random_effects : dict of str to DataFrame
        Per grouping level, the conditional modes: one row per level value (index), one
        column per term.
    coef : Series
        Fixed-effect estimates by term.
    cov : DataFrame
        Their covariance matrix.
    design : FixedDesign
        Builds the fixed-effects design of new data (for model-based means and contrasts).
    messages : tuple of str
        Notes for the report: dropped rows or terms, warnings, non-convergence, boundary.
    warm_start : WarmStart or None
        From a registry-scale ``mixedlm`` fit: where the next model with the same random
        structure may start (``fit(..., warm_start=...)``;
        :mod:`pipeline.trajectories.engines.large`).
    """

    spec: MixedSpec
    engine: str
    fixed: pd.DataFrame
    variance: pd.DataFrame
    diagnostics: pd.DataFrame
    fitted: pd.DataFrame
    random_effects: dict[str, pd.DataFrame]
    coef: pd.Series
    cov: pd.DataFrame
    design: FixedDesign
    messages: tuple[str, ...] = field(default=())
    warm_start: WarmStart | None = None

    @property
    def converged(self) -> bool:
        """Whether the optimiser reported convergence."""
        return bool(self.diagnostics["converged"].iloc[0])

    @property
    def singular(self) -> bool:
        """Whether a variance is (near) zero or a correlation (near) +-1 (lme4's rule)."""
        return bool(self.diagnostics["singular"].iloc[0])

    def predict(self, newdata: pd.DataFrame) -> pd.DataFrame:
        """Model-based means :math:`x^\\top\\hat\\beta` of new rows with Wald 95% intervals.

        Parameters
        ----------
        newdata : DataFrame
            Values of every fixed-effect variable.

        Returns
        -------
        DataFrame
            estimate, std_error, ci_low, ci_high, indexed like ``newdata``.
        """
        matrix = self.design.matrix(newdata)
        return linear_combinations(self, matrix, newdata.index)


def linear_combinations(fit_: MixedFit, matrix: np.ndarray, index: pd.Index) -> pd.DataFrame:
    r"""Estimates :math:`L\hat\beta` with standard errors :math:`\sqrt{\mathrm{diag}(LVL^\top)}`.

    Parameters
    ----------
    fit_ : MixedFit
        A fitted model.
    matrix : ndarray
        ``L``, one row per combination, one column per fixed-effect term.
    index : Index
        Index of the result.

    Returns
    -------
    DataFrame
        estimate, std_error, ci_low, ci_high, p_value (Wald, against zero).
    """
    beta = fit_.coef.to_numpy(dtype=float)
    cov = fit_.cov.to_numpy(dtype=float)
    estimate = matrix @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", matrix, cov, matrix))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = 2 * stats.norm.sf(np.abs(estimate / se))
    return pd.DataFrame({"estimate": estimate, "std_error": se,
                         "ci_low": estimate - Z_95 * se, "ci_high": estimate + Z_95 * se,
                         "p_value": p_value}, index=index)
