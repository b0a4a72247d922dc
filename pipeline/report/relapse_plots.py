"""Figures of the relapse analysis (:mod:`pipeline.relapse.analysis`): Kaplan-Meier curves with
numbers at risk, cumulative incidence curves and a forest plot of hazard ratios.

:func:`stage_figures` draws them from what the relapse stage returned (its shared tables),
for :data:`pipeline.report.stage_figures.DRAWERS`.

Every function returns a new :class:`matplotlib.figure.Figure` drawn on the non-interactive
Agg canvas, built without pyplot's global figure registry, so nothing is shown, nothing leaks
between calls and the same input gives the same picture. Saving is the report's job.

Numbers at risk under the Kaplan-Meier curves come from lifelines ``add_at_risk_counts``
(patients still followed just after ``t``, ``time_weeks > t``; the same numbers as the
``relapse_km_at_risk`` table), at multiples of 13 weeks (3 months). Kaplan-Meier curves stop
where fewer than ``relapse.min_at_risk`` patients remain at risk; the interval-censored
Turnbull curve (:mod:`pipeline.relapse.interval`) is drawn dashed beside each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.plotting import add_at_risk_counts
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

from pipeline.config import StudyConfig
from pipeline.estimability import DONE, AnalysisRecord, attempt
from pipeline.relapse.cohort import RELAPSE
from pipeline.relapse.strata import ALL, ordered_levels, stratum_labels
from pipeline.report.figures import GROUP_COLOURS, GROUP_LABELS

if TYPE_CHECKING:
    from pipeline.runner.stages import StageOutput

__all__ = ["cif_figure", "forest_figure", "km_figure", "last_time_at_risk", "stage_figures"]

TICK_WEEKS: Final = 13.0
TITLES: Final = {"all": "All patients at risk", "format": "By format",
                 "maintenance": "By maintenance IPT", "condition": "By condition"}


def _canvas(width: float, height: float) -> Figure:
    """A new figure on an Agg canvas (not registered with pyplot)."""
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _empty(text: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    figure = _canvas(6.0, 3.0)
    axes = figure.add_subplot()
    axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    axes.set_axis_off()
    return figure


def _groups(cohort: pd.DataFrame, variable: str) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per level in the tables' order (:mod:`pipeline.relapse.strata`); the
    whole cohort for ``"all"``."""
    if variable == ALL:
        return [(ALL, cohort)]
    labels = stratum_labels(cohort[variable])
    return [(level, cohort.loc[labels == level]) for level in ordered_levels(labels, variable)]


def _ticks(cohort: pd.DataFrame) -> list[float]:
    longest = float(cohort["time_weeks"].max())
    return [float(t) for t in np.arange(0.0, longest + TICK_WEEKS, TICK_WEEKS)]


def last_time_at_risk(times: pd.Series, min_at_risk: int) -> float | None:
    """The last observed time at which at least ``min_at_risk`` patients are at risk.

    At risk at ``t``: followed up to ``t`` or later without relapse or competing event,
    ``#(time_weeks >= t)`` (lifelines' ``event_table.at_risk``). ``None`` when fewer than
    ``min_at_risk`` patients are in the group at all.
    """
    values = np.sort(times.to_numpy(dtype=float))
    at_risk = len(values) - np.searchsorted(values, values, side="left")
    enough = values[at_risk >= min_at_risk]
    return float(enough.max()) if enough.size else None


def _turnbull_line(axes: Axes, turnbull: pd.DataFrame | None, variable: str, label: str,
                   stop: float, color: Any) -> None:
    """The Turnbull NPMLE of one group, dashed, joining the values where it is unique."""
    if turnbull is None:
        return
    rows = turnbull[(turnbull["stratum_variable"] == variable)
                    & (turnbull["stratum"].astype(str) == label)
                    & turnbull["relapse_free"].notna() & (turnbull["time_weeks"] <= stop)]
    if len(rows):
        axes.plot(rows["time_weeks"], rows["relapse_free"], linestyle="--", color=color,
                  linewidth=1.2, label=f"{GROUP_LABELS.get(label, label)} (Turnbull)")


