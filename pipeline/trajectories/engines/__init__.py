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
    and matches lme4 to about 1e-6 (``tests/test_engines.py``). Above 5,000 patients a
    model whose levels are nested (patients within therapy groups within therapists) is
    fitted on per-unit sufficient statistics, with an exact gradient and no sparse
    :math:`Z` (:mod:`pipeline.trajectories.engines.sufficient`); other models above
    50,000 patients take a few quasi-Newton steps on ``mixedlm``'s native deviance from a
    subsample fit (:mod:`pipeline.trajectories.engines.large`).
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

Modules
-------
:mod:`~pipeline.trajectories.engines.spec`
    The public model types (:class:`MixedSpec`, :class:`RandomEffect`,
    :class:`VarianceComponent`, :class:`EngineError`).
:mod:`~pipeline.trajectories.engines.result`
    :class:`MixedFit` and :func:`linear_combinations`.
:mod:`~pipeline.trajectories.engines.design`
    Complete rows, the fixed-effects matrix and the random blocks (``prepare``).
:mod:`~pipeline.trajectories.engines.identifiability`
    :func:`check_identifiable` (lme4's refusals).
:mod:`~pipeline.trajectories.engines.tables`
    The tidy tables of an engine's raw estimates (``build_fit``).
:mod:`~pipeline.trajectories.engines.statsmodels_engine`, ``mixedlm_engine``
    The two engines (``fit_prepared``).
:mod:`~pipeline.trajectories.engines.large`
    The registry-scale optimisation path of the ``mixedlm`` engine (:class:`WarmStart`).
:mod:`~pipeline.trajectories.engines.sufficient`, ``sufficient_fit``, ``stacked``
    Nested models at registry scale: the per-unit statistics, the exact deviance and
    gradient on them, their minimisation, and the stacked small-matrix algebra they use.
:mod:`~pipeline.trajectories.engines.mixedlm_adapter`
    The only module that relies on ``mixedlm`` internals (it says which, and why).

This package module only re-exports those names and dispatches: :func:`fit`,
:func:`select_engine`, :func:`mixedlm_available`. The members import the types from
``spec`` and ``result``, never from here, so there is no import cycle among them
(``tests/test_engines_structure.py``).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Final

import numpy as np
import pandas as pd

from pipeline.trajectories.engines import design, mixedlm_engine, statsmodels_engine
from pipeline.trajectories.engines.design import FixedDesign, Prepared
from pipeline.trajectories.engines.identifiability import check_identifiable
from pipeline.trajectories.engines.large import WarmStart
from pipeline.trajectories.engines.result import Z_95, MixedFit, linear_combinations
from pipeline.trajectories.engines.spec import (
    EngineError,
    MixedSpec,
    RandomEffect,
    VarianceComponent,
)
from pipeline.trajectories.engines.tables import build_fit

__all__ = [
    "ENGINES",
    "STATSMODELS_MAX_UNITS",
    "Z_95",
    "EngineError",
    "FixedDesign",
    "MixedFit",
    "MixedSpec",
    "RandomEffect",
    "VarianceComponent",
    "WarmStart",
    "build_fit",
    "check_identifiable",
    "fit",
    "linear_combinations",
    "mixedlm_available",
    "select_engine",
]

logger = logging.getLogger(__name__)

ENGINES: Final = ("auto", "statsmodels", "mixedlm")
#: Above this many units (patients) ``auto`` does not fall back to statsmodels.
STATSMODELS_MAX_UNITS: Final = 50_000


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
    chosen = select_engine(spec, data, engine)
    prepared = design.prepare(spec, data)
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


def _too_large_for_statsmodels(prepared: Prepared) -> bool:
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
