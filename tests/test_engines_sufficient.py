"""Tests for ``pipeline.trajectories.engines.sufficient``: fits on per-unit statistics.

Three independent answers: ``mixedlm``'s native deviance and exact gradient at the same
:math:`\\theta` (to rounding, on the golden data and on generated nested shapes), R lme4's
estimates (``tests/golden/mixed_golden.R``) when the registry-scale route is forced on the
golden cases, and ``mixedlm``'s own optimiser on the same data.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.trajectories import engines
from pipeline.trajectories.engines import (
    MixedSpec,
    RandomEffect,
    VarianceComponent,
    design,
    large,
    mixedlm_adapter,
    mixedlm_engine,
    sufficient,
    sufficient_fit,
)
from tests.test_engines import (
    TOLERANCE,
    _zero_group_variance_data,
    golden,
    golden_case,
    our_variances,
    r_variances,
)

SUFFICIENT = "sufficient statistics + quasi-Newton"


def _native(prepared: design.Prepared, reml: bool) -> large.Deviance:
    problem = mixedlm_engine._problem(prepared)
    return large.Deviance(problem.matrices, reml, problem.formula)


def _random_thetas(prepared: design.Prepared, count: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    lower = large.lower_bounds(prepared.blocks)
    base = large.default_theta(prepared.blocks)
    return [np.where(lower == 0.0, np.abs(base + rng.normal(0, 0.5, base.size)),
                     rng.normal(0, 0.5, base.size)) for _ in range(count)]


def _agrees_with_native(prepared: design.Prepared, seed: int) -> None:
    stats = sufficient.statistics(prepared)
    assert stats is not None
    for reml in (True, False):
        native = _native(prepared, reml)
        for theta in _random_thetas(prepared, 3, seed):
            value, gradient = native(theta)
            ours, our_gradient = sufficient.value_and_gradient(stats, theta, reml)
            assert ours == pytest.approx(value, rel=1e-11)
            assert sufficient.evaluate(stats, theta, reml)[0] == pytest.approx(ours, rel=1e-13)
            np.testing.assert_allclose(our_gradient, gradient, rtol=1e-7,
                                       atol=1e-9 * max(1.0, float(np.abs(gradient).max())))


@pytest.mark.parametrize("case", ["sleepstudy_reml", "sleepstudy_uncorrelated",
                                  "pastes_nested", "demo_growth", "demo_patient_only"])
def test_deviance_and_gradient_equal_mixedlm_native(case: str) -> None:
    """Patient-only, uncorrelated terms, two nested levels (batch/cask) and the demo's
    patient + therapy group + therapist (two blocks on one level) structure."""
    spec, frame = golden_case(case)
    _agrees_with_native(design.prepare(spec, frame), seed=len(case))


def _nested_frame(patients: int, therapists: int, groups: int, seed: int) -> pd.DataFrame:
    """Patients within therapists, group-format patients within groups led by one
    therapist each; uneven numbers of sessions."""
    rng = np.random.default_rng(seed)
    therapist = rng.integers(0, therapists, patients)
    group_of = rng.integers(-1, groups, patients)  # -1: individual format
    group_therapist = rng.integers(0, therapists, max(groups, 1))
    in_group = group_of >= 0
    therapist[in_group] = group_therapist[group_of[in_group]]
    sessions = rng.integers(1, 9, patients)
    patient = np.repeat(np.arange(patients), sessions)
    weeks = np.concatenate([np.sort(rng.uniform(0, 16, k)) for k in sessions])
    score = (15 + rng.normal(0, 3, patients)[patient] - 0.4 * weeks
             + rng.normal(0, 0.5, therapists)[therapist[patient]] + rng.normal(0, 2, patient.size))
    return pd.DataFrame({
        "patient_id": patient, "weeks": weeks, "score": score,
        "age_centred": rng.normal(0, 10, patients)[patient],
        "therapist_id": therapist[patient],
        "is_group": in_group[patient],
        "group_id": np.where(in_group, group_of, -1)[patient].astype(float),
    }).assign(group_id=lambda f: f["group_id"].where(f["is_group"]))


NESTED = MixedSpec("score", "weeks + age_centred", (RandomEffect("patient_id", ("1", "weeks")),),
                   (VarianceComponent("group_id", where="is_group"),
                    VarianceComponent("therapist_id"),
                    VarianceComponent("therapist_id", "weeks")))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients=st.integers(12, 80), therapists=st.integers(2, 6), groups=st.integers(1, 6),
       seed=st.integers(0, 10_000))
def test_generated_nested_shapes_equal_mixedlm_native(patients: int, therapists: int,
                                                      groups: int, seed: int) -> None:
    prepared = design.prepare(NESTED, _nested_frame(patients, therapists, groups, seed))
    if sufficient.statistics(prepared) is None:  # a level of the shape not nested
        raise AssertionError("generated nested shape not recognised as nested")
    _agrees_with_native(prepared, seed)


def test_crossed_levels_are_left_to_the_general_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """A therapy group led by two therapists is not nested: no statistics, and the
    registry-scale fit takes the general sparse route (same answer as mixedlm)."""
    frame = _nested_frame(60, 4, 4, seed=5)
    group_rows = frame.index[frame["is_group"] & (frame["group_id"] == frame.loc[
        frame["is_group"], "group_id"].iloc[0])]
    first_patient = frame.loc[group_rows, "patient_id"].iloc[0]
    moved = frame["patient_id"] == first_patient
    frame.loc[moved, "therapist_id"] = (frame.loc[moved, "therapist_id"] + 1) % 4
    prepared = design.prepare(NESTED, frame)
    assert sufficient.statistics(prepared) is None
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 10)
    monkeypatch.setattr(large, "LARGE_UNITS", 10)
    monkeypatch.setattr(large, "SUBSAMPLE_UNITS", 30)
    fit = engines.fit(NESTED, frame, "mixedlm")
    assert fit.diagnostics.at[0, "optimizer"] != SUFFICIENT


@pytest.mark.parametrize("case", ["sleepstudy_reml", "sleepstudy_ml", "sleepstudy_uncorrelated",
                                  "pastes_nested", "demo_patient_only", "demo_growth"])
def test_registry_route_matches_lme4(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fit on statistics (forced by a low threshold) gives R lme4's answers
    to the tolerances the general route meets; a coefficient near zero is compared on
    the scale of its standard error (1e-5 SE: lme4's own optimum is no more precise
    where the likelihood is that flat)."""
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 5)
    spec, data = golden_case(case)
    fit, r, tol = engines.fit(spec, data, "mixedlm"), golden()[case], TOLERANCE["mixedlm"]
    assert fit.diagnostics.at[0, "optimizer"] == SUFFICIENT
    assert any("sufficient statistics" in m for m in fit.messages)
    expected, se = np.array(list(r["fixef"].values())), np.array(list(r["se"].values()))
    gap = np.abs(fit.fixed["estimate"].to_numpy() - expected)
    assert (gap <= np.maximum(tol["fixef"] * np.abs(expected), 1e-5 * se)).all()
    np.testing.assert_allclose(fit.fixed["std_error"], list(r["se"].values()), rtol=tol["se"])
    np.testing.assert_allclose(fit.diagnostics.at[0, "loglik"], r["loglik"], rtol=tol["loglik"])
    ours, theirs = our_variances(fit), r_variances(case)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=tol["variance"], abs=1e-9), key
    assert fit.converged and not fit.singular


