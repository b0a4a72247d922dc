"""The rates table from cell sums computed on the engine.

Only the sums per condition x format cell (a few hundred numbers) leave the engine; the
margins, the Wilson intervals, the order and the rule on unobserved ITT cells are the
in-memory route's own (:func:`pipeline.outcomes.rates.rates_from_cells`), and so are the
specifications of each rate (:func:`pipeline.outcomes.rates.rate_specs`). The result is the
``response_rates`` table of ``ipt-outcomes run``, to the byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ibis.expr.types as ir
import pandas as pd

from data_schemas.outcomes import outcome_instruments
from pipeline.config import StudyConfig
from pipeline.outcomes import rates as in_memory
from pipeline.outcomes.definitions import population_columns
from pipeline.outcomes.tables import defined_outcomes


def response_rates(per_patient: ir.Table, config: StudyConfig) -> pd.DataFrame:
    """``response_rates`` (see :func:`pipeline.outcomes.tables.rate_table`) of a
    ``patient_outcomes`` table on an engine (:func:`pipeline.columnar.patient_outcomes.derive`).
    """
    columns = pd.DataFrame(columns=list(per_patient.columns))
    instruments = outcome_instruments(columns)
    populations = population_columns(config)
    defined = defined_outcomes(columns, config)
    cells, keys = cell_sums(per_patient, instruments, populations, defined)
    return in_memory.rates_from_cells(cells, keys, instruments, populations)


def _eligible(per_patient: ir.Table, instrument: str, eligibility: str) -> ir.BooleanValue:
    """The ITT denominator's baseline condition (``rates.ELIGIBILITY``), NULL as False."""
    if eligibility == "both_baselines":
        return per_patient.phq9_baseline.notnull() & per_patient.gad7_baseline.notnull()
    if eligibility == "caseness":
        return per_patient.caseness_at_start.fill_null(False)
    baseline = per_patient[f"{instrument}_baseline"]
    if eligibility == "positive_baseline":
        return baseline.fill_null(0) > 0
    return baseline.notnull()


def cell_sums(
    per_patient: ir.Table, instruments: Sequence[str], populations: Sequence[str],
    defined: Mapping[str, Sequence[str]] | None,
) -> tuple[pd.DataFrame, list[tuple[str, str, str, str]]]:
    """The cell sums of ``rates_from_cells``: two aggregations on the engine (which
    instruments have a baseline; then every count by condition x format).

    Patients without a condition or format are in no cell, as in ``groupby``.
    """
    present = [i for i in dict.fromkeys([*instruments, "phq9", "gad7"])
               if f"{i}_baseline" in per_patient.columns]
    if present:
        counts = per_patient.aggregate(**{
            i: per_patient[f"{i}_baseline"].count() for i in present}).to_pandas()
        with_baseline = {i for i in present if int(counts[i].iloc[0]) > 0}
    else:
        with_baseline = set()
    specs = in_memory.rate_specs(instruments, with_baseline, defined)
    aggregates: dict[str, ir.Value] = {}
    names: dict[str, str] = {}
    keys: list[tuple[str, str, str, str]] = []
    for population in populations:
        members = per_patient[population].fill_null(False)
        for instrument, outcome, eligibility in specs:
            values = per_patient[in_memory.outcome_column(instrument, outcome)]
            event = values.fill_null(False)
            denominators = {"observed": members & values.notnull(),
                            "itt": members & _eligible(per_patient, instrument, eligibility)}
            for denominator, member in denominators.items():
                key = (population, instrument, outcome, denominator)
                keys.append(key)
                for part, indicator in (("n", member), ("events", member & event)):
                    alias = f"c{len(aggregates)}"
                    aggregates[alias] = indicator.cast("int64").sum()
                    names[alias] = "/".join((*key, part))
    if not keys:
        return pd.DataFrame(columns=["condition", "format"]), keys
    known = per_patient.filter(per_patient.condition.notnull() & per_patient.format.notnull())
    sums = (known.group_by(["condition", "format"]).aggregate(**aggregates)
            .order_by(["condition", "format"]).to_pandas())
    sums = sums.rename(columns=names)
    counts_columns = list(names.values())
    sums[counts_columns] = sums[counts_columns].fillna(0).astype("int64")
    return sums.astype({"condition": object, "format": object}), keys


__all__ = ["cell_sums", "response_rates"]
