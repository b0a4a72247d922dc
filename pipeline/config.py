"""The study configuration: every outcome definition in force, with published defaults.

A study config is a YAML file (read with ``yaml.safe_load``); any key left out takes the
default below, an unknown key or a bad value is a ``ConfigError`` that names it. Each default
carries its source in ``SOURCES``, which the report's methods section prints.

Instruments come from the shipped catalogue (``data_schemas/instruments.csv``, loaded by
``data_schemas.instruments``): ``DEFAULT_RULES`` and the instrument entries of ``SOURCES``
are read from it. A config's ``instruments:`` section overrides a catalogued instrument's
thresholds or declares a new one (``min``, ``max`` and ``direction`` required); its
``conditions:`` list adds condition codes to the built-in ones.

Definitions (for an instrument where a lower score is better; for a ``higher_is_better``
scale improvement is a rise, caseness is a score at or below ``caseness`` and response by
percentage reduction and remission are not defined):

- caseness: baseline score >= ``caseness``;
- response: reduction from baseline of at least ``response_reduction`` (0.5 = 50%), i.e.
  ``(baseline - endpoint) / baseline >= 0.5``; undefined when the baseline is 0;
- remission: endpoint < ``remission_below`` (PHQ-9) or endpoint <= ``remission_at_most``
  (HAM-D-17);
- reliable change: a fall (rise) of at least ``reliable_change`` points, or, when that is not
  set, the Jacobson-Truax reliable change index RCI = (x2 - x1) / S_diff, with
  S_diff = sqrt(2 * SE^2) and SE = SD_pre * sqrt(1 - r), beyond +-1.96.

References: Kroenke, Spitzer & Williams (2001) J Gen Intern Med 16:606; Spitzer et al. (2006)
Arch Intern Med 166:1092; NHS England, NHS Talking Therapies Manual (2024) and its
measurement conventions; Frank et al. (1991) Arch Gen Psychiatry 48:851 (response and
remission); Jacobson & Truax (1991) J Consult Clin Psychol 59:12; Beck, Steer & Brown (1996)
BDI-II Manual.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from data_schemas.instruments import CATALOGUE, THRESHOLDS, Instrument
from data_schemas.vocab import CONDITIONS

#: Lower-case column names: what an instrument or condition code may be called.
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
#: Columns of the input tables that an instrument cannot be named after.
RESERVED_COLUMNS = frozenset({
    "patient_id", "session_number", "session_date", "attendance", "followup_date",
    "clinician_relapse", "event", "site_id", "therapist_id", "group_id", "condition",
    "format", "problem_area", "secondary_problem_area", "referral_date", "start_date",
    "end_date", "end_reason", "age", "sex", "maintenance", "arm",
})


class ConfigError(ValueError):
    """A study config that cannot be used; the message names the key and the problem."""


@dataclass(frozen=True)
class InstrumentRules:
    """Scale and thresholds of one instrument; a threshold of ``None`` means the outcome is
    not defined for it (see ``data_schemas.instruments`` for the definitions)."""

    label: str | None = None
    min: float | None = None
    max: float | None = None
    whole: bool = True
    direction: Literal["lower_is_better", "higher_is_better"] = "lower_is_better"
    caseness: float | None = None
    response_reduction: float | None = None
    remission_below: float | None = None
    remission_at_most: float | None = None
    reliable_change: float | None = None
    reliability: float | None = None
    sd_pre: float | None = None
    clinical_mean: float | None = None
    clinical_sd: float | None = None
    functional_mean: float | None = None
    functional_sd: float | None = None
    jt_cutoff: Literal["a", "b", "c", "caseness"] = "caseness"

    @property
    def lower_is_better(self) -> bool:
        """True when a fall in score is an improvement."""
        return self.direction == "lower_is_better"

    def defines(self, outcome: str) -> bool:
        """Whether these rules define ``outcome`` (response, remission,
        reliable_improvement, reliable_deterioration, caseness)."""
        if outcome == "response":
            return self.response_reduction is not None and self.lower_is_better
        if outcome == "remission":
            return self.lower_is_better and (
                self.remission_below is not None or self.remission_at_most is not None)
        if outcome in ("reliable_improvement", "reliable_deterioration"):
            return self.reliable_change is not None or (
                self.reliability is not None and self.sd_pre is not None)
        if outcome == "caseness":
            return self.caseness is not None
        raise ValueError(f"unknown outcome {outcome!r}")


def rules_from(instrument: Instrument) -> InstrumentRules:
    """A catalogued instrument's scale and thresholds as config rules."""
    return InstrumentRules(
        label=instrument.label, min=instrument.min, max=instrument.max,
        whole=instrument.whole, direction=instrument.direction,
        jt_cutoff=instrument.jt_cutoff,
        **{name: getattr(instrument, name) for name in THRESHOLDS},
    )


