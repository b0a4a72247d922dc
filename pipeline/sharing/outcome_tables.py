"""Small-number suppression of the shared tables of the outcomes stage.

One relation system (:func:`pipeline.sharing.suppression.protect_tables`) holds the count
tables that publish their own counts:

* ``response_rates``: ``n`` and ``events`` (and the complement ``n - events``) of every
  population x instrument x outcome x denominator slice, with the condition x format grid
  and its ``"all"`` margins;
* ``attendance``: ``patients`` (started patients) and ``dropouts`` by condition x format
  with margins; every statistic of a row with a hidden count is blanked (a shown mean
  times its hidden ``patients`` would add one more equation), and the session totals are
  left out (:data:`SESSION_TOTALS`). Its patients repeat the ``n`` of the started
  population wherever every started patient counts (e.g. an intention-to-treat
  denominator with everyone eligible);
* ``completeness``: ``finished_courses`` and ``paired`` (one row, the grand totals, which
  may repeat the ``all`` x ``all`` cell of finished-course slices);
* ``patient_flow``: the patients at each step of the CONSORT-style flow (:func:`flow_table`),
  which repeat ``all`` x ``all`` cells of the other tables (the flow figure shows these
  labels).

Slices that repeat the same counts, within a table (e.g. the events of one outcome over
its observed and intention-to-treat denominators) or across tables, are tied by
equalities, so a count hidden in one place is hidden in all.

The tables that only copy rows of ``response_rates`` are built from its suppressed
version, so they hide the same cells: ``response_rates_main`` (a subset of its rows) and
``benchmark_comparison`` (its format-``all`` rows of one population and denominator; the
verdict of a hidden rate reads ``"suppressed"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd

from pipeline.outcomes.rates import ALL, PAIRED_INSTRUMENT, PAIRED_OUTCOMES
from pipeline.sharing.suppression import CountTable, SuppressionSummary, protect_tables

RATE_KEYS: Final = ("population", "instrument", "outcome", "denominator")
MARGINS: Final = ("condition", "format")

#: The tables protected together and how.
PROTECTED: Final[dict[str, CountTable]] = {
    "response_rates": CountTable("n", "events", ("rate", "ci_low", "ci_high"),
                                 keys=RATE_KEYS, margins=MARGINS),
    "attendance": CountTable("patients", "dropouts",
                             ("sessions_attended_mean", "sessions_attended_ci_low",
                              "sessions_attended_ci_high", "dna_rate", "dna_ci_low",
                              "dna_ci_high", "dropout_rate", "dropout_ci_low",
                              "dropout_ci_high"), margins=MARGINS),
    "completeness": CountTable("finished_courses", "paired", ("share_paired",
                                                              "meets_standard")),
    "patient_flow": CountTable("patients", keys=("step",)),
}

#: Session totals of ``attendance``, left out of its shared version: about 14 scheduled
#: sessions a patient, they would tell a hidden patient count roughly.
SESSION_TOTALS: Final = ("dna_sessions", "scheduled_sessions")

#: The population and denominator of ``rates.benchmark_comparison`` (its defaults).
BENCHMARK_POPULATION: Final = "finished_course"
BENCHMARK_DENOMINATOR: Final = "observed"
_COPIED: Final = ("n", "events", "rate", "ci_low", "ci_high", "suppressed")


def flow_table(counts: Mapping[str, int]) -> pd.DataFrame:
    """The patient flow (``outcome_plots.flow_counts``) as a table: ``step``, ``patients``."""
    return pd.DataFrame({"step": list(counts), "patients": list(counts.values())})


def flow_labels(flow: pd.DataFrame) -> dict[str, str]:
    """Each step's count as the flow figure shows it (``"<5"``, ``"*"`` or ``1,234``)."""
    return {str(step): f"{count:,}" if isinstance(count, int | np.integer) else str(count)
            for step, count in zip(flow["step"], flow["patients"], strict=True)}


def copy_rows(subset: pd.DataFrame, shared_rates: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``response_rates`` (``subset``) as they are in its shared version."""
    on = [*RATE_KEYS, *MARGINS]
    merged = subset[on].merge(shared_rates[[*on, *_COPIED]], on=on, how="left")
    merged.index = subset.index
    return merged[[*subset.columns, "suppressed"]]


def share_benchmark(benchmark: pd.DataFrame, shared_rates: pd.DataFrame,
                    primary: str) -> pd.DataFrame:
    """``benchmark_comparison`` with the counts and rates of the shared response rates
    (matched as in ``rates.benchmark_comparison``); a hidden rate's verdict is
    ``"suppressed"``."""
    keys = benchmark[["condition", "outcome"]].assign(
        population=BENCHMARK_POPULATION, denominator=BENCHMARK_DENOMINATOR, format=ALL,
        instrument=[PAIRED_INSTRUMENT if o in PAIRED_OUTCOMES else primary
                    for o in benchmark["outcome"]])
    on = [*RATE_KEYS, *MARGINS]
    merged = keys.merge(shared_rates[[*on, *_COPIED]], on=on, how="left")
    shared = benchmark.copy()
    for column in _COPIED[:-1]:
        shared[column] = merged[column].to_numpy()
    hidden = merged["suppressed"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    shared["verdict"] = shared["verdict"].where(~hidden, "suppressed")
    shared["suppressed"] = hidden
    return shared


def share(built: Mapping[str, pd.DataFrame], high: int,
          primary: str) -> tuple[dict[str, pd.DataFrame], SuppressionSummary]:
    """The shared versions of the outcomes stage's tables (others returned unchanged).

    Parameters
    ----------
    built : mapping of str to DataFrame
        The tables the stage built, unsuppressed.
    high : int
        Counts of 1..high are hidden (``suppress_below - 1``).
    primary : str
        The primary instrument (for matching benchmarks).
    """
    protected = {name: table for name, table in built.items() if name in PROTECTED}
    shared, summary = protect_tables(protected, {n: PROTECTED[n] for n in protected}, high)
    if "attendance" in shared:
        shared["attendance"] = shared["attendance"].drop(columns=list(SESSION_TOTALS),
                                                         errors="ignore")
    rates = shared.get("response_rates")
    if rates is not None and "response_rates_main" in built:
        shared["response_rates_main"] = copy_rows(built["response_rates_main"], rates)
    if rates is not None and "benchmark_comparison" in built:
        shared["benchmark_comparison"] = share_benchmark(built["benchmark_comparison"],
                                                         rates, primary)
    return {name: shared.get(name, table) for name, table in built.items()}, summary