def km_figure(cohort: pd.DataFrame, by: Sequence[str] = ("format", "maintenance"),
              min_at_risk: int = 10, turnbull: pd.DataFrame | None = None,
              shared_at_risk: pd.DataFrame | None = None) -> Figure:
    """Kaplan-Meier relapse-free survival: all patients and one panel per variable in ``by``.

    Competing events are censored; 95% log(-log) bands; numbers at risk below each panel.
    Each curve stops at the last time at which at least ``min_at_risk`` patients are at risk
    (:func:`last_time_at_risk`; ``relapse.min_at_risk``): beyond it the estimate rests on too
    few patients to be drawn. With ``turnbull`` (the ``relapse_free_interval`` table of
    :mod:`pipeline.relapse.interval`) the interval-censored NPMLE of each group is drawn
    dashed beside it, through the points where it is unique, up to the same time.

    Parameters
    ----------
    cohort : DataFrame
        The relapse cohort (time_weeks, event, and the ``by`` columns).
    by : sequence of str
        Variables with a panel each (absent ones are skipped).
    min_at_risk : int
        Curves stop where fewer patients remain at risk.
    turnbull : DataFrame, optional
        stratum_variable, stratum, time_weeks, relapse_free.
    shared_at_risk : DataFrame, optional
        The shared ``relapse_km_at_risk`` (``pipeline.sharing.relapse_tables``): the numbers
        at risk are printed as it shows them (``<5``, ``*``), and a group whose counts it
        hides is not drawn (its steps would give its relapses back).
    """
    if len(cohort) == 0:
        return _empty("No patients at risk of relapse with follow-up.")
    panels = ["all", *(v for v in by if v in cohort)]
    figure = _canvas(5.5 * len(panels), 6.0)
    ticks = _ticks(cohort)
    for position, variable in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), position)
        fitters = []
        for label, rows in _groups(cohort, variable):
            fitter = KaplanMeierFitter(label=GROUP_LABELS.get(label, label))
            fitter.fit(rows["time_weeks"], rows["event"] == RELAPSE)
            fitters.append(fitter)
            stop = last_time_at_risk(rows["time_weeks"], min_at_risk)
            if stop is None or _hidden(shared_at_risk, variable, label):
                continue
            fitter.plot_survival_function(ax=axes, ci_show=True, show_censors=False,
                                          loc=slice(0.0, stop), color=GROUP_COLOURS.get(label))
            _turnbull_line(axes, turnbull, variable, label, stop,
                           axes.get_lines()[-1].get_color())
        axes.set(title=TITLES.get(variable, f"By {variable}"), xlabel="Weeks since end of "
                 "acute treatment", ylabel="Relapse-free", ylim=(0.0, 1.02),
                 xlim=(0.0, max(ticks[-1], 1.0)), xticks=ticks)
        hidden = [GROUP_LABELS.get(label, label) for label, _rows in _groups(cohort, variable)
                  if _hidden(shared_at_risk, variable, label)]
        if hidden:
            axes.text(0.5, 0.5, "Not drawn (a count of 1-4 is suppressed): "
                      + ", ".join(hidden), transform=axes.transAxes, ha="center",
                      va="center", fontsize="small", wrap=True, color="#666666")
        if axes.get_lines():
            axes.legend(loc="lower left", frameon=False, fontsize="small")
        if shared_at_risk is None:
            add_at_risk_counts(*fitters, ax=axes, fig=figure, rows_to_show=["At risk"],
                               xticks=ticks)
        else:
            _at_risk_labels(axes, shared_at_risk, variable,
                            [label for label, _rows in _groups(cohort, variable)], ticks)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.35, wspace=0.3)
    return figure


def _hidden(shared_at_risk: pd.DataFrame | None, variable: str, label: str) -> bool:
    """Whether the shared tables hide this group's counts (any of its rows suppressed at
    time 0, i.e. its patients; or its relapse counts, carried as ``suppressed_group``)."""
    if shared_at_risk is None or "suppressed_group" not in shared_at_risk:
        return False
    rows = shared_at_risk[(shared_at_risk["stratum_variable"] == variable)
                          & (shared_at_risk["stratum"].astype(str) == label)]
    return bool(rows["suppressed_group"].any())


def _at_risk_labels(axes: Axes, shared_at_risk: pd.DataFrame, variable: str,
                    labels: Sequence[str], ticks: Sequence[float]) -> None:
    """Numbers at risk under the axis as the shared table shows them, one row per group."""
    axes.text(-0.06, -0.2, "At risk", transform=axes.transAxes, ha="right", va="top",
              fontsize="small", fontweight="bold")
    for row, label in enumerate(labels):
        rows = shared_at_risk[(shared_at_risk["stratum_variable"] == variable)
                              & (shared_at_risk["stratum"].astype(str) == label)]
        shown = dict(zip(rows["time_weeks"].astype(float), rows["at_risk"], strict=True))
        y = -0.26 - 0.06 * row
        axes.text(-0.06, y, GROUP_LABELS.get(label, label), transform=axes.transAxes,
                  ha="right", va="top",
                  fontsize="small")
        for tick in ticks:
            axes.text(tick, y, str(shown.get(float(tick), "")),
                      transform=axes.get_xaxis_transform(), ha="center", va="top",
                      fontsize="small")


