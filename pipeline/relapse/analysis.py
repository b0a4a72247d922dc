r"""Relapse after acute treatment: every relapse analysis at its own boundary (:func:`analyse`).

Starts from the validated ``patients``, ``sessions`` and ``followups`` tables and the
per-patient ``patient_outcomes`` (``pipeline.outcomes.definitions``), reads its definitions
from ``config.relapse`` (:class:`pipeline.config.Relapse`) and returns tables, plain-language
messages and analysis records (:class:`RelapseResult`). Nothing here reads or writes files,
prints or draws: the figures are drawn on the report side from the returned tables
(:func:`pipeline.report.relapse_plots.stage_figures`).

The analyses and where their definitions live:

- ``cohort``: who is at risk, from when, what counts as relapse
  (:func:`pipeline.relapse.cohort.relapse_cohort`);
- ``km``, ``logrank``, ``rmst``: Kaplan-Meier relapse-free survival, numbers at risk, log-rank
  tests, restricted mean relapse-free time (:mod:`pipeline.relapse.kaplan_meier`);
- ``cox``: the Cox model with its proportional-hazards tests
  (:mod:`pipeline.relapse.cox_selection`, :mod:`pipeline.relapse.cox`,
  :mod:`pipeline.relapse.ph_test`);
- ``cif``: Aalen-Johansen cumulative incidence (:mod:`pipeline.relapse.competing`);
- ``turnbull``, ``aft_interval``: interval-censored analyses (:mod:`pipeline.relapse.interval`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord, attempt, require
from pipeline.relapse import interval as relapse_interval
from pipeline.relapse.cohort import (
    instrument_and_threshold,
    relapse_cohort,
    relapse_visits,
    shared_cohort,
)
from pipeline.relapse.competing import cif_analysis
from pipeline.relapse.cox_selection import cox_analysis
from pipeline.relapse.kaplan_meier import km_analysis, logrank_analysis, rmst_analysis

__all__ = ["RelapseResult", "analyse"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RelapseResult:
    """Tables, report notes and analysis records of the relapse analysis.

    Attributes
    ----------
    tables : dict of str to DataFrame
        ``relapse_cohort`` (:func:`pipeline.relapse.cohort.shared_cohort`), ``relapse_km``,
        ``relapse_km_at_risk``, ``relapse_logrank``, ``relapse_cox``, ``relapse_ph_test``,
        ``relapse_rmst``, ``relapse_cif``, ``relapse_free_interval`` and ``relapse_aft``
        (:mod:`pipeline.relapse.interval`) (columns in the functions that build them), those
        estimable; the CLI writes each as ``tables/<key>.csv`` (patient ids pseudonymised).
    messages : tuple of str
        Plain-language notes for the report: who was excluded, smaller models, merged levels
        (the reasons of analyses that were not estimable are in ``records``).
    records : tuple of AnalysisRecord
        One per analysis (cohort, km, logrank, cox, rmst, cif, turnbull, aft_interval):
        done, not estimable (with reason and remedy) or failed (:mod:`pipeline.estimability`).
    """

    tables: dict[str, pd.DataFrame]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()


def analyse(
    patients: pd.DataFrame,
    sessions: pd.DataFrame,
    followups: pd.DataFrame | None,
    patient_outcomes: pd.DataFrame,
    config: StudyConfig,
) -> RelapseResult:
    """Relapse after acute treatment: every analysis at its own boundary.

    Each analysis (``cohort`` :func:`~pipeline.relapse.cohort.relapse_cohort`, ``km``
    :func:`km_analysis`, ``logrank`` :func:`logrank_analysis`, ``cox`` :func:`cox_analysis`,
    ``rmst`` :func:`rmst_analysis`, ``cif`` :func:`cif_analysis`) runs through
    :func:`pipeline.estimability.attempt`: one that the data cannot support is recorded as
    *not estimable* with its reason and remedy (the report shows them in place) and leaves
    no table; the others still run. Without a cohort nothing else runs.

    Parameters are those of :func:`pipeline.relapse.cohort.relapse_cohort`.

    Returns
    -------
    RelapseResult
        Tables ``relapse_cohort`` (:func:`shared_cohort`), ``relapse_km``,
        ``relapse_km_at_risk``, ``relapse_logrank``, ``relapse_cox``, ``relapse_ph_test``,
        ``relapse_rmst``, ``relapse_cif``, ``relapse_free_interval``, ``relapse_aft`` (those
        estimable); the messages in order; the analysis records. No figures: they are drawn
        from these tables (:func:`pipeline.report.relapse_plots.stage_figures`).
    """
    records: list[AnalysisRecord] = []
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    built = attempt("relapse", "cohort", lambda: relapse_cohort(
        patients, sessions, followups, patient_outcomes, config), records)
    if built is not None:
        cohort, messages = built
        notes += messages
        tables["relapse_cohort"] = shared_cohort(cohort)
        _run_on_cohort(cohort, config, tables, notes, records)
        _run_interval(cohort, followups, config, tables, notes, records)
    for note in notes:
        logger.info("relapse: %s", note)
    return RelapseResult(tables, tuple(dict.fromkeys(notes)), tuple(records))


def _run_on_cohort(cohort: pd.DataFrame, config: StudyConfig, tables: dict[str, pd.DataFrame],
                   notes: list[str], records: list[AnalysisRecord]) -> None:
    """The analyses of a cohort, each through ``attempt``; tables and notes filled in."""
    instrument, _, _ = instrument_and_threshold(config)
    km = attempt("relapse", "km", lambda: km_analysis(cohort, config), records)
    if km is not None:
        tables["relapse_km"], tables["relapse_km_at_risk"], more = km
        notes += more
    steps: list[tuple[str, tuple[str, ...], Callable[[], Any]]] = [
        ("logrank", ("relapse_logrank",), lambda: logrank_analysis(cohort)),
        ("cox", ("relapse_cox", "relapse_ph_test"),
         lambda: cox_analysis(cohort, instrument, config)),
        ("rmst", ("relapse_rmst",), lambda: rmst_analysis(cohort, config)),
        ("cif", ("relapse_cif",), lambda: cif_analysis(cohort)),
    ]
    for name, keys, run in steps:
        result = attempt("relapse", name, run, records)
        if result is not None:
            tables.update(zip(keys, result[:-1], strict=True))
            notes += result[-1]


def _run_interval(cohort: pd.DataFrame, followups: pd.DataFrame | None, config: StudyConfig,
                  tables: dict[str, pd.DataFrame], notes: list[str],
                  records: list[AnalysisRecord]) -> None:
    """The interval-censored analyses (:mod:`pipeline.relapse.interval`), each through
    ``attempt``: the Turnbull curve and the Weibull AFT sensitivity model."""
    instrument, _, _ = instrument_and_threshold(config)

    def intervals() -> pd.DataFrame:
        require(followups is not None, "no follow-up table", "a followups table")
        assert followups is not None
        return relapse_interval.interval_data(cohort, relapse_visits(followups, cohort, config),
                                              config.relapse.clinician_relapse_exact)

    steps: list[tuple[str, str, Callable[[], tuple[pd.DataFrame, list[str]]]]] = [
        ("turnbull", "relapse_free_interval",
         lambda: relapse_interval.turnbull_analysis(intervals(), config)),
        ("aft_interval", "relapse_aft",
         lambda: relapse_interval.aft_analysis(intervals(), instrument, config)),
    ]
    for name, key, run in steps:
        result = attempt("relapse", name, run, records)
        if result is not None:
            tables[key], more = result
            notes += more

