"""Figures of the outcomes stage: the patient flow and rates by condition and format."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord, attempt, require
from pipeline.outcomes import rates as rate_functions
from pipeline.outcomes.definitions import main_population
from pipeline.outcomes.tables import FLOW_STEPS
from pipeline.report.figures import FORMAT_COLOURS, GROUP_LABELS, new_figure
from pipeline.report.findings import instrument_label
from pipeline.sharing import outcome_tables as shared_outcomes

if TYPE_CHECKING:
    from pipeline.runner.stages import StageOutput


def flow_figure(counts: dict[str, int], labels: dict[str, str] | None = None) -> Figure:
    """A CONSORT-style flow: one box per step with its count (labels may be suppressed)."""
    figure = new_figure(6.5, 4.6)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_xlim(0, 1)
    axes.set_ylim(0, len(FLOW_STEPS))
    for i, (key, text) in enumerate(FLOW_STEPS):
        y = len(FLOW_STEPS) - i - 0.5
        axes.add_patch(FancyBboxPatch((0.08, y - 0.3), 0.84, 0.6, boxstyle="round,pad=0.02",
                                      facecolor="#eef3f8", edgecolor="#1b6ca8"))
        shown = (labels or {}).get(key, f"{counts[key]:,}")
        axes.text(0.5, y, f"{text}\nn = {shown}", ha="center", va="center", fontsize=9)
        if i < len(FLOW_STEPS) - 1:
            axes.annotate("", xy=(0.5, y - 0.68), xytext=(0.5, y - 0.32),
                          arrowprops={"arrowstyle": "->", "color": "#1b6ca8"})
    return figure


def _condition_label(code: str) -> str:
    return "All conditions" if code == "all" else code.replace("_", " ").capitalize()


def _rate_points(axes: Axes, cells: pd.DataFrame, conditions: list[str],
                 labels: dict[str, str]) -> None:
    """Each format's rates (%) with 95% CIs, one row per condition, formats offset."""
    for k, fmt in enumerate(("individual", "group", "all")):
        part = cells[cells["format"] == fmt].set_index("condition").reindex(conditions)
        y = np.arange(len(conditions)) + (k - 1) * 0.25
        rate = 100 * pd.to_numeric(part["rate"], errors="coerce").to_numpy(float)
        low = 100 * pd.to_numeric(part["ci_low"], errors="coerce").to_numpy(float)
        high = 100 * pd.to_numeric(part["ci_high"], errors="coerce").to_numpy(float)
        # a Wilson bound can sit a rounding error beyond the rate (2.8e-17 above 0%)
        axes.errorbar(rate, y, xerr=[np.clip(rate - low, 0, None), np.clip(high - rate, 0, None)],
                      fmt="o", ms=4, color=FORMAT_COLOURS[fmt], capsize=2,
                      label=labels.get(fmt, GROUP_LABELS[fmt]))


def rates_figure(rates: pd.DataFrame, outcomes: tuple[tuple[str, str], ...],
                 targets: dict[tuple[str, str], float] | None = None) -> Figure:
    """Rates (%) with 95% CIs by condition (rows) and format (colours), one panel per
    outcome, with each outcome's target (e.g. 50% recovery) drawn where one is given.

    ``rates`` is the ``response_rates`` table, already filtered to one population and
    denominator; ``outcomes`` lists (instrument, outcome) pairs; ``targets`` maps a pair to
    its target proportion.
    """
    shown = tuple((i, o) for i, o in outcomes
                  if ((rates["instrument"] == i) & (rates["outcome"] == o)).any())
    require(bool(shown), "no finished course has "
            + " or ".join(f"{i} {o}" for i, o in outcomes) + " to plot",
            "finished courses with baseline and end-of-treatment scores")
    outcomes = shown
    figure = new_figure(7.5, 1.2 + 2.6 * len(outcomes))
    panels = figure.subplots(len(outcomes), 1, squeeze=False)[:, 0]
    for axes, (instrument, outcome) in zip(panels, outcomes, strict=True):
        cells = rates[(rates["instrument"] == instrument) & (rates["outcome"] == outcome)]
        conditions = list(dict.fromkeys(cells["condition"]))
        _rate_points(axes, cells, conditions, {"all": "All"})
        target = (targets or {}).get((instrument, outcome))
        if target is not None:
            axes.axvline(100 * target, color="black", linestyle="--", linewidth=1)
            axes.annotate(f"target {100 * target:.0f}%", (100 * target, 1.0),
                          xycoords=("data", "axes fraction"), xytext=(3, -10),
                          textcoords="offset points", fontsize=8)
        axes.set_yticks(np.arange(len(conditions)), [_condition_label(c) for c in conditions])
        axes.invert_yaxis()
        axes.set_xlim(0, 100)
        axes.set_xlabel(f"{instrument_label(instrument)} {outcome.replace('_', ' ')} (%), "
                        "95% Wilson CI")
        axes.grid(axis="x", alpha=0.3)
    panels[0].legend(loc="lower right", fontsize=8)
    return figure