def cif_figure(cif: pd.DataFrame) -> Figure:
    """Cumulative incidence of relapse (Aalen-Johansen) overall and by format, with 95% bands.

    Parameters
    ----------
    cif : DataFrame
        The ``relapse_cif`` table (stratum_variable, stratum, time_weeks, cif, ci_low,
        ci_high).
    """
    if len(cif) == 0:
        return _empty("No cumulative incidence to show: no patients at risk with follow-up.")
    figure = _canvas(7.5, 5.0)
    axes = figure.add_subplot()
    for (variable, stratum), rows in cif.groupby(["stratum_variable", "stratum"], sort=False):
        label = "all" if variable == "all" else f"{variable}: {stratum}"
        line = axes.step(rows["time_weeks"], rows["cif"], where="post", label=label)[0]
        axes.fill_between(rows["time_weeks"], rows["ci_low"].fillna(rows["cif"]),
                          rows["ci_high"].fillna(rows["cif"]), step="post", alpha=0.15,
                          color=line.get_color())
    axes.set(xlabel="Weeks since end of acute treatment", ylabel="Cumulative incidence",
             title="Relapse with death and other treatment as competing events",
             ylim=(0.0, max(0.05, float(cif["ci_high"].max(skipna=True) or 0.0)) * 1.05))
    axes.legend(loc="upper left", frameon=False)
    figure.tight_layout()
    return figure


def forest_figure(cox: pd.DataFrame) -> Figure:
    """Forest plot of hazard ratios with 95% limits on a log scale.

    Parameters
    ----------
    cox : DataFrame
        The ``relapse_cox`` table (term, hazard_ratio, ci_low, ci_high, model).
    """
    if len(cox) == 0:
        return _empty("No Cox model: too few relapses (see the messages).")
    rows = cox.iloc[::-1].reset_index(drop=True)
    figure = _canvas(7.5, 1.2 + 0.4 * len(rows))
    axes = figure.add_subplot()
    y = np.arange(len(rows), dtype=float)
    errors = np.vstack([rows["hazard_ratio"] - rows["ci_low"],
                        rows["ci_high"] - rows["hazard_ratio"]])
    axes.errorbar(rows["hazard_ratio"], y, xerr=errors, fmt="s", color="black", capsize=3)
    axes.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator([2.0**k for k in range(-8, 9)]))
    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    limits = rows[["ci_low", "ci_high"]].to_numpy(dtype=float)
    limits = limits[np.isfinite(limits) & (limits > 0)]
    low, high = (float(limits.min()), float(limits.max())) if limits.size else (1.0, 1.0)
    axes.set_xlim(max(min(low, 1.0), 2.0**-8) / 1.25, min(max(high, 1.0), 2.0**8) * 1.25)
    axes.set_yticks(y, labels=list(rows["term"]))
    axes.set(xlabel="Hazard ratio of relapse (95% CI, log scale)",
             title=str(rows["model"].iloc[0])[:90])
    figure.tight_layout()
    return figure


def stage_figures(output: StageOutput, config: StudyConfig,
                  records: list[AnalysisRecord]) -> dict[str, Figure]:
    """The relapse stage's figures, drawn once from its tables (shared unless the run
    was told not to suppress): ``relapse_km`` (from ``relapse_cohort``, with the Turnbull
    curves of ``relapse_free_interval``), ``relapse_cif`` and ``relapse_forest``, each for
    an analysis that was done.

    In a shared run (``relapse_km_at_risk`` has ``suppressed_group``, added by
    ``pipeline.sharing.relapse_tables``) the numbers at risk are printed as the shared table
    shows them and a group whose counts it hides is not drawn; otherwise lifelines counts
    them. The relapse figures were never recorded as analyses of their own (the stage's
    analyses are): a figure that fails or is not estimable is recorded, one that is drawn
    is not, so ``analyses.csv`` stays as it was.
    """
    tables = output.tables
    drawers: dict[str, Callable[[], Figure]] = {}
    cohort = tables.get("relapse_cohort")
    if cohort is not None and "relapse_km" in tables:
        at_risk = tables.get("relapse_km_at_risk")
        shared_at_risk = (at_risk if at_risk is not None and "suppressed_group" in at_risk
                          else None)
        drawers["relapse_km"] = lambda: km_figure(
            cohort, ("format", "maintenance"), config.relapse.min_at_risk,
            tables.get("relapse_free_interval"), shared_at_risk)
    if "relapse_cif" in tables:
        drawers["relapse_cif"] = lambda: cif_figure(tables["relapse_cif"])
    if "relapse_cox" in tables:
        drawers["relapse_forest"] = lambda: forest_figure(tables["relapse_cox"])
    figures: dict[str, Figure] = {}
    for name, draw in drawers.items():
        drawn: list[AnalysisRecord] = []
        figure = attempt("relapse", f"figure {name}", draw, drawn)
        records += [record for record in drawn if record.status != DONE]
        if figure is not None:
            figures[name] = figure
    return figures
