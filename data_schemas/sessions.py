"""Contract for the ``sessions`` table: one row per scheduled session, attended or not."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_schemas.vocab import ATTENDANCE

#: How far before start_date a pre-treatment assessment may lie.
ASSESSMENT_WINDOW_DAYS = 90


def _whole(s: pd.Series) -> pd.Series:
    return s.isna() | (s == s.round())


class Sessions(pa.DataFrameModel):
    """One row per scheduled session (session 0 = pre-treatment assessment).

    Score columns are not written here: they are the instruments of the catalogue
    (``data_schemas/instruments.csv``) and of the study config, one column per instrument
    named as in the catalogue (``phq9``, ``madrs`` ...), added by ``data_schemas.scores``.
    """

    patient_id: Series[str] = pa.Field(
        str_length={"min_value": 1}, description="Patient id; must exist in patients."
    )
    session_number: Series[float] = pa.Field(
        ge=0, description="0 = pre-treatment assessment, 1.. = treatment sessions."
    )
    session_date: Series[pa.DateTime] = pa.Field(description="Date of the session (ISO).")
    attendance: Series[str] = pa.Field(isin=ATTENDANCE, description="What happened.")

    class Config:
        strict = False
        name = "sessions"
        unique = ("patient_id", "session_number")

    @pa.check("session_number")
    def whole_number(cls, s: Series[float]) -> Series[bool]:
        """session_number must be a whole number."""
        return _whole(s)



class SessionsInContext(Sessions):
    """Sessions with their patient's dates attached, for the cross-table rules.

    The ``ctx_`` columns are added by the validator from the patients table.
    """

    ctx_patient_known: Series[bool] = pa.Field(description="Patient exists in patients.")
    ctx_start_date: Series[pa.DateTime] = pa.Field(nullable=True)
    ctx_end_date: Series[pa.DateTime] = pa.Field(nullable=True)

    @pa.dataframe_check
    def patient_exists(cls, df: pd.DataFrame) -> Series[bool]:
        """The patient_id must exist in the patients table."""
        return df["ctx_patient_known"]

    @pa.dataframe_check
    def session_not_long_before_start(cls, df: pd.DataFrame) -> Series[bool]:
        """session_date must not be more than 90 days before the patient's start_date."""
        earliest = df["ctx_start_date"] - pd.Timedelta(days=ASSESSMENT_WINDOW_DAYS)
        return ~(df["session_date"] < earliest)

    @pa.dataframe_check
    def session_not_after_end(cls, df: pd.DataFrame) -> Series[bool]:
        """session_date must not be after the patient's end_date."""
        return ~(df["session_date"] > df["ctx_end_date"])

    @pa.dataframe_check
    def treatment_session_not_before_start(cls, df: pd.DataFrame) -> Series[bool]:
        """A treatment session (number >= 1) must not be before the patient's start_date."""
        return ~((df["session_number"] >= 1) & (df["session_date"] < df["ctx_start_date"]))


RULE_COLUMNS: dict[str, str] = {
    "no_score_on_missed_session": "attendance",
    "patient_exists": "patient_id",
    "session_not_long_before_start": "session_date",
    "session_not_after_end": "session_date",
    "treatment_session_not_before_start": "session_date",
    "multiple_fields_uniqueness": "session_number",
}
