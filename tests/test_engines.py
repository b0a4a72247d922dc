"""Tests for ``pipeline.trajectories.engines``: both engines against R lme4, against each other,
and the
tidy tables they share.

Golden values come from ``tests/golden/mixed_golden.R`` (R 4.2.2, lme4 1.1-31; output in
``mixed_golden.Rout``), e.g.::

    lmer(Reaction ~ Days + (Days | Subject), sleepstudy)                 # REML
    lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE)
    lmer(Reaction ~ Days + (Days || Subject), sleepstudy)
    lmer(strength ~ 1 + (1 | batch/cask), Pastes)
    lmer(score ~ weeks * (condition + format) + age_centred + sex_male
         + (1 + weeks | patient_id) + (0 + is_group | group_key)
         + (1 | therapist_id) + (0 + weeks | therapist_id), mixed_demo_growth.csv)

The tests do not need R: the data sets and R's answers are stored in ``tests/golden``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data_schemas.vocab import CONDITIONS
from pipeline import config
from pipeline.demo import generate as demo
from pipeline.estimability import NotEstimable
from pipeline.outcomes import definitions as outcomes
from pipeline.trajectories import engines
from pipeline.trajectories import models as trajectories
from pipeline.trajectories.engines import (
    EngineError,
    MixedFit,
    MixedSpec,
    RandomEffect,
    VarianceComponent,
    design,
    large,
    linear_combinations,
    mixedlm_engine,
    select_engine,
    sufficient,
)
from pipeline.trajectories.formula import to_spec

GOLDEN = Path(__file__).parent / "golden"
ENGINES = ("mixedlm", "statsmodels")
DEMO_FIXED = "weeks * (condition + format) + age_centred + sex_male"
DEMO_COMPONENTS = (VarianceComponent("group_id", where="is_group"),
                   VarianceComponent("therapist_id"), VarianceComponent("therapist_id", "weeks"))
# Tolerances against lme4 (relative): mixedlm is lme4's algorithm; statsmodels optimises a
# different parameterisation to its own convergence tolerance.
TOLERANCE = {"mixedlm": {"fixef": 1e-6, "se": 1e-5, "variance": 1e-4, "loglik": 1e-6},
             "statsmodels": {"fixef": 1e-4, "se": 1e-3, "variance": 1e-3, "loglik": 1e-6}}


@cache
def golden() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((GOLDEN / "mixed_golden.json").read_text())
    return result


@cache
def demo_golden_frame() -> pd.DataFrame:
    frame = pd.read_csv(GOLDEN / "mixed_demo_growth.csv")
    frame["condition"] = pd.Categorical(frame["condition"], categories=list(CONDITIONS))
    frame["format"] = pd.Categorical(frame["format"], categories=["individual", "group"])
    frame["is_group"] = frame["is_group"].astype(bool)
    return frame


def golden_case(name: str) -> tuple[MixedSpec, pd.DataFrame]:
    sleep = pd.read_csv(GOLDEN / "mixed_sleepstudy.csv")
    patient = (RandomEffect("patient_id", ("1", "weeks")),)
    cases = {
        "sleepstudy_reml": (to_spec("Reaction ~ Days + (Days | Subject)"), sleep),
        "sleepstudy_ml": (to_spec("Reaction ~ Days + (Days | Subject)", reml=False), sleep),
        "sleepstudy_uncorrelated": (to_spec("Reaction ~ Days + (Days || Subject)"), sleep),
        "pastes_nested": (to_spec("strength ~ 1 + (1 | batch/cask)"),
                          pd.read_csv(GOLDEN / "mixed_pastes.csv")),
        "demo_growth": (MixedSpec("score", DEMO_FIXED, patient, DEMO_COMPONENTS),
                        demo_golden_frame()),
        "demo_patient_only": (MixedSpec("score", DEMO_FIXED, patient), demo_golden_frame()),
    }
    return cases[name]


def _level(grp: str) -> str:
    """R's VarCorr group name in our notation (``Subject.1`` -> ``Subject``, sorted a:b)."""
    grp = re.sub(r"\.\d+$", "", grp)
    return {"group_key": "group_id"}.get(grp, ":".join(sorted(grp.split(":"))))


