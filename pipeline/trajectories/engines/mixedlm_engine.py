"""The ``mixedlm`` engine: lme4's penalised least squares formulation with a Rust backend.

The fixed-effects matrix built in :mod:`pipeline.trajectories.engines.design` is handed over
column by
column (``y ~ 0 + x0 + x1 + ...``), so both engines estimate exactly the same terms, and
each random block becomes one lme4 bar term ``(0 + z0 + z1 | g)`` on its own grouping
column (an intercept is a column of ones). Rows to which a variance component does not
apply (e.g. individual patients for the therapy-group component) carry zeros in its term
column and share one placeholder level, which therefore contributes nothing to the
likelihood.

Optimisation: ``mixedlm``'s default (exact-gradient L-BFGS-B with a COBYQA fallback, as
``optimizer="auto"``) from lme4's starting values (relative covariance factors equal to the
identity; ``mixedlm``'s own data-driven start was slower, and on the benchmark cohorts led
to hundreds of COBYQA iterations). With more than ``large.LARGE_UNITS`` units the
registry-scale path of :mod:`pipeline.trajectories.engines.large` is taken (cluster-subsample
fit, then
a few quasi-Newton steps on all data), falling back to the general optimiser. When the
fit does not converge it is refitted with ``Nelder-Mead`` (one of lme4's optimisers) and
then ``Powell``, keeping the converged fit with the best criterion. A singular (boundary)
fit is not refitted: ``optimizer="auto"`` already re-optimises with the derivative-free
COBYQA (a BOBYQA successor, lme4's default) whenever L-BFGS-B leaves a variance near zero,
keeping the lower deviance, so a singular result is the boundary optimum and is reported
as such. Every warning raised on the way is recorded, never filtered.

References
----------
Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using
lme4. Journal of Statistical Software 67(1):1-48.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.trajectories.engines import large, mixedlm_adapter, sufficient, sufficient_fit
from pipeline.trajectories.engines.design import Prepared
from pipeline.trajectories.engines.result import MixedFit
from pipeline.trajectories.engines.tables import RawFit, build_fit

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
OPTIMIZERS: Final = ("auto", "Nelder-Mead", "Powell")


@dataclass(frozen=True)
class _Problem:
    """The data handed to ``mixedlm``: model matrices (direct) or a frame and a formula."""

    formula: str
    matrices: Any | None = None
    frame: pd.DataFrame | None = None


def _formula(prepared: Prepared) -> str:
    """``y ~ 0 + x0 + ... + (0 + z0_0 + z0_1 | g0) + ...`` (names of the handed-over columns)."""
    fixed = " + ".join(f"x{j}" for j in range(prepared.X.shape[1]))
    bars = "".join(
        f" + (0 + {' + '.join(f'z{k}_{j}' for j in range(len(b.terms)))} | g{k})"
        for k, b in enumerate(prepared.blocks))
    return f"y ~ 0 + {fixed}{bars}"


def _random_matrix(prepared: Prepared, rows: IntArray | None) -> Any:
    """Sparse Z (CSC) in lme4's layout: block by block, level-major, terms within level."""
    from scipy import sparse

    n = prepared.y.size if rows is None else rows.size
    values, columns, offset = [], [], 0
    for block in prepared.blocks:
        codes = block.codes if rows is None else block.codes[rows]
        q = len(block.terms)
        for j in range(q):
            term = block.columns[:, j] if rows is None else block.columns[rows, j]
            values.append(np.where(codes >= 0, term, 0.0))
            columns.append(offset + np.maximum(codes, 0) * q + j)
        offset += block.n_levels * q
    data = np.column_stack(values)
    keep = data != 0.0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    csr = sparse.csr_matrix((data[keep], np.column_stack(columns)[keep], indptr),
                            shape=(n, offset))
    return csr.tocsc()


