"""Tables for papers: the content of the five main tables, as text, from a run's outputs.

Each builder takes the tables a run wrote (read as text, exactly as on disk) and returns a
:class:`PaperTable`: a caption, a body of display strings and the notes under it. Writing
them as LaTeX or Word is :mod:`pipeline.report.paper_export`'s job; nothing here reads or writes
files.

Numbers read as they do in the HTML report, so a reader finds the same value everywhere:

* estimates, standard errors and intervals of models with three decimals, p-values below
  0.001 as ``<0.001`` (:func:`pipeline.report.html.format_cell`);
* rates and survival probabilities as percentages with one decimal (``58.1%``), their
  intervals as ``47.9%-67.6%`` (with an en dash);
* counts as written in the CSV, with thousands separators; a count hidden by the sharing
  layer keeps its label (``<5``: a small count of 1 to 4; ``*``: hidden so that a small
  count cannot be worked back), and the rate of a row with a hidden count reads
  ``suppressed``.

Table 1 (baseline characteristics by format) is the one table built from patient-level
data (``patient_outcomes.csv``); its counts go through the same small-number suppression
as the shared outcome tables (:func:`pipeline.sharing.suppression.protect_tables`, primary
and complementary across the format and level margins) unless the run was ``--no-suppress``.

A table whose analysis is missing from the run (not estimable, failed or not run) is not an
error: :func:`missing_table` gives a one-cell table that says so, with the reason recorded
in ``tables/analyses.csv``.

Modules
-------
This module builds Tables 2 (main outcomes) and 3 (the adjusted comparison of formats) and
re-exports every public name of the others, so ``paper_tables.<name>`` reaches them all:
:mod:`pipeline.report.paper_cells` (labels, formatted numbers, notes, :class:`PaperTable`),
:mod:`pipeline.report.paper_baseline` (Table 1), :mod:`pipeline.report.paper_growth`
(Table 4) and :mod:`pipeline.report.paper_relapse` (Table 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.config import StudyConfig
from pipeline.report.findings import percent
from pipeline.report.html import format_cell, main_population
from pipeline.report.paper_baseline import (
    BaselineSpec,
    baseline_body,
    baseline_counts,
    baseline_statistics,
    group_levels,
    protect_baseline,
    shared_condition_counts,
    table1_baseline,
)
from pipeline.report.paper_cells import (
    DASH,
    INSTRUMENT_LABELS,
    NO_SUPPRESSION_NOTE,
    NOT_ESTIMABLE,
    OUTCOME_LABELS,
    RANGE,
    SUPPRESSED,
    PaperTable,
    analysis_reason,
    count,
    is_blank,
    is_suppressed,
    label,
    missing_table,
    number_ci,
    percent_ci,
    suppression_note,
    term_label,
)
from pipeline.report.paper_growth import table4_growth
from pipeline.report.paper_relapse import table5_relapse
from pipeline.sharing.suppression import ALL

__all__ = [
    "DASH",
    "INSTRUMENT_LABELS",
    "NOT_ESTIMABLE",
    "NO_SUPPRESSION_NOTE",
    "OUTCOME_LABELS",
    "RANGE",
    "SUPPRESSED",
    "BaselineSpec",
    "PaperTable",
    "analysis_reason",
    "baseline_body",
    "baseline_counts",
    "baseline_statistics",
    "count",
    "label",
    "main_outcomes",
    "missing_table",
    "number_ci",
    "outcome_label",
    "percent_ci",
    "protect_baseline",
    "rate_cell",
    "shared_condition_counts",
    "suppression_note",
    "table1_baseline",
    "table2_outcomes",
    "table3_comparison",
    "table4_growth",
    "table5_relapse",
    "term_label",
]


# --------------------------------------------------------------------------- table 2


def main_outcomes(primary: str) -> tuple[tuple[str, str], ...]:
    """The outcomes of Table 2 (those of the report's headline rates)."""
    return ((primary, "response"), (primary, "remission"),
            ("phq9+gad7", "reliable_improvement"), ("phq9+gad7", "recovery"))


def rate_cell(row: Mapping[Any, Any]) -> str:
    """``events/n, rate% (low%-high%)``; ``events/n, suppressed`` for a row with a hidden
    count; an en dash for a rate that does not exist (no patient)."""
    counts = f"{count(row['events'])}/{count(row['n'])}"
    if is_blank(row.get("rate", "")):
        return f"{counts}, {SUPPRESSED if is_suppressed(row) else DASH}"
    return f"{counts}, {percent(row['rate'])} ({percent_ci(row['ci_low'], row['ci_high'])})"


def outcome_label(instrument: str, outcome: str) -> str:
    """``Response (PHQ-9)``."""
    return (f"{OUTCOME_LABELS.get(outcome, label(outcome))} "
            f"({INSTRUMENT_LABELS.get(instrument, instrument)})")


def table2_outcomes(rates: pd.DataFrame, primary: str, denominator: str = "observed",
                    suppress_below: int | None = StudyConfig.suppress_below) -> PaperTable:
    """Table 2: outcomes by condition and format, from ``response_rates.csv``.

    The main population (``finished_course``, or ``randomised`` for a trial) and the
    ``observed`` denominator (patients whose outcome is known). One block of rows per
    outcome (a heading line, then one line per condition and the ``all`` margin), one
    column per format and ``all``; each cell ``events/n, rate (95% CI)`` exactly as in the
    CSV (rounded as in the report).
    """
    caption = "Table 2. Outcomes by condition and format"
    source = ("tables/response_rates.csv",)
    needed = {"population", "instrument", "outcome", "denominator", "condition", "format",
              "n", "events", "rate", "ci_low", "ci_high"}
    if rates.empty or not needed <= set(rates.columns):
        return missing_table("table2_outcomes", caption, "response_rates.csv is missing or "
                             "incomplete", source)
    population = main_population(rates)
    part = rates[(rates["population"] == population) & (rates["denominator"] == denominator)]
    wanted = [o for o in main_outcomes(primary)
              if ((part["instrument"] == o[0]) & (part["outcome"] == o[1])).any()]
    if not wanted:
        return missing_table("table2_outcomes", caption, f"no {primary} outcome rates in "
                             "response_rates.csv", source)
    formats = [*(f for f in group_levels(part["format"]) if f != ALL), ALL]
    headers = {f: _margin_label(f) if f != ALL else "All formats" for f in formats}
    lines: list[dict[str, str]] = []
    for instrument, outcome in wanted:
        rows = part[(part["instrument"] == instrument) & (part["outcome"] == outcome)]
        lines.append({"Outcome and condition": outcome_label(instrument, outcome),
                      **{headers[f]: "" for f in formats}})
        cells = {(str(r["condition"]), str(r["format"])): rate_cell(r)
                 for r in rows.to_dict("records")}
        conditions = [c for c in dict.fromkeys(rows["condition"].astype(str)) if c != ALL]
        for condition in [*conditions, ALL]:
            lines.append({"Outcome and condition": "   " + (
                label(condition) if condition != ALL else "All conditions"),
                **{headers[f]: cells.get((condition, f), DASH) for f in formats}})
    body = pd.DataFrame(lines, columns=["Outcome and condition", *headers.values()])
    notes = (f"Population: {population.replace('_', ' ')}; denominator: {denominator} "
             "(patients whose outcome is known). Cells: events/n, rate (95% CI).",
             "Response: a fall of at least 50% from baseline; remission: below the "
             "instrument's remission cut-off at the end; reliable improvement and recovery "
             "as defined by NHS Talking Therapies (PHQ-9 and GAD-7).",
             suppression_note(suppress_below), "Source: tables/response_rates.csv.")
    return PaperTable("table2_outcomes", caption, body.reset_index(drop=True), notes, source)


def _margin_label(value: Any) -> str:
    return "All" if str(value) == ALL else label(str(value))


# --------------------------------------------------------------------------- table 3


def table3_comparison(standardised: pd.DataFrame | None, models: pd.DataFrame | None,
                      outcome: str = "response", reason: str = "") -> PaperTable:
    """Table 3: the adjusted comparison of formats, from ``response_standardised.csv``
    (rates standardised to the whole population's case mix, and their difference) and
    ``response_models.csv`` (odds ratios of the logistic model with robust SEs)."""
    caption = f"Table 3. Adjusted comparison of group and individual IPT ({outcome})"
    sources = ("tables/response_standardised.csv", "tables/response_models.csv")
    rows: list[dict[str, str]] = []
    if standardised is not None and not standardised.empty:
        names = {"rate_individual": "Standardised rate, individual",
                 "rate_group": "Standardised rate, group",
                 "risk_difference": "Risk difference, group - individual"}
        for r in standardised.to_dict("records"):
            interval = (f"{percent(r['ci_low'])} to {percent(r['ci_high'])}"
                        if r["quantity"] == "risk_difference"  # bounds may be negative
                        else percent_ci(r["ci_low"], r["ci_high"]))
            rows.append({"Quantity": names.get(str(r["quantity"]), label(r["quantity"])),
                         "Estimate": percent(r["estimate"]), "95% CI": interval, "p": ""})
    if models is not None and not models.empty:
        for r in models.to_dict("records"):
            rows.append({"Quantity": f"Odds ratio, {term_label(r['term'])}",
                         "Estimate": format_cell(r["odds_ratio"]),
                         "95% CI": number_ci(r["ci_low"], r["ci_high"]),
                         "p": format_cell(r.get("p_value", ""), "p_value")})
    if not rows:
        return missing_table("table3_comparison", caption, reason or "no adjusted comparison "
                             "in the run", sources)
    notes = ("Standardised rates: the logistic model's predictions averaged over every "
             "patient as if all had had each format (marginal standardisation); the "
             "difference is in percentage points.",
             "Odds ratios from a logistic model fitted by GEE with robust (sandwich) "
             "standard errors, patients clustered by therapy group, else therapist "
             "(comparison.cluster in the study config); each level against the reference "
             "level of its variable.",
             f"Sources: {', '.join(sources)}.")
    return PaperTable("table3_comparison", caption, pd.DataFrame(rows), notes, sources)
