"""Funnel-plot figures of the clinic audit (``pipeline.audit.review``), drawn without pyplot.

Only what the caller passes is drawn: the audit gives unit labels that are already
pseudonymised where needed and leaves out units whose counts are hidden in the shared
tables, so a figure never shows more than the tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.audit import funnels as funnel
from pipeline.report.figures import new_figure

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