def r_variances(name: str) -> dict[tuple[str, str], float]:
    """(level, term) -> variance (covariances as ``cor(a, b)``) from the R golden values."""
    out = {}
    for row in golden()[name]["varcorr"]:
        term = row["var1"] if not row["var2"] else f"cor({row['var1']}, {row['var2']})"
        term = "(Intercept)" if term == "is_group" else term
        out[(_level(row["grp"]), term)] = row["vcov"]
    return out


def our_variances(fit: MixedFit) -> dict[tuple[str, str], float]:
    table = fit.variance.loc[fit.variance["term"] != "ICC"]
    return {(":".join(sorted(str(level).split(":"))), str(term)): float(v)
            for level, term, v in zip(table["level"], table["term"], table["variance"],
                                      strict=True)}


@cache
def fitted_case(name: str, engine: str) -> MixedFit:
    spec, data = golden_case(name)
    return engines.fit(spec, data, engine)


GOLDEN_CASES = [(case, engine) for case in ("sleepstudy_reml", "sleepstudy_ml",
                                            "sleepstudy_uncorrelated", "pastes_nested",
                                            "demo_patient_only") for engine in ENGINES]
GOLDEN_CASES.append(("demo_growth", "mixedlm"))


@pytest.mark.parametrize(("case", "engine"), GOLDEN_CASES)
def test_matches_lme4(case: str, engine: str) -> None:
    fit, r, tol = fitted_case(case, engine), golden()[case], TOLERANCE[engine]
    np.testing.assert_allclose(fit.fixed["estimate"], list(r["fixef"].values()),
                               rtol=tol["fixef"], atol=1e-10)
    np.testing.assert_allclose(fit.fixed["std_error"], list(r["se"].values()), rtol=tol["se"])
    np.testing.assert_allclose(fit.diagnostics.at[0, "loglik"], r["loglik"], rtol=tol["loglik"])
    np.testing.assert_allclose(fit.diagnostics.at[0, "aic"], r["aic"], rtol=tol["loglik"])
    np.testing.assert_allclose(fit.diagnostics.at[0, "bic"], r["bic"], rtol=tol["loglik"])
    ours, theirs = our_variances(fit), r_variances(case)
    assert set(ours) - {("Residual", "")} == set(theirs) - {("Residual", "")}
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=tol["variance"], abs=1e-9), key
    assert fit.converged and not fit.singular


@pytest.mark.parametrize("engine", ENGINES)
def test_fitted_values_and_random_effects_match_lme4(engine: str) -> None:
    """Fitted values include the random effects (``fitted(fit)`` in R), unlike predict()."""
    fit, r = fitted_case("sleepstudy_reml", engine), golden()["sleepstudy_reml"]
    np.testing.assert_allclose(fit.fitted["fitted"].iloc[:10], r["fitted_first"], rtol=1e-6)
    assert not np.allclose(fit.fitted["fitted"], fit.fitted["fitted_fixed"])
    first = fit.random_effects["Subject"].loc[308]
    expected = r["ranef_first"]["Subject"]
    assert first["(Intercept)"] == pytest.approx(expected["(Intercept)"], rel=1e-4)
    assert first["Days"] == pytest.approx(expected["Days"], rel=1e-4)


def test_statsmodels_drops_inner_correlation_with_a_message() -> None:
    """statsmodels cannot estimate the patient correlation beside nested components."""
    spec, data = golden_case("demo_growth")
    data = data.loc[data["patient_id"] < "P000150"]
    therapist = MixedSpec(spec.outcome, spec.fixed, spec.random, spec.components[1:2])
    fit = engines.fit(therapist, data, "statsmodels")
    assert any("cannot be estimated" in m for m in fit.messages)
    assert not fit.variance["term"].str.startswith("cor(").any()
    group_only = MixedSpec(spec.outcome, spec.fixed, spec.random, spec.components[:1])
    fit = engines.fit(group_only, data, "statsmodels")
    assert any("group_id is not nested in patient_id" in m for m in fit.messages)