@dataclass(frozen=True)
class Populations:
    """Who counts in which analysis population.

    ``definition``: ``service`` (default; NHS Talking Therapies: the main population is
    ``finished_course``) or ``trial``: every row of ``patients`` is a randomised patient and
    the main population is ``randomised`` (intention to treat, everyone analysed in the arm
    allocated: CONSORT 2010, item 16; ICH E9), with ``assessed`` (a post-baseline score on
    the primary instrument) beside it; see ``pipeline.outcomes.definitions.populations``.
    """

    definition: Literal["service", "trial"] = "service"
    final_phase_start: int = 14
    completer_min_sessions: int = 12
    finished_course_min_sessions: int = 2
    dropout_gap_weeks: float = 4.0


@dataclass(frozen=True)
class Endpoint:
    """Which score is the end-of-treatment score."""

    rule: Literal["last", "week"] = "last"
    week: float | None = None
    window_weeks: float = 2.0


@dataclass(frozen=True)
class Comparison:
    """The adjusted comparison of response between formats."""

    outcome: str = "response"
    cluster: str = "auto"
    covariates: tuple[str, ...] = ("condition", "format", "problem_area")
    min_level_n: int = 20


@dataclass(frozen=True)
class ModelSpec:
    """A researcher's own mixed model, in lme4 notation (see ``pipeline.trajectories.models``)."""

    name: str = "custom"
    formula: str = ""
    exclude_baseline: bool = False
    reml: bool = True


@dataclass(frozen=True)
class Trajectories:
    """Mixed-effects models of symptom trajectories (``pipeline.trajectories.models``)."""

    instrument: str | None = None  # None: the primary instrument
    time: Literal["weeks", "session_number", "log_weeks"] = "weeks"
    models: tuple[str, ...] = ("growth", "phases", "problem_area", "completers",
                               "pattern_mixture")
    engine: Literal["auto", "statsmodels", "mixedlm"] = "auto"
    #: weeks (session numbers on the session scale) at which the format difference is
    #: reported, one row per model and week
    contrast_weeks: tuple[float, ...] = (16.0,)
    #: deprecated: one week, read as ``contrast_weeks: [week]`` when the config is loaded
    contrast_week: float | None = None
    custom: tuple[ModelSpec, ...] = ()
    max_patients: int | None = 250_000  # None: every patient, whatever the size


@dataclass(frozen=True)
class Relapse:
    """Relapse after acute treatment (``pipeline.relapse.analysis``)."""

    #: remission | response (Frank et al. 1991) | completed (completers of the acute course
    #: ending below the relapse threshold, irrespective of response; Frank et al. 1990)
    at_risk: Literal["remission", "response", "completed"] = "remission"
    instrument: str | None = None  # None: the primary instrument
    threshold: float | None = None  # None: the instrument's caseness (PHQ-9 >= 10)
    cluster: Literal["none", "therapist", "group"] = "none"
    horizon_weeks: tuple[float, ...] = (26.0, 52.0)
    rmst_weeks: float = 52.0
    min_events_per_parameter: int = 10
    #: Kaplan-Meier curves in the relapse figure stop where fewer remain at risk
    min_at_risk: int = 10
    #: True: a clinician-recorded relapse's follow-up date is the day the relapse began (kept
    #: exact in the interval-censored analyses); False: it was found at that visit
    clinician_relapse_exact: bool = False