def _matrices(prepared: Prepared, rows: IntArray | None) -> Any:
    """``mixedlm`` model matrices built from ours (no copy of X for the full data)."""
    fixed = prepared.X if rows is None else prepared.X[rows]
    y = prepared.y if rows is None else prepared.y[rows]
    shapes = [(b.n_levels, len(b.terms)) for b in prepared.blocks]
    return mixedlm_adapter.model_matrices(y, fixed, _random_matrix(prepared, rows), shapes)


def _frame(prepared: Prepared, rows: IntArray | None) -> pd.DataFrame:
    """The same data as a frame for ``mixedlm.lmer`` (the public, slower path)."""
    take = slice(None) if rows is None else rows
    columns: dict[str, Any] = {"y": prepared.y[take]}
    for j in range(prepared.X.shape[1]):
        columns[f"x{j}"] = prepared.X[take, j]
    for k, block in enumerate(prepared.blocks):
        codes = block.codes[take].copy()
        codes[codes < 0] = block.n_levels
        columns[f"g{k}"] = codes
        for j in range(len(block.terms)):
            columns[f"z{k}_{j}"] = block.columns[take, j]
    return pd.DataFrame(columns, copy=False)


def _problem(prepared: Prepared, rows: IntArray | None = None) -> _Problem:
    """Model matrices built directly (lean at registry scale), else a frame for ``lmer``."""
    formula = _formula(prepared)
    try:
        return _Problem(formula, matrices=_matrices(prepared, rows))
    except (ImportError, TypeError, AttributeError) as exc:  # a changed mixedlm internal
        logger.warning("mixedlm model matrices not built directly (%s); using lmer()", exc)
        return _Problem(formula, frame=_frame(prepared, rows))


def _control(optimizer: str) -> Any:
    import mixedlm

    return mixedlm.lmerControl(optimizer=optimizer,
                               use_analytic_gradient=optimizer == "L-BFGS-B")


