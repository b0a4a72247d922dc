"""Observed outcome rates set against external benchmarks (a verdict from the Wilson interval)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.outcomes.cells import ALL, PAIRED_INSTRUMENT, PAIRED_OUTCOMES

# --------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------


def benchmark_comparison(
    rates: pd.DataFrame,
    benchmarks: pd.DataFrame,
    population: str = "finished_course",
    denominator: str = "observed",
    primary: str = "phq9",
    defined: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Compare observed rates with external benchmarks.

    Each benchmark row (condition or ``"all"``, outcome, rate, source) is matched to the
    :func:`response_rates` row with format ``"all"``, the same condition and outcome, the
    given population and denominator, and instrument ``"phq9+gad7"`` for the paired
    outcomes (recovery, reliable_improvement, reliable_recovery) or ``primary`` otherwise.
    The verdict compares the benchmark with the 95% Wilson interval: ``"above"`` when
    ``ci_low > benchmark``, ``"below"`` when ``ci_high < benchmark``, ``"around"`` when the
    interval contains it and ``"no data"`` when there is no matching rate. A benchmark for
    an outcome the instrument does not define (``defined``, as in :func:`response_rates`)
    is left out.

    Returns
    -------
    DataFrame
        condition, outcome, benchmark_rate, source, n, events, rate, ci_low, ci_high,
        verdict; one row per benchmark, in the benchmarks' order.
    """
    paired = set(PAIRED_OUTCOMES)
    wanted = benchmarks.rename(columns={"rate": "benchmark_rate"})[
        ["condition", "outcome", "benchmark_rate", "source"]
    ].reset_index(drop=True)
    wanted["instrument"] = [PAIRED_INSTRUMENT if o in paired else primary
                            for o in wanted["outcome"]]
    if defined is not None:
        keep = [o in defined.get(i, ()) for i, o in zip(wanted["instrument"],
                                                         wanted["outcome"], strict=True)]
        wanted = wanted.loc[keep].reset_index(drop=True)
    chosen = rates.loc[
        (rates["population"] == population)
        & (rates["denominator"] == denominator)
        & (rates["format"] == ALL),
        ["condition", "outcome", "instrument", "n", "events", "rate", "ci_low", "ci_high"],
    ]
    merged = wanted.merge(chosen, on=["condition", "outcome", "instrument"], how="left")
    benchmark = merged["benchmark_rate"].astype(float)
    verdict = np.select(
        [merged["rate"].isna(), merged["ci_low"] > benchmark, merged["ci_high"] < benchmark],
        ["no data", "above", "below"],
        default="around",
    )
    merged["verdict"] = verdict
    merged["benchmark_rate"] = benchmark
    merged = merged.astype({"n": "Int64", "events": "Int64"})
    return merged.drop(columns="instrument")
