"""``engines/mixedlm_adapter.py`` against ``mixedlm``'s public API.

Each function of the adapter relies on a ``mixedlm`` internal; each test computes the same
thing through the public interface (``lmer``, ``lFormula``, ``mkLmerDevfun``,
``optimizeLmer``, ``mkLmerMod``, ``LmerResult.vcov``) on lme4's ``sleepstudy`` data
(``Reaction ~ Days + (Days | Subject)``, Belenky et al. 2003; shipped with ``mixedlm``), so
an upgrade that changes an internal fails here rather than in a report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.trajectories.engines import large, mixedlm_adapter

mixedlm = pytest.importorskip("mixedlm")

FORMULA = "Reaction ~ Days + (Days | Subject)"
#: The same model with the column names the engine hands over (mixedlm_engine._formula).
HANDED_OVER = "y ~ 0 + x0 + x1 + (0 + z0_0 + z0_1 | g0)"


def _parsed() -> Any:
    return mixedlm.lFormula(FORMULA, mixedlm.load_sleepstudy())


def _devfun() -> Any:
    return mixedlm.mkLmerDevfun(_parsed())


def test_fit_of_handed_over_matrices_matches_lmer() -> None:
    parsed = _parsed()
    levels = parsed.matrices.random_structures[0].n_levels
    matrices = mixedlm_adapter.model_matrices(
        np.asarray(parsed.y, dtype=np.float64), np.asarray(parsed.X, dtype=np.float64),
        parsed.Z.tocsc(), [(levels, 2)])
    ours = mixedlm_adapter.fit_matrices(matrices, HANDED_OVER, True, mixedlm.lmerControl(),
                                        None)
    public = mixedlm.lmer(FORMULA, mixedlm.load_sleepstudy(), control=mixedlm.lmerControl())
    assert np.asarray(ours.theta) == pytest.approx(np.asarray(public.theta), rel=1e-8)
    assert np.asarray(ours.beta) == pytest.approx(np.asarray(public.beta), rel=1e-10)
    assert float(ours.sigma) == pytest.approx(float(public.sigma), rel=1e-10)
    assert float(ours.logLik().value) == pytest.approx(float(public.logLik().value), rel=1e-12)
    # lme4: fixef 251.405, 10.467; REML criterion 1743.6
    assert np.asarray(ours.beta) == pytest.approx([251.405105, 10.467286], rel=1e-6)


def test_value_and_gradient_match_the_public_deviance() -> None:
    devfun = _devfun()
    theta = np.array([0.9, 0.05, 0.3])
    value, gradient = mixedlm_adapter.value_and_gradient(devfun, theta)
    assert value == pytest.approx(devfun(theta), rel=1e-12)
    step = 1e-6
    central = np.array([(devfun(theta + step * e) - devfun(theta - step * e)) / (2 * step)
                        for e in np.eye(theta.size)])
    assert gradient == pytest.approx(central, rel=1e-5, abs=1e-6)


def test_final_evaluation_matches_mk_lmer_mod_and_vcov() -> None:
    devfun = _devfun()
    optimum = mixedlm.optimizeLmer(devfun)
    public = mixedlm.mkLmerMod(devfun, optimum)
    core = mixedlm_adapter.final_evaluation(devfun, optimum.theta)
    assert np.asarray(core.beta) == pytest.approx(np.asarray(public.beta), rel=1e-12)
    assert float(core.sigma) == pytest.approx(float(public.sigma), rel=1e-12)
    assert float(core.deviance) == pytest.approx(float(public.deviance), rel=1e-12)
    vcov = core.sigma**2 * np.linalg.inv(core.fixed_information)
    assert vcov == pytest.approx(np.asarray(public.vcov()), rel=1e-8)


def test_released_random_matrix_leaves_the_deviance_unchanged() -> None:
    devfun = _devfun()
    theta = np.array([0.9, 0.05, 0.3])
    before = mixedlm_adapter.value_and_gradient(devfun, theta)
    mixedlm_adapter.release_random_matrix(devfun)
    assert devfun.parsed.matrices.Z.nnz == 0
    after = mixedlm_adapter.value_and_gradient(devfun, theta)
    assert after[0] == before[0]
    assert np.array_equal(after[1], before[1])


def test_registry_scale_deviance_uses_the_public_bounds_and_result() -> None:
    parsed = _parsed()
    deviance = large.Deviance(parsed.matrices, True, FORMULA)
    bounds = _devfun().get_bounds()
    assert deviance.lower.tolist() == [b[0] if b[0] is not None else -np.inf for b in bounds]
    optimum = mixedlm.optimizeLmer(_devfun())
    result = large.Optimum(np.asarray(optimum.theta), np.zeros(3), True, 1, np.eye(3),
                           float(optimum.deviance))
    fitted, vcov = large.result_at(deviance, result, mixedlm.lmerControl())
    public = mixedlm.mkLmerMod(_devfun(), optimum)
    assert np.asarray(fitted.beta) == pytest.approx(np.asarray(public.beta), rel=1e-12)
    assert vcov == pytest.approx(np.asarray(public.vcov()), rel=1e-8)
    assert fitted.at_boundary is large.on_a_bound(np.asarray(optimum.theta), deviance.lower)
    assert large.on_a_bound(np.array([1e-7, 0.3]), np.array([0.0, -np.inf]))
    assert not large.on_a_bound(np.array([0.5, -1e-7]), np.array([0.0, -np.inf]))
