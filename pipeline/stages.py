"""The pipeline's stages as pure functions: validated tables and a config in, a
``StageOutput`` (named tables, figures, messages, row counts) out. The command line writes
the outputs; the report reads them back.

Stages: ``outcomes`` (per-patient outcomes and rates), ``models`` (mixed-effects
trajectories), ``relapse`` (survival after acute treatment), ``audit`` (clinic audit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from pipeline import outcome_plots, outcome_tables, outcomes
from pipeline.config import StudyConfig


@dataclass(frozen=True, eq=False)
class StageOutput:
    """What one stage produced.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Written as ``OUT/<folder>/<name>.csv``.
    figures : dict of str to Figure
        Written as ``OUT/figures/<name>.png``.
    messages : tuple of str
        Plain-language notes for the report (smaller model used, fit on the boundary, ...).
    rows : dict of str to int
        Row counts for the manifest.
    folder : str
        ``tables`` or ``audit``.
    """

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    rows: dict[str, int] = field(default_factory=dict)
    folder: str = "tables"


@dataclass(frozen=True)
class SharingOptions:
    """How outputs are protected: pseudonyms and small-number suppression."""

    keep_ids: bool = False
    no_suppress: bool = False
    pseudonymise_therapists: bool = False


def completeness(patient_outcomes: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Share of finished courses with paired scores on both paired instruments (NHS
    Talking Therapies data-completeness standard: 90%)."""
    first, second = config.paired_instruments
    finished = patient_outcomes[patient_outcomes["finished_course"]]
    paired = finished[f"{first}_change"].notna() & finished[f"{second}_change"].notna()
    share = float(paired.mean()) if len(finished) else float("nan")
    return pd.DataFrame({
        "finished_courses": [len(finished)], "paired": [int(paired.sum())],
        "share_paired": [share], "standard": [0.9], "meets_standard": [bool(share >= 0.9)],
    })


def run_outcomes(
    tables: dict[str, pd.DataFrame], config: StudyConfig, benchmarks: pd.DataFrame,
    sharing: SharingOptions,
) -> tuple[StageOutput, pd.DataFrame]:
    """Per-patient outcomes and the outcome tables; returns the output and the patient table."""
    patient_outcomes = outcomes.derive(tables["patients"], tables["sessions"], config)
    built = outcome_tables.build(patient_outcomes, config, benchmarks)
    rates = built["response_rates"]
    main = rates[(rates["population"] == "finished_course")
                 & rates["outcome"].isin(["response", "remission", "recovery",
                                          "reliable_improvement"])
                 & rates["instrument"].isin([config.primary_instrument, "phq9+gad7"])]
    built["response_rates_main"] = main.reset_index(drop=True)
    built["completeness"] = completeness(patient_outcomes, config)
    shared = {
        name: table if sharing.no_suppress else outcome_tables.for_sharing(
            "response_rates" if name == "response_rates_main" else name, table,
            config.suppress_below)
        for name, table in built.items()
    }
    observed = rates[(rates["population"] == "finished_course")
                     & (rates["denominator"] == "observed")]
    counts = outcome_plots.flow_counts(patient_outcomes, tables.get("followups"))
    labels = {k: (f"<{config.suppress_below}" if 0 < v < config.suppress_below
                  and not sharing.no_suppress else f"{v:,}") for k, v in counts.items()}
    figures = {
        "patient_flow": outcome_plots.flow_figure(counts, labels),
        "outcome_rates": outcome_plots.rates_figure(
            observed, ((config.primary_instrument, "response"), ("phq9+gad7", "recovery"))),
    }
    output = StageOutput(
        tables={"patient_outcomes": patient_outcomes, **shared},
        figures=figures,
        messages=tuple(str(n) for n in built["response_model_notes"].get("note", [])),
        rows={"patient_outcomes": len(patient_outcomes), **counts},
    )
    return output, patient_outcomes


def run_models(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig,
    engine: str | None,
) -> StageOutput:
    """Mixed-effects trajectory models (``pipeline.trajectories``)."""
    from pipeline import trajectories

    result = trajectories.analyse(tables["patients"], tables["sessions"], patient_outcomes,
                                  config, engine=engine)
    return StageOutput(dict(result.tables), dict(result.figures), tuple(result.messages),
                       rows={"models": len([t for t in result.tables if t.endswith("_fixed")])})


def run_relapse(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig
) -> StageOutput:
    """Relapse after acute treatment (``pipeline.relapse``)."""
    from pipeline import relapse

    followups = tables.get("followups")
    if followups is None:
        return StageOutput({}, messages=("No followups table: relapse was not analysed.",))
    result = relapse.analyse(tables["patients"], tables["sessions"], followups,
                             patient_outcomes, config)
    cohort = result.tables.get("relapse_cohort", pd.DataFrame())
    return StageOutput(dict(result.tables), dict(result.figures), tuple(result.messages),
                       rows={"relapse_cohort": len(cohort)})


def run_audit(
    tables: dict[str, pd.DataFrame], patient_outcomes: pd.DataFrame, config: StudyConfig,
    sharing: SharingOptions, key: bytes,
) -> StageOutput:
    """The clinic audit (``pipeline.audit``)."""
    from pipeline import audit

    options = audit.AuditOptions(
        key=key or None, keep_ids=sharing.keep_ids, no_suppress=sharing.no_suppress,
        pseudonymise_therapists=sharing.pseudonymise_therapists,
        **dataclasses.asdict(config.audit),
    )
    result = audit.review(tables["patients"], tables["sessions"], patient_outcomes, config,
                          options)
    return StageOutput(dict(result.tables), dict(result.figures), tuple(result.messages),
                       rows={"audit_sites": len(result.tables.get("audit_sites", []))},
                       folder="audit")
