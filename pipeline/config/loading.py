"""Reading and checking a study config: YAML (no aliases) -> mapping -> checked StudyConfig.

Any key left out takes its default; an unknown key or a bad value is a ``ConfigError`` that
names it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.sections import (
    BUILTIN_MODELS,
    CODE,
    DEFAULT_RULES,
    MODEL_NAME,
    RESERVED_COLUMNS,
    Audit,
    Comparison,
    ConfigError,
    Endpoint,
    InstrumentRules,
    ModelSpec,
    Populations,
    Relapse,
    StudyConfig,
    Trajectories,
)


def _build(cls: type[Any], values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and bad types."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(cls, known[name], value, f"{where}.{name}".lstrip("."))
    return cls(**kwargs)


def _coerce(cls: type[Any], spec: dataclasses.Field[Any], value: Any, where: str) -> Any:
    """Check ``value`` against the field's declared type (given as text in ``spec.type``)."""
    nested = {"endpoint": Endpoint, "populations": Populations, "comparison": Comparison,
              "trajectories": Trajectories, "relapse": Relapse, "audit": Audit}
    if cls is StudyConfig and spec.name in nested:
        return _build(nested[spec.name], value, where)
    if cls is Trajectories and spec.name == "custom":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of models")
        return tuple(_build(ModelSpec, item, f"{where}[{i}]") for i, item in enumerate(value))
    if cls is StudyConfig and spec.name == "instruments":
        return _instruments(value, where)
    declared = str(spec.type)
    if value is None:
        if "None" not in declared:
            raise ConfigError(f"{where}: a value is required")
        return None
    if declared.startswith("tuple"):
        return _typed_tuple(declared, value, where)
    if declared == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if declared.startswith("Literal"):
        allowed = re.findall(r"[\"']([^\"']+)[\"']", declared)
        if value not in allowed:
            raise ConfigError(f"{where}: use one of {', '.join(allowed)}; got {value!r}")
        return value
    if "float" in declared or "int" in declared:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return _finite(value, where)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def _finite(value: float, where: str) -> float:
    """No definition, threshold or horizon is NaN or infinite (YAML's .nan, .inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return value


def _split_arguments(inner: str) -> list[str]:
    """``"str, tuple[str, float], ..."`` -> ``["str", "tuple[str, float]", "..."]``."""
    parts, depth, current = [], 0, ""
    for char in inner:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()] if current.strip() else parts


def _typed_tuple(declared: str, value: Any, where: str) -> tuple[Any, ...]:
    """A list checked item by item against ``tuple[X, ...]`` (any length) or
    ``tuple[X, Y]`` (exactly these items); the message names the item's key."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    kinds = _split_arguments(declared[len("tuple["):-1])
    if len(kinds) == 2 and kinds[1] == "...":
        kinds = [kinds[0]] * len(value)
    elif len(value) != len(kinds):
        raise ConfigError(f"{where}: expected a list of {len(kinds)} items, got {value!r}")
    return tuple(_typed_item(kind, item, f"{where}[{i}]")
                 for i, (kind, item) in enumerate(zip(kinds, value, strict=True)))


def _typed_item(kind: str, item: Any, where: str) -> Any:
    if kind.startswith("tuple"):
        return _typed_tuple(kind, item, where)
    if kind in ("float", "int"):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ConfigError(f"{where}: expected a number, got {item!r}")
        return _finite(item, where)
    if not isinstance(item, str):
        raise ConfigError(f"{where}: expected text, got {item!r}")
    return item


