"""Figures of the trajectory models (:mod:`pipeline.trajectories.models`).

``stage_figures`` is the models stage's drawer (:mod:`pipeline.report.stage_figures`): it
draws ``mixed_trajectories`` from the stage's returned tables, the stage drawing nothing.

``trajectories_figure`` draws the model-based mean score by format over time points 0..16,
one panel per condition, with 95% confidence bands, from the ``mixed_trajectories`` table
(growth model; the pattern-mixture means are dashed when present, to show how far MNAR
dropout could move the curves) and, when given, the observed mean score at each time point
(``mixed_observed_means``) as points with 95% interval bars, so a reader sees where the
model follows the data and where it relies on the missing-at-random assumption (late weeks
hold the patients still attending). A point whose count is hidden (fewer patients than
``suppress_below``: its mean is blanked in the table) is not drawn. Figures are drawn on the
non-interactive Agg canvas without pyplot's global state, so the same table gives the same
picture; saving is the report's job.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from data_schemas.vocab import CONDITIONS, FORMATS
from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord, attempt
from pipeline.report.figures import FORMAT_COLOURS, new_figure

if TYPE_CHECKING:
    from pipeline.runner.stages import StageOutput

__all__ = ["stage_figures", "trajectories_figure"]

#: Observed points of the two formats sit this far either side of the time point.
DODGE: Final = 0.15
OBSERVED_LABEL: Final = "observed mean (95% CI)"

COLUMNS: Final = 4
STYLES: Final = {"growth": "-", "pattern_mixture": "--", "completers": ":"}
INSTRUMENT_NAMES: Final = {"phq9": "PHQ-9", "gad7": "GAD-7", "hamd17": "HAM-D-17",
                           "bdi2": "BDI-II"}
AXIS_LABELS: Final = {"weeks": "weeks since start", "session_number": "session",
                      "log_weeks": "weeks since start (log scale in the model)"}


def _ordered(values: pd.Series, vocabulary: tuple[str, ...]) -> list[str]:
    present = set(values.astype(str))
    return [v for v in vocabulary if v in present] + sorted(present - set(vocabulary))


def _observed(axes: Axes, observed: pd.DataFrame, condition: str) -> None:
    """The observed means of one condition (rows with a blanked mean are not drawn)."""
    cell = observed.loc[(observed["condition"].astype(str) == condition)]
    means = pd.to_numeric(cell["mean"], errors="coerce")
    cell = cell.loc[means.notna()]
    for fmt, rows in cell.groupby("format", sort=False):
        shift = {"individual": -DODGE, "group": DODGE}.get(str(fmt), 0.0)
        x = pd.to_numeric(rows["time_point"]) + shift
        y = pd.to_numeric(rows["mean"])
        low = (y - pd.to_numeric(rows["ci_low"], errors="coerce")).fillna(0.0)
        high = (pd.to_numeric(rows["ci_high"], errors="coerce") - y).fillna(0.0)
        axes.errorbar(x, y, yerr=[low.to_numpy(), high.to_numpy()], fmt="o", markersize=2.5,
                      color=FORMAT_COLOURS.get(str(fmt), "#444444"), elinewidth=0.8,
                      capsize=0, alpha=0.9, zorder=3)


def _panel(axes: object, table: pd.DataFrame, condition: str,
           observed: pd.DataFrame | None = None) -> None:
    """Curves and bands of one condition, with its observed means."""
    assert isinstance(axes, Axes)
    if observed is not None:
        _observed(axes, observed, condition)
    cell = table.loc[table["condition"] == condition]
    for (model, fmt), rows in cell.groupby(["model", "format"], sort=False):
        rows = rows.sort_values("time_point")
        colour = FORMAT_COLOURS.get(str(fmt), "#444444")
        label = f"{fmt} ({str(model).replace('_', ' ')} model)"
        axes.plot(rows["time_point"], rows["estimate"], STYLES.get(str(model), "-"),
                  color=colour, label=label, linewidth=1.5)
        if model == "growth":
            axes.fill_between(rows["time_point"], rows["ci_low"], rows["ci_high"],
                              color=colour, alpha=0.2, linewidth=0)
    axes.set_title(condition.replace("_", " "), fontsize=9)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)


def trajectories_figure(table: pd.DataFrame, instrument: str,
                        observed: pd.DataFrame | None = None,
                        models: tuple[str, ...] = ("growth", "pattern_mixture")) -> Figure:
    """Model-based mean trajectories by condition and format with 95% bands, and the
    observed means.

    Parameters
    ----------
    table : DataFrame
        ``mixed_trajectories`` (model, condition, format, time_scale, time_point, estimate,
        ci_low, ci_high).
    instrument : str
        Score name for the y-axis.
    observed : DataFrame or None
        ``mixed_observed_means`` (condition, format, time_point, mean, ci_low, ci_high;
        suppressed rows have no mean and are not drawn).
    models : tuple of str
        Models to draw (growth with bands; others as lines only).

    Returns
    -------
    Figure
    """
    shown = table.loc[table["model"].isin(models)]
    conditions = _ordered(shown["condition"], CONDITIONS)
    rows = max(1, math.ceil(len(conditions) / COLUMNS))
    columns = min(COLUMNS, max(1, len(conditions)))
    figure = new_figure(width=2.6 * columns + 0.6, height=2.3 * rows + 0.8)
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    for k, axes in enumerate(grid.flat):
        if k < len(conditions):
            _panel(axes, shown, conditions[k], observed)
            if k + columns >= len(conditions):  # no panel below: label the x axis here
                axes.tick_params(labelbottom=True)
        else:
            axes.set_axis_off()
    scale = str(shown["time_scale"].iloc[0]) if not shown.empty else "weeks"
    figure.supxlabel(AXIS_LABELS.get(scale, scale), fontsize=9)
    name = INSTRUMENT_NAMES.get(instrument, instrument)
    figure.supylabel(f"mean {name} (95% CI)", fontsize=9)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: _rank(labels[i]))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if observed is not None and not observed.empty:
        handles.append(Line2D([], [], marker="o", linestyle="", markersize=3,
                              color="#444444"))
        labels.append(OBSERVED_LABEL)
    figure.legend(handles, labels,
                  loc="outside upper center", ncols=max(1, len(labels)), fontsize=8,
                  frameon=False)
    return figure


def _rank(label: str) -> tuple[int, str]:
    fmt = label.split(" ")[0]
    return (FORMATS.index(fmt) if fmt in FORMATS else len(FORMATS), label)


def stage_figures(output: StageOutput, config: StudyConfig,
                  records: list[AnalysisRecord]) -> dict[str, Figure]:
    """The models stage's figure, ``mixed_trajectories``, from its returned tables.

    Drawn from ``mixed_trajectories`` and ``mixed_observed_means`` (whose small counts the
    stage already blanked) with the modelled instrument of ``figure_data``
    (``mixed_trajectories``: one row, column ``instrument``); recorded as the analysis
    "figure mixed_trajectories" of the models stage. No figure without the table.
    """
    del config  # the stage's own settings are in its output
    tables = output.tables
    if "mixed_trajectories" not in tables:
        return {}

    def draw() -> Figure:
        instrument = str(output.figure_data["mixed_trajectories"]["instrument"].iloc[0])
        return trajectories_figure(tables["mixed_trajectories"], instrument,
                                   tables.get("mixed_observed_means"))

    figure = attempt("models", "figure mixed_trajectories", draw, records)
    return {} if figure is None else {"mixed_trajectories": figure}
