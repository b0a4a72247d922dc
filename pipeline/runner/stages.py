"""The pipeline's stages as pure functions: validated tables and a config in, a
``StageOutput`` (named tables, messages, row counts, records) out; figures are drawn
on the report side (``pipeline.report.stage_figures``). The command line writes
the outputs; the report reads them back.

Stages: ``outcomes`` (per-patient outcomes and rates), ``models`` (mixed-effects
trajectories), ``relapse`` (survival after acute treatment), ``audit`` (clinic audit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pandas as pd

from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord, NotEstimable, attempt
from pipeline.outcomes import definitions as outcomes
from pipeline.outcomes import rates as rate_functions
from pipeline.outcomes import tables as outcome_tables
from pipeline.outcomes.completeness import completeness_table
from pipeline.sharing import outcome_tables as shared_outcomes
from pipeline.sharing import relapse_tables as shared_relapse
from pipeline.sharing import trajectory_tables as shared_trajectories
from pipeline.sharing.publish import SharingOptions

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class StageOutput:
    """What one stage produced.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Written as ``OUT/<folder>/<name>.csv``.
    messages : tuple of str
        Plain-language notes for the report (smaller model used, fit on the boundary, ...).
    rows : dict of str to int
        Row counts for the manifest.
    folder : str
        ``tables`` or ``audit``.
    records : tuple of AnalysisRecord
        What became of each analysis of the stage (``pipeline.estimability``).
    figure_data : dict of str to DataFrame
        Data a figure needs that is not written as a table (not published).
    pseudonymised : bool
        The stage replaced ids by pseudonyms itself (the audit, which orders rows by them);
        otherwise ``pipeline.sharing.publish.table`` does when the tables are written.
    """

    tables: dict[str, pd.DataFrame]
    messages: tuple[str, ...] = ()
    rows: dict[str, int] = field(default_factory=dict)
    folder: str = "tables"
    records: tuple[AnalysisRecord, ...] = ()
    pseudonymised: bool = False
    figure_data: dict[str, pd.DataFrame] = field(default_factory=dict)


def completeness(patient_outcomes: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Share of finished courses with paired scores on both paired instruments (NHS
    Talking Therapies data-completeness standard: ``audit.completeness_standard``, 90%):
    :func:`pipeline.outcomes.completeness.completeness_table`, the computation the audit
    uses per unit.

    Raises
    ------
    NotEstimable
        When a paired instrument is not in the data, or nobody finished a course.
    """
    return completeness_table(patient_outcomes, config)


def derive_outcomes(tables: dict[str, pd.DataFrame], config: StudyConfig) -> pd.DataFrame:
    """The per-patient outcomes every analysis stage starts from (``outcomes.derive``)."""
    return outcomes.derive(tables["patients"], tables["sessions"], config)


def run_outcomes(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig,
    benchmarks: pd.DataFrame, sharing: SharingOptions,
) -> StageOutput:
    """The outcome tables and figures; each one an analysis at its own boundary."""
    records: list[AnalysisRecord] = []

    def step(name: str, func: Callable[[], T]) -> T | None:
        return attempt("outcomes", name, func, records)

    built: dict[str, pd.DataFrame | None] = {}
    rates = step("response_rates", lambda: outcome_tables.rate_table(patient_outcomes, config))
    built["response_rates"] = rates
    if rates is not None:
        built["response_rates_main"] = step(
            "response_rates_main", lambda: outcome_tables.main_rates(rates, config))
        built["benchmark_comparison"] = step(
            "benchmark_comparison", lambda: rate_functions.benchmark_comparison(
                rates, benchmarks, population=outcomes.main_population(config),
                primary=config.primary_instrument,
                defined=outcome_tables.defined_outcomes(patient_outcomes, config)))
    comparison = step("response_models",
                      lambda: outcome_tables.format_comparison(patient_outcomes, config))
    notes: tuple[str, ...] = ()
    if comparison is not None:
        built["response_models"] = comparison.table
        notes = comparison.notes
        built["response_standardised"] = step(
            "response_standardised", lambda: outcome_tables.standardised(comparison))
    built["attendance"] = step("attendance",
                               lambda: rate_functions.attendance_summary(patient_outcomes))
    built["completeness"] = step("completeness", lambda: completeness(patient_outcomes, config))
    counts = outcome_tables.flow_counts(patient_outcomes, tables.get("followups"))
    built["patient_flow"] = shared_outcomes.flow_table(counts)
    tables_built = {name: table for name, table in built.items() if table is not None}
    shared = tables_built if sharing.no_suppress else shared_outcomes.share(
        tables_built, config.suppress_below - 1, config.primary_instrument)[0]
    return StageOutput(
        tables={"patient_outcomes": patient_outcomes, **shared},
        messages=(*outcomes.population_notes(patient_outcomes, config), *notes),
        rows={"patient_outcomes": len(patient_outcomes), **counts},
        records=tuple(records),
    )


