r"""The statsmodels engine: ``MixedLM`` with nested levels as variance components.

Mapping a :class:`pipeline.trajectories.engines.MixedSpec` onto ``MixedLM(endog, exog, groups,
exog_re,
exog_vc)``:

- ``groups`` is the *outermost* level: among the grouping levels that apply to every row,
  the one with the fewest groups in which every other level is nested (each of their
  groups lies within one of its groups). Without such a level the first random level
  (the patient) is used and levels not nested in it are dropped, with a message.
- The outermost level's first block (e.g. a correlated intercept and slope) is
  ``exog_re``.
- Every other term is one variance component in ``exog_vc`` (a ``VCSpec`` built directly
  from the codes, not from formulas): a term of an inner level has one column per inner
  group, a further term of the outermost level (e.g. the therapist slope beside the
  therapist intercept) one column per outer group. Variance components are independent,
  so a correlated intercept and slope of an inner level is fitted with zero correlation;
  a message says so (the ``mixedlm`` engine fits the correlation).

Optimisation follows statsmodels' advice to try another optimiser: BFGS from statsmodels'
default start (its own first choice); when it does not converge, the Hessian is not
negative definite (not a maximum) or the fit may be on the boundary (statsmodels' warning,
or lme4's rule, see :mod:`pipeline.trajectories.engines.tables`), L-BFGS, Powell and then
Nelder-Mead
from scaled starting values (see ``_start``). Neither start suits every model: the default
one traps the optimisers when a slope variance is small and nested components are present,
the scaled one can fail on a plain random intercept and slope. An optimiser can also stop
short and still report convergence without a warning (L-BFGS on the Beat the Blues random
slope model: log-likelihood -1346.01 against lme4's -1341.02), so a clean fit is accepted
only when a second optimiser confirms it (log-likelihoods within ``AGREE_LOGLIK``); the fit
with converged status and the best log-likelihood is kept. Every warning (``ConvergenceWarning``,
boundary and Hessian warnings) is captured into the diagnostics, never filtered.

Given the variance parameters from statsmodels, the fixed effects, their covariance
:math:`(X^\top V^{-1}X)^{-1}` and the random effects :math:`\Sigma Z^\top V^{-1}(y - X\beta)`
are computed group by group with the Woodbury identity, writing :math:`\Sigma = SS^\top`
and :math:`\tilde Z = ZS`:
:math:`V^{-1} = \sigma^{-2}(I - \tilde Z(\sigma^2 I + \tilde Z^\top\tilde Z)^{-1}
\tilde Z^\top)` and :math:`\hat b = S(\sigma^2 I + \tilde Z^\top \tilde Z)^{-1}\tilde Z^\top
r`. This stays defined at a singular :math:`\Sigma` (where statsmodels' own
``random_effects`` fails) and gives lme4's ``vcov``.

References
----------
Lindstrom MJ, Bates DM (1988). Newton-Raphson and EM algorithms for linear mixed-effects
models for repeated-measures data. JASA 83:1014-1022.
Seabold S, Perktold J (2010). statsmodels: econometric and statistical modeling with
Python. Proceedings of the 9th Python in Science Conference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from pipeline.trajectories.engines.design import Block, Prepared
from pipeline.trajectories.engines.large import nested
from pipeline.trajectories.engines.result import MixedFit
from pipeline.trajectories.engines.spec import EngineError
from pipeline.trajectories.engines.tables import RawFit, boundary_terms, build_fit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Optimisers tried in turn, with statsmodels' default start or the scaled one (``_start``).
METHODS: Final = (("bfgs", "default"), ("lbfgs", "scaled"), ("powell", "scaled"),
                  ("nm", "scaled"))
#: statsmodels warnings after which another optimiser is tried: not a maximum, or a
#: variance near zero (statsmodels' own test, absolute variance < 0.01).
RETRY_WARNINGS: Final = ("Hessian matrix at the estimated parameter values is not positive",
                         "MLE may be on the boundary")
#: Two clean fits whose log-likelihoods differ by less than this are the same optimum.
AGREE_LOGLIK: Final = 1e-3
#: statsmodels' warning when an optimiser stopped before convergence.
FAILED_WARNING: Final = "failed to converge"


@dataclass(frozen=True, eq=False)
class _Layout:
    """How the blocks map onto ``groups``, ``exog_re`` and ``exog_vc``."""

    outer: tuple[Block, ...]  # blocks of the outermost level -> exog_re
    inner: tuple[Block, ...]  # single-term blocks -> one variance component each
    groups: IntArray  # outer group code per row
    order: IntArray  # rows sorted by group (stable)
    bounds: IntArray  # group g is order[bounds[g]:bounds[g + 1]]
    notes: tuple[str, ...]


def _nested(inner: Block, outer_codes: IntArray) -> bool:
    """Whether every group of ``inner`` lies within one group of the outer level."""
    return nested(inner.codes, outer_codes)


def _split(block: Block) -> list[Block]:
    """A block as single-term blocks (independent variance components)."""
    return [Block(block.level, (term,), block.columns[:, [j]], block.codes, block.labels, True)
            for j, term in enumerate(block.terms)]


def _outer_level(blocks: tuple[Block, ...]) -> str:
    """The outermost level (see the module docstring), or the first block's level."""
    candidates = sorted({b.level: b for b in blocks if (b.codes >= 0).all()}.values(),
                        key=lambda b: b.n_levels)
    for candidate in candidates:
        if all(b.level == candidate.level or _nested(b, candidate.codes) for b in blocks):
            return candidate.level
    if not (blocks[0].codes >= 0).all():
        raise EngineError("statsmodels engine: no grouping level applies to every row")
    return blocks[0].level