def test_engines_agree_on_nested_model_both_can_fit() -> None:
    """Uncorrelated patient intercept and slope, therapy-group and therapist components."""
    frame = demo_golden_frame()
    frame = frame.loc[frame["patient_id"] < "P000300"]
    spec = MixedSpec("score", DEMO_FIXED, (RandomEffect("patient_id", ("1", "weeks"), False),),
                     (VarianceComponent("group_id", where="is_group"),
                      VarianceComponent("therapist_id")))
    fast, reference = engines.fit(spec, frame, "mixedlm"), engines.fit(spec, frame, "statsmodels")
    np.testing.assert_allclose(fast.fixed["estimate"], reference.fixed["estimate"], rtol=1e-3,
                               atol=1e-6)
    ours, theirs = our_variances(fast), our_variances(reference)
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-2, abs=1e-6), key
    assert fast.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-3)


@pytest.fixture(scope="module")
def demo_frame() -> pd.DataFrame:
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=2000, seed=20261122,
                                                  expected_rates_n=0))
    cfg = config.from_mapping(None)
    po = outcomes.derive(cohort.patients, cohort.sessions, cfg)
    long = trajectories.long_scores(cohort.patients, cohort.sessions, po, "phq9", "weeks")
    frame, _, _ = trajectories.model_data(long)
    return frame


def test_engines_agree_on_demo_growth_model(demo_frame: pd.DataFrame) -> None:
    """Random intercept + slope per patient on the 2,000-patient demo cohort.

    Agreement: fixed effects within 1e-3 (relative), variance components within 1e-2. The
    nested components are compared separately (statsmodels cannot fit them beside the
    correlated patient block).
    """
    spec = MixedSpec("score", "weeks * (condition + format) + age_centred + `sex[male]`",
                     (RandomEffect("patient_id", ("1", "weeks")),))
    fast, reference = engines.fit(spec, demo_frame, "mixedlm"), engines.fit(
        spec, demo_frame, "statsmodels")
    np.testing.assert_allclose(fast.fixed["estimate"], reference.fixed["estimate"], rtol=1e-3)
    np.testing.assert_allclose(fast.fixed["std_error"], reference.fixed["std_error"], rtol=1e-3)
    np.testing.assert_allclose(fast.variance["variance"].dropna(),
                               reference.variance["variance"].dropna(), rtol=1e-2)
    assert list(fast.fixed["term"]) == list(reference.fixed["term"])


def test_term_names_are_readable() -> None:
    fit = fitted_case("demo_growth", "mixedlm")
    terms = list(fit.fixed["term"])
    assert terms[:3] == ["(Intercept)", "weeks", "condition[dysthymia]"]
    assert "format[group]" in terms and "weeks:format[group]" in terms
    assert not any("C(" in t or "[T." in t for t in terms)


def test_table_columns() -> None:
    fit = fitted_case("demo_growth", "mixedlm")
    assert list(fit.fixed.columns) == ["term", "estimate", "std_error", "ci_low", "ci_high",
                                       "p_value"]
    assert list(fit.variance.columns) == ["level", "term", "variance", "sd", "correlation",
                                          "icc"]
    assert list(fit.diagnostics.columns) == [
        "engine", "method", "converged", "singular", "optimizer", "iterations", "loglik",
        "aic", "bic", "n_obs", "n_patients", "n_groups", "warnings"]
    assert fit.diagnostics.at[0, "n_groups"] == "patient_id=599; group_id=23; therapist_id=30"
    icc = fit.variance.loc[fit.variance["term"] == "ICC"].set_index("level")["icc"]
    assert set(icc.index) == {"patient_id", "group_id", "therapist_id"}
    intercepts = fit.variance.loc[fit.variance["term"] == "(Intercept)", "variance"].sum()
    residual = fit.variance.loc[fit.variance["level"] == "Residual", "variance"].iloc[0]
    assert icc["patient_id"] == pytest.approx(
        fit.variance.loc[(fit.variance["level"] == "patient_id")
                         & (fit.variance["term"] == "(Intercept)"), "variance"].iloc[0]
        / (intercepts + residual))
    row = fit.fixed.iloc[1]
    assert row["ci_high"] - row["estimate"] == pytest.approx(1.959964 * row["std_error"])


