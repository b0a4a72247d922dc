"""Contract for ``patient_outcomes``: one row per patient, written by
``pipeline.outcomes.definitions``.

Outcome columns are nullable booleans: missing means *not known* (no paired scores, or not
defined for this patient or instrument), never False. Per-instrument columns exist for the
instruments in force (``data_schemas.instruments``, plus the study's own) whose column is
in the sessions table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_schemas.instruments import CATALOGUE, Instrument
from data_schemas.vocab import CONDITIONS, FORMATS, PROBLEM_AREAS

JT_CLASSES = ("recovered", "improved", "unchanged", "deteriorated")
POPULATIONS = ("started", "finished_course", "completers")
PER_INSTRUMENT = (
    "baseline", "endpoint", "change", "pct_change", "response", "remission",
    "reliable_improvement", "reliable_deterioration", "jt_class",
)
PAIRED = (
    "caseness_at_start", "reliable_improvement", "reliable_deterioration", "recovery",
    "reliable_recovery",
)


def instrument_columns(instrument: str) -> list[str]:
    """The per-instrument outcome columns, e.g. ``phq9_baseline`` ... ``phq9_jt_class``."""
    return [f"{instrument}_{name}" for name in PER_INSTRUMENT]


class PatientOutcomes(pa.DataFrameModel):
    """Per-patient outcomes (fixed part; the per-instrument columns are added below)."""

    patient_id: Series[str] = pa.Field(unique=True)
    site_id: Series[str]
    therapist_id: Series[str] = pa.Field(nullable=True)
    group_id: Series[str] = pa.Field(nullable=True)
    condition: Series[str] = pa.Field(isin=CONDITIONS)
    format: Series[str] = pa.Field(isin=FORMATS)
    problem_area: Series[str] = pa.Field(isin=PROBLEM_AREAS)
    sessions_scheduled: Series[int] = pa.Field(ge=0, description="Treatment sessions (>= 1).")
    sessions_attended: Series[int] = pa.Field(ge=0)
    sessions_did_not_attend: Series[int] = pa.Field(ge=0)
    attendance_rate: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    ended: Series[bool]
    dropout: Series[bool]
    started: Series[bool]
    finished_course: Series[bool]
    completers: Series[bool]
    randomised: Series[bool] | None = pa.Field(
        description="Trial (populations.definition: trial) only: every patient; intention "
                    "to treat.")
    assessed: Series[bool] | None = pa.Field(
        description="Trial only: a post-baseline assessment of the primary instrument.")
    caseness_at_start: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    reliable_improvement: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    reliable_deterioration: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    recovery: Series[pd.BooleanDtype] = pa.Field(nullable=True)
    reliable_recovery: Series[pd.BooleanDtype] = pa.Field(nullable=True)

    class Config:
        strict = False
        name = "patient_outcomes"

    @pa.dataframe_check
    def attended_within_scheduled(cls, df: pd.DataFrame) -> Series[bool]:
        """A patient cannot attend more treatment sessions than were scheduled."""
        return df["sessions_attended"] <= df["sessions_scheduled"]

    @pa.dataframe_check
    def recovery_only_from_caseness(cls, df: pd.DataFrame) -> Series[bool]:
        """Recovery is defined only for patients at caseness at the start."""
        return df["recovery"].isna() | (df["caseness_at_start"] == True)  # noqa: E712

    @pa.dataframe_check
    def finished_course_is_started(cls, df: pd.DataFrame) -> Series[bool]:
        """A patient who finished a course also started one."""
        return ~df["finished_course"] | df["started"]


def _optional(dtype: Any, check: pa.Check | None = None) -> pa.Column:
    """A nullable column that a table has only when its instrument is in the data."""
    return pa.Column(dtype, check, nullable=True, required=False)


def per_instrument_schema(
    instruments: Iterable[Instrument] | None = None, conditions: Sequence[str] = CONDITIONS
) -> pa.DataFrameSchema:
    """``PatientOutcomes`` plus the typed per-instrument columns.

    Parameters
    ----------
    instruments : iterable of Instrument, optional
        The instruments in force (default: the catalogue). Their columns are optional: a
        table has the columns of the instruments present in the study's data.
    conditions : sequence of str
        Allowed condition codes (the built-in ones plus any a study config declares).
    """
    columns: dict[str, pa.Column] = {}
    for instrument in CATALOGUE.values() if instruments is None else instruments:
        name, low, high = instrument.name, instrument.min, instrument.max
        span = float(high - low)
        columns[f"{name}_baseline"] = _optional(float, pa.Check.in_range(low, high))
        columns[f"{name}_endpoint"] = _optional(float, pa.Check.in_range(low, high))
        columns[f"{name}_change"] = _optional(float, pa.Check.in_range(-span, span))
        columns[f"{name}_pct_change"] = _optional(float)
        for flag in ("response", "remission", "reliable_improvement", "reliable_deterioration"):
            columns[f"{name}_{flag}"] = _optional("boolean")
        columns[f"{name}_jt_class"] = _optional(str, pa.Check.isin(JT_CLASSES))
    schema = PatientOutcomes.to_schema().add_columns(columns)
    if tuple(conditions) != CONDITIONS:
        schema = schema.update_column("condition", checks=[pa.Check.isin(list(conditions))])
    return schema


def outcome_instruments(patient_outcomes: pd.DataFrame) -> list[str]:
    """The instruments with per-instrument columns in a ``patient_outcomes`` table."""
    suffix = "_baseline"
    return [c[: -len(suffix)] for c in patient_outcomes.columns if str(c).endswith(suffix)]