def _layout(prepared: Prepared) -> _Layout:
    """Assign blocks to ``groups``/``exog_re``/``exog_vc``; note what cannot be kept."""
    level = _outer_level(prepared.blocks)
    first = next(b for b in prepared.blocks if b.level == level and (b.codes >= 0).all())
    groups = first.codes
    notes: list[str] = []
    inner: list[Block] = []
    for block in prepared.blocks:
        if block is first:
            continue
        if not _nested(block, groups):
            notes.append(f"statsmodels: {block.level} is not nested in {level}; its "
                         f"variance component was dropped (use engine mixedlm)")
            continue
        if len(block.terms) > 1:
            notes.append(f"statsmodels: the correlation of {', '.join(block.terms)} within "
                         f"{block.level} cannot be estimated alongside {level}; fitted as "
                         f"independent variance components (engine mixedlm fits it)")
        inner += _split(block)
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(first.n_levels + 1))
    return _Layout((first,), tuple(inner), groups, order, bounds.astype(np.int64), tuple(notes))


def _vc_matrix(block: Block, rows: IntArray) -> tuple[FloatArray, IntArray]:
    """Columns of one variance component within a group, and their level codes."""
    codes = block.codes[rows]
    active = np.flatnonzero(codes >= 0)
    levels, position = np.unique(codes[active], return_inverse=True)
    matrix = np.zeros((rows.size, levels.size))
    matrix[active, position] = block.columns[rows[active], 0]
    return matrix, levels.astype(np.int64)


def _vc_spec(layout: _Layout) -> Any:
    """statsmodels ``VCSpec`` of the inner blocks (groups in sorted order).

    The level codes of each component's columns, per group, are attached as ``codes``.
    """
    from statsmodels.regression.mixed_linear_model import VCSpec

    names, colnames, mats, codes = [], [], [], []
    for k, block in enumerate(layout.inner):
        per_group, per_names, per_codes = [], [], []
        for g in range(layout.bounds.size - 1):
            rows = layout.order[layout.bounds[g]:layout.bounds[g + 1]]
            matrix, levels = _vc_matrix(block, rows)
            per_group.append(matrix)
            per_names.append([str(block.labels[c]) for c in levels])
            per_codes.append(levels)
        codes.append(per_codes)
        names.append(f"vc{k}")
        colnames.append(per_names)
        mats.append(per_group)
    spec = VCSpec(names, colnames, mats)
    spec.codes = codes
    return spec


def _exog_re(layout: _Layout) -> FloatArray:
    """``exog_re``: the terms of the outermost level's first block."""
    out: FloatArray = np.column_stack([b.columns for b in layout.outer])
    return out