def _instruments(value: Any, where: str) -> dict[str, InstrumentRules]:
    """The catalogue's rules, overridden and extended by the config's ``instruments:``."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of instruments")
    rules = dict(DEFAULT_RULES)
    for instrument, overrides in value.items():
        key = f"{where}.{instrument}"
        if not isinstance(instrument, str) or not CODE.match(instrument):
            raise ConfigError(f"{key}: an instrument name is its column name in lower case "
                              "(letters, digits, underscores), e.g. my_scale")
        if instrument in RESERVED_COLUMNS:
            raise ConfigError(f"{key}: {instrument!r} is a column of the input tables")
        given = overrides or {}
        built = _build(InstrumentRules, given, key)
        if instrument not in rules:
            missing = [k for k in ("min", "max", "direction") if k not in given]
            if missing:
                raise ConfigError(
                    f"{key}: {instrument!r} is not in the catalogue; declaring it needs "
                    f"{', '.join(missing)} (catalogued: {', '.join(DEFAULT_RULES)})")
        base = dataclasses.asdict(rules.get(instrument, InstrumentRules()))
        explicit = {k: getattr(built, k) for k in given}
        rules[instrument] = InstrumentRules(**{**base, **explicit})
    return rules


def _check_custom(models: tuple[ModelSpec, ...]) -> None:
    """Refuse unsafe names and formulas of custom models before any data are read.

    A name must match :data:`MODEL_NAME` (it names output files, so ``x/../..`` could
    otherwise write outside the output folder) and differ from the built-in models and the
    other custom models; a formula must parse under the whitelist grammar of
    :mod:`pipeline.trajectories.formula_grammar` (``formulaic`` evaluates formulas as Python).
    """
    from pipeline.trajectories.formula import FormulaError, to_spec

    seen = set(BUILTIN_MODELS)
    for i, model in enumerate(models):
        where = f"trajectories.custom[{i}]"
        if not MODEL_NAME.match(model.name):
            raise ConfigError(f"{where}.name: {model.name!r} is not a safe name; use 1-64 "
                              "lower-case letters, digits and _, starting with a letter")
        if model.name in seen:
            raise ConfigError(f"{where}.name: {model.name!r} is already the name of "
                              "another model")
        seen.add(model.name)
        try:
            to_spec(model.formula, model.reml)
        except FormulaError as exc:
            raise ConfigError(f"{where}.formula: {exc}") from exc


def _check_instrument(name: str, rules: InstrumentRules) -> None:
    """The rules of one instrument must make sense together."""
    key = f"instruments.{name}"
    if rules.min is None or rules.max is None or not rules.min < rules.max:
        raise ConfigError(f"{key}.max: must be above min")
    if rules.remission_below is not None and rules.remission_at_most is not None:
        raise ConfigError(f"{key}: set remission_below or remission_at_most")
    if rules.response_reduction is not None and not 0 < rules.response_reduction <= 1:
        raise ConfigError(f"{key}.response_reduction: a share in (0, 1]")
    if rules.reliability is not None and not 0 <= rules.reliability < 1:
        raise ConfigError(f"{key}.reliability: a value in [0, 1)")
    if (rules.reliability is None) != (rules.sd_pre is None) and rules.reliable_change is None:
        raise ConfigError(f"{key}: a Jacobson-Truax reliable change needs both reliability "
                          "and sd_pre (or give reliable_change in points)")
    if rules.reliable_change is not None and rules.reliable_change <= 0:
        raise ConfigError(f"{key}.reliable_change: a positive number of points")
    if rules.sd_pre is not None and rules.sd_pre <= 0:
        raise ConfigError(f"{key}.sd_pre: a positive standard deviation")
    if rules.jt_cutoff not in ("a", "b", "c", "caseness"):
        raise ConfigError(f"{key}.jt_cutoff: use a, b, c or caseness")
    if not rules.lower_is_better:
        for field_name in ("response_reduction", "remission_below", "remission_at_most"):
            if getattr(rules, field_name) is not None:
                raise ConfigError(f"{key}.{field_name}: response and remission are defined "
                                  "only for lower_is_better scales")
    for field_name in ("caseness", "remission_below", "remission_at_most"):
        value = getattr(rules, field_name)
        if value is not None and not rules.min <= value <= rules.max:
            raise ConfigError(f"{key}.{field_name}: {value} is outside the range "
                              f"{rules.min}-{rules.max}")


def _check_names(config: StudyConfig) -> None:
    """Instrument references and condition codes must be known and well formed."""
    if config.primary_instrument not in config.instruments:
        raise ConfigError(f"primary_instrument: unknown instrument {config.primary_instrument!r}")
    for i, name in enumerate(config.paired_instruments):
        if name not in config.instruments:
            raise ConfigError(f"paired_instruments[{i}]: unknown instrument {name!r}")
    for key, section in (("trajectories.instrument", config.trajectories.instrument),
                         ("relapse.instrument", config.relapse.instrument),
                         ("audit.instrument", config.audit.instrument)):
        if section is not None and section not in config.instruments:
            raise ConfigError(f"{key}: unknown instrument {section!r}")
    for i, code in enumerate(config.conditions):
        if not isinstance(code, str) or not CODE.match(code):
            raise ConfigError(f"conditions[{i}]: a condition code is lower-case letters, "
                              f"digits and underscores, e.g. social_anxiety; got {code!r}")


def _check(config: StudyConfig) -> StudyConfig:
    """Cross-field rules that a type check cannot see."""
    _check_names(config)
    if config.baseline_rule not in ("assessment_else_first", "first_treatment"):
        raise ConfigError("baseline_rule: use assessment_else_first or first_treatment")
    if config.endpoint.rule not in ("last", "week"):
        raise ConfigError("endpoint.rule: use last or week")
    if config.endpoint.rule == "week" and config.endpoint.week is None:
        raise ConfigError("endpoint.week: required when endpoint.rule is week")
    for name, rules in config.instruments.items():
        _check_instrument(name, rules)
    _check_custom(config.trajectories.custom)
    known_models = set(BUILTIN_MODELS)
    unknown = set(config.trajectories.models) - known_models
    if unknown:
        raise ConfigError(f"trajectories.models: unknown {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known_models))}")
    if config.trajectories.max_patients is not None and (
            not isinstance(config.trajectories.max_patients, int)
            or config.trajectories.max_patients < 100):
        raise ConfigError("trajectories.max_patients: a whole number of at least 100, or null")
    if config.suppress_below < 1:
        raise ConfigError("suppress_below: at least 1")
    config = _contrast_weeks(config)
    _check_lists(config)
    _check_ranges(config)
    return config


def _contrast_weeks(config: StudyConfig) -> StudyConfig:
    """``trajectories.contrast_weeks``: at least one week, each at least 0 and named once;
    the deprecated single ``contrast_week`` is read as ``contrast_weeks: [week]``."""
    settings = config.trajectories
    weeks = settings.contrast_weeks
    if settings.contrast_week is not None:
        if weeks not in (Trajectories().contrast_weeks, (settings.contrast_week,)):
            raise ConfigError("trajectories.contrast_week: deprecated; give the weeks in "
                              "trajectories.contrast_weeks only")
        weeks = (settings.contrast_week,)
    if not weeks:
        raise ConfigError("trajectories.contrast_weeks: at least one week, e.g. [16]")
    for i, week in enumerate(weeks):
        if week < 0:
            raise ConfigError(f"trajectories.contrast_weeks[{i}]: a week (or session number) "
                              f"of at least 0, got {week!r}")
    if len(set(weeks)) < len(weeks):
        raise ConfigError(f"trajectories.contrast_weeks: each week once, got {list(weeks)}")
    return dataclasses.replace(config, trajectories=dataclasses.replace(
        settings, contrast_weeks=tuple(float(w) for w in weeks), contrast_week=None))


#: (key, value, smallest allowed, largest allowed); None: no bound on that side.
def _ranges(config: StudyConfig) -> list[tuple[str, float, float | None, float | None]]:
    pop, audit = config.populations, config.audit
    return [
        ("populations.finished_course_min_sessions", pop.finished_course_min_sessions, 1, None),
        ("populations.completer_min_sessions", pop.completer_min_sessions, 1, None),
        ("populations.final_phase_start", pop.final_phase_start, 1, None),
        ("populations.dropout_gap_weeks", pop.dropout_gap_weeks, 0, None),
        ("comparison.min_level_n", config.comparison.min_level_n, 1, None),
        ("relapse.min_events_per_parameter", config.relapse.min_events_per_parameter, 1, None),
        ("relapse.min_at_risk", config.relapse.min_at_risk, 1, None),
        ("audit.recovery_target", audit.recovery_target, 0, 1),
        ("audit.completeness_standard", audit.completeness_standard, 0, 1),
        ("audit.min_funnel_n", audit.min_funnel_n, 1, None),
        ("audit.winsorise", audit.winsorise, 0, 0.49),
        ("audit.overdispersion_alpha", audit.overdispersion_alpha, 0, 1),
        ("audit.min_level_n", audit.min_level_n, 1, None),
        ("audit.bootstrap_resamples", audit.bootstrap_resamples, 1, None),
        ("audit.planned_sessions", audit.planned_sessions, 1, None),
        ("audit.prediction_level", audit.prediction_level, 0.01, 0.999),
        ("audit.max_model_patients", audit.max_model_patients, 10, None),
    ]


def _check_ranges(config: StudyConfig) -> None:
    """Values outside their meaningful range (a share above 1, zero bootstrap resamples)."""
    for key, value, low, high in _ranges(config):
        if (low is not None and value < low) or (high is not None and value > high):
            span = (f"between {low} and {high}" if high is not None else f"at least {low}")
            raise ConfigError(f"{key}: {span}, got {value!r}")


def _check_lists(config: StudyConfig) -> None:
    """Ranges of the values inside lists (their types are checked on loading)."""
    first, second = config.paired_instruments
    for i, name in enumerate(config.paired_instruments):
        if name not in config.instruments:
            raise ConfigError(f"paired_instruments[{i}]: unknown instrument {name!r}; "
                              f"known: {', '.join(config.instruments)}")
    if first == second:
        raise ConfigError("paired_instruments: two different instruments")
    for i, level in enumerate(config.audit.funnel_levels):
        if not 0 < level < 1:
            raise ConfigError(f"audit.funnel_levels[{i}]: a share in (0, 1), got {level!r}")
    for i, week in enumerate(config.relapse.horizon_weeks):
        if week <= 0:
            raise ConfigError(f"relapse.horizon_weeks[{i}]: a positive number of weeks")
    if config.relapse.rmst_weeks <= 0:
        raise ConfigError("relapse.rmst_weeks: a positive number of weeks")
    if not isinstance(config.audit.seed, int) or config.audit.seed < 0:
        raise ConfigError(f"audit.seed: a whole number of at least 0, got {config.audit.seed!r}")


def from_mapping(values: dict[str, Any] | None) -> StudyConfig:
    """Build and check a config from a parsed YAML mapping (``None`` = all defaults)."""
    return _check(_build(StudyConfig, values or {}, ""))


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without aliases: ``*name`` repeats a node, so a short document of
    nested aliases (a "billion laughs") would expand to billions of list items when the
    config is checked. A study config has no need of them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed in a study config; "
                "write the value out", event.start_mark)
        return super().compose_node(parent, index)


def load(path: Path | None) -> StudyConfig:
    """Load a study config file (``None``: the defaults)."""
    if path is None:
        return from_mapping(None)
    try:
        values = yaml.load(path.read_text(), Loader=_NoAliasLoader)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from exc
    try:
        return from_mapping(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
