r"""Fitting a nested linear mixed model on its sufficient statistics.

The deviance and its exact gradient come from
:mod:`pipeline.trajectories.engines.sufficient`; this module finds their minimum. From a
previous model's estimates when one applies (its :math:`\hat\theta` and quasi-Newton
Hessian per unit), else from a fit to a whole-cluster subsample of ``START_UNITS`` units
(L-BFGS-B from lme4's default start, settled by the projected quasi-Newton method with
probing off zero variances), whose Hessian scaled by the sampling ratio starts the
quasi-Newton iterations on all the data
(:func:`pipeline.trajectories.engines.large.minimise`, Newton decrement below
``TOLERANCE``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import optimize

from pipeline.trajectories.engines.design import Prepared
from pipeline.trajectories.engines.large import (
    Optimum,
    WarmStart,
    cluster_subsample,
    default_theta,
    hessian,
    lower_bounds,
    minimise,
)
from pipeline.trajectories.engines.sufficient import (
    Estimates,
    Statistics,
    evaluate,
    statistics,
    value_and_gradient,
)

FloatArray = npt.NDArray[np.float64]

__all__ = ["Fit", "SufficientDeviance", "block_values", "fit"]

#: Above this many units (patients) a nested model is fitted here: below it ``mixedlm``'s
#: own optimiser takes about a second, and the demo and the small studies keep its exact
#: path.
MIN_UNITS: Final = 5_000
#: Units in the whole-cluster subsample whose fit starts the optimisation.
START_UNITS: Final = 3_000
#: Quasi-Newton iterations allowed (each costs one evaluation with its exact gradient).
ITERATIONS: Final = 60
#: Newton decrement (deviance units) at which the optimum is reached: tighter than the
#: general registry route's, since an evaluation with its exact gradient is cheap here.
TOLERANCE: Final = 1e-8
#: ... but no tighter than this fraction of the deviance: its value is a sum over a
#: million units, exact to about that (a tighter target makes the line search fail on
#: rounding and a converged fit look unconverged).
RELATIVE_TOLERANCE: Final = 1e-14

@dataclass
class SufficientDeviance:
    """The deviance of :class:`Statistics` and its exact gradient
    (:func:`value_and_gradient`).

    Has the interface of :class:`pipeline.trajectories.engines.large.Deviance` (a call
    gives the value and gradient; ``lower``; ``evaluations`` counts the calls that
    computed), so :func:`pipeline.trajectories.engines.large.minimise` runs on it.
    """

    stats: Statistics
    reml: bool
    lower: FloatArray
    evaluations: int = 0
    last: tuple[bytes, float, FloatArray] | None = field(default=None, repr=False)

    def __call__(self, theta: FloatArray) -> tuple[float, FloatArray]:
        theta = np.asarray(theta, dtype=np.float64)
        key = theta.tobytes()
        if self.last is not None and self.last[0] == key:
            return self.last[1], self.last[2].copy()
        self.evaluations += 1
        try:
            value, gradient = value_and_gradient(self.stats, theta, self.reml)
        except np.linalg.LinAlgError:
            # theta so far out that the fixed-effects information is singular in floating
            # point: no point there (a line search steps back; a fit ending here failed)
            value, gradient = np.inf, np.zeros(theta.size)
        self.last = (key, value, gradient.copy())
        return value, gradient


def lbfgsb(deviance: SufficientDeviance, theta: FloatArray) -> FloatArray:
    """A first optimum from ``theta`` by L-BFGS-B (the start of the quasi-Newton polish)."""
    bounds = [(None if not np.isfinite(low) else float(low), None) for low in deviance.lower]
    found = optimize.minimize(deviance, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-6})
    out: FloatArray = np.asarray(found.x, dtype=np.float64)
    return out


@dataclass(frozen=True, eq=False)
class Fit:
    """Where the optimisation on the statistics ended, and the estimates there."""

    optimum: Optimum
    estimates: Estimates
    evaluations: int
    start: str


def fit(prepared: Prepared, stats: Statistics, warm: WarmStart | None = None) -> Fit:
    r"""Minimise the deviance of ``stats`` (the statistics of ``prepared``).

    From ``warm`` (its :math:`\hat\theta` and Hessian per unit) when it has this model's
    random structure; else (or when that does not converge) from a fit to whole clusters
    holding about ``START_UNITS`` units (L-BFGS-B from lme4's default start, on their own
    statistics), whose Hessian scaled by the sampling ratio starts the quasi-Newton
    updates. Either way :func:`pipeline.trajectories.engines.large.minimise` ends on all
    the data (projected quasi-Newton with a Newton-decrement test, probing off zero
    variances)."""
    reml = prepared.spec.reml
    lower = lower_bounds(prepared.blocks)
    units = prepared.blocks[0].n_levels
    deviance = SufficientDeviance(stats, reml, lower)
    abandoned = ""
    if warm is not None and warm.hessian_per_unit is not None and \
            warm.applies_to(prepared.blocks):
        optimum = minimise(deviance, warm.theta, warm.hessian_per_unit * units, ITERATIONS,
                           _tolerance(deviance, warm.theta))
        if optimum.converged and np.isfinite(optimum.value):
            return Fit(optimum, _estimates(stats, optimum.theta, reml), deviance.evaluations,
                       "the previous model's estimates")
        abandoned = (f" (a start from the previous model's estimates did not converge in "
                     f"{deviance.evaluations} evaluations)")
    sub_stats, ratio, start = stats, 1.0, "lme4's default start"
    if units > 2 * START_UNITS:
        sub, sub_ratio = cluster_subsample(prepared, START_UNITS)
        sampled = statistics(sub)
        if sampled is not None:  # a subsample can lose a level's nesting only by losing units
            sub_stats, ratio = sampled, sub_ratio
            start = f"a fit to {sub.blocks[0].n_levels} units in whole clusters"
    sub_deviance = SufficientDeviance(sub_stats, reml, lower)
    theta = lbfgsb(sub_deviance, default_theta(prepared.blocks))
    # L-BFGS-B can stop on a zero bound (the gradient of an even function vanishes there):
    # the projected quasi-Newton with probing settles the start
    first = minimise(sub_deviance, theta, hessian(sub_deviance, theta, sub_deviance(theta)[1]),
                     ITERATIONS, _tolerance(sub_deviance, theta))
    # a variance that vanished in the subsample starts off its bound (the deviance is even
    # in it there, so the quasi-Newton steps would barely move it)
    start_theta = WarmStart((), first.theta).lifted(lower) if ratio != 1.0 else first.theta
    optimum = minimise(deviance, start_theta, first.hessian * ratio, ITERATIONS,
                       _tolerance(deviance, start_theta))
    if not np.isfinite(optimum.value):
        optimum = dataclasses.replace(optimum, converged=False)
    return Fit(optimum, _estimates(stats, optimum.theta, reml),
               deviance.evaluations + sub_deviance.evaluations, start + abandoned)


def _tolerance(deviance: SufficientDeviance, theta: FloatArray) -> float:
    """``TOLERANCE``, or ``RELATIVE_TOLERANCE`` of the deviance at ``theta`` if larger."""
    value = deviance(theta)[0]
    return max(TOLERANCE, RELATIVE_TOLERANCE * abs(value)) if np.isfinite(value) else TOLERANCE


def _estimates(stats: Statistics, theta: FloatArray, reml: bool) -> Estimates:
    found = evaluate(stats, theta, reml, estimates=True)[1]
    assert found is not None
    return found


def block_values(stats: Statistics, estimates: Estimates, theta: FloatArray
                 ) -> tuple[list[FloatArray], list[FloatArray]]:
    r"""Per model block (``Prepared.blocks`` order): the covariance
    :math:`\hat\sigma^2 \Lambda_k \Lambda_k^\top` and the conditional modes (levels x
    terms)."""
    covs: list[FloatArray] = [np.empty(0)] * len(stats.block_terms)
    runs: list[list[FloatArray]] = [[] for _ in stats.block_terms]
    for level, values in zip(stats.levels, estimates.modes, strict=True):
        at = 0
        for k in level.blocks:  # the innermost level comes in runs of units, in order
            q = stats.block_terms[k]
            factor = np.zeros((q, q))
            factor[np.tril_indices(q)] = theta[stats.theta_slices[k]]
            covs[k] = estimates.sigma2 * factor @ factor.T
            runs[k].append(values[:, at:at + q])
            at += q
    return covs, [np.concatenate(parts) for parts in runs]