def run_models(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig,
    engine: str | None, sharing: SharingOptions | None = None,
) -> StageOutput:
    """Mixed-effects trajectory models (``pipeline.trajectories.models``); one record per model.
    The small counts of the observed means are hidden by
    ``pipeline.sharing.trajectory_tables`` unless ``sharing.no_suppress``.

    Tables only: the ``mixed_trajectories`` figure is drawn on the report side
    (``pipeline.report.trajectory_plots.stage_figures``) from the tables and the modelled
    instrument, passed as ``figure_data["mixed_trajectories"]`` (one row, ``instrument``).
    """
    from pipeline.trajectories import models as trajectories

    result = trajectories.analyse(tables["patients"], tables["sessions"], patient_outcomes,
                                  config, engine=engine)
    shown = dict(result.tables) if (sharing or SharingOptions()).no_suppress else \
        shared_trajectories.share(result.tables, config.suppress_below - 1)
    return StageOutput(shown, messages=tuple(result.messages),
                       rows={"models": len([t for t in result.tables if t.endswith("_fixed")])},
                       records=result.records,
                       figure_data={"mixed_trajectories": pd.DataFrame(
                           {"instrument": [result.instrument]})})


def _relapse(tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame,
             config: StudyConfig) -> StageOutput:
    from pipeline.relapse import analysis as relapse

    followups = tables.get("followups")
    if followups is None or followups.empty:
        raise NotEstimable("no follow-ups after treatment in the data",
                           "a followups table with post-treatment assessments")
    result = relapse.analyse(tables["patients"], tables["sessions"], followups,
                             patient_outcomes, config)
    cohort = result.tables.get("relapse_cohort", pd.DataFrame())
    return StageOutput(dict(result.tables), messages=tuple(result.messages),
                       rows={"relapse_cohort": len(cohort)},
                       records=result.records)


def run_relapse(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig,
    sharing: SharingOptions | None = None,
) -> StageOutput:
    """Relapse after acute treatment (``pipeline.relapse.analysis``); its count tables protected by
    ``pipeline.sharing.relapse_tables`` unless ``sharing.no_suppress``. Tables only: the
    figures are drawn from the (shared) tables by ``pipeline.report.relapse_plots``."""
    records: list[AnalysisRecord] = []
    output = attempt("relapse", "relapse", lambda: _relapse(tables, patient_outcomes, config),
                     records)
    if output is None:
        return StageOutput({}, records=tuple(records))
    if not (sharing or SharingOptions()).no_suppress:
        shared, _summary = shared_relapse.share(output.tables, config.suppress_below - 1)
        output = dataclasses.replace(output, tables=shared)
    if output.records:  # the relapse analyses recorded themselves
        return output
    return dataclasses.replace(output, records=tuple(records))


def _audit(tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame,
           config: StudyConfig, sharing: SharingOptions, key: bytes) -> StageOutput:
    from pipeline.audit import review as audit

    options = audit.AuditOptions(
        key=key or None, keep_ids=sharing.keep_ids, no_suppress=sharing.no_suppress,
        pseudonymise_therapists=sharing.pseudonymise_therapists,
        **dataclasses.asdict(config.audit),
    )
    result = audit.review(tables["patients"], tables["sessions"], patient_outcomes, config,
                          options)
    shown = dict(result.tables) if (sharing or SharingOptions()).no_suppress else \
        shared_trajectories.share(result.tables, config.suppress_below - 1)
    return StageOutput(shown, messages=tuple(result.messages),
                       rows={"audit_sites": len(result.tables.get("audit_sites", []))},
                       folder="audit", records=result.records, pseudonymised=True,
                       figure_data=dict(result.figure_data))


def run_audit(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig,
    sharing: SharingOptions, key: bytes,
) -> StageOutput:
    """The clinic audit (``pipeline.audit.review``); its funnel figures are drawn on the
    report side from ``figure_data`` (``pipeline.report.audit_plots.stage_figures``)."""
    records: list[AnalysisRecord] = []
    output = attempt("audit", "audit",
                     lambda: _audit(tables, patient_outcomes, config, sharing, key), records)
    if output is None:
        return StageOutput({}, folder="audit", records=tuple(records), pseudonymised=True)
    if output.records:
        return output
    return dataclasses.replace(output, records=tuple(records))
