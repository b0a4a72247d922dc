"""The study config: defaults with sources, safe loading, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline import config


def test_defaults_follow_published_conventions() -> None:
    c = config.from_mapping(None)
    phq9, gad7, hamd = c.rules("phq9"), c.rules("gad7"), c.rules("hamd17")
    assert (phq9.caseness, phq9.remission_below, phq9.response_reduction,
            phq9.reliable_change) == (10, 5, 0.5, 6)
    assert (gad7.caseness, gad7.reliable_change) == (8, 4)
    assert (hamd.response_reduction, hamd.remission_at_most) == (0.5, 7)
    assert c.rules("bdi2").caseness == 14
    assert c.primary_instrument == "phq9"
    assert c.populations.finished_course_min_sessions == 2


def test_example_config_is_the_defaults() -> None:
    parsed = yaml.safe_load(config.EXAMPLE)
    assert config.from_mapping(parsed) == config.from_mapping(None)


def test_every_default_threshold_has_a_source() -> None:
    c = config.from_mapping(None)
    for instrument, rules in c.instruments.items():
        for name in ("caseness", "response_reduction", "remission_below", "remission_at_most",
                     "reliable_change", "reliability"):
            if getattr(rules, name) is not None:
                assert f"instruments.{instrument}.{name}" in config.SOURCES


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"primary_instrumnet": "phq9"}, "unknown key\\(s\\) primary_instrumnet"),
        ({"instruments": {"phq9": {"casenes": 10}}}, "instruments.phq9: unknown key"),
        ({"instruments": {"myscale": {}}}, "instruments.myscale: 'myscale' is not in the "
                                           "catalogue; declaring it needs min, max, direction"),
        ({"instruments": {"phq9": {"caseness": "ten"}}}, "instruments.phq9.caseness: expected"),
        ({"instruments": {"phq9": {"response_reduction": 50}}}, "a share in"),
        ({"instruments": {"hamd17": {"remission_below": 8}}}, "remission_below or"),
        ({"endpoint": {"rule": "week"}}, "endpoint.week: required"),
        ({"endpoint": {"rule": "middle"}}, "endpoint.rule"),
        ({"baseline_rule": "whatever"}, "baseline_rule"),
        ({"populations": {"final_phase_start": "late"}}, "populations.final_phase_start"),
        ({"suppress_below": 0}, "suppress_below"),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_config_names_the_key(values: object, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping(values)  # type: ignore[arg-type]


def test_instrument_override_keeps_other_defaults() -> None:
    c = config.from_mapping({"instruments": {"phq9": {"caseness": 12}}})
    assert c.rules("phq9").caseness == 12
    assert c.rules("phq9").reliable_change == 6
    assert c.rules("gad7").caseness == 8


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("instruments: [unclosed\n")
    with pytest.raises(config.ConfigError, match=r"study\.yaml: not valid YAML"):
        config.load(path)
    path.write_text("!!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(config.ConfigError, match=r"study\.yaml"):
        config.load(path)
    with pytest.raises(config.ConfigError, match="file not found"):
        config.load(tmp_path / "missing.yaml")


def test_resolved_is_plain_data() -> None:
    resolved = config.resolved(config.from_mapping(None))
    yaml.safe_dump(resolved)  # plain types only
    assert resolved["instruments"]["phq9"]["caseness"] == 10


def test_custom_models_and_relapse_sections() -> None:
    c = config.from_mapping({
        "trajectories": {"custom": [{
            "name": "trial", "reml": False, "exclude_baseline": True,
            "formula": "bdi2 ~ baseline_bdi2 + weeks + (1 | patient_id)"}]},
        "relapse": {"at_risk": "response", "threshold": 15, "instrument": "hamd17"},
    })
    (model,) = c.trajectories.custom
    assert (model.name, model.reml, model.exclude_baseline) == ("trial", False, True)
    assert (c.relapse.at_risk, c.relapse.threshold, c.relapse.instrument) == (
        "response", 15, "hamd17")
    with pytest.raises(config.ConfigError, match="expected true or false"):
        config.from_mapping({"trajectories": {"custom": [{"formula": "y ~ x", "reml": "no"}]}})
    with pytest.raises(config.ConfigError, match="use one of remission, response"):
        config.from_mapping({"relapse": {"at_risk": "recovery"}})
    with pytest.raises(config.ConfigError, match="unknown pattern"):
        config.from_mapping({"trajectories": {"models": ["growth", "pattern"]}})


@pytest.mark.parametrize(("values", "message"), [
    ({"paired_instruments": ["phq9"]}, r"paired_instruments: expected a list of 2 items"),
    ({"paired_instruments": ["phq9", "phq9"]}, r"paired_instruments: two different"),
    ({"paired_instruments": ["phq9", "nope"]}, r"paired_instruments\[1\]: unknown instrument"),
    ({"audit": {"funnel_levels": ["high"]}}, r"audit.funnel_levels\[0\]: expected a number"),
    ({"audit": {"funnel_levels": [95]}}, r"audit.funnel_levels\[0\]: a share in \(0, 1\)"),
    ({"audit": {"effect_size_bands": [["phq9", 0.9, "x", 0.4]]}},
     r"audit.effect_size_bands\[0\]\[2\]: expected a number"),
    ({"audit": {"effect_size_bands": [["phq9", 0.9]]}},
     r"audit.effect_size_bands\[0\]: expected a list of 4 items"),
    ({"comparison": {"covariates": [3]}}, r"comparison.covariates\[0\]: expected text"),
    ({"relapse": {"horizon_weeks": "52"}}, r"relapse.horizon_weeks: expected a list"),
    ({"relapse": {"horizon_weeks": [26, -1]}}, r"relapse.horizon_weeks\[1\]: a positive"),
])
def test_values_inside_lists_are_type_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping(values)


def test_a_covariate_that_names_no_column_is_refused_naming_the_key() -> None:
    study = config.from_mapping({"comparison": {"covariates": ["format", "employment"]}})
    config.check_columns(study, ["patient_id", "format", "employment", "problem_area",
                                 "condition", "age"])
    with pytest.raises(config.ConfigError,
                       match=r"comparison.covariates\[1\]: 'employment' is not a column"):
        config.check_columns(study, ["patient_id", "format", "problem_area", "condition",
                                     "age"])


def test_for_data_uses_a_scored_instrument_when_the_primary_has_none() -> None:
    study = config.from_mapping(None)
    same, notes = config.for_data(study, ["phq9", "gad7"])
    assert same is study and notes == []
    resolved, notes = config.for_data(study, ["bdi2"])
    assert resolved.primary_instrument == "bdi2"
    assert "phq9 has no scores" in notes[0]
    unchanged, _ = config.for_data(study, [])
    assert unchanged.primary_instrument == "phq9"


def test_yaml_aliases_are_refused_so_an_alias_bomb_cannot_expand(tmp_path: Path) -> None:
    lines = ["audit:", "  funnel_levels:", f"    a0: &a0 [{', '.join(['0.9'] * 9)}]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(config.ConfigError, match=r"bomb.yaml: not valid YAML.*aliases"):
        config.load(path)


def test_deeply_nested_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(config.ConfigError, match=r"deep\.yaml"):
        config.load(path)


@pytest.mark.parametrize(("values", "key"), [
    ({"relapse": {"horizon_weeks": [float("nan")]}}, "relapse.horizon_weeks[0]"),
    ({"relapse": {"rmst_weeks": float("inf")}}, "relapse.rmst_weeks"),
    ({"instruments": {"phq9": {"caseness": float("nan")}}}, "instruments.phq9.caseness"),
    ({"audit": {"effect_size_bands": [["phq9", float("nan"), 0.7, 0.4]]}},
     "audit.effect_size_bands[0][1]"),
])
def test_nan_and_infinite_numbers_are_refused_naming_the_key(values: dict[str, object],
                                                             key: str) -> None:
    with pytest.raises(config.ConfigError, match=re.escape(f"{key}: expected a finite number")):
        config.from_mapping(values)


def test_rmst_horizon_must_be_positive() -> None:
    with pytest.raises(config.ConfigError, match=r"relapse\.rmst_weeks: a positive"):
        config.from_mapping({"relapse": {"rmst_weeks": -1}})


@pytest.mark.parametrize(("value", "message"), [
    (0, r"relapse\.min_at_risk: at least 1, got 0"),
    ("ten", r"relapse\.min_at_risk: expected a number"),
])
def test_min_at_risk_is_at_least_one(value: object, message: str) -> None:
    assert config.from_mapping(None).relapse.min_at_risk == 10
    assert config.from_mapping({"relapse": {"min_at_risk": 3}}).relapse.min_at_risk == 3
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping({"relapse": {"min_at_risk": value}})


def test_clinician_relapse_exact_is_a_boolean() -> None:
    assert config.from_mapping(None).relapse.clinician_relapse_exact is False
    with pytest.raises(config.ConfigError, match=r"relapse\.clinician_relapse_exact"):
        config.from_mapping({"relapse": {"clinician_relapse_exact": "yes"}})


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_audit_seed_is_a_non_negative_whole_number(seed: float) -> None:
    with pytest.raises(config.ConfigError, match=r"audit\.seed: a whole number"):
        config.from_mapping({"audit": {"seed": seed}})


@pytest.mark.parametrize(("values", "message"), [
    ({"populations": {"finished_course_min_sessions": -5}},
     r"populations.finished_course_min_sessions: at least 1, got -5"),
    ({"populations": {"completer_min_sessions": 0}}, r"completer_min_sessions: at least 1"),
    ({"audit": {"bootstrap_resamples": 0}}, r"audit.bootstrap_resamples: at least 1"),
    ({"audit": {"recovery_target": 5}}, r"audit.recovery_target: between 0 and 1, got 5"),
    ({"audit": {"max_model_patients": 0}}, r"audit.max_model_patients: at least 10"),
    ({"audit": {"planned_sessions": 0}}, r"audit.planned_sessions: at least 1"),
])
def test_values_outside_their_range_are_refused(values: dict[str, object],
                                                message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping(values)


def test_custom_formula_outside_the_grammar_is_refused_on_load(tmp_path: Path) -> None:
    """Formula injection: refused when the config is loaded, naming the key and quoting."""
    from tests.test_formula_grammar import payloads

    for fixed, quoted in payloads(tmp_path / "canary"):
        custom = [{"name": "ok", "formula": "phq9 ~ weeks + (1 | patient_id)"},
                  {"name": "evil", "formula": f"phq9 ~ {fixed} + (1 | patient_id)"}]
        with pytest.raises(config.ConfigError) as caught:
            config.from_mapping({"trajectories": {"custom": custom}})
        message = str(caught.value)
        assert message.startswith("trajectories.custom[1].formula: "), message
        assert quoted in message, message
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("name", ["x/../../../escaped", "..", "/tmp/escaped", "a.b", "",
                                  "Trial", "x" * 65, "growth", "twice"])
def test_custom_model_names_are_safe_file_names(name: str) -> None:
    custom = [{"name": "twice", "formula": "phq9 ~ weeks + (1 | patient_id)"},
              {"name": name, "formula": "phq9 ~ weeks + (1 | patient_id)"}]
    with pytest.raises(config.ConfigError, match=r"^trajectories\.custom\[1\]\.name: "):
        config.from_mapping({"trajectories": {"custom": custom}})


def test_custom_formula_needs_a_random_term_on_load() -> None:
    with pytest.raises(config.ConfigError, match=r"custom\[0\]\.formula: no random term"):
        config.from_mapping({"trajectories": {"custom": [{"formula": "phq9 ~ weeks"}]}})


# ------------------------------------------------------------------ catalogue in the config


def test_defaults_come_from_the_catalogue() -> None:
    from data_schemas.instruments import CATALOGUE

    c = config.from_mapping(None)
    assert list(c.instruments) == list(CATALOGUE)
    assert c.rules("madrs").remission_below == 10
    assert config.SOURCES["instruments.madrs.remission_below"].startswith("MADRS < 10")
    assert c.defined_outcomes("gad7") == ("reliable_improvement",)
    assert c.defined_outcomes("bdi2") == ("response", "remission", "reliable_improvement")
    assert c.defined_outcomes("wsas") == ()


def test_override_keeps_the_other_catalogue_values() -> None:
    c = config.from_mapping({"instruments": {"madrs": {"remission_below": 12}}})
    madrs = c.instrument("madrs")
    assert (madrs.remission_below, madrs.response_reduction, madrs.max) == (12, 0.5, 60)
    assert madrs.sources["remission_below"] == "study config"
    assert madrs.sources["response_reduction"].startswith("fall of >= 50%")


def test_declared_generic_scale() -> None:
    c = config.from_mapping({"instruments": {"wellbeing": {
        "label": "Wellbeing", "min": 14, "max": 70, "direction": "higher_is_better",
        "caseness": 40, "reliable_change": 8}}})
    scale = c.instrument("wellbeing")
    assert (scale.min, scale.max, scale.whole, scale.lower_is_better) == (14, 70, True, False)
    assert c.defined_outcomes("wellbeing") == ("reliable_improvement",)
    assert "wellbeing" in c.catalogue()
    assert c.instruments_in(["patient_id", "wellbeing", "phq9"]) == ["phq9", "wellbeing"]


def test_declared_scale_with_jacobson_truax_values() -> None:
    c = config.from_mapping({"instruments": {"own": {
        "min": 0, "max": 50, "direction": "lower_is_better", "whole": False,
        "reliability": 0.85, "sd_pre": 7.5}}})
    assert c.defined_outcomes("own") == ("reliable_improvement",)
    assert c.instrument("own").whole is False


def test_extra_conditions_extend_the_built_in_ones() -> None:
    c = config.from_mapping({"conditions": ["social_anxiety", "ptsd"]})
    assert c.condition_codes()[-2:] == ("social_anxiety", "ptsd")
    assert "major_depression" in c.condition_codes()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"instruments": {"myscale": {"min": 0, "max": "x", "direction": "lower_is_better"}}},
         "instruments.myscale.max: expected a number"),
        ({"instruments": {"myscale": {"min": 0, "max": 10}}},
         "instruments.myscale: .* needs direction"),
        ({"instruments": {"myscale": {"min": 0, "max": 10, "direction": "up"}}},
         "instruments.myscale.direction: use one of lower_is_better, higher_is_better"),
        ({"instruments": {"myscale": {"min": 10, "max": 0, "direction": "lower_is_better"}}},
         "instruments.myscale.max: must be above min"),
        ({"instruments": {"myscale": {"min": 0, "max": 10, "direction": "higher_is_better",
                                      "response_reduction": 0.5}}},
         "instruments.myscale.response_reduction: .*only for lower_is_better"),
        ({"instruments": {"myscale": {"min": 0, "max": 10, "direction": "lower_is_better",
                                      "reliability": 0.9}}},
         "instruments.myscale: a Jacobson-Truax reliable change needs both"),
        ({"instruments": {"myscale": {"min": 0, "max": 10, "direction": "lower_is_better",
                                      "caseness": 12}}},
         "instruments.myscale.caseness: 12 is outside the range"),
        ({"instruments": {"My Scale": {"min": 0, "max": 10}}}, "instruments.My Scale: an "
                                                                "instrument name"),
        ({"instruments": {"attendance": {"min": 0, "max": 10}}}, "instruments.attendance: "),
        ({"instruments": {"myscale": {"min": 0, "max": 10, "direction": "lower_is_better",
                                      "whole": "yes"}}},
         "instruments.myscale.whole: expected true or false"),
        ({"conditions": ["Social Anxiety"]}, "conditions\\[0\\]: a condition code"),
        ({"conditions": "ptsd"}, "conditions: expected a list"),
        ({"primary_instrument": "nosuch"}, "primary_instrument: unknown instrument"),
        ({"paired_instruments": ["phq9", "nosuch"]}, "paired_instruments\\[1\\]"),
        ({"relapse": {"instrument": "nosuch"}}, "relapse.instrument: unknown instrument"),
    ],
)
def test_bad_instrument_config_names_the_key(values: object, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping(values)  # type: ignore[arg-type]


def test_declared_instrument_can_be_primary() -> None:
    c = config.from_mapping({"primary_instrument": "own", "instruments": {"own": {
        "min": 0, "max": 10, "direction": "lower_is_better", "reliable_change": 2}}})
    assert c.primary_instrument == "own"


def test_contrast_weeks() -> None:
    assert config.from_mapping(None).trajectories.contrast_weeks == (16.0,)
    weeks = config.from_mapping({"trajectories": {"contrast_weeks": [8, 16]}})
    assert weeks.trajectories.contrast_weeks == (8.0, 16.0)
    # the single contrast_week of older configs is still read, as one contrast week
    legacy = config.from_mapping({"trajectories": {"contrast_week": 12}}).trajectories
    assert (legacy.contrast_weeks, legacy.contrast_week) == ((12.0,), None)
    assert "contrast_weeks: [16.0]" in config.EXAMPLE


@pytest.mark.parametrize(("weeks", "message"), [
    ({"contrast_weeks": []}, "contrast_weeks: at least one week"),
    ({"contrast_weeks": [8, -1]}, r"contrast_weeks\[1\]: a week .* at least 0"),
    ({"contrast_weeks": [8, 8.0]}, "contrast_weeks: each week once"),
    ({"contrast_weeks": ["eight"]}, r"contrast_weeks\[0\]: expected a number"),
    ({"contrast_weeks": 16}, "contrast_weeks: expected a list"),
    ({"contrast_weeks": [8], "contrast_week": 12}, "contrast_week: deprecated"),
])
def test_bad_contrast_weeks_name_the_key(weeks: dict[str, object], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.from_mapping({"trajectories": weeks})
