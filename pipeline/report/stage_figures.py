"""The figures of every stage, drawn on the report side from what the stage returned.

Stages return data (``pipeline.runner.stages.StageOutput``: tables, row counts and, when
a figure needs more than the published tables, ``figure_data``); this module turns it
into figures. Each drawer draws from the *shared* tables, so a figure never shows what
small-number suppression hid, and records each figure as an analysis of its stage.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord
from pipeline.report import audit_plots, outcome_plots, relapse_plots, trajectory_plots
from pipeline.runner.stages import StageOutput

Drawer = Callable[[StageOutput, StudyConfig, list[AnalysisRecord]], dict[str, Figure]]

#: The drawer of each stage's figures.
DRAWERS: dict[str, Drawer] = {
    "outcomes": outcome_plots.stage_figures,
    "models": trajectory_plots.stage_figures,
    "relapse": relapse_plots.stage_figures,
    "audit": audit_plots.stage_figures,
}


def draw(stage: str, output: StageOutput, config: StudyConfig
         ) -> tuple[dict[str, Figure], tuple[AnalysisRecord, ...]]:
    """The figures of ``stage`` drawn from ``output``, and a record for each figure.

    Figures the stage drew itself (``output.figures``) are kept as they are.
    """
    records: list[AnalysisRecord] = []
    figures = dict(output.figures)
    drawer = DRAWERS.get(stage)
    if drawer is not None and output.tables:
        figures.update(drawer(output, config, records))
    return figures, tuple(records)