def test_fitted_values_and_random_effects_match_lme4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 5)
    spec, data = golden_case("sleepstudy_reml")
    fit, r = engines.fit(spec, data, "mixedlm"), golden()["sleepstudy_reml"]
    np.testing.assert_allclose(fit.fitted["fitted"].iloc[:10], r["fitted_first"], rtol=1e-6)
    first = fit.random_effects["Subject"].loc[308]
    expected = r["ranef_first"]["Subject"]
    assert first["(Intercept)"] == pytest.approx(expected["(Intercept)"], rel=1e-4)
    assert first["Days"] == pytest.approx(expected["Days"], rel=1e-4)


@pytest.mark.parametrize("reml", [True, False])
def test_estimates_at_a_theta_equal_mixedlm(reml: bool) -> None:
    """At one theta the statistics give mixedlm's fixed effects, sigma, fixed-effects
    information and every conditional mode of every block (mixedlm's final evaluation)."""
    spec, frame = golden_case("demo_growth")
    prepared = design.prepare(spec, frame)
    stats = sufficient.statistics(prepared)
    assert stats is not None
    native = _native(prepared, reml)
    for theta in _random_thetas(prepared, 2, seed=11):
        core = mixedlm_adapter.final_evaluation(native.function, theta)
        _, estimates = sufficient.evaluate(stats, theta, reml, estimates=True)
        assert estimates is not None
        np.testing.assert_allclose(estimates.beta, core.beta, rtol=1e-9, atol=1e-12)
        assert np.sqrt(estimates.sigma2) == pytest.approx(float(core.sigma), rel=1e-11)
        np.testing.assert_allclose(estimates.fixed_information, core.fixed_information,
                                   rtol=1e-9)
        _, modes = sufficient_fit.block_values(stats, estimates, theta)
        at, u = 0, np.asarray(core.u)
        for block, ours in zip(prepared.blocks, modes, strict=True):
            size = block.n_levels * len(block.terms)
            theirs = u[at:at + size].reshape(block.n_levels, len(block.terms))
            np.testing.assert_allclose(ours, theirs, rtol=1e-8,
                                       atol=1e-10 * max(1.0, float(np.abs(theirs).max())))
            at += size


