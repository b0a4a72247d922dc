"""Funnel-plot figures of the clinic audit (``pipeline.audit.review``), drawn without pyplot.

Only what the audit returned is drawn (``StageOutput.figure_data``, built by
``pipeline.audit.review.funnel_data``): unit labels already pseudonymised where needed, and
units whose counts are hidden in the shared tables left out, so a figure never shows more
than the tables.

Functions
---------
``stage_figures(output, config, records)``
    The audit stage's figures (``funnel_sites``, ``funnel_therapists``), each a recorded
    analysis; registered in ``pipeline.report.stage_figures.DRAWERS``.
``review_figures(figure_data)``
    The same figures from ``AuditResult.figure_data`` (for notebooks).
``funnel_figure(points, result, title, x_label, y_label)``
    One funnel plot.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.audit import funnels as funnel
from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord, attempt
from pipeline.report.figures import new_figure

if TYPE_CHECKING:
    from pipeline.runner.stages import StageOutput

STAGE = "audit"
#: Unit levels of the audit and their plural (figure ``funnel_<plural>``).
PLURALS = {"site": "sites", "therapist": "therapists"}

LIMIT_STYLES = {0.95: ("#1b6ca8", "--"), 0.998: ("#d1495b", "-")}
POINT_COLOURS = {"within": "#444444", "above": "#2a9d8f", "below": "#d1495b"}


def _colour(limit_hit: str) -> str:
    return POINT_COLOURS.get(limit_hit.split("_")[0], POINT_COLOURS["within"])


def funnel_figure(
    points: pd.DataFrame, result: funnel.FunnelResult, title: str, x_label: str, y_label: str
) -> Figure:
    """Adjusted rate against number of patients with control limits around the overall rate.

    Parameters
    ----------
    points : DataFrame
        Units to draw: label, n, rate, limit_hit. Units outside the 95% limits are labelled.
    result : FunnelResult
        Target, over-dispersion and limit levels (``pipeline.audit.funnels.analyse``).
    title, x_label, y_label : str
        Texts of the figure.

    Returns
    -------
    Figure
    """
    figure = new_figure(7.0, 4.6)
    axes = figure.add_subplot()
    n_max = float(max(points["n"].max() if len(points) else 0.0, 10.0)) * 1.08
    grid = np.linspace(2.0, n_max, 300)
    phi = result.dispersion.phi
    for level in result.levels:
        colour, style = LIMIT_STYLES.get(level, ("#888888", ":"))
        low, high = funnel.control_limits(result.p0, grid, level, phi)
        axes.plot(grid, low, color=colour, linestyle=style, linewidth=1,
                  label=f"{100 * level:g}% limits")
        axes.plot(grid, high, color=colour, linestyle=style, linewidth=1)
    axes.axhline(result.p0, color="#444444", linewidth=1, label=f"overall {result.p0:.1%}")
    colours = [_colour(str(hit)) for hit in points["limit_hit"]]
    axes.scatter(points["n"], points["rate"], c=colours, s=22, zorder=3)
    for label, n, rate, hit in zip(points["label"], points["n"].to_numpy(dtype=float),
                                   points["rate"].to_numpy(dtype=float), points["limit_hit"],
                                   strict=True):
        if str(hit) != funnel.WITHIN:
            axes.annotate(str(label), (n, rate), fontsize=7, xytext=(4, 3),
                          textcoords="offset points")
    note = (f"over-dispersion: phi = {result.dispersion.phi_hat:.2f}, "
            + ("limits widened" if result.dispersion.applied else "not applied"))
    axes.set_title(f"{title}\n{note}", fontsize=10)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_ylim(0, 1)
    axes.set_xlim(0, n_max)
    axes.legend(fontsize=7, loc="lower right")
    return figure


def _funnel_result(limits: pd.DataFrame) -> funnel.FunnelResult:
    """Target, over-dispersion and limit levels of one level, from its ``funnel_limits``
    rows (the units are not needed to draw the limits)."""
    first = limits.iloc[0]
    dispersion = funnel.Overdispersion(
        float(first["phi_hat"]), float(first["chi_square"]), int(first["df"]),
        float(first["p_value"]), bool(first["overdispersion_applied"]), float(first["phi"]))
    return funnel.FunnelResult(pd.DataFrame(), float(first["overall_rate"]), dispersion,
                               tuple(float(v) for v in limits["limit"]))


def level_figure(level: str, figure_data: Mapping[str, pd.DataFrame]) -> Figure:
    """The funnel figure of one level (``site`` or ``therapist``) from the audit's
    ``figure_data`` (``funnel_units``, ``funnel_limits``)."""
    units = figure_data["funnel_units"]
    limits = figure_data["funnel_limits"]
    mine = units[(units["level"] == level) & units["drawn"].astype(bool)]
    points = mine[["label", "n", "rate", "limit_hit"]]
    return funnel_figure(
        points, _funnel_result(limits[limits["level"] == level]),
        f"Case-mix adjusted recovery by {level}", "patients in the recovery denominator",
        f"standardised recovery rate ({PLURALS[level]})")


def _draw(figure_data: Mapping[str, pd.DataFrame],
          records: list[AnalysisRecord]) -> dict[str, Figure]:
    figures: dict[str, Figure | None] = {}
    if {"funnel_units", "funnel_limits"} <= set(figure_data):
        for level, plural in PLURALS.items():
            figures[f"funnel_{plural}"] = attempt(
                STAGE, f"figure funnel_{plural}",
                functools.partial(level_figure, level, figure_data), records)
    return {name: figure for name, figure in figures.items() if figure is not None}


def stage_figures(output: StageOutput, config: StudyConfig,
                  records: list[AnalysisRecord]) -> dict[str, Figure]:
    """The audit stage's funnel figures, from its ``figure_data``; each one an analysis of
    the stage (``figure funnel_sites``, ``figure funnel_therapists``). None when the
    per-unit part of the audit was not estimable."""
    del config
    return _draw(output.figure_data, records)


def review_figures(figure_data: Mapping[str, pd.DataFrame]) -> dict[str, Figure]:
    """The funnel figures of an ``AuditResult``'s ``figure_data`` (records discarded)."""
    return _draw(figure_data, [])
