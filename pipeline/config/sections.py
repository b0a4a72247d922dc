"""The sections of a study config: frozen dataclasses with their published defaults.

:class:`StudyConfig` gathers :class:`Populations`, :class:`Endpoint`, :class:`Comparison`,
:class:`Trajectories` (with :class:`ModelSpec`), :class:`Relapse`, :class:`Audit` and one
:class:`InstrumentRules` per instrument (``DEFAULT_RULES`` from the catalogue). The
definitions and their sources are in the :mod:`pipeline.config` docstring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

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


BUILTIN_MODELS = ("growth", "phases", "problem_area", "completers", "pattern_mixture")
#: A model name becomes part of output file names: lower-case letters, digits and ``_``.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
