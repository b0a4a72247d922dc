"""Figures of the outcomes stage: the patient flow and rates by condition and format."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from pipeline.estimability import require
from pipeline.figures import FORMAT_COLOURS, new_figure
from pipeline.outcome_tables import FLOW_STEPS


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


def rates_figure(rates: pd.DataFrame, outcomes: tuple[tuple[str, str], ...]) -> Figure:
    """Rates with 95% CIs by condition (rows) and format (colours), one panel per outcome.

    ``rates`` is the ``response_rates`` table, already filtered to one population and
    denominator; ``outcomes`` lists (instrument, outcome) pairs.
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
        for k, fmt in enumerate(("individual", "group", "all")):
            part = cells[cells["format"] == fmt].set_index("condition").reindex(conditions)
            y = np.arange(len(conditions)) + (k - 1) * 0.25
            rate = pd.to_numeric(part["rate"], errors="coerce").to_numpy(float)
            low = pd.to_numeric(part["ci_low"], errors="coerce").to_numpy(float)
            high = pd.to_numeric(part["ci_high"], errors="coerce").to_numpy(float)
            # a Wilson bound can sit a rounding error beyond the rate (2.8e-17 above 0%)
            below = np.clip(rate - low, 0.0, None)
            above = np.clip(high - rate, 0.0, None)
            axes.errorbar(rate, y, xerr=[below, above], fmt="o", ms=4,
                          color=FORMAT_COLOURS[fmt], label=fmt, capsize=2)
        axes.set_yticks(np.arange(len(conditions)), conditions)
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.set_xlabel(f"{instrument} {outcome} rate (95% Wilson CI)")
        axes.grid(axis="x", alpha=0.3)
    panels[0].legend(loc="lower right", fontsize=8)
    return figure
