"""The cells of the tables for papers: labels, formatted numbers, notes and :class:`PaperTable`.

Numbers read as they do in the HTML report (see :mod:`pipeline.report.paper_tables`): rates
as percentages with one decimal and their intervals with an en dash, counts as written in the
CSV with thousands separators, a hidden count keeping its label (``<5``, ``*``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from pipeline.report.findings import percent
from pipeline.report.html import format_cell

DASH: Final = "\u2013"  # an en dash: a value that does not exist (as in the report)
RANGE: Final = "\u2013"  # between the bounds of an interval
SUPPRESSED: Final = "suppressed"
NOT_ESTIMABLE: Final = "not estimable"

INSTRUMENT_LABELS: Final = {"phq9": "PHQ-9", "gad7": "GAD-7", "hamd17": "HAM-D-17",
                            "bdi2": "BDI-II", "phq9+gad7": "PHQ-9 and GAD-7"}
OUTCOME_LABELS: Final = {"response": "Response", "remission": "Remission",
                         "reliable_improvement": "Reliable improvement",
                         "recovery": "Recovery", "reliable_recovery": "Reliable recovery"}


@dataclass(frozen=True)
class PaperTable:
    """One table for a paper, as text.

    Attributes
    ----------
    name : str
        File stem of its outputs (``table2_outcomes``).
    caption : str
        ``Table N. ...``.
    body : DataFrame
        Display strings only, one column per printed column.
    notes : tuple of str
        Printed under the table (sources, abbreviations, suppression).
    sources : tuple of str
        The run's files the numbers come from (relative to OUT).
    """

    name: str
    caption: str
    body: pd.DataFrame
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- formatting


def percent_ci(low: Any, high: Any) -> str:
    """An interval of shares: ``47.9%-67.6%`` (with an en dash)."""
    return f"{percent(low)}{RANGE}{percent(high)}"


def number_ci(low: Any, high: Any) -> str:
    """An interval of estimates with the report's three decimals: ``1.793 to 4.006`` (``to``,
    not a dash, so that negative bounds read clearly)."""
    return f"{format_cell(low)} to {format_cell(high)}"


def count(value: Any) -> str:
    """A count as written in the CSV (suppression labels kept), with thousands separators."""
    return format_cell(value)


def label(text: str) -> str:
    """A level or variable name for reading: ``major_depression`` -> ``Major depression``."""
    words = str(text).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def term_label(term: str) -> str:
    """A model term for reading: ``format[group]`` -> ``format: group``,
    ``weeks:format[group]`` -> ``weeks x format: group`` (a multiplication sign)."""
    parts = []
    for part in str(term).split(":"):
        if part.endswith("]") and "[" in part:
            name, level = part[:-1].split("[", 1)
            part = f"{name.strip('`')}: {level}"
        parts.append(part)
    return " \u00d7 ".join(parts)


def is_blank(value: Any) -> bool:
    """Whether a cell read as text is empty (a missing value as written or read)."""
    return str(value) in ("", "nan", "NaN", "None", "<NA>")


def is_suppressed(row: Mapping[Any, Any]) -> bool:
    """Whether the sharing layer hid the counts of this row (its ``suppressed`` is True)."""
    return str(row.get("suppressed", "")) == "True"


def missing_table(name: str, caption: str, reason: str, sources: Sequence[str] = ()
                  ) -> PaperTable:
    """A table whose analysis is not in the run: one cell saying why (never a number).

    ``reason`` is a sentence from :func:`analysis_reason` (it starts with a capital: ``Not
    estimable: ...``, ``Failed: ...``, ``Not in this run: ...``) or a plain reason in lower
    case, which reads ``Not estimable: <reason>``.
    """
    text = reason if reason[:1].isupper() else f"{label(NOT_ESTIMABLE)}: {reason}"
    body = pd.DataFrame({"Status": [text]})
    return PaperTable(name, caption, body, ("No estimate is shown: the run holds none.",),
                      tuple(sources))


def analysis_reason(analyses: pd.DataFrame | None, stage: str, analysis: str) -> str:
    """Why an analysis has no table, as a sentence: its status and reason (and what would
    help) in ``tables/analyses.csv``, or that this run did not do it.

    Examples
    --------
    >>> analysis_reason(None, "models", "model growth")
    'Not in this run: the models stage did not run, or did not write this analysis'
    """
    if analyses is not None and {"stage", "analysis", "status"} <= set(analyses.columns):
        rows = analyses[(analyses["stage"] == stage) & (analyses["analysis"] == analysis)]
        if not rows.empty:
            row = rows.iloc[0]
            status = str(row["status"])
            if status == "done":
                return ("Not in this output folder: the analysis ran but its table is "
                        "missing (moved or deleted?)")
            reason = str(row.get("reason", "")) or "no reason recorded"
            remedy = str(row.get("remedy", ""))
            return f"{label(status)}: {reason}" + (f" (what would help: {remedy})"
                                                   if remedy else "")
    return f"Not in this run: the {stage} stage did not run, or did not write this analysis"


NO_SUPPRESSION_NOTE: Final = ("Small counts are shown (run with --no-suppress): not for "
                              "sharing outside the service.")


def suppression_note(suppress_below: int | None) -> str:
    """What the labels of hidden counts mean (or that none are hidden: ``--no-suppress``)."""
    if suppress_below is None:
        return NO_SUPPRESSION_NOTE
    return (f"Counts of 1 to {suppress_below - 1} are shown as <{suppress_below}; * marks a "
            "further count hidden so that a small count cannot be worked back from the totals "
            "(complementary suppression). Rates of a row with a hidden count are shown as "
            "'suppressed'.")