def test_fit_equals_mixedlms_optimiser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimum on statistics and mixedlm's: same likelihood, estimates within a
    thousandth of their standard error, random effects and fitted values alike."""
    spec, frame = golden_case("demo_growth")
    reference = engines.fit(spec, frame, "mixedlm")
    assert reference.diagnostics.at[0, "optimizer"] != SUFFICIENT  # 599 patients: native
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 5)
    ours = engines.fit(spec, frame, "mixedlm")
    assert ours.diagnostics.at[0, "optimizer"] == SUFFICIENT
    assert ours.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-6)
    gap = (ours.fixed["estimate"] - reference.fixed["estimate"]).abs()
    assert (gap < 1e-3 * reference.fixed["std_error"]).all()
    for level, table in reference.random_effects.items():
        np.testing.assert_allclose(ours.random_effects[level].to_numpy(), table.to_numpy(),
                                   rtol=1e-3, atol=1e-4 * float(np.abs(table.to_numpy()).max()))
    np.testing.assert_allclose(ours.fitted["fitted"], reference.fitted["fitted"], rtol=1e-5,
                               atol=1e-5)


def test_zero_variance_converges_on_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = MixedSpec("score", "weeks", (RandomEffect("patient_id"),),
                     (VarianceComponent("cluster"),))
    data = _zero_group_variance_data()
    reference = engines.fit(spec, data, "mixedlm")
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 10)
    fit = engines.fit(spec, data, "mixedlm")
    assert fit.diagnostics.at[0, "optimizer"] == SUFFICIENT
    assert fit.singular
    assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)
    np.testing.assert_allclose(fit.fixed["estimate"], reference.fixed["estimate"], rtol=1e-5)


def test_warm_start_and_subsample_start_reach_the_same_optimum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From a whole-cluster subsample (forced small) and from the previous model's
    estimates: the same optimum as mixedlm's optimiser, fewer evaluations when warm."""
    spec, frame = golden_case("demo_growth")
    reference = engines.fit(spec, frame, "mixedlm")
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 5)
    monkeypatch.setattr(sufficient_fit, "START_UNITS", 150)
    cold = engines.fit(spec, frame, "mixedlm")
    assert any("whole clusters" in m for m in cold.messages)
    warm = engines.fit(spec, frame, "mixedlm", warm_start=cold.warm_start)
    assert any("previous model's estimates" in m for m in warm.messages)
    for fit in (cold, warm):
        assert fit.diagnostics.at[0, "optimizer"] == SUFFICIENT
        assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
            reference.diagnostics.at[0, "loglik"], abs=1e-5)
    # the diagnostics are outputs: a refit gives the same bytes (no seconds in the notes)
    again = engines.fit(spec, frame, "mixedlm")
    pd.testing.assert_frame_equal(again.diagnostics, cold.diagnostics)
    assert not any(re.search(r"\d s\)", m) for m in (*cold.messages, *warm.messages))


def test_a_fit_that_does_not_converge_takes_the_general_route(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No quasi-Newton iterations allowed: the statistics route says it did not converge
    and the general route fits the model."""
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 5)
    monkeypatch.setattr(sufficient_fit, "ITERATIONS", 0)
    spec, data = golden_case("sleepstudy_reml")
    fit = engines.fit(spec, data, "mixedlm")
    assert fit.diagnostics.at[0, "optimizer"] != SUFFICIENT
    assert any("did not converge" in m and "general route" in m for m in fit.messages)
    assert fit.converged


@pytest.mark.parametrize("chunk", [7, 50, 598])
def test_innermost_level_in_runs_gives_the_same_numbers(chunk: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Patients eliminated run by run (as at registry scale, ``CHUNK``): the same deviance,
    gradient, fixed effects and conditional modes as mixedlm's native evaluator."""
    monkeypatch.setattr(sufficient, "CHUNK", chunk)
    spec, frame = golden_case("demo_growth")
    prepared = design.prepare(spec, frame)
    stats = sufficient.statistics(prepared)
    assert stats is not None
    assert len(stats.levels) == -(-prepared.blocks[0].n_levels // chunk) + 2
    _agrees_with_native(prepared, seed=chunk)
    native = _native(prepared, True)
    theta = _random_thetas(prepared, 1, seed=3)[0]
    core = mixedlm_adapter.final_evaluation(native.function, theta)
    _, estimates = sufficient.evaluate(stats, theta, True, estimates=True)
    assert estimates is not None
    np.testing.assert_allclose(estimates.beta, core.beta, rtol=1e-9, atol=1e-12)
    _, modes = sufficient_fit.block_values(stats, estimates, theta)
    patients = prepared.blocks[0]
    theirs = np.asarray(core.u)[:patients.n_levels * 2].reshape(patients.n_levels, 2)
    np.testing.assert_allclose(modes[0], theirs, rtol=1e-8, atol=1e-10)


def test_a_warm_start_that_fails_is_said_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A previous model's estimates that lead nowhere (a singular Hessian far from the
    optimum, one step allowed): the subsample route takes over and the note says why."""
    spec, frame = golden_case("demo_growth")
    reference = engines.fit(spec, frame, "mixedlm")
    monkeypatch.setattr(sufficient_fit, "MIN_UNITS", 5)
    good = engines.fit(spec, frame, "mixedlm").warm_start
    assert good is not None
    poor = large.WarmStart(good.structure, good.theta * 25.0,
                           np.zeros_like(good.theta[:, None] * good.theta[None, :]))
    fit = engines.fit(spec, frame, "mixedlm", warm_start=poor)
    assert fit.diagnostics.at[0, "optimizer"] == SUFFICIENT
    assert any("did not converge" in m and "previous model's estimates" in m
               for m in fit.messages)
    assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)
