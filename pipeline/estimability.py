"""Estimability: every analysis says whether the data can support it, and why not.

An analysis checks what it needs before it runs (an instrument that defines the outcome,
enough patients, events and levels, two formats for a format comparison, identifiable random
effects, follow-ups for relapse). When the data cannot support it, it raises
:class:`NotEstimable` with a plain-language reason and what would make it estimable; the
runner (:func:`attempt`) turns that into a *not estimable* record instead of a crash. An
unexpected exception is caught at the same boundary, its traceback goes to the log, and the
analysis is recorded as *failed*; every other analysis still runs.

Records of a run are gathered into one table, ``tables/analyses.csv`` (columns
:data:`RECORD_COLUMNS`), and the report shows each reason where that analysis would have been.
A number is never invented for something that could not be estimated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

import pandas as pd

log = logging.getLogger(__name__)

Status = Literal["done", "not estimable", "failed"]
DONE: Final = "done"
NOT_ESTIMABLE: Final = "not estimable"
FAILED: Final = "failed"
RECORD_COLUMNS: Final = ("stage", "analysis", "status", "reason", "remedy")

T = TypeVar("T")


class NotEstimable(Exception):  # noqa: N818 - a verdict, not an error condition of ours
    """The data cannot support an analysis.

    Parameters
    ----------
    reason : str
        Why, in plain words (``"only one format in the data"``).
    remedy : str
        What would make it estimable (``"patients treated in both formats"``).
    """

    def __init__(self, reason: str, remedy: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.remedy = remedy


@dataclass(frozen=True)
class AnalysisRecord:
    """What became of one analysis: ``done``, ``not estimable`` (with reason and remedy) or
    ``failed`` (with the exception's text; the traceback is in the run log)."""

    stage: str
    analysis: str
    status: Status
    reason: str = ""
    remedy: str = ""


def require(condition: bool, reason: str, remedy: str = "") -> None:
    """Raise :class:`NotEstimable` with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise NotEstimable(reason, remedy)


def attempt(stage: str, analysis: str, func: Callable[[], T],
            records: list[AnalysisRecord]) -> T | None:
    """Run one analysis at its boundary; append its record; return its result or ``None``.

    ``NotEstimable`` becomes a *not estimable* record; any other exception a *failed* record,
    logged as an error with its traceback at debug level (the command line sends the debug
    level to ``OUT/run.log``). The caller carries on with the other analyses either way.
    """
    try:
        result = func()
    except NotEstimable as verdict:
        log.info("%s/%s not estimable: %s", stage, analysis, verdict.reason)
        records.append(AnalysisRecord(stage, analysis, NOT_ESTIMABLE, verdict.reason,
                                      verdict.remedy))
        return None
    except Exception as exc:  # the isolation boundary: one analysis never stops the rest
        log.error("%s/%s failed: %s: %s", stage, analysis, type(exc).__name__, exc)
        log.debug("%s/%s traceback", stage, analysis, exc_info=True)
        records.append(AnalysisRecord(stage, analysis, FAILED,
                                      f"{type(exc).__name__}: {exc}",
                                      "an internal error: please report it with the run log"))
        return None
    records.append(AnalysisRecord(stage, analysis, DONE))
    return result


def records_table(records: Iterable[AnalysisRecord]) -> pd.DataFrame:
    """The records as the ``analyses`` table, one row per analysis, in run order."""
    rows = [(r.stage, r.analysis, r.status, r.reason, r.remedy) for r in records]
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


def any_failed(records: Iterable[AnalysisRecord]) -> bool:
    """Whether any analysis failed (the command then exits with its own code)."""
    return any(r.status == FAILED for r in records)