def test_predict_uses_fixed_effects_and_their_covariance() -> None:
    fit = fitted_case("sleepstudy_reml", "mixedlm")
    means = fit.predict(pd.DataFrame({"Days": [0.0, 10.0]}))
    beta, cov = fit.coef.to_numpy(), fit.cov.to_numpy()
    row = np.array([1.0, 10.0])
    assert means["estimate"].iloc[1] == pytest.approx(row @ beta)
    assert means["std_error"].iloc[1] == pytest.approx(np.sqrt(row @ cov @ row))
    contrast = linear_combinations(fit, np.array([[0.0, 1.0]]), pd.Index(["slope"]))
    assert contrast.loc["slope", "p_value"] == pytest.approx(fit.fixed["p_value"].iloc[1])


@pytest.mark.parametrize("engine", ENGINES)
def test_aliased_terms_and_missing_rows_are_reported(engine: str) -> None:
    data = pd.read_csv(GOLDEN / "mixed_sleepstudy.csv")
    data["Days2"] = 2 * data["Days"]
    data.loc[[0, 5], "Reaction"] = np.nan
    fit = engines.fit(to_spec("Reaction ~ Days + Days2 + (1 | Subject)"), data, engine)
    assert list(fit.fixed["term"]) == ["(Intercept)", "Days"]
    assert any("aliased" in m and "Days2" in m for m in fit.messages)
    assert any("2 of 180 rows left out" in m for m in fit.messages)
    assert fit.diagnostics.at[0, "n_obs"] == 178
    assert len(fit.fitted) == 178