def _start(layout: _Layout, k_fe: int) -> Any:
    """Starting values: each variance (relative to the residual) at 1 / mean(term^2).

    An intercept starts at the residual variance (lme4's default, theta = 1); a slope on
    weeks starts where its contribution is of that size, rather than at a variance per
    week squared equal to the residual variance, from which statsmodels' optimisers are
    easily trapped.
    """
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    def relative(column: FloatArray) -> float:
        used = column[column != 0]
        return float(1.0 / np.mean(used**2)) if used.size else 1.0

    outer = layout.outer[0].columns
    cov_re = np.diag([relative(outer[:, j]) for j in range(outer.shape[1])])
    vcomp = np.array([relative(b.columns[:, 0]) for b in layout.inner])
    return MixedLMParams.from_components(fe_params=np.zeros(k_fe), cov_re=cov_re, vcomp=vcomp)


def _attempt(model: Any, reml: bool, method: str, start: Any) -> tuple[Any | None, list[str]]:
    """One ``MixedLM.fit``; returns the result (None if it raised) and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = model.fit(reml=reml, method=[method], start_params=start,
                               full_output=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return None, [f"statsmodels ({method}): fit failed: {exc}"]
    return result, [f"statsmodels ({method}): {w.message}" for w in caught]


def _factor(cov: FloatArray) -> FloatArray:
    """``S`` with ``S S' = cov`` (eigen-decomposition; defined for singular ``cov``)."""
    values, vectors = np.linalg.eigh(cov)
    out: FloatArray = vectors * np.sqrt(np.clip(values, 0.0, None))
    return out


@dataclass
class _Estimates:
    """Accumulators of the group-by-group GLS pass."""

    xtvx: FloatArray
    xtvy: FloatArray
    weights: list[FloatArray]  # per group: w with b = S w


def _group_terms(layout: _Layout, exog_re: FloatArray, vcs: Any, g: int,
                 s_re: FloatArray, vc_sd: FloatArray) -> tuple[IntArray, FloatArray]:
    rows = layout.order[layout.bounds[g]:layout.bounds[g + 1]]
    parts = [exog_re[rows] @ s_re]
    parts += [vcs.mats[k][g] * vc_sd[k] for k in range(len(layout.inner))]
    return rows, np.hstack(parts)


def _gls(prepared: Prepared, layout: _Layout, vcs: Any, params: tuple[FloatArray, FloatArray,
         float]) -> tuple[FloatArray, FloatArray, FloatArray, list[FloatArray]]:
    """beta, cov(beta), fitted values and per-group weights ``w`` (see module docstring)."""
    cov_re, vcomp, sigma2 = params
    exog_re = _exog_re(layout)
    s_re, vc_sd = _factor(cov_re), np.sqrt(np.clip(vcomp, 0.0, None))
    k = prepared.X.shape[1]
    acc = _Estimates(np.zeros((k, k)), np.zeros(k), [])
    solves = []
    for g in range(layout.bounds.size - 1):
        rows, zt = _group_terms(layout, exog_re, vcs, g, s_re, vc_sd)
        x, y = prepared.X[rows], prepared.y[rows]
        a = zt.T @ zt + sigma2 * np.eye(zt.shape[1])
        solve_x = np.linalg.solve(a, zt.T @ np.column_stack([x, y]))
        zx, zy = zt.T @ x, zt.T @ y
        acc.xtvx += (x.T @ x - zx.T @ solve_x[:, :k]) / sigma2
        acc.xtvy += (x.T @ y - zx.T @ solve_x[:, k]) / sigma2
        solves.append((rows, zt, solve_x, zy))
    cov_beta = np.asarray(np.linalg.inv(acc.xtvx), dtype=np.float64)
    beta: FloatArray = cov_beta @ acc.xtvy
    fitted = prepared.X @ beta
    for rows, zt, solve_x, _ in solves:
        w = solve_x[:, -1] - solve_x[:, :-1] @ beta
        fitted[rows] += zt @ w
        acc.weights.append(w)
    return beta, cov_beta, fitted, acc.weights


