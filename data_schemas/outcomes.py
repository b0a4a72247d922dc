"""Contract for ``patient_outcomes``: one row per patient, written by ``pipeline.outcomes``.

Outcome columns are nullable booleans: missing means *not known* (no paired scores, or not
defined for this patient), never False.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_schemas.vocab import CONDITIONS, FORMATS, INSTRUMENTS, PROBLEM_AREAS

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


def per_instrument_schema() -> pa.DataFrameSchema:
    """``PatientOutcomes`` plus the typed per-instrument columns of every instrument."""
    columns: dict[str, pa.Column] = {}
    for instrument, (low, high, _whole) in INSTRUMENTS.items():
        span = float(high - low)
        columns[f"{instrument}_baseline"] = pa.Column(float, pa.Check.in_range(low, high),
                                                      nullable=True)
        columns[f"{instrument}_endpoint"] = pa.Column(float, pa.Check.in_range(low, high),
                                                      nullable=True)
        columns[f"{instrument}_change"] = pa.Column(float, pa.Check.in_range(-span, span),
                                                    nullable=True)
        columns[f"{instrument}_pct_change"] = pa.Column(float, nullable=True)
        for flag in ("response", "remission", "reliable_improvement", "reliable_deterioration"):
            columns[f"{instrument}_{flag}"] = pa.Column("boolean", nullable=True)
        columns[f"{instrument}_jt_class"] = pa.Column(str, pa.Check.isin(JT_CLASSES),
                                                      nullable=True)
    return PatientOutcomes.to_schema().add_columns(columns)