@dataclass(frozen=True)
class Audit:
    """The clinic audit's analysis options (``pipeline.audit.review``; privacy options are flags
    of the command line)."""

    recovery_target: float = 0.50
    effect_size_bands: tuple[tuple[str, float, float, float], ...] = (
        ("phq9", 0.91, 0.73, 0.46), ("gad7", 1.02, 0.78, 0.52))
    completeness_standard: float = 0.90
    min_funnel_n: int = 5
    funnel_levels: tuple[float, ...] = (0.95, 0.998)
    winsorise: float = 0.10
    overdispersion_alpha: float = 0.05
    adjust_overdispersion: bool = True
    min_level_n: int = 20
    case_mix_covariates: tuple[str, ...] = ("condition", "format", "problem_area", "age")
    bootstrap_resamples: int = 500
    seed: int = 20261122
    planned_sessions: int = 16
    prediction_level: float = 0.90
    max_model_patients: int = 1500
    instrument: str | None = None


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines the outcomes of a study."""

    primary_instrument: str = "phq9"
    baseline_rule: Literal["assessment_else_first", "first_treatment"] = "assessment_else_first"
    endpoint: Endpoint = field(default_factory=Endpoint)
    populations: Populations = field(default_factory=Populations)
    paired_instruments: tuple[str, str] = ("phq9", "gad7")
    instruments: dict[str, InstrumentRules] = field(default_factory=lambda: dict(DEFAULT_RULES))
    comparison: Comparison = field(default_factory=Comparison)
    benchmarks: str | None = None
    suppress_below: int = 5
    paper_size: Literal["A4", "letter"] = "A4"
    trajectories: Trajectories = field(default_factory=Trajectories)
    relapse: Relapse = field(default_factory=Relapse)
    audit: Audit = field(default_factory=Audit)
    conditions: tuple[str, ...] = ()

    def rules(self, instrument: str) -> InstrumentRules:
        """The rules of one instrument (empty rules for an unconfigured one)."""
        return self.instruments.get(instrument, InstrumentRules())

    def instrument(self, name: str) -> Instrument:
        """One instrument in force (catalogue plus config), with the source of each value:
        the catalogue's where the value is the catalogue's, else ``study config``."""
        rules = self.rules(name)
        if rules.min is None or rules.max is None:
            raise KeyError(f"instrument {name!r} is neither catalogued nor declared")
        base = CATALOGUE.get(name)
        values = {key: getattr(rules, key) for key in (*THRESHOLDS, "jt_cutoff", "whole",
                                                        "direction", "min", "max")}
        sources = {key: (base.sources.get(key, "") if base is not None
                         and getattr(base, key) == value else "study config")
                   for key, value in values.items()
                   if value is not None and not (key == "jt_cutoff" and value == "caseness")}
        return Instrument(name=name, label=rules.label or name, sources=sources, **values)

    def catalogue(self) -> dict[str, Instrument]:
        """Every instrument in force: the catalogue's, overridden or extended by the config."""
        return {name: self.instrument(name) for name in self.instruments}

    def instruments_in(self, columns: Iterable[str]) -> list[str]:
        """The instruments in force that have a column among ``columns`` (exact names, as
        in a validated table), in catalogue order."""
        present = set(columns)
        return [name for name in self.instruments if name in present]

    def condition_codes(self) -> tuple[str, ...]:
        """The allowed condition codes: the built-in ones and the config's."""
        return tuple(dict.fromkeys((*CONDITIONS, *self.conditions)))

    def defined_outcomes(self, instrument: str) -> tuple[str, ...]:
        """The per-instrument rate outcomes the instrument's rules define."""
        rules = self.rules(instrument)
        return tuple(o for o in ("response", "remission", "reliable_improvement")
                     if rules.defines(o))

    def paired_outcomes_defined(self) -> tuple[str, ...]:
        """The NHS Talking Therapies paired outcomes the paired instruments define:
        reliable improvement needs reliable change on both, recovery caseness on both."""
        first, second = (self.rules(name) for name in self.paired_instruments)
        reliable = first.defines("reliable_improvement") and \
            second.defines("reliable_improvement")
        caseness = first.defines("caseness") and second.defines("caseness")
        return tuple(name for name, ok in (("reliable_improvement", reliable),
                                           ("recovery", caseness),
                                           ("reliable_recovery", reliable and caseness))
                     if ok)