def _zero_group_variance_data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(60), 6)
    weeks = np.tile(np.arange(6.0), 60)
    score = 10 + rng.normal(0, 2, 60)[patients] - 0.5 * weeks + rng.normal(0, 1, patients.size)
    return pd.DataFrame({"patient_id": patients, "weeks": weeks, "score": score,
                         "cluster": patients // 6})


@pytest.mark.parametrize("engine", ENGINES)
def test_boundary_fit_is_flagged(engine: str) -> None:
    """A cluster variance that is truly zero: singular, with a message, never silenced."""
    spec = MixedSpec("score", "weeks", (RandomEffect("patient_id"),),
                     (VarianceComponent("cluster"),))
    fit = engines.fit(spec, _zero_group_variance_data(), engine)
    assert fit.singular
    assert any("boundary (singular) fit" in m and "cluster" in m for m in fit.messages)
    assert "boundary" in fit.diagnostics.at[0, "warnings"]


def test_statsmodels_drops_a_crossed_level_with_a_message() -> None:
    data = _zero_group_variance_data()
    data["rater"] = np.tile(np.arange(6), 60)  # crossed with patients
    spec = MixedSpec("score", "weeks", (RandomEffect("patient_id"),),
                     (VarianceComponent("rater"),))
    fit = engines.fit(spec, data, "statsmodels")
    assert any("rater is not nested" in m for m in fit.messages)
    both = engines.fit(spec, data, "mixedlm")
    assert "rater" in set(both.variance["level"])


def test_engine_selection() -> None:
    spec, data = golden_case("sleepstudy_reml")
    assert select_engine(spec, data, "auto") == "mixedlm"
    assert select_engine(spec, data, "statsmodels") == "statsmodels"
    with pytest.raises(ValueError, match="unknown engine"):
        select_engine(spec, data, "lme4")


def test_auto_falls_back_to_statsmodels(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(prepared: Any, warm: Any = None) -> MixedFit:
        raise EngineError("simulated failure")

    monkeypatch.setattr(mixedlm_engine, "fit_prepared", broken)
    spec, data = golden_case("sleepstudy_reml")
    fit = engines.fit(spec, data, "auto")
    assert fit.engine == "statsmodels"
    assert any("simulated failure" in m for m in fit.messages)
    with pytest.raises(EngineError):
        engines.fit(spec, data, "mixedlm")


def test_no_complete_rows_is_not_estimable() -> None:
    spec, data = golden_case("sleepstudy_reml")
    with pytest.raises(NotEstimable, match="no score has every variable"):
        engines.fit(spec, data.assign(Reaction=np.nan), "mixedlm")


# lme4 1.1 refuses these models before fitting (lmerControl defaults, all "stop"):
#   lmer(Reaction ~ Days + (1 | Subject), first_day_only)
#     Error: number of levels of each grouping factor must be < number of observations
#   lmer(Reaction ~ Days + (1 + Days | Subject), two_days_each)
#     Error: number of observations (=36) <= number of random effects (=36) for term
#     (1 + Days | Subject); the random-effects parameters and the residual variance (or
#     scale parameter) are probably unidentifiable
#   lmer(Reaction ~ Days + (1 | Subject), one_subject)
#     Error: grouping factors must have > 1 sampled level
@pytest.mark.parametrize("engine", ["mixedlm", "statsmodels", "auto"])
def test_models_lme4_refuses_are_refused(engine: str) -> None:
    _, data = golden_case("sleepstudy_reml")
    intercept = MixedSpec("Reaction", "Days", (RandomEffect("Subject", ("1",)),))
    slope = MixedSpec("Reaction", "Days", (RandomEffect("Subject", ("1", "Days")),))
    first_day_only = data[data["Days"] == 0]
    with pytest.raises(NotEstimable, match="must be < number of observations"):
        engines.fit(intercept, first_day_only, engine)
    two_days_each = data[data["Days"].isin([0, 1])]
    with pytest.raises(NotEstimable, match=r"observations \(36\) <= number of random effects "
                       r"\(36\) for term \(1 \+ Days \| Subject\)"):
        engines.fit(slope, two_days_each, engine)
    one_subject = data[data["Subject"] == data["Subject"].iloc[0]]
    with pytest.raises(NotEstimable, match="only 1 level"):
        engines.fit(intercept, one_subject, engine)


def test_models_lme4_accepts_are_fitted() -> None:
    """Just inside lme4's limits: two days per subject with a random intercept only."""
    _, data = golden_case("sleepstudy_reml")
    intercept = MixedSpec("Reaction", "Days", (RandomEffect("Subject", ("1",)),))
    fit = engines.fit(intercept, data[data["Days"].isin([0, 1])], "mixedlm")
    assert fit.diagnostics["n_obs"].iloc[0] == 36


def _general_registry_route(monkeypatch: pytest.MonkeyPatch, units: int) -> None:
    """Force the registry-scale path above ``units`` units, on the general sparse route
    (subsample + quasi-Newton on mixedlm's native deviance): the nested fit on sufficient
    statistics, which would otherwise take these models, is tested in
    ``tests/test_engines_sufficient.py``."""
    monkeypatch.setattr(large, "LARGE_UNITS", units)
    monkeypatch.setattr(sufficient, "statistics", lambda prepared: None)


def test_registry_scale_path_gives_the_same_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The subsample + quasi-Newton path (used above 50,000 patients) on a small data set."""
    spec, frame = golden_case("demo_growth")
    reference = fitted_case("demo_growth", "mixedlm")
    _general_registry_route(monkeypatch, 100)
    monkeypatch.setattr(large, "SUBSAMPLE_UNITS", 200)
    fit = engines.fit(spec, frame, "mixedlm")
    assert fit.diagnostics.at[0, "optimizer"] == "subsample + quasi-Newton"
    assert any("whole clusters" in m for m in fit.messages)
    assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)
    np.testing.assert_allclose(fit.fixed["estimate"], reference.fixed["estimate"], rtol=1e-4)
    np.testing.assert_allclose(fit.fixed["std_error"], reference.fixed["std_error"], rtol=1e-4)
    np.testing.assert_allclose(fit.variance["variance"].dropna(),
                               reference.variance["variance"].dropna(), rtol=1e-3)


def test_registry_scale_warm_start_reaches_the_same_optimum(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A related model started from another fit's optimum (no subsample fit) ends where a
    fit from scratch ends; a start for another random structure is not used."""
    spec, frame = golden_case("demo_growth")
    related = MixedSpec(spec.outcome, spec.fixed + " + weeks:format", spec.random,
                        spec.components)
    reference = engines.fit(related, frame, "mixedlm")  # mixedlm's own optimiser
    _general_registry_route(monkeypatch, 100)
    monkeypatch.setattr(large, "SUBSAMPLE_UNITS", 200)
    first = engines.fit(spec, frame, "mixedlm")
    assert first.warm_start is not None
    assert first.warm_start.structure == tuple(
        (b.level, b.terms) for b in design.prepare(spec, frame).blocks)
    warm = engines.fit(related, frame, "mixedlm", warm_start=first.warm_start)
    assert any("previous model's estimates" in m for m in warm.messages)
    assert warm.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)
    # the likelihood is flat near its maximum: estimates agree to a hundredth of their SE
    gap = (warm.fixed["estimate"] - reference.fixed["estimate"]).abs()
    assert (gap < 0.01 * reference.fixed["std_error"]).all()
    np.testing.assert_allclose(warm.fixed["std_error"], reference.fixed["std_error"],
                               rtol=1e-3)
    other = MixedSpec(spec.outcome, spec.fixed, spec.random)  # no variance components
    unused = engines.fit(other, frame, "mixedlm", warm_start=first.warm_start)
    assert not any("previous model's estimates" in m for m in unused.messages)


def test_registry_scale_path_handles_a_zero_variance(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster variance on its bound: the projected quasi-Newton converges there, as the
    general optimiser does."""
    spec = MixedSpec("score", "weeks", (RandomEffect("patient_id"),),
                     (VarianceComponent("cluster"),))
    data = _zero_group_variance_data()
    reference = engines.fit(spec, data, "mixedlm")
    _general_registry_route(monkeypatch, 10)
    monkeypatch.setattr(large, "SUBSAMPLE_UNITS", 30)
    fit = engines.fit(spec, data, "mixedlm")
    assert fit.diagnostics.at[0, "optimizer"] == "subsample + quasi-Newton"
    assert fit.singular
    assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)
    np.testing.assert_allclose(fit.fixed["estimate"], reference.fixed["estimate"], rtol=1e-5)


def test_projected_newton_helpers() -> None:
    lower = np.array([0.0, -np.inf, 0.0])
    held = large.free(np.array([0.0, 0.3, 0.0]), np.array([2.0, 1.0, -1.0]), lower)
    assert held.tolist() == [False, True, True]  # on the bound and pushed outwards: held
    indefinite = np.array([[2.0, 0.0], [0.0, -3.0]])
    fixed = large.modified(indefinite)
    np.testing.assert_allclose(fixed, [[2.0, 0.0], [0.0, 3.0]])
    assert np.linalg.eigvalsh(fixed).min() > 0


def test_general_optimiser_warm_start_reaches_the_same_optimum() -> None:
    """Below registry scale a start from a related fit (a zero variance lifted off its
    bound) changes only the path: same log-likelihood and estimates as lme4's default."""
    spec, frame = golden_case("demo_growth")
    first = fitted_case("demo_growth", "mixedlm")
    assert first.warm_start is not None and first.warm_start.hessian_per_unit is None
    related = MixedSpec(spec.outcome, spec.fixed + " + weeks:format", spec.random,
                        spec.components)
    cold = engines.fit(related, frame, "mixedlm")
    lifted = large.WarmStart(first.warm_start.structure,
                              np.where(np.arange(first.warm_start.theta.size) == 3, 0.0,
                                       first.warm_start.theta))
    for start in (first.warm_start, lifted):
        warm = engines.fit(related, frame, "mixedlm", warm_start=start)
        assert any("previous model's estimates" in m for m in warm.messages)
        assert warm.diagnostics.at[0, "loglik"] == pytest.approx(
            cold.diagnostics.at[0, "loglik"], abs=1e-5)
        gap = (warm.fixed["estimate"] - cold.fixed["estimate"]).abs()
        assert (gap < 0.01 * cold.fixed["std_error"]).all()
    on_bound = lifted.lifted(large.lower_bounds(design.prepare(related, frame).blocks))
    assert on_bound[3] == pytest.approx(large.PROBES[-1])
    assert np.delete(on_bound, 3) == pytest.approx(np.delete(lifted.theta, 3))


def test_registry_scale_fallback_refits_with_the_random_effects(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """When the quasi-Newton steps do not converge, mixedlm's own optimiser takes over on
    the full model (the native deviance had taken over Z; it must be rebuilt)."""
    spec, frame = golden_case("demo_growth")
    reference = fitted_case("demo_growth", "mixedlm")
    _general_registry_route(monkeypatch, 100)
    monkeypatch.setattr(large, "SUBSAMPLE_UNITS", 200)
    monkeypatch.setattr(large, "ITERATIONS", 0)
    fit = engines.fit(spec, frame, "mixedlm")
    assert any("without convergence" in m for m in fit.messages)
    assert fit.diagnostics.at[0, "optimizer"] != "subsample + quasi-Newton"
    assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)
    np.testing.assert_allclose(fit.variance["variance"].dropna(),
                               reference.variance["variance"].dropna(), rtol=1e-3)


def test_registry_scale_path_from_a_poor_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm start far from the optimum (the therapy-group variance at zero) still ends at
    mixedlm's own optimum (the start is abandoned for the subsample route if need be)."""
    spec, frame = golden_case("demo_growth")
    reference = fitted_case("demo_growth", "mixedlm")
    _general_registry_route(monkeypatch, 100)
    monkeypatch.setattr(large, "SUBSAMPLE_UNITS", 200)
    warm = engines.fit(spec, frame, "mixedlm").warm_start
    assert warm is not None
    levels = [level for level, terms in warm.structure
              for _ in range(len(terms) * (len(terms) + 1) // 2)]
    theta = warm.theta.copy()
    theta[levels.index("group_id")] = 0.0
    fit = engines.fit(spec, frame, "mixedlm", warm_start=large.WarmStart(
        warm.structure, theta, warm.hessian_per_unit))
    assert fit.diagnostics.at[0, "loglik"] == pytest.approx(
        reference.diagnostics.at[0, "loglik"], abs=1e-5)


@dataclass
class _EvenDeviance:
    """A one-parameter deviance even in theta, (theta^2 - 0.25)^2: gradient zero at the
    bound theta = 0, minimum inside at theta = 0.5 (or, with ``inside=False``, theta^2:
    minimum on the bound)."""

    inside: bool = True
    lower: np.ndarray = field(default_factory=lambda: np.zeros(1))
    evaluations: int = 0

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        t = float(theta[0])
        if self.inside:
            return (t * t - 0.25) ** 2, np.array([4 * t * (t * t - 0.25)])
        return t * t, np.array([2 * t])


def test_a_false_optimum_on_the_bound_is_left() -> None:
    even = _EvenDeviance()
    stuck = large.quasi_newton(even, np.zeros(1), np.eye(1))  # type: ignore[arg-type]
    assert stuck.converged and stuck.theta[0] == 0.0  # the zero gradient fools the test
    found = large.minimise(_EvenDeviance(), np.zeros(1), np.eye(1))  # type: ignore[arg-type]
    assert found.converged and found.theta[0] == pytest.approx(0.5, abs=1e-3)
    boundary = large.minimise(_EvenDeviance(inside=False), np.zeros(1), np.eye(1))  # type: ignore[arg-type]
    assert boundary.converged and boundary.theta[0] == 0.0


# ------------------------------------------------------------------------ non-convergence


def _one_iteration_mixedlm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``mixedlm`` optimiser stopped after one iteration."""
    import mixedlm

    from pipeline.trajectories.engines import mixedlm_engine

    monkeypatch.setattr(mixedlm_engine, "_control", lambda optimizer: mixedlm.lmerControl(
        optimizer=optimizer, maxiter=1, use_analytic_gradient=optimizer == "L-BFGS-B"))


def _one_iteration_statsmodels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statsmodels ``MixedLM`` optimiser stopped after one iteration."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    real_fit = MixedLM.fit

    def short(self: Any, *args: Any, **kwargs: Any) -> Any:
        return real_fit(self, *args, **{**kwargs, "maxiter": 1})

    monkeypatch.setattr(MixedLM, "fit", short)


def test_mixedlm_that_does_not_converge_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimisers' failure is reported in the diagnostics and messages (never silent);
    ``auto`` then refits with statsmodels and says that too."""
    spec, data = golden_case("sleepstudy_reml")
    _one_iteration_mixedlm(monkeypatch)
    fit = engines.fit(spec, data, "mixedlm")
    assert not fit.converged and not bool(fit.diagnostics.at[0, "converged"])
    assert any("did not report convergence" in m for m in fit.messages)
    assert "did not report convergence" in fit.diagnostics.at[0, "warnings"]
    fallback = engines.fit(spec, data, "auto")
    assert fallback.converged and fallback.engine == "statsmodels"
    assert "mixedlm did not converge; fitted with statsmodels" in fallback.messages


def test_statsmodels_that_does_not_converge_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, data = golden_case("sleepstudy_reml")
    _one_iteration_statsmodels(monkeypatch)
    fit = engines.fit(spec, data, "statsmodels")
    assert not fit.converged
    assert any("did not report convergence" in m for m in fit.messages)
    assert any("ConvergenceWarning" in m or "converge" in m.lower() for m in fit.messages
               if m.startswith("statsmodels ("))


# ------------------------------------------------------------------------ speed, same numbers


@pytest.mark.parametrize("columns", [1, 7, 40])
def test_crossprod_in_small_chunks_is_the_cross_product(columns: int) -> None:
    matrix = np.asfortranarray(np.random.default_rng(columns).normal(size=(5_003, columns)))
    np.testing.assert_allclose(design.crossprod(matrix), matrix.T @ matrix, rtol=1e-12,
                               atol=1e-9)
    np.testing.assert_allclose(design.crossprod(matrix, chunk=1_000), matrix.T @ matrix,
                               rtol=1e-12, atol=1e-9)


def test_deviance_evaluates_a_theta_once() -> None:
    """A restart from a probed point reuses the probe's evaluation (same numbers)."""
    spec, frame = golden_case("sleepstudy_reml")
    problem = mixedlm_engine._problem(design.prepare(spec, frame))
    deviance = large.Deviance(problem.matrices, True, problem.formula)
    theta = np.array([0.9, 0.0, 0.2])
    value, gradient = deviance(theta)
    again, gradient_again = deviance(theta.copy())
    assert deviance.evaluations == 1 and again == value
    np.testing.assert_array_equal(gradient_again, gradient)
    gradient_again[0] = 99.0  # the remembered gradient is not shared with callers
    assert deviance(theta)[1][0] == gradient[0]
    deviance(theta + 1e-3)
    assert deviance.evaluations == 2
