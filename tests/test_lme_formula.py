"""Tests for ``pipeline.trajectories.formula``: lme4 bar notation taken apart by hand-checkable
cases."""

from __future__ import annotations

import pytest

from pipeline.trajectories.engines import RandomEffect
from pipeline.trajectories.formula import FormulaError, parse, split_top_level, to_spec


def test_split_respects_parentheses() -> None:
    assert split_top_level("a + (1 + b | g) + c*(d + e)") == ["a", "(1 + b | g)", "c*(d + e)"]


@pytest.mark.parametrize(("bar", "expected"), [
    ("(1 | g)", RandomEffect("g", ("1",), True)),
    ("(1 + weeks | g)", RandomEffect("g", ("1", "weeks"), True)),
    ("(weeks | g)", RandomEffect("g", ("1", "weeks"), True)),
    ("(0 + weeks | g)", RandomEffect("g", ("weeks",), True)),
    ("(weeks - 1 | g)", RandomEffect("g", ("weeks",), True)),
    ("(1 + weeks || g)", RandomEffect("g", ("1", "weeks"), False)),
    ("(1 | site:therapist)", RandomEffect("site:therapist", ("1",), True)),
])
def test_bars(bar: str, expected: RandomEffect) -> None:
    parsed = parse(f"y ~ x + {bar}")
    assert parsed.outcome == "y"
    assert parsed.fixed == "x"
    assert parsed.random == (expected,)


def test_nested_shorthand_expands_like_lme4() -> None:
    parsed = parse("strength ~ 1 + (1 | batch/cask)")
    assert [r.level for r in parsed.random] == ["batch", "batch:cask"]
    assert parsed.fixed == "1"


def test_fixed_part_keeps_operators_and_functions() -> None:
    parsed = parse("bdi2 ~ baseline_bdi2 + weeks * arm + log(weeks + 1) - 1 + (1 | patient_id)")
    assert parsed.fixed == "baseline_bdi2 + weeks * arm + log(weeks + 1) - 1"


def test_only_random_terms_gives_intercept() -> None:
    assert parse("y ~ (1 | g)").fixed == "1"


def test_to_spec_sets_reml_and_outcome() -> None:
    spec = to_spec("phq9 ~ weeks + (1 + weeks | patient_id) + (1 | therapist_id)", reml=False)
    assert spec.outcome == "phq9" and not spec.reml
    assert [r.level for r in spec.random] == ["patient_id", "therapist_id"]
    assert spec.lme4() == "phq9 ~ weeks + (1 + weeks | patient_id) + (1 | therapist_id)"


@pytest.mark.parametrize("formula", [
    "y x + (1 | g)",                 # no ~
    "y ~ x ~ z + (1 | g)",           # two ~
    "y ~ x + (1 | g",                # unbalanced
    "y ~ x + (log(x) | g)",          # a function inside a bar
    "y ~ x + (1 | log(g))",          # a function as grouping
    "log(y) ~ x + (1 | g)",          # transformed outcome
    "y ~ x + (0 | g)",               # no effect at all
])
def test_bad_formulas_raise(formula: str) -> None:
    with pytest.raises(FormulaError):
        to_spec(formula)


def test_to_spec_needs_a_random_term() -> None:
    with pytest.raises(FormulaError, match="no random term"):
        to_spec("y ~ x")


def test_variance_components_in_lme4_notation_fit_no_extra_intercept() -> None:
    # a therapist slope variance beside a therapist intercept variance, uncorrelated:
    # "(weeks | therapist_id)" would make lme4 fit a second, correlated intercept
    from pipeline.trajectories.engines import MixedSpec, VarianceComponent

    spec = MixedSpec("phq9", "weeks", (RandomEffect("patient_id", ("1", "weeks")),),
                     (VarianceComponent("group_id", where="is_group"),
                      VarianceComponent("therapist_id"),
                      VarianceComponent("therapist_id", "weeks")))
    assert spec.lme4() == ("phq9 ~ weeks + (1 + weeks | patient_id) + (0 + is_group | "
                           "group_id) + (1 | therapist_id) + (0 + weeks | therapist_id)")