def headline_figure(rates: pd.DataFrame, benchmarks: pd.DataFrame | None,
                    instrument: str, outcome: str = "response") -> Figure:
    """The first screen's figure: one outcome by condition (rows) and format (colours), in
    %, with 95% Wilson CIs and each condition's benchmark (a black bar) where one is set.

    ``rates`` is the shared ``response_rates`` of one population and denominator (a
    suppressed rate is blank and not drawn); ``benchmarks`` is ``benchmark_comparison``.
    """
    cells = rates[(rates["instrument"] == instrument) & (rates["outcome"] == outcome)]
    require(not cells.empty, f"no {instrument} {outcome} rate to plot",
            "finished courses with baseline and end-of-treatment scores")
    conditions = [c for c in dict.fromkeys(cells["condition"]) if c != "all"] + ["all"]
    figure = new_figure(7.5, 0.8 + 0.28 * len(conditions))
    axes = figure.add_subplot()
    _rate_points(axes, cells, conditions, {"all": "Both formats"})
    if benchmarks is not None and not benchmarks.empty:
        marks = benchmarks[benchmarks["outcome"] == outcome]
        for row, condition in enumerate(conditions):
            value = marks.loc[marks["condition"] == condition, "benchmark_rate"]
            if not value.empty:
                x = 100 * float(value.iloc[0])
                axes.plot([x, x], [row - 0.4, row + 0.4], color="black", lw=2,
                          label="benchmark" if "benchmark" not in
                          axes.get_legend_handles_labels()[1] else None)
    axes.set_yticks(np.arange(len(conditions)), [_condition_label(c) for c in conditions])
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel(f"{instrument_label(instrument)} {outcome} (%), 95% Wilson CI")
    axes.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside upper center", fontsize=8, ncols=4, frameon=False)
    return figure


def stage_figures(output: StageOutput, config: StudyConfig,
                  records: list[AnalysisRecord]) -> dict[str, Figure]:
    """The outcomes stage's figures, from its (shared) tables: the patient flow (counts in
    ``output.rows``, shown as the shared table's labels), the rates figure and the first
    screen's figure (with the benchmarks it is compared with), each a recorded analysis.
    A suppressed rate is not drawn, because the shared tables do not hold it."""
    tables = output.tables
    counts = {key: output.rows[key] for key, _text in FLOW_STEPS}
    labels = shared_outcomes.flow_labels(tables["patient_flow"])
    figures = {"patient_flow": attempt("outcomes", "figure patient_flow",
                                       lambda: flow_figure(counts, labels), records)}
    rates = tables.get("response_rates")
    if rates is not None:
        observed = rates[(rates["population"] == main_population(config))
                         & (rates["denominator"] == "observed")]
        paired = rate_functions.PAIRED_INSTRUMENT
        figures["outcome_rates"] = attempt(
            "outcomes", "figure outcome_rates", lambda: rates_figure(
                observed, ((config.primary_instrument, "response"), (paired, "recovery")),
                {(paired, "recovery"): config.audit.recovery_target}), records)
        figures["headline"] = attempt(
            "outcomes", "figure headline", lambda: headline_figure(
                observed, tables.get("benchmark_comparison"), config.primary_instrument),
            records)
    return {name: figure for name, figure in figures.items() if figure is not None}
