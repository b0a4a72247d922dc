r"""Registry-scale fits with ``mixedlm``: few full-data evaluations of the deviance.

On a million patients one evaluation of the profiled REML deviance and its gradient costs
seconds, and a general-purpose optimiser from a default start needs 40-150 of them. Here:

1. *Cluster subsample.* Whole clusters of the outermost grouping level that applies to every
   row (the therapist when present, else the patient) are drawn at random (fixed seed) until
   ``SUBSAMPLE_UNITS`` units are included, so every level keeps its structure. The model is
   fitted on them (L-BFGS-B with exact gradients from lme4's default start), giving
   :math:`\hat\theta_s`, and the Hessian :math:`H_s` of the subsample deviance at
   :math:`\hat\theta_s` is taken by forward differences of the exact gradient.
2. *Quasi-Newton on all data.* Deviance information grows in proportion to the number of
   clusters, so :math:`H_0 = H_s \cdot N / n_s` (units) approximates the full-data Hessian.
   Steps :math:`-H_k^{-1} g_k` from :math:`\hat\theta_s`, halved until the Armijo condition
   holds and kept within the bounds (variances >= 0), with BFGS updates of :math:`H_k`,
   stop when the Newton decrement :math:`g^\top H^{-1} g / 2` falls below
   ``TOLERANCE`` deviance units (the log-likelihood is then within about 1e-6 of its
   maximum). This takes a handful of full-data evaluations. A parameter on its bound (a
   zero variance, common in a subsample) whose gradient points outwards is held there and
   the step and decrement use the others (projected Newton; Bertsekas 1982); a Hessian
   that is not positive definite has its eigenvalues replaced by their absolute values
   (Nocedal and Wright 2006, 3.4). Because the deviance is even in a scalar
   :math:`\theta`, its gradient vanishes on that bound whether or not the optimum is there;
   a converged point with a parameter on its bound is therefore probed just off the bound
   and the iterations restarted from any lower point (:func:`off_the_bound`).
3. The estimates are extracted at the final :math:`\theta` exactly as ``mixedlm`` does after
   its own optimiser (one more evaluation), with :math:`\mathrm{vcov}(\hat\beta) =
   \hat\sigma^2 I_\beta^{-1}` from the fixed-effects information :math:`I_\beta =
   X^\top (V/\sigma^2)^{-1} X` of that evaluation (what ``LmerResult.vcov`` computes, without
   a second pass over the data).

When the iterations do not converge, ``None`` is returned and the caller falls back to
``mixedlm``'s optimiser from the best point reached.

*Warm start.* Models that share a random structure (the growth model and its sensitivity
analyses) have similar covariance parameters. A :class:`WarmStart` carries the optimum
:math:`\hat\theta` of one fit and the final BFGS Hessian per unit; the next fit starts
step 2 from them, with :math:`H_0` rescaled to its own number of units, and skips step 1.
The start only changes the path, not the optimum: the same convergence test applies, and
when it fails the subsample route is taken as usual.

References
----------
Bertsekas DP (1982). Projected Newton methods for optimization problems with simple
constraints. SIAM Journal on Control and Optimization 20:221-246.
Nocedal J, Wright SJ (2006). Numerical Optimization, 2nd ed. Springer (ch. 3, 6: line
search, BFGS).
Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using
lme4. Journal of Statistical Software 67(1):1-48 (the profiled deviance).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from pipeline.trajectories.engines import mixedlm_adapter
from pipeline.trajectories.engines.design import Block, Prepared

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
LARGE_UNITS: Final = 50_000
SUBSAMPLE_UNITS: Final = 20_000
SEED: Final = 20261122
STEP: Final = 1e-5
ITERATIONS: Final = 15
TOLERANCE: Final = 1e-6
#: A parameter within this of its lower bound is on it.
BOUND: Final = 1e-10
#: Relative standard deviations tried off a zero bound (:func:`off_the_bound`).
PROBES: Final = (0.001, 0.01, 0.1)
#: A parameter this close to its bound is probed (optimisers stop near, not on, it).
NEAR_BOUND: Final = 1e-4


#: Fewer sampled clusters than this and the subsample is drawn by units instead.
MIN_SUBSAMPLE_CLUSTERS = 8


def default_theta(blocks: tuple[Block, ...]) -> FloatArray:
    """lme4's default start: relative Cholesky factors equal to the identity."""
    theta: list[float] = []
    for block in blocks:
        q = len(block.terms)
        theta += [1.0 if i == j else 0.0 for i in range(q) for j in range(i + 1)]
    return np.asarray(theta)


def lower_bounds(blocks: tuple[Block, ...]) -> FloatArray:
    """Bounds of :func:`default_theta`'s parameters: 0 on the diagonals, none elsewhere."""
    return np.where(default_theta(blocks) == 1.0, 0.0, -np.inf)


