"""Assemble the outcome tables of a study from the per-patient outcomes.

Pure: each function takes ``patient_outcomes`` (and the config) and returns one table, or
raises ``NotEstimable`` when the data cannot support it (``pipeline.runner.stages`` runs each at its
own boundary). Small-number suppression of the shared versions is ``pipeline.sharing``;
writing happens at the edge (``pipeline.cli``).
"""

from __future__ import annotations

import pandas as pd

from data_schemas.outcomes import outcome_instruments
from pipeline.config import StudyConfig
from pipeline.estimability import require
from pipeline.outcomes import comparison as response_models
from pipeline.outcomes import definitions as outcomes
from pipeline.outcomes import rates

#: The steps of the patient flow, each a subset of the one before, and their labels.
FLOW_STEPS = (
    ("referred", "Referred (valid records)"),
    ("started", "Started (>= 1 attended treatment session)"),
    ("finished_course", "Finished a course (ended, >= 2 sessions)"),
    ("completed_course", "Of them, completed (final phase or >= 12 sessions)"),
    ("followed_up", "Of them, followed up after treatment"),
)


def flow_counts(patient_outcomes: pd.DataFrame,
                followups: pd.DataFrame | None) -> dict[str, int]:
    """Patients at each step of the CONSORT-style flow (:data:`FLOW_STEPS`).

    Each step counts the patients of the step before who also meet its condition, so no
    arrow leads to a larger box: ``completed_course`` is the finished courses that were
    completed (the ``completers`` population also holds patients still in treatment), and
    ``followed_up`` those of them with a follow-up.
    """
    followed = pd.Series(False, index=patient_outcomes.index)
    if followups is not None and not followups.empty:
        followed = patient_outcomes["patient_id"].isin(set(followups["patient_id"]))
    steps = [pd.Series(True, index=patient_outcomes.index), patient_outcomes["started"],
             patient_outcomes["finished_course"], patient_outcomes["completers"], followed]
    within = pd.Series(True, index=patient_outcomes.index)
    counts = {}
    for (name, _label), condition in zip(FLOW_STEPS, steps, strict=True):
        within &= condition.astype(bool)
        counts[name] = int(within.sum())
    return counts


def defined_outcomes(patient_outcomes: pd.DataFrame,
                     config: StudyConfig) -> dict[str, tuple[str, ...]]:
    """Instrument (with columns in ``patient_outcomes``: in force and in the data) -> the
    rate outcomes its rules define; ``"phq9+gad7"`` -> the paired ones, when both paired
    instruments are in the data."""
    instruments = outcome_instruments(patient_outcomes)
    defined = {name: config.defined_outcomes(name) for name in instruments}
    both_paired = set(config.paired_instruments) <= set(instruments)
    defined[rates.PAIRED_INSTRUMENT] = config.paired_outcomes_defined() if both_paired else ()
    return defined


def rate_table(patient_outcomes: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """``response_rates``: every outcome that an instrument with a baseline defines (an
    undefined outcome has no row, never 0%), for the populations of the study
    (``outcomes.population_columns``: a trial's first)."""
    defined = defined_outcomes(patient_outcomes, config)
    return rates.response_rates(patient_outcomes, outcome_instruments(patient_outcomes),
                                populations=outcomes.population_columns(config),
                                defined=defined)


def main_rates(response_rates: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """``response_rates_main``: the rates a paper reports first (the main population:
    finished courses, or the randomised in a trial; response, remission, recovery and
    reliable improvement of the primary and paired instruments)."""
    population = outcomes.main_population(config)
    main = response_rates[
        (response_rates["population"] == population)
        & response_rates["outcome"].isin(["response", "remission", "recovery",
                                          "reliable_improvement"])
        & response_rates["instrument"].isin([config.primary_instrument, rates.PAIRED_INSTRUMENT])]
    require(not main.empty, f"no patient of the main population ({population}) has a rate "
            f"on the primary or paired instruments ({config.primary_instrument}, "
            f"{rates.PAIRED_INSTRUMENT})", _main_population_remedy(config))
    return main.reset_index(drop=True)


def format_comparison(patient_outcomes: pd.DataFrame,
                      config: StudyConfig) -> response_models.AdjustedComparison:
    """The adjusted comparison of the primary outcome between formats (main population:
    finished courses, or the randomised in a trial).

    Raises
    ------
    NotEstimable
        See :func:`pipeline.outcomes.comparison.adjusted_response`.
    """
    primary = config.primary_instrument
    comparison = config.comparison
    population = outcomes.main_population(config)
    finished = patient_outcomes[patient_outcomes[population].astype(bool)]
    require(not finished.empty, f"nobody in the main population ({population})",
            _main_population_remedy(config))
    require(comparison.outcome in defined_outcomes(patient_outcomes, config).get(primary, ()),
            f"{comparison.outcome} is not defined for {primary} (or {primary} has no scores)",
            f"an instrument whose catalogue entry defines {comparison.outcome} "
            "(primary_instrument, or comparison.outcome, in the study config)")
    return response_models.adjusted_response(
        finished,
        outcome=f"{primary}_{comparison.outcome}",
        baseline=f"{primary}_baseline",
        covariates=comparison.covariates,
        cluster=comparison.cluster,
        min_level_n=comparison.min_level_n,
    )


def _main_population_remedy(config: StudyConfig) -> str:
    """What would put patients in the main population (and a pointer for trials)."""
    if config.populations.definition == "trial":
        return "randomised patients with baseline and follow-up scores"
    return (f"finished courses (ended after >= {config.populations.finished_course_min_sessions}"
            " attended treatment sessions) with baseline and end scores; a trial recording "
            "assessments only sets populations.definition: trial")


def standardised(comparison: response_models.AdjustedComparison) -> pd.DataFrame:
    """``response_standardised``, or not estimable without an individual-group contrast."""
    require(comparison.standardised is not None,
            "the adjusted model has no individual-versus-group contrast",
            "patients with the outcome in both formats")
    assert comparison.standardised is not None
    return comparison.standardised