def _blups(layout: _Layout, vcs: Any, params: tuple[FloatArray, FloatArray, float],
           weights: list[FloatArray]) -> list[FloatArray]:
    """Random effects per fitted block (outer blocks first, then inner ones)."""
    cov_re, vcomp, _ = params
    s_re, vc_sd = _factor(cov_re), np.sqrt(np.clip(vcomp, 0.0, None))
    k_re = cov_re.shape[0]
    outer = np.vstack([s_re @ w[:k_re] for w in weights])
    out, start = [], 0
    for block in layout.outer:
        out.append(outer[:, start:start + len(block.terms)])
        start += len(block.terms)
    for k, block in enumerate(layout.inner):
        values = np.zeros((block.n_levels, 1))
        for g, w in enumerate(weights):
            offset = k_re + sum(vcs.mats[j][g].shape[1] for j in range(k))
            codes = vcs.codes[k][g]
            values[codes, 0] = vc_sd[k] * w[offset:offset + codes.size]
        out.append(values)
    return out


def _params(result: Any) -> tuple[FloatArray, FloatArray, float]:
    cov_re = np.atleast_2d(np.asarray(result.cov_re, dtype=np.float64))
    return cov_re, np.asarray(result.vcomp, dtype=np.float64), float(result.scale)


def _covs(layout: _Layout, params: tuple[FloatArray, FloatArray, float]) -> list[FloatArray]:
    cov_re, vcomp, _ = params
    covs, start = [], 0
    for block in layout.outer:
        size = len(block.terms)
        covs.append(cov_re[start:start + size, start:start + size])
        start += size
    covs += [np.array([[v]]) for v in vcomp]
    return covs


def _converged(result: Any, caught: list[str]) -> bool:
    """statsmodels' flag, unless the same attempt warned that the optimiser failed to
    converge (its flag can be True then: it reports the last optimiser's status only)."""
    return bool(result.converged) and not any(FAILED_WARNING in note for note in caught)


def _fit_attempts(prepared: Prepared, layout: _Layout, model: Any
                  ) -> tuple[Any, str, list[str], bool]:
    """Run the optimisers in turn; the best result, the optimisers tried, the warnings and
    whether that result converged."""
    blocks = (*layout.outer, *layout.inner)
    notes: list[str] = []
    best: tuple[tuple[bool, float], Any, str] | None = None
    tried: list[str] = []
    confirmed: float | None = None
    starts = {"default": None, "scaled": _start(layout, prepared.X.shape[1])}
    for method, start in METHODS:
        result, caught = _attempt(model, prepared.spec.reml, method, starts[start])
        notes += caught
        tried.append(method)
        if result is None:
            continue
        converged = _converged(result, caught)
        key = (not converged, -float(result.llf))
        if best is None or key < best[0]:
            best = (key, result, " -> ".join(tried))
        params = _params(result)
        not_maximum = any(w in note for note in caught for w in RETRY_WARNINGS)
        clean = converged and not not_maximum and not boundary_terms(
            blocks, _covs(layout, params), params[2])
        if clean and confirmed is not None and abs(confirmed - float(result.llf)) < AGREE_LOGLIK:
            break
        if clean:
            confirmed = float(result.llf)
    if best is None:
        raise EngineError("statsmodels: every optimiser failed; " + "; ".join(notes))
    return best[1], best[2], notes, not best[0][0]


def fit_prepared(prepared: Prepared) -> MixedFit:
    """Fit a prepared model with statsmodels ``MixedLM`` (see the module docstring)."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    layout = _layout(prepared)
    vcs = _vc_spec(layout)
    model = MixedLM(prepared.y, prepared.X, groups=layout.groups, exog_re=_exog_re(layout),
                    exog_vc=vcs)
    result, optimizer, notes, converged = _fit_attempts(prepared, layout, model)
    params = _params(result)
    beta, cov_beta, fitted, weights = _gls(prepared, layout, vcs, params)
    history = getattr(result, "hist", None) or [{}]
    raw = RawFit(
        engine="statsmodels", beta=beta, cov_beta=cov_beta, sigma2=params[2],
        blocks=(*layout.outer, *layout.inner), block_cov=tuple(_covs(layout, params)),
        blups=tuple(_blups(layout, vcs, params, weights)), fitted=fitted,
        loglik=float(result.llf), converged=converged, optimizer=optimizer,
        iterations=int(history[-1].get("iterations", history[-1].get("nit", -1)) or -1),
        warnings=(*layout.notes, *notes))
    return build_fit(prepared, raw)
