"""The figures of every stage, drawn on the report side from what the stage returned.

Stages return data (``pipeline.runner.stages.StageOutput``: tables, row counts and, when
a figure needs more than the published tables, ``figure_data``); this module turns it
into figures. Each drawer draws from the *shared* tables, so a figure never shows what
small-number suppression hid, and records each figure as an analysis of its stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord
from pipeline.report import audit_plots, outcome_plots, relapse_plots, trajectory_plots
from pipeline.report.figures import png_bytes, svg_bytes

if TYPE_CHECKING:
    from pipeline.runner.stages import StageOutput

Drawer = Callable[["StageOutput", StudyConfig, list[AnalysisRecord]], dict[str, Figure]]

#: The drawer of each stage's figures.
DRAWERS: dict[str, Drawer] = {
    "outcomes": outcome_plots.stage_figures,
    "models": trajectory_plots.stage_figures,
    "relapse": relapse_plots.stage_figures,
    "audit": audit_plots.stage_figures,
}


def draw(stage: str, output: StageOutput, config: StudyConfig
         ) -> tuple[dict[str, Figure], tuple[AnalysisRecord, ...]]:
    """The figures of ``stage`` drawn from ``output``, and a record for each figure."""
    records: list[AnalysisRecord] = []
    drawer = DRAWERS.get(stage)
    if drawer is None or not output.tables:
        return {}, ()
    return drawer(output, config, records), tuple(records)


def render(stage: str, output: StageOutput, config: StudyConfig
           ) -> tuple[dict[str, bytes], tuple[AnalysisRecord, ...]]:
    """The figures of ``stage`` as files: ``<name>.png`` and ``<name>.svg`` (byte for byte
    the same for the same data), and a record for each figure; what the runner writes."""
    figures, records = draw(stage, output, config)
    files: dict[str, bytes] = {}
    for name, figure in figures.items():
        files[f"{name}.png"] = png_bytes(figure)
        files[f"{name}.svg"] = svg_bytes(figure)
    return files, records