def _lmer(problem: _Problem, reml: bool, optimizer: str,
          start: FloatArray | None) -> tuple[Any, list[str]]:
    """One ``mixedlm`` fit; returns the result and the warnings it raised."""
    import mixedlm

    control = _control(optimizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if problem.matrices is None:
            assert problem.frame is not None
            result = mixedlm.lmer(problem.formula, problem.frame, REML=reml, control=control,
                                  start=start)
        else:
            result = mixedlm_adapter.fit_matrices(problem.matrices, problem.formula, reml,
                                                  control, start)
    return result, [f"mixedlm ({optimizer}): {w.message}" for w in caught]


class _Large(NamedTuple):
    """What the registry-scale path gives: a result and its vcov, or a start for the general
    optimiser; the note for the report; a warm start for the next model."""

    result: Any | None
    vcov: FloatArray | None
    start: FloatArray | None
    note: str
    warm: large.WarmStart | None = None


def _fit_large(prepared: Prepared, problem: _Problem, warm: large.WarmStart | None) -> _Large:
    """Registry-scale fit (:mod:`pipeline.trajectories.engines.large`): from ``warm`` when it
    applies,
    else (or when that does not converge) from a cluster-subsample fit."""
    units = prepared.blocks[0].n_levels
    deviance = large.Deviance(problem.matrices, prepared.spec.reml, problem.formula)
    note = f"mixedlm: {units} units; "
    if warm is not None and warm.hessian_per_unit is not None and \
            warm.applies_to(prepared.blocks):
        optimum = large.minimise(deviance, warm.theta, warm.hessian_per_unit * units)
        if optimum.converged:
            return _at_optimum(deviance, optimum, problem, prepared, "warm start", note + (
                "covariance parameters started from the previous model's estimates, then "
                f"{deviance.evaluations} full-data evaluations (quasi-Newton)"))
        note += (f"a start from the previous model's estimates did not converge in "
                 f"{deviance.evaluations} full-data evaluations; ")
        deviance.evaluations = 0
    tic = time.perf_counter()
    sub, ratio = large.cluster_subsample(prepared)
    sub_problem = _problem(sub)
    sub_result, _ = _lmer(sub_problem, prepared.spec.reml, "L-BFGS-B",
                          large.default_theta(sub.blocks))
    theta = np.asarray(sub_result.theta, dtype=np.float64)
    sub_deviance = large.Deviance(sub_problem.matrices, prepared.spec.reml,
                                  sub_problem.formula)
    hessian = large.hessian(sub_deviance, theta, sub_deviance(theta)[1]) * ratio
    del sub_deviance, sub_result, sub_problem
    # the seconds go to the log only: the note is part of the outputs (same bytes per run)
    logger.info("mixedlm: subsample start fitted in %.1f s", time.perf_counter() - tic)
    note += (f"covariance parameters started from a fit to {sub.blocks[0].n_levels} units in "
             "whole clusters")
    optimum = large.minimise(deviance, theta, hessian)
    note += f", then {deviance.evaluations} full-data evaluations (quasi-Newton)"
    if not optimum.converged:
        return _Large(None, None, optimum.theta, note + " without convergence")
    return _at_optimum(deviance, optimum, problem, prepared, "subsample", note)


def _at_optimum(deviance: large.Deviance, optimum: large.Optimum, problem: _Problem,
                prepared: Prepared, start: str, note: str) -> _Large:
    """The result at a converged optimum, and the warm start it offers the next model."""
    result, vcov = large.result_at(deviance, optimum, _control("L-BFGS-B"), start)
    warm = large.WarmStart(large.structure(prepared.blocks), optimum.theta,
                            optimum.hessian / prepared.blocks[0].n_levels)
    return _Large(result, vcov, None, note, warm)


def _criterion(result: Any) -> float:
    return float(result.deviance if not result.REML else result.REMLcrit())


def _fitted(prepared: Prepared, beta: FloatArray, blups: list[FloatArray]) -> FloatArray:
    """X beta + Z b, computed block by block (without the sparse Z)."""
    fitted: FloatArray = prepared.X @ beta
    for block, values in zip(prepared.blocks, blups, strict=True):
        active = block.codes >= 0
        codes = block.codes[active]
        for j in range(len(block.terms)):
            fitted[active] += block.columns[active, j] * values[codes, j]
    return fitted


def _raw(prepared: Prepared, result: Any, optimizer: str, notes: list[str],
         vcov: FloatArray | None = None) -> RawFit:
    """The engine-neutral estimates of a ``mixedlm`` result."""
    groups = list(result.VarCorr().groups.values())
    covs = tuple(np.atleast_2d(np.asarray(g.cov, dtype=np.float64)) for g in groups)
    ranef = result.ranef()
    blups = []
    for k, block in enumerate(prepared.blocks):
        struct = result.matrices.random_structures[k]
        order = np.array([struct.level_map[code] for code in range(block.n_levels)])
        values = np.column_stack([np.asarray(ranef[f"g{k}"][f"z{k}_{j}"])[order]
                                  for j in range(len(block.terms))])
        blups.append(values.astype(np.float64))
    return RawFit(
        engine="mixedlm", beta=np.asarray(result.beta, dtype=np.float64),
        cov_beta=np.asarray(result.vcov() if vcov is None else vcov, dtype=np.float64),
        sigma2=float(result.sigma) ** 2, blocks=prepared.blocks, block_cov=covs,
        blups=tuple(blups), fitted=_fitted(prepared, np.asarray(result.beta), blups),
        loglik=float(result.logLik().value), converged=bool(result.converged),
        optimizer=optimizer, iterations=int(result.n_iter), warnings=tuple(notes))


def _fit_sufficient(prepared: Prepared, warm: large.WarmStart | None
                    ) -> tuple[MixedFit | None, str]:
    """The fit on per-unit sufficient statistics
    (:mod:`pipeline.trajectories.engines.sufficient`,
    :mod:`pipeline.trajectories.engines.sufficient_fit`) when the levels are nested and it
    converges; else None and why."""
    tic = time.perf_counter()
    stats = sufficient.statistics(prepared)
    if stats is None:
        return None, ""
    units = prepared.blocks[0].n_levels
    found = sufficient_fit.fit(prepared, stats, warm)
    seconds = time.perf_counter() - tic
    if not found.optimum.converged:
        return None, (f"mixedlm: the fit on sufficient statistics of {units} units did not "
                      f"converge in {found.evaluations} evaluations; general route taken")
    note = (f"mixedlm: {units} units, nested random effects fitted on per-unit sufficient "
            f"statistics from {found.start}: {found.evaluations} evaluations of the exact "
            "deviance")
    logger.info("%s (%.1f s)", note, seconds)  # the seconds in the log only, not the tables
    estimates, theta = found.estimates, found.optimum.theta
    covs, blups = sufficient_fit.block_values(stats, estimates, theta)
    raw = RawFit(
        engine="mixedlm", beta=estimates.beta,
        cov_beta=np.asarray(estimates.sigma2 * np.linalg.inv(estimates.fixed_information),
                            dtype=np.float64),
        sigma2=estimates.sigma2, blocks=prepared.blocks, block_cov=tuple(covs),
        blups=tuple(blups), fitted=_fitted(prepared, estimates.beta, blups),
        loglik=-0.5 * estimates.deviance, converged=True,
        optimizer="sufficient statistics + quasi-Newton",
        iterations=found.optimum.iterations, warnings=(note,))
    warm_start = large.WarmStart(large.structure(prepared.blocks), theta,
                                 found.optimum.hessian / units)
    return dataclasses.replace(build_fit(prepared, raw), warm_start=warm_start), note


def fit_prepared(prepared: Prepared, warm: large.WarmStart | None = None) -> MixedFit:
    """Fit a prepared model with ``mixedlm``; retry other optimisers when needed.

    ``warm`` (an earlier fit's ``MixedFit.warm_start``, same random structure) is where the
    optimisation starts instead of lme4's default: the registry-scale path takes its
    quasi-Newton steps from it, the general optimiser starts there (variances that were
    zero lifted off the bound, :meth:`WarmStart.lifted`). The optimum is the same; fewer
    evaluations reach it."""
    notes: list[str] = []
    if prepared.blocks[0].n_levels > sufficient_fit.MIN_UNITS:
        nested, note = _fit_sufficient(prepared, warm)
        if nested is not None:
            return nested
        if note:
            notes.append(note)
    problem = _problem(prepared)
    start: FloatArray | None = large.default_theta(prepared.blocks)
    optimizers: tuple[str, ...] = OPTIMIZERS
    large_path = prepared.blocks[0].n_levels > large.LARGE_UNITS and \
        problem.matrices is not None
    if warm is not None and warm.applies_to(prepared.blocks) and not large_path:
        start = warm.lifted(large.lower_bounds(prepared.blocks))
        notes.append("mixedlm: covariance parameters started from the previous model's "
                     "estimates")
    if large_path:
        registry = _fit_large(prepared, problem, warm)
        notes.append(registry.note)
        logger.info(registry.note)
        if registry.result is not None:
            fitted = build_fit(prepared, _raw(prepared, registry.result,
                                              str(registry.result.optimizer), notes, registry.vcov))
            return dataclasses.replace(fitted, warm_start=registry.warm)
        start = registry.start
        optimizers = ("L-BFGS-B", *OPTIMIZERS)
        # the registry-scale path handed Z to its native deviance and emptied ours (memory):
        # the general optimiser needs the model matrices again
        problem = _problem(prepared)
    best: tuple[tuple[bool, float], Any, str] | None = None
    tried = []
    for optimizer in optimizers:
        result, caught = _lmer(problem, prepared.spec.reml, optimizer, start)
        notes += caught
        tried.append(str(result.optimizer) if optimizer == "auto" else optimizer)
        key = (not result.converged, _criterion(result))
        if best is None or key < best[0]:
            best = (key, result, " -> ".join(tried))
        if result.converged:
            break
        start = np.asarray(result.theta, dtype=np.float64)
    assert best is not None
    _, result, optimizer = best
    fitted = build_fit(prepared, _raw(prepared, result, optimizer, notes))
    return dataclasses.replace(fitted, warm_start=large.WarmStart(
        large.structure(prepared.blocks), np.asarray(result.theta, dtype=np.float64)))