#: Defaults of every catalogued instrument (``data_schemas/instruments.csv``).
DEFAULT_RULES: dict[str, InstrumentRules] = {
    name: rules_from(instrument) for name, instrument in CATALOGUE.items()
}


def _catalogue_sources() -> dict[str, str]:
    """``instruments.<name>.<value>`` -> source, for every value the catalogue sets."""
    sources: dict[str, str] = {}
    for name, instrument in CATALOGUE.items():
        for key in (*THRESHOLDS, "jt_cutoff"):
            value = getattr(instrument, key)
            if value is not None and not (key == "jt_cutoff" and value == "caseness"):
                sources[f"instruments.{name}.{key}"] = instrument.sources[key]
    return sources


SOURCES: dict[str, str] = {
    **_catalogue_sources(),
    "populations.finished_course_min_sessions": "2 sessions: NHS Talking Therapies",
    "relapse.at_risk": "relapse after remission or response: Frank et al. 1991; after the "
                       "completed acute course: maintenance IPT trials, Frank et al. 1990",
    "populations.final_phase_start": "IPT final phase from session 14 of 12-16",
    "populations.definition": "trial: intention to treat = all randomised, analysed as "
                              "allocated (CONSORT 2010 item 16; ICH E9 1998)",
    "trajectories.max_patients": "computational: 250,000 patients fit in about 4 GB "
                                 "(docs/SCALING.md); the sample is stated in the report",
    "baseline_rule": "first score (assessment): NHS Talking Therapies",
    "endpoint.rule": "last score in treatment: NHS Talking Therapies",
    "suppress_below": "counts 1-4 shown as <5: NHS small-number disclosure control",
    "audit.recovery_target": "50% recovery: NHS Talking Therapies national standard",
    "audit.effect_size_bands": "pre-post effect size bands PHQ-9 0.91/0.73/0.46, GAD-7 "
                               "1.02/0.78/0.52: Delgadillo et al. 2014",
    "audit.completeness_standard": "90% paired scores: NHS Talking Therapies data standard",
    "audit.funnel_levels": "95% and 99.8% control limits: Spiegelhalter 2005",
    "audit.winsorise": "10% Winsorised z-scores for over-dispersion: Spiegelhalter 2005",
    "audit.prediction_level": "90% prediction band for not-on-track: Lutz et al. 1999",
}


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


BUILTIN_MODELS = ("growth", "phases", "problem_area", "completers", "pattern_mixture")
#: A model name becomes part of output file names: lower-case letters, digits and ``_``.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


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


def check_columns(config: StudyConfig, patient_columns: list[str]) -> None:
    """Covariates the config names must be columns of the patients table.

    Raises
    ------
    ConfigError
        Naming the key, the covariate and the columns there are.
    """
    keys = {"comparison.covariates": config.comparison.covariates,
            "audit.case_mix_covariates": config.audit.case_mix_covariates}
    for key, covariates in keys.items():
        for i, name in enumerate(covariates):
            if name not in patient_columns:
                raise ConfigError(f"{key}[{i}]: {name!r} is not a column of the patients "
                                  f"table (columns: {', '.join(patient_columns)})")


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


def resolved(config: StudyConfig) -> dict[str, Any]:
    """The full config as plain data, for the manifest and the methods section."""
    return dataclasses.asdict(config)


