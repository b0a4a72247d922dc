"""The one module that relies on ``mixedlm`` internals: what, why, and how it is checked.

``mixedlm`` (1.3) offers lme4's modular interface publicly (``lFormula``, ``mkLmerDevfun``,
``optimizeLmer``, ``mkLmerMod``, with ``LmerParsedFormula``, ``LmerDevfun`` and its
``get_bounds()``, ``LmerResult``, ``mixedlm.matrices.ModelMatrices``), and the engines use
only those everywhere else. Four things the engines need are not public; they are here,
each in one small function:

:func:`model_matrices`
    Our design (:mod:`pipeline.trajectories.engines.design`) handed over as
    ``ModelMatrices`` (public) whose random-effects structures are
    ``mixedlm.matrices.design.RandomEffectStructure`` objects (not exported). The public
    route, ``lFormula``/``lmer`` on a data frame, parses a formula and copies every column
    again: at registry scale the slow and memory-hungry part.
:func:`fit_matrices`
    ``LmerMod.fit`` on those matrices: the ``LmerMod`` is made without its constructor
    (which would build matrices from a frame) and given the attributes ``fit`` reads
    (``formula``, ``data``, ``REML``, ``verbose``, ``na_action``, ``contrasts``,
    ``control``, ``matrices``). ``fit`` rather than ``optimizeLmer`` + ``mkLmerMod``
    because it is exactly what ``lmer`` runs (model checks, optimiser options, the
    convergence and singularity warnings the report records).
:func:`value_and_gradient`
    The profiled deviance and its exact gradient from ``mixedlm``'s native evaluator
    (``LMMOptimizer._rust_cache.response.deviance_with_gradient``, what its own L-BFGS-B
    uses); the public ``LmerDevfun.__call__`` gives the value only.
:func:`final_evaluation`, :func:`release_random_matrix`
    The estimates at a given :math:`\\theta` together with the fixed-effects information
    :math:`X^\\top (V/\\sigma^2)^{-1} X` (``LMMOptimizer._final_evaluation``, what
    ``mkLmerMod`` calls but does not return), so :math:`\\mathrm{vcov}(\\hat\\beta)` needs
    no second pass over the data; and, since the native evaluator holds its own copy of
    Z, our Z freed at registry scale (``LmerResult.vcov()`` would need it).

If an upgrade of ``mixedlm`` changes any of these, ``tests/test_engines_adapter.py`` fails:
it checks each function against the public API (``lmer`` on a frame, ``LmerDevfun``
values and their finite differences, ``mkLmerMod`` and ``LmerResult.vcov()``). When the
matrices cannot be built, :mod:`pipeline.trajectories.engines.mixedlm_engine` falls back
to the public ``lmer`` on a frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Evaluation", "final_evaluation", "fit_matrices", "model_matrices",
           "release_random_matrix", "value_and_gradient"]

FloatArray = npt.NDArray[np.float64]


def model_matrices(y: FloatArray, fixed: FloatArray, random: Any,
                   blocks: Sequence[tuple[int, int]]) -> Any:
    """``mixedlm`` model matrices of ``y ~ 0 + x0 + ... + (0 + zk_0 + ... | gk) + ...``.

    Parameters
    ----------
    y : ndarray
        The outcome.
    fixed : ndarray
        X, columns named ``x0, x1, ...``.
    random : scipy.sparse matrix
        Z (CSC) in lme4's layout: block by block, level-major, terms within a level.
    blocks : sequence of (int, int)
        Number of levels and of terms of each random block ``gk`` (codes ``0..n-1``).
    """
    from mixedlm.matrices import ModelMatrices
    from mixedlm.matrices.design import RandomEffectStructure

    structures = [
        RandomEffectStructure(
            grouping_factor=f"g{k}", term_names=[f"z{k}_{j}" for j in range(n_terms)],
            n_levels=n_levels, n_terms=n_terms, correlated=True,
            level_map={code: code for code in range(n_levels)})  # type: ignore[misc]
        for k, (n_levels, n_terms) in enumerate(blocks)]
    return ModelMatrices(
        y=y, X=fixed, Z=random, fixed_names=[f"x{j}" for j in range(fixed.shape[1])],
        random_structures=structures, n_obs=y.size, n_fixed=fixed.shape[1],
        n_random=random.shape[1], weights=np.ones(y.size), offset=np.zeros(y.size))


def fit_matrices(matrices: Any, formula: str, reml: bool, control: Any,
                 start: FloatArray | None) -> Any:
    """``LmerMod.fit`` (what ``mixedlm.lmer`` runs) on ready-made model matrices.

    Returns the ``LmerResult``; warnings are raised as ``lmer`` raises them.
    """
    import mixedlm

    model = mixedlm.LmerMod.__new__(mixedlm.LmerMod)
    model.formula = mixedlm.parse_formula(formula)
    model.data = None  # type: ignore[assignment]
    model.REML, model.verbose = reml, 0
    model.na_action, model.contrasts, model.control = None, None, control
    model.matrices = matrices
    return model.fit(start=start)


def value_and_gradient(devfun: Any, theta: FloatArray) -> tuple[float, FloatArray]:
    """The profiled (RE)ML deviance of a public ``LmerDevfun`` at ``theta``, and its gradient.

    The value equals ``devfun(theta)``; the gradient is exact (native), not a difference.
    """
    value, gradient = devfun.optimizer._rust_cache.response.deviance_with_gradient(
        theta, devfun.parsed.REML)
    return float(value), np.asarray(gradient, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The estimates at one :math:`\\theta` (as ``mkLmerMod`` extracts them).

    Attributes
    ----------
    beta, u : ndarray
        Fixed effects and spherical random effects.
    sigma : float
        Residual standard deviation.
    deviance : float
        The profiled (RE)ML criterion.
    fixed_information : ndarray
        :math:`X^\\top (V/\\sigma^2)^{-1} X`; ``sigma**2 * inv(fixed_information)`` is
        ``LmerResult.vcov()``.
    """

    beta: Any
    sigma: Any
    u: Any
    deviance: Any
    fixed_information: Any


def final_evaluation(devfun: Any, theta: FloatArray) -> Evaluation:
    """:class:`Evaluation` of a public ``LmerDevfun`` at ``theta`` (one native pass)."""
    core = devfun.optimizer._final_evaluation(theta)
    return Evaluation(core.beta, core.sigma, core.u, core.deviance, core.fixed_information)


def release_random_matrix(devfun: Any) -> None:
    """Replace the Z of ``devfun``'s model matrices by an empty one of the same shape.

    The native evaluator built by ``mkLmerDevfun`` holds its own copy of Z, and the
    fitted values are computed from our blocks, so at registry scale ours is freed. The
    matrices can then no longer serve ``LmerResult.vcov()`` or a new ``LmerDevfun``.
    """
    from scipy import sparse

    matrices = devfun.parsed.matrices
    matrices.Z = sparse.csc_matrix(matrices.Z.shape)