def nested(inner: IntArray, outer: IntArray) -> bool:
    """Whether each inner code (>= 0) occurs with a single outer code (O(n), no sorting)."""
    active = inner >= 0
    first = np.full(int(inner.max(initial=-1)) + 1, -1, dtype=np.int64)
    first[inner[active]] = outer[active]
    return bool((first[inner[active]] == outer[active]).all())


def _clusters(prepared: Prepared) -> IntArray:
    """Codes of the outermost level applying to every row in which the units are nested."""
    unit = prepared.blocks[0]
    best, size = unit.codes, unit.n_levels
    for block in prepared.blocks[1:]:
        if block.n_levels < size and (block.codes >= 0).all() and nested(unit.codes,
                                                                          block.codes):
            best, size = block.codes, block.n_levels
    return best


def subset(prepared: Prepared, rows: IntArray) -> Prepared:
    """The prepared model restricted to ``rows``, levels renumbered to those present."""
    blocks = []
    for block in prepared.blocks:
        codes = block.codes[rows]
        active = codes >= 0
        new_codes = np.full(rows.size, -1, dtype=np.int64)
        present, new_codes[active] = np.unique(codes[active], return_inverse=True)
        blocks.append(Block(block.level, block.terms, block.columns[rows], new_codes,
                            block.labels[present], block.correlated))
    return Prepared(prepared.spec, prepared.y[rows], prepared.X[rows], prepared.design,
                    tuple(blocks), prepared.index[rows], prepared.n_patients, ())


def cluster_subsample(prepared: Prepared, target: int | None = None) -> tuple[Prepared, float]:
    """Whole clusters drawn at random until ``target`` units (default ``SUBSAMPLE_UNITS``);
    the sampling ratio."""
    target = SUBSAMPLE_UNITS if target is None else target
    clusters = _clusters(prepared)
    unit = prepared.blocks[0]
    order = np.random.default_rng(SEED).permutation(int(clusters.max()) + 1)
    first_unit_cluster = np.full(unit.n_levels, -1, dtype=np.int64)
    first_unit_cluster[unit.codes] = clusters
    units_per_cluster = np.bincount(first_unit_cluster, minlength=order.size)
    taken = order[: int(np.searchsorted(np.cumsum(units_per_cluster[order]),
                                        target)) + 1]
    chosen = np.zeros(order.size, dtype=bool)
    chosen[taken] = True
    rows = np.flatnonzero(chosen[clusters])
    if taken.size < MIN_SUBSAMPLE_CLUSTERS:
        # few, very large clusters (30 therapists for a million patients, say): whole
        # clusters would leave a grouping level with a single level, so sample whole
        # units (patients) instead; every therapist stays, groups keep some members
        units = np.random.default_rng(SEED).permutation(unit.n_levels)[:target]
        keep = np.zeros(unit.n_levels, dtype=bool)
        keep[units] = True
        rows = np.flatnonzero(keep[unit.codes])
    sub = subset(prepared, rows)
    return sub, unit.n_levels / sub.blocks[0].n_levels


class Objective(Protocol):
    r"""What the quasi-Newton iterations minimise: a call gives the deviance and its
    gradient at :math:`\theta`; ``lower`` bounds :math:`\theta`; ``evaluations`` counts
    the passes over the data (:class:`Deviance`, or the fit on sufficient statistics,
    :class:`pipeline.trajectories.engines.sufficient_fit.SufficientDeviance`)."""

    lower: FloatArray
    evaluations: int

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]: ...