EXAMPLE = """\
# IPT outcomes: study configuration. Every key is optional; the values shown are the
# defaults, each with its source. Unknown keys are errors.

primary_instrument: phq9            # any instrument of the catalogue or declared below
baseline_rule: assessment_else_first  # session 0 if scored, else the first treatment session
                                    # (first_treatment: ignore session 0)
endpoint:
  rule: last                        # last score during treatment (NHS Talking Therapies)
  week: null                        # with rule: week, the score nearest this week...
  window_weeks: 2.0                 # ...within this many weeks
populations:
  definition: service               # service: main population finished_course (NHS TT);
                                    # trial: every patient is randomised; main population
                                    # randomised (ITT, CONSORT 2010), also assessed (a
                                    # post-baseline score on the primary instrument)
  finished_course_min_sessions: 2   # ended and >= 2 attended treatment sessions (NHS TT)
  final_phase_start: 14             # IPT final phase (sessions 14-16 of a 12-16 course)
  completer_min_sessions: 12        # completer: attended the final phase or >= 12 sessions
  dropout_gap_weeks: 4.0            # dropout: ended before the final phase, dropped_out or a
                                    # gap of more than this many weeks before the end
paired_instruments: [phq9, gad7]    # recovery and reliable improvement (NHS TT)
conditions: []                      # condition codes beyond the built-in ones, e.g.
                                    # [social_anxiety, ptsd] (lower case, underscores)
instruments:                        # the catalogue (data_schemas/instruments.csv: phq9, gad7,
                                    # hamd17, bdi2, madrs, qids_sr16, hama, epds, wsas, core10,
                                    # pdss, spin, pcl5, ocir, hai, iesr, mi) with its published
                                    # values; give a key to override it. An empty threshold
                                    # means the outcome is not defined (no rate is reported).
  phq9:
    caseness: 10                    # >= 10 (Kroenke et al. 2001; NHS TT)
    response_reduction: 0.5         # >= 50% fall from baseline (Frank et al. 1991)
    remission_below: 5              # < 5 (Kroenke et al. 2001)
    reliable_change: 6              # >= 6 points (NHS TT)
  gad7:
    caseness: 8                     # >= 8 (NHS TT)
    reliable_change: 4              # >= 4 points (NHS TT)
  hamd17:
    response_reduction: 0.5         # >= 50% fall (Frank et al. 1991)
    remission_at_most: 7            # <= 7 (Frank et al. 1991)
  bdi2:
    caseness: 14                    # >= 14, mild or worse (Beck, Steer & Brown 1996)
    response_reduction: 0.5         # >= 50% fall (Frank et al. 1991; Riedel et al. 2010)
    remission_at_most: 13           # <= 13, minimal range (Beck et al. 1996; Riedel 2010)
    reliability: 0.92               # Jacobson-Truax RCI: r (Beck et al. 1996, outpatients)
    sd_pre: 12.75                   # SD of pre-treatment scores (Beck et al. 1996)
    clinical_mean: 22.45            # outpatients (Beck et al. 1996)
    clinical_sd: 12.75
    functional_mean: 12.56          # college students (Beck et al. 1996)
    functional_sd: 9.93
    jt_cutoff: c                    # a: 2 SD (clinical) beyond the clinical mean;
                                    # b: 2 SD (functional) within the functional mean;
                                    # c: SD-weighted midpoint; caseness: below caseness
  # madrs: {response_reduction: 0.5, remission_below: 10}   # Hawley et al. 2002
  # core10: {caseness: 11, reliable_change: 6}              # Barkham et al. 2013
  # A study's own scale (a column `wellbeing` in sessions), declared here:
  # wellbeing:
  #   label: Wellbeing scale
  #   min: 14                       # required
  #   max: 70                       # required
  #   direction: higher_is_better   # required: lower_is_better | higher_is_better
  #   whole: true                   # optional (default true)
  #   caseness: 40                  # optional; at or below this is caseness here
  #   reliable_change: 8            # points, or reliability + sd_pre for the JT RCI
comparison:
  outcome: response                 # of the primary instrument, logistic GEE
  cluster: auto                     # auto: therapy group for group IPT, else therapist
  covariates: [condition, format, problem_area]
  min_level_n: 20                   # rarer levels are pooled to avoid separation
benchmarks: null                    # CSV of condition,outcome,rate,source (null: the example)
suppress_below: 5                   # counts 1-4 shown as <5 in shared files
paper_size: A4                      # the printed report: A4 or letter
trajectories:                       # mixed-effects models of every observed score (MAR)
  instrument: null                  # null: the primary instrument
  time: weeks                       # weeks since start_date | session_number | log_weeks
  models: [growth, phases, problem_area, completers, pattern_mixture]
  engine: auto                      # auto | statsmodels | mixedlm
  contrast_weeks: [16.0]            # format difference (group - individual) reported at
                                    # these weeks (session numbers on the session scale),
                                    # e.g. [8, 16]: one row per model and week
  max_patients: 250000              # more patients: models fit a sample of this many
                                    # (null: all; ~12 GB per million patients, docs/SCALING.md)
  custom: []                        # your own lme4-style models, e.g.
  # - name: trial                   # a-z, 0-9 and _ (it names the output tables)
  #   formula: "bdi2 ~ baseline_bdi2 + weeks + arm + (1 | patient_id)"
  #                                 # column names, numbers, ~ + - * : / ^ ( ) | ||,
  #                                 # I(), log(), exp() (+ - * / ** inside), poly(x, 2), C(x)
  #   exclude_baseline: true        # the baseline score is a covariate, not an outcome row
  #   reml: true
relapse:
  at_risk: remission                # remission | response at the end of acute treatment
                                    # (Frank et al. 1991) | completed: completers ending
                                    # below the threshold (Frank et al. 1990)
  instrument: null                  # null: the primary instrument
  threshold: null                   # relapse score; null: the instrument's caseness
  cluster: none                     # none | therapist | group: cluster-robust Cox SEs
  horizon_weeks: [26.0, 52.0]       # relapse-free proportions reported at these weeks
  rmst_weeks: 52.0                  # restricted mean survival time horizon
  min_events_per_parameter: 10      # fewer events: a smaller Cox model
  min_at_risk: 10                   # KM curves in the figure stop where fewer are at risk
  clinician_relapse_exact: false    # true: a clinician-recorded relapse is dated at onset
                                    # (exact); false: found at that follow-up visit, so
                                    # interval-censored like score relapses (Turnbull, AFT)
audit:                              # clinic audit (privacy: --keep-ids, --no-suppress flags)
  recovery_target: 0.5              # NHS Talking Therapies national recovery standard
  effect_size_bands:                # instrument, high, average, poor (Delgadillo et al. 2014)
    - [phq9, 0.91, 0.73, 0.46]
    - [gad7, 1.02, 0.78, 0.52]
  completeness_standard: 0.9        # paired-score completeness standard (NHS TT)
  min_funnel_n: 5                   # smaller units are not placed on a funnel
  funnel_levels: [0.95, 0.998]      # control limits (Spiegelhalter 2005)
  winsorise: 0.1                    # over-dispersion from Winsorised z-scores
  overdispersion_alpha: 0.05
  adjust_overdispersion: true
  min_level_n: 20                   # rarer case-mix levels are pooled
  case_mix_covariates: [condition, format, problem_area, age]
  bootstrap_resamples: 500          # effect-size CIs (percentile bootstrap)
  seed: 20261122                    # every random draw of the audit
  planned_sessions: 16              # for sessions_remaining of not-on-track patients
  prediction_level: 0.9             # expected recovery band (Lutz et al. 1999)
  max_model_patients: 1500          # recovery-curve model fitted on a seeded subset
  instrument: null                  # null: the primary instrument
"""


def for_data(config: StudyConfig, scored: list[str]) -> tuple[StudyConfig, list[str]]:
    """The config with its primary instrument resolved against the data.

    When no session carries a score of ``primary_instrument`` but other instruments are
    scored, the first of those (in ``scored`` order) becomes the primary instrument and a
    note says so: a BDI-II trial run with the defaults is analysed on the BDI-II instead of
    reporting every PHQ-9 analysis as not estimable.

    Parameters
    ----------
    config : StudyConfig
        The loaded config.
    scored : list of str
        Instruments with at least one score in the sessions, in catalogue order.
    """
    if config.primary_instrument in scored or not scored:
        return config, []
    chosen = scored[0]
    note = (f"primary instrument {config.primary_instrument} has no scores in the data; "
            f"{chosen} is used instead (set primary_instrument in the study config)")
    return dataclasses.replace(config, primary_instrument=chosen), [note]
