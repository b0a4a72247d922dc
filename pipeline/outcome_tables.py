"""Assemble the outcome tables of a study from the per-patient outcomes.

Pure: takes ``patient_outcomes``, the config and a benchmark table, returns named frames
(``response_rates``, ``response_models``, ``response_standardised``, ``response_model_notes``,
``benchmark_comparison``, ``attendance``). Writing and small-number suppression happen at
the edge (``pipeline.cli``).
"""

from __future__ import annotations

import pandas as pd

from data_schemas.vocab import INSTRUMENTS
from pipeline import rates
from pipeline.config import StudyConfig

#: Tables meant for sharing and how to suppress them: (count columns, rate columns); the
#: first count column is the denominator.
SUPPRESSION: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "response_rates": (("n", "events"), ("rate", "ci_low", "ci_high")),
    "benchmark_comparison": (("n", "events"), ("rate", "ci_low", "ci_high")),
    "attendance": (("patients", "dropouts"), ("dropout_rate", "dropout_ci_low",
                                              "dropout_ci_high")),
}


def for_sharing(name: str, table: pd.DataFrame, suppress_below: int) -> pd.DataFrame:
    """The table with counts in 1..suppress_below-1 shown as ``<N`` (see ``rates``)."""
    if name not in SUPPRESSION:
        return table
    counts, rate_columns = SUPPRESSION[name]
    return rates.suppress_small_counts(
        table, count_columns=counts, high=suppress_below - 1, rate_columns=rate_columns
    )


def build(
    patient_outcomes: pd.DataFrame, config: StudyConfig, benchmarks: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """All outcome tables, keyed by file name (without ``.csv``)."""
    response_rates = rates.response_rates(patient_outcomes, list(INSTRUMENTS))
    primary = config.primary_instrument
    comparison = config.comparison
    finished = patient_outcomes[patient_outcomes["finished_course"]]
    adjusted = rates.adjusted_response(
        finished,
        outcome=f"{primary}_{comparison.outcome}",
        baseline=f"{primary}_baseline",
        covariates=comparison.covariates,
        cluster=comparison.cluster,
        min_level_n=comparison.min_level_n,
    )
    return {
        "response_rates": response_rates,
        "response_models": adjusted.table,
        "response_standardised": adjusted.standardised,
        "response_model_notes": pd.DataFrame({"note": list(adjusted.notes)}, dtype=object),
        "benchmark_comparison": rates.benchmark_comparison(
            response_rates, benchmarks, primary=primary
        ),
        "attendance": rates.attendance_summary(patient_outcomes),
    }