@dataclass
class Deviance:
    r"""The profiled (RE)ML deviance of ``mixedlm`` model matrices, counting evaluations.

    A public ``mixedlm.mkLmerDevfun`` deviance function; its exact gradient and the
    release of our copy of Z go through :mod:`pipeline.trajectories.engines.mixedlm_adapter`.
    The last evaluation is remembered: a restart from a probed point
    (:func:`off_the_bound`) begins where the probe already evaluated, and asking again for
    the same :math:`\theta` costs nothing (the function is deterministic, so the numbers
    are the same; ``evaluations`` counts the passes over the data).
    """

    matrices: Any
    reml: bool
    formula: str
    function: Any = field(init=False)
    lower: FloatArray = field(init=False)
    evaluations: int = 0
    last: tuple[bytes, float, FloatArray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        import mixedlm

        parsed = mixedlm.LmerParsedFormula(formula=mixedlm.parse_formula(self.formula),
                                           matrices=self.matrices, REML=self.reml)
        self.function = mixedlm.mkLmerDevfun(parsed)
        # The native design now holds its own copy of Z; ours is not needed any more (the
        # fitted values are computed from the blocks), so free it at registry scale.
        mixedlm_adapter.release_random_matrix(self.function)
        bounds = self.function.get_bounds()
        self.lower = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        key = np.asarray(theta, dtype=np.float64).tobytes()
        if self.last is not None and self.last[0] == key:
            return self.last[1], self.last[2].copy()
        self.evaluations += 1
        value, gradient = mixedlm_adapter.value_and_gradient(self.function, theta)
        self.last = (key, value, gradient.copy())
        return value, gradient


def hessian(deviance: Objective, theta: FloatArray, gradient: FloatArray) -> FloatArray:
    """Forward-difference Hessian of the deviance from its exact gradient (symmetrised)."""
    out = np.empty((theta.size, theta.size))
    for i in range(theta.size):
        step = STEP * max(abs(theta[i]), 1e-2)
        shifted = theta.copy()
        shifted[i] += step
        out[:, i] = (deviance(shifted)[1] - gradient) / step
    symmetric: FloatArray = (out + out.T) / 2
    return symmetric


def _line_search(deviance: Objective, theta: FloatArray, value: float, gradient: FloatArray,
                 step: FloatArray) -> tuple[FloatArray, float, FloatArray] | None:
    """Backtracking (Armijo) along ``step`` within the bounds; None if nothing decreases."""
    scale = 1.0
    while scale > 1e-4:
        candidate = np.maximum(theta + scale * step, deviance.lower)
        new_value, new_gradient = deviance(candidate)
        if new_value <= value + 1e-4 * float(gradient @ (candidate - theta)):
            return candidate, new_value, new_gradient
        scale /= 2
    return None


@dataclass(frozen=True)
class Optimum:
    """Where the quasi-Newton iterations stopped, with the last Hessian approximation."""

    theta: FloatArray
    gradient: FloatArray
    converged: bool
    iterations: int
    hessian: FloatArray
    value: float


@dataclass(frozen=True, eq=False)
class WarmStart:
    """A start for a related model: its random structure, :math:`\\hat\\theta` and the
    deviance Hessian per unit (see the module docstring).

    Attributes
    ----------
    structure : tuple
        ``(level, terms)`` of each random block, in order; a start applies only to a model
        with the same structure.
    theta : ndarray
        lme4's relative covariance factors at the optimum.
    hessian_per_unit : ndarray or None
        The final quasi-Newton Hessian of the deviance divided by the number of units (None
        after a fit by ``mixedlm``'s own optimiser: that start serves only that optimiser).
    """

    structure: tuple[tuple[str, tuple[str, ...]], ...]
    theta: FloatArray
    hessian_per_unit: FloatArray | None = None

    def applies_to(self, blocks: tuple[Block, ...]) -> bool:
        """Whether ``blocks`` have this start's random structure."""
        return structure(blocks) == self.structure

    def lifted(self, lower: FloatArray) -> FloatArray:
        """:math:`\\theta` with any parameter on its bound moved to ``PROBES[-1]`` above it:
        a gradient-based optimiser cannot leave a zero variance (the deviance is even in
        :math:`\\theta`), so a variance that vanished in the previous model must be free
        to return in this one."""
        theta = self.theta.copy()
        on_bound = theta <= lower + BOUND
        theta[on_bound] = lower[on_bound] + PROBES[-1]
        return theta


def structure(blocks: tuple[Block, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The random structure of ``blocks``: ``(level, terms)`` of each block."""
    return tuple((block.level, tuple(block.terms)) for block in blocks)


def modified(hessian: FloatArray) -> FloatArray:
    """``hessian`` made positive definite: eigenvalues replaced by their absolute values,
    floored at 1e-8 of the largest (Hessian modification; Nocedal and Wright 2006, 3.4)."""
    values, vectors = np.linalg.eigh((hessian + hessian.T) / 2)
    floor = max(1e-8 * float(np.abs(values).max(initial=0.0)), 1e-12)
    out: FloatArray = (vectors * np.maximum(np.abs(values), floor)) @ vectors.T
    return out


def free(theta: FloatArray, gradient: FloatArray, lower: FloatArray) -> npt.NDArray[np.bool_]:
    """Parameters not held at their bound: on it (a variance of zero) with the gradient
    pointing out of the feasible region are held (projected Newton; Bertsekas 1982)."""
    held = (theta <= lower + BOUND) & (gradient > 0)
    return np.asarray(~held)


def quasi_newton(deviance: Objective, theta: FloatArray, hessian0: FloatArray,
                 iterations: int | None = None, tolerance: float | None = None) -> Optimum:
    """Projected BFGS from ``theta`` with initial Hessian ``hessian0`` (module docstring).

    Parameters on their lower bound whose gradient points outwards are held there; the
    Newton step and the decrement use the others, so a boundary optimum (a zero variance)
    converges as an interior one does. At most ``iterations`` steps (default
    ``ITERATIONS``) until the Newton decrement is below ``tolerance`` (default
    ``TOLERANCE``)."""
    iterations = ITERATIONS if iterations is None else iterations
    tolerance = TOLERANCE if tolerance is None else tolerance
    value, gradient = deviance(theta)
    current = modified(hessian0)
    for iteration in range(iterations):
        moving = free(theta, gradient, deviance.lower)
        step = np.zeros_like(theta)
        if moving.any():
            step[moving] = -np.linalg.solve(current[np.ix_(moving, moving)], gradient[moving])
        if float(-gradient @ step) / 2 < tolerance:
            return Optimum(theta, gradient, True, iteration, current, value)
        found = _line_search(deviance, theta, value, gradient, step)
        if found is None:
            return Optimum(theta, gradient, False, iteration, current, value)
        new_theta, value, new_gradient = found
        s, y = new_theta - theta, new_gradient - gradient
        if float(s @ y) > 1e-12:
            hs = current @ s
            current = current - np.outer(hs, hs) / float(s @ hs) + np.outer(y, y) / float(y @ s)
        theta, gradient = new_theta, new_gradient
    return Optimum(theta, gradient, False, iterations, current, value)


def off_the_bound(deviance: Objective, optimum: Optimum) -> FloatArray | None:
    """A point with a lower deviance than ``optimum`` off a zero bound, if there is one.

    The deviance depends on a scalar variance component's :math:`\\theta` through
    :math:`\\theta^2`, so its gradient vanishes at :math:`\\theta = 0` (and nearly so just
    above it) even when the optimum is inside: a start on or near the bound (a subsample
    where the variance vanished) can stop there. Each parameter within ``NEAR_BOUND`` of
    its bound is moved to each of ``PROBES`` above the bound in turn; the first point that
    lowers the deviance by more than ``TOLERANCE`` is returned.
    """
    for k in np.flatnonzero(optimum.theta <= deviance.lower + NEAR_BOUND):
        for probe in PROBES:
            trial = optimum.theta.copy()
            trial[k] = deviance.lower[k] + probe
            if deviance(trial)[0] < optimum.value - TOLERANCE:
                return trial
    return None


def minimise(deviance: Objective, theta: FloatArray, hessian0: FloatArray,
             iterations: int | None = None, tolerance: float | None = None) -> Optimum:
    """:func:`quasi_newton`, restarted from :func:`off_the_bound` while it stops (converged
    or not) with a parameter on or near its bound that is not at its optimum; at most one
    restart per parameter, and a point that can still be improved is never reported as
    converged."""
    optimum = quasi_newton(deviance, theta, hessian0, iterations, tolerance)
    total = optimum.iterations
    for _ in range(theta.size):
        restart = off_the_bound(deviance, optimum)
        if restart is None:
            return dataclasses.replace(optimum, iterations=total)
        optimum = quasi_newton(deviance, restart, optimum.hessian, iterations, tolerance)
        total += optimum.iterations
    improvable = off_the_bound(deviance, optimum) is not None
    return dataclasses.replace(optimum, iterations=total,
                               converged=optimum.converged and not improvable)


def on_a_bound(theta: FloatArray, lower: FloatArray) -> bool:
    """Whether a parameter is within 1e-6 of its (finite) lower bound (``mixedlm``'s
    ``at_boundary`` rule: :math:`|\\theta_i - l_i| < 10^{-6}`)."""
    return bool(np.any(np.isfinite(lower) & (np.abs(theta - lower) < 1e-6)))


def result_at(deviance: Deviance, optimum: Optimum, control: Any,
              start: str = "subsample") -> tuple[Any, FloatArray]:
    """A ``mixedlm`` ``LmerResult`` at the optimum (as ``LmerMod.fit`` builds it) and vcov.

    :math:`\\mathrm{vcov}(\\hat\\beta) = \\hat\\sigma^2 I_\\beta^{-1}` from the fixed-effects
    information of the final evaluation (:func:`mixedlm_adapter.final_evaluation`).
    """
    from mixedlm.models import LmerResult

    theta = optimum.theta
    core = mixedlm_adapter.final_evaluation(deviance.function, theta)
    result = LmerResult(
        formula=deviance.function.parsed.formula, matrices=deviance.matrices, theta=theta,
        beta=core.beta, sigma=core.sigma, u=core.u, deviance=core.deviance, REML=deviance.reml,
        converged=optimum.converged, n_iter=optimum.iterations,
        gradient_norm=float(np.linalg.norm(optimum.gradient)),
        at_boundary=on_a_bound(theta, deviance.lower),
        message=f"quasi-Newton from a {start} fit",
        function_evals=deviance.evaluations, optimizer=f"{start} + quasi-Newton",
        control=control)
    vcov: FloatArray = core.sigma**2 * np.linalg.inv(core.fixed_information)
    return result, vcov
