"""Shared figure helpers: figures made without pyplot's global state and saved
byte-reproducibly (no software/date metadata, fixed DPI)."""

from __future__ import annotations

import io as stdio

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

matplotlib.rcParams["svg.hashsalt"] = "ipt-outcomes"  # the same ids in every SVG

DPI = 110
#: One palette for every figure: formats, and the groups compared in relapse figures.
FORMAT_COLOURS = {"individual": "#1b6ca8", "group": "#d1495b", "all": "#444444"}
GROUP_COLOURS = {**FORMAT_COLOURS, "True": "#2a9d8f", "False": "#8d6a9f"}
#: Words for the codes that label groups in figures.
GROUP_LABELS = {"True": "Maintenance IPT: yes", "False": "Maintenance IPT: no",
                "individual": "Individual IPT", "group": "Group IPT", "all": "All"}


def new_figure(width: float = 7.0, height: float = 4.0) -> Figure:
    """A figure with an Agg canvas attached, independent of pyplot."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes; the same figure gives the same bytes on every run."""
    buffer = stdio.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def svg_bytes(figure: Figure) -> bytes:
    """The figure as SVG (for papers); the same figure gives the same bytes on every run."""
    buffer = stdio.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return buffer.getvalue()
