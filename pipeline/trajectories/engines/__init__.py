r"""Linear mixed-effects models behind one small interface, fitted by two engines.

The model
---------
For observation :math:`i` (a score) of unit :math:`j` (a patient), nested in higher levels
(therapy group, therapist),

.. math::

    y = X\beta + \sum_{k} Z_k b_k + \varepsilon, \qquad
    b_k \sim N(0, I_{m_k} \otimes \Sigma_k), \qquad \varepsilon \sim N(0, \sigma^2 I),

where :math:`X` is the fixed-effects design (one row per observation), :math:`Z_k` the
design of random-effect block :math:`k` with :math:`m_k` levels and :math:`\Sigma_k` its
covariance (a full matrix for a correlated intercept and slope, a single variance for a
variance component). In lme4 notation a :class:`MixedSpec` with
``random=(RandomEffect("patient_id", ("1", "weeks")),)`` and
``components=(VarianceComponent("therapist_id"),)`` is
``y ~ fixed + (1 + weeks | patient_id) + (1 | therapist_id)``.

Parameters are estimated by restricted maximum likelihood (REML; Patterson and Thompson
1971) unless ``reml=False`` (maximum likelihood). Fixed effects are the generalised least
squares estimates given the variance parameters, with covariance
:math:`(X^\top V^{-1} X)^{-1}`, :math:`V = \sum_k Z_k (I \otimes \Sigma_k) Z_k^\top +
\sigma^2 I` (as ``vcov`` in lme4); intervals and p-values are Wald (normal) ones, which is
what a registry-sized sample warrants (lme4 itself gives none). Random effects are the
conditional modes (BLUPs) :math:`\hat b = \Sigma Z^\top V^{-1}(y - X\hat\beta)`, and the
fitted values include them (statsmodels' ``predict()`` does not; we never use it).

Engines
-------
``"mixedlm"``
    The ``mixedlm`` package, a port of lme4's penalised least squares formulation (Bates et
    al. 2015) with a sparse Cholesky factorisation in Rust. It fits every spec exactly,
    including a correlated patient intercept and slope alongside nested variance components,
    and matches lme4 to about 1e-6 (``tests/test_engines.py``). Above 50,000 patients a
    registry-scale optimisation path is used (:mod:`pipeline.trajectories.engines._large`).
``"statsmodels"``
    ``statsmodels.regression.mixed_linear_model.MixedLM``, the reference implementation.
    Its ``groups`` must be the outermost level; that level's terms form the (correlated)
    ``exog_re`` block and every other term becomes an independent variance component
    (``exog_vc``). A correlation between terms of an inner level therefore cannot be
    estimated and is fitted as zero (a message says so), and a level not nested in the
    outermost one is dropped (a message says so). It evaluates the likelihood group by
    group in Python, so it is slow with many groups.
``"auto"``
    ``mixedlm`` whenever it is installed: it fits the specified model exactly (statsmodels
    cannot combine the correlated patient block with nested components) and was faster at
    every size measured -- for a patient random intercept and slope only, 0.6 s against
    4.5 s with 2,000 patients and 1.2 s against 20 s with 10,000 (statsmodels grows
    linearly from there, some 35 minutes for a million; with the therapist and group
    components it is slower still). ``statsmodels`` is used when ``mixedlm`` is not
    installed, or as a fallback when ``mixedlm`` raises or does not converge (a message
    records the switch) on at most ``STATSMODELS_MAX_UNITS`` (50,000) patients; above that
    the failure is reported instead, as the fallback would take hours. The choice itself
    does not depend on the size of the data: no size was found at which statsmodels is the
    better engine.

Both engines return the same tables: see :class:`MixedFit`.

References
----------
Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using
lme4. Journal of Statistical Software 67(1):1-48.
Patterson HD, Thompson R (1971). Recovery of inter-block information when block sizes are
unequal. Biometrika 58:545-554.
Laird NM, Ware JH (1982). Random-effects models for longitudinal data. Biometrics
38:963-974.
Seabold S, Perktold J (2010). statsmodels: econometric and statistical modeling with
Python. Proceedings of the 9th Python in Science Conference.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.estimability import require
from pipeline.trajectories.engines import _design
from pipeline.trajectories.engines._design import FixedDesign
from pipeline.trajectories.engines._large import WarmStart
from pipeline.trajectories.engines._tables import RawFit, assemble

__all__ = [
    "ENGINES",
    "EngineError",
    "MixedFit",
    "MixedSpec",
    "RandomEffect",
    "VarianceComponent",
    "WarmStart",
    "check_identifiable",
    "fit",
    "select_engine",
]

logger = logging.getLogger(__name__)

ENGINES: Final = ("auto", "statsmodels", "mixedlm")
Z_95: Final = float(stats.norm.ppf(0.975))
#: Above this many units (patients) ``auto`` does not fall back to statsmodels.
STATSMODELS_MAX_UNITS: Final = 50_000


class EngineError(RuntimeError):
    """A model that no engine could fit; the message says why."""


@dataclass(frozen=True)
class RandomEffect:
    """Random coefficients of one grouping level.

    Parameters
    ----------
    level : str
        Grouping column (e.g. ``patient_id``); ``"a:b"`` is the interaction of two columns.
    terms : tuple of str
        ``"1"`` for the intercept, otherwise numeric columns (e.g. ``"weeks"``).
    correlated : bool
        True: one unstructured covariance matrix (lme4 ``(1 + weeks | g)``); False:
        independent variances (lme4 ``(1 + weeks || g)``).
    """

    level: str
    terms: tuple[str, ...] = ("1",)
    correlated: bool = True


@dataclass(frozen=True)
class VarianceComponent:
    """One variance of a nesting level (therapy group, therapist).

    Parameters
    ----------
    level : str
        Grouping column.
    term : str
        ``"1"`` (a random intercept) or a numeric column (a random slope).
    where : str or None
        A boolean column: the component applies to these rows only (e.g. ``is_group`` for
        the therapy group of group-format patients; lme4 ``(0 + is_group | group_id)``).
    """

    level: str
    term: str = "1"
    where: str | None = None


@dataclass(frozen=True)
class MixedSpec:
    """A linear mixed model: outcome, fixed effects and random-effects structure.

    Parameters
    ----------
    outcome : str
        Outcome column.
    fixed : str
        Right-hand side of the fixed part in Wilkinson-Rogers notation (``formulaic``), e.g.
        ``"weeks * (condition + format) + age"``. Categorical columns use treatment coding
        with the first category (or, for text, the alphabetically first value) as reference.
    random : tuple of RandomEffect
        Random coefficients per grouping level (usually the patient).
    components : tuple of VarianceComponent
        Variance components of nesting levels.
    reml : bool
        REML (default) or maximum likelihood.
    """

    outcome: str
    fixed: str
    random: tuple[RandomEffect, ...]
    components: tuple[VarianceComponent, ...] = ()
    reml: bool = True

    def lme4(self) -> str:
        """The model in lme4 notation (for reports and for the R check)."""
        parts = [self.fixed]
        for effect in self.random:
            terms = " + ".join(effect.terms) if "1" in effect.terms else (
                "0 + " + " + ".join(effect.terms))
            parts.append(f"({terms} {'|' if effect.correlated else '||'} {effect.level})")
        for comp in self.components:
            # a variance component has no intercept beside it: (0 + weeks | therapist_id),
            # never (weeks | therapist_id), which lme4 reads as a correlated intercept too
            term = comp.term if comp.where is None else comp.where
            parts.append(f"({'1' if term == '1' else '0 + ' + term} | {comp.level})")
        return f"{self.outcome} ~ " + " + ".join(parts)


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
        :mod:`pipeline.trajectories.engines._large`).
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


def mixedlm_available() -> bool:
    """Whether the ``mixedlm`` package can be imported."""
    return importlib.util.find_spec("mixedlm") is not None


def select_engine(spec: MixedSpec, data: pd.DataFrame, engine: str = "auto") -> str:
    """The engine that will fit ``spec`` (see the module docstring for the ``auto`` rule).

    Parameters
    ----------
    spec : MixedSpec
        The model (kept for future rules that depend on the structure).
    data : DataFrame
        The data (likewise).
    engine : str
        ``"auto"``, ``"statsmodels"`` or ``"mixedlm"``.

    Returns
    -------
    str
        ``"mixedlm"`` or ``"statsmodels"``.

    Raises
    ------
    ValueError
        For an unknown engine name.
    EngineError
        When ``mixedlm`` is asked for but not installed.
    """
    del spec, data
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "mixedlm" if mixedlm_available() else "statsmodels"
    if engine == "mixedlm" and not mixedlm_available():
        raise EngineError("engine mixedlm requested but the mixedlm package is not installed")
    return engine


def fit(spec: MixedSpec, data: pd.DataFrame, engine: str = "auto",
        warm_start: WarmStart | None = None) -> MixedFit:
    """Fit a linear mixed model with the chosen engine and return tidy results.

    Parameters
    ----------
    spec : MixedSpec
        The model.
    data : DataFrame
        One row per observation; rows missing any variable of the model are left out (a
        message gives the count).
    engine : str
        ``"auto"`` (see the module docstring), ``"statsmodels"`` or ``"mixedlm"``.
    warm_start : WarmStart or None
        ``warm_start`` of an earlier fit with the same random structure: the registry-scale
        ``mixedlm`` path starts there (same optimum, fewer evaluations); ignored otherwise.

    Returns
    -------
    MixedFit
        Estimates, variance components, diagnostics and fitted values.

    Raises
    ------
    EngineError
        If the model cannot be fitted (no complete rows, or every optimiser failed).
    """
    from pipeline.trajectories.engines import mixedlm_engine, statsmodels_engine

    chosen = select_engine(spec, data, engine)
    prepared = _design.prepare(spec, data)
    check_identifiable(prepared)
    tic = time.perf_counter()
    if chosen == "statsmodels":
        result = statsmodels_engine.fit_prepared(prepared)
    else:
        try:
            result = mixedlm_engine.fit_prepared(prepared, warm_start)
        except (EngineError, ValueError, np.linalg.LinAlgError) as exc:
            if engine != "auto" or _too_large_for_statsmodels(prepared):
                raise
            logger.warning("mixedlm failed (%s); refitting with statsmodels", exc)
            fallback = statsmodels_engine.fit_prepared(prepared)
            return _with_note(fallback, f"mixedlm failed ({exc}); fitted with statsmodels")
        if engine == "auto" and not result.converged and not _too_large_for_statsmodels(
                prepared):
            fallback = statsmodels_engine.fit_prepared(prepared)
            if fallback.converged:
                result = _with_note(fallback, "mixedlm did not converge; fitted with statsmodels")
    logger.info("%s fit of %s: %d rows in %.2f s", result.engine, spec.lme4(),
                len(result.fitted), time.perf_counter() - tic)
    return result


def check_identifiable(prepared: _design.Prepared) -> None:
    """Refuse what lme4 refuses: random effects the data cannot identify.

    lme4's default checks (``lmerControl``; Bates et al. 2015, section 2.2), all "stop":

    - ``check.nlev.gtr.1``: every grouping factor has more than one level;
    - ``check.nobs.vs.nlev``: every grouping factor has fewer levels than there are
      observations (one score per patient cannot separate a patient intercept from the
      residual: any split of the variance fits equally well);
    - ``check.nobs.vs.nRE``: for every random-effects term, more observations than random
      effects (levels times terms per level), else the random-effects parameters and the
      residual variance are unidentifiable.

    Raises
    ------
    pipeline.estimability.NotEstimable
        With lme4's reason and what would make the model estimable.
    """
    n_obs = int(prepared.y.size)
    for block in prepared.blocks:
        terms = ["1" if t == "(Intercept)" else t for t in block.terms]
        term = f"({' + '.join(terms)} | {block.level})"
        require(block.n_levels > 1,
                f"{block.level} has only {block.n_levels} level in the data; a random effect "
                "needs more than one (lme4: grouping factors must have > 1 sampled level)",
                f"data from more than one {block.level}, or a model without {term}")
        require(block.n_levels < n_obs,
                f"{block.n_levels:,} levels of {block.level} for {n_obs:,} observations: "
                "the number of levels of each grouping factor must be < number of "
                "observations (lme4), so the variance split is not identified",
                f"repeated scores per {block.level}, or a model without {term}")
        n_effects = block.n_levels * len(block.terms)
        require(n_obs > n_effects,
                f"number of observations ({n_obs:,}) <= number of random effects "
                f"({n_effects:,}) for term {term}; the random-effects parameters and the "
                "residual variance are unidentifiable (lme4)",
                f"more scores per {block.level} than random terms, or a simpler random part "
                f"(e.g. (1 | {block.level}))")


def _too_large_for_statsmodels(prepared: _design.Prepared) -> bool:
    """No statsmodels fallback above ``STATSMODELS_MAX_UNITS`` units (it would take hours)."""
    return bool(prepared.blocks) and prepared.blocks[0].n_levels > STATSMODELS_MAX_UNITS


def _with_note(result: MixedFit, note: str) -> MixedFit:
    """A copy of ``result`` with one more message (also appended to the diagnostics)."""
    diagnostics = result.diagnostics.copy()
    previous = str(diagnostics.at[0, "warnings"])
    diagnostics.at[0, "warnings"] = f"{previous} | {note}" if previous else note
    return MixedFit(result.spec, result.engine, result.fixed, result.variance, diagnostics,
                    result.fitted, result.random_effects, result.coef, result.cov,
                    result.design, (*result.messages, note), result.warm_start)


def build_fit(prepared: _design.Prepared, raw: RawFit) -> MixedFit:
    """The :class:`MixedFit` of an engine's raw estimates (shared by the engines)."""
    fixed, variance, diagnostics, fitted, ranef, messages = assemble(prepared, raw)
    names = list(prepared.names)
    coef = pd.Series(raw.beta, index=names, name="estimate")
    cov = pd.DataFrame(raw.cov_beta, index=names, columns=names)
    return MixedFit(prepared.spec, raw.engine, fixed, variance, diagnostics, fitted, ranef,
                    coef, cov, prepared.design, tuple(messages))
