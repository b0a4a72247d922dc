"""``pipeline.trajectories.formula_grammar``: formulas are a whitelist language, never Python.

The payloads below run a shell command when ``formulaic`` evaluates them (the canary
tests prove that nothing ran); each must be refused with the offending part quoted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import BUILTIN_MODELS, ModelSpec, StudyConfig, Trajectories
from pipeline.trajectories import engines
from pipeline.trajectories import models as trajectories
from pipeline.trajectories.engines import MixedSpec, RandomEffect
from pipeline.trajectories.formula_grammar import FormulaError, check_fixed, check_formula, tokenize


def payloads(canary: Path) -> list[tuple[str, str]]:
    """(fixed part, the part the error must quote) of hostile formulas.

    The first, an attribute chain on a real column, creates ``canary`` under both engines
    when nothing checks the formula (``formulaic`` evaluates it as Python).
    """
    touch = f"__import__('os').system('touch {canary}')"
    chain = f"weeks.__init__.__globals__['sys'].modules['os'].system('touch {canary}')"
    return [
        (f"I(weeks + 0 * {chain})", ".__init__"),  # runs the command on the unchecked code
        (f"I(weeks.__class__.__mro__[-1].__subclasses__() and {touch})", ".__class__"),
        (f"I({touch} + weeks)", "__import__"),
        (f"log(weeks + {touch})", "__import__"),
        ("I('touch')", "'touch'"),
        (f"I((lambda: {touch})())", "lambda"),
        (f"I(os.system('touch {canary}'))", ".system("),
        ("I(weeks[0])", "[0]"),
        (f"weeks + eval(\"{touch}\")", "string literals"),
        (f"weeks + {{{touch}}}", "{__import__"),
        (f"weeks + `{touch}`", "`__import__"),
        ("I(2 ** 2 ** 2 ** 99) + weeks", "2 ** 2"),
        ("poly(weeks, 100000)", "100000"),
        ("weeks + C(arm, levels=['a'])", ", levels"),
    ]


ACCEPTED = [
    "bdi2 ~ baseline_bdi2 + weeks * arm + log(weeks + 1) - 1 + (1 | patient_id)",
    "y ~ (1 | g)",
    "strength ~ 1 + (1 | batch/cask)",
    "y ~ x + (1 + weeks || g) + (0 + weeks | site:therapist) + (weeks - 1 | h)",
    "y ~ 0 + I(weeks ** 2) + I((weeks + 1) ** -0.5) + exp(-weeks / 4) + poly(weeks, 2)",
    "y ~ (a + b + c)^2 + a:b + C(site) + weeks + (1|g)",
    "y ~ x\n  + (1 | g)",
]


@pytest.mark.parametrize("formula", ACCEPTED)
def test_the_documented_language_is_accepted(formula: str) -> None:
    check_formula(formula)


@pytest.mark.parametrize("model", BUILTIN_MODELS)
@pytest.mark.parametrize("time", trajectories.TIME_SCALES)
def test_built_in_model_formulas_pass(model: str, time: str) -> None:
    spec = trajectories.model_spec(model, time, ["age_centred", "`sex[male]`"], ())
    check_fixed(spec.fixed)


def test_payloads_are_refused_quoting_the_offending_part(tmp_path: Path) -> None:
    for fixed, quoted in payloads(tmp_path / "canary"):
        with pytest.raises(FormulaError) as caught:
            check_formula(f"y ~ {fixed} + (1 | patient_id)")
        assert quoted in str(caught.value), (fixed, str(caught.value))
        with pytest.raises(FormulaError):
            check_fixed(fixed)
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize(("formula", "message"), [
    ("y ~ not x + (1 | g)", "keyword 'not'"),
    ("y ~ _x + (1 | g)", "starting with '_'"),
    ("y ~ I(weeks ^ 2) + (1 | g)", "use '**'"),
    ("y ~ I(log(weeks)) + (1 | g)", "function calls are not allowed inside I()"),
    ("y ~ I(weeks ** weeks) + (1 | g)", "exponent after '**' must be a number"),
    ("y ~ x + 2 + (1 | g)", "only 0 and 1"),
    ("y ~ x + (1 | g", "ends early"),
    ("log(y) ~ x + (1 | g)", "expected '~'"),
    ("y ~ I(x == 1) + (1 | g)", "'='"),
    ("y ~ 1.5.3 + (1 | g)", "malformed number"),
    ("y ~ x + " + "(" * 30 + "x" + ")" * 30, "nested more than"),
    ("y ~ " + "x + " * 600 + "x", "longer than"),
    ("y ~ x + sqrt(x) + (1 | g)", "unknown function 'sqrt'"),
    ("y ~ eval(x) + (1 | g)", "unknown function 'eval'; allowed: C(), I(), exp(), log()"),
])
def test_other_refusals_say_why(formula: str, message: str) -> None:
    with pytest.raises(FormulaError) as caught:
        check_formula(formula)
    assert message in str(caught.value)


def test_quoted_names_only_for_built_in_fixed_parts() -> None:
    assert [t.text for t in tokenize("`sex[male]` + x", quoted=True)][:1] == ["`sex[male]`"]
    with pytest.raises(FormulaError, match="quoted names"):
        check_formula("y ~ `sex[male]` + (1 | g)")
    with pytest.raises(FormulaError, match="random term"):
        check_fixed("x + (1 | g)")


def _long(n_patients: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    weeks = np.tile(np.arange(5.0), n_patients)
    patient = np.repeat([f"P{i}" for i in range(n_patients)], 5)
    score = 20 - weeks + rng.normal(0, 1, weeks.size) + np.repeat(rng.normal(0, 2, n_patients), 5)
    return pd.DataFrame({"patient_id": patient, "weeks": weeks, "score": score})


@pytest.mark.parametrize("engine", ["statsmodels", "mixedlm"])
def test_engines_refuse_a_payload_that_bypassed_the_config(tmp_path: Path, engine: str) -> None:
    """Defence in depth: a MixedSpec made in code is checked before formulaic sees it."""
    canary = tmp_path / "canary"
    for fixed, _quoted in payloads(canary)[:3]:
        spec = MixedSpec("score", fixed, (RandomEffect("patient_id"),))
        with pytest.raises(FormulaError):
            engines.fit(spec, _long(), engine)
    assert not canary.exists()


def test_models_stage_records_a_refused_formula_as_not_estimable(tmp_path: Path) -> None:
    """A config built in code (not checked on load) still runs nothing: not fitted."""
    canary = tmp_path / "canary"
    fixed, _quoted = payloads(canary)[0]
    study = StudyConfig(trajectories=Trajectories(models=(), custom=(
        ModelSpec("evil", f"score ~ {fixed} + (1 | patient_id)"),)))
    patients = pd.DataFrame({"patient_id": ["P1"], "start_date": pd.to_datetime(["2024-01-01"])})
    sessions = pd.DataFrame({"patient_id": ["P1"], "session_number": [1],
                             "session_date": pd.to_datetime(["2024-01-08"]),
                             "attendance": ["attended"], "phq9": [12.0]})
    outcomes = pd.DataFrame({"patient_id": ["P1"]})
    result = trajectories.analyse(patients, sessions, outcomes, study)
    (record,) = [r for r in result.records if r.analysis == "model evil"]
    assert record.status == "not estimable", record
    assert "attribute access ('.') is not allowed" in record.reason, record
    assert not canary.exists()
