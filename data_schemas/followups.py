"""Contract for the optional ``followups`` table: post-treatment assessments."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_schemas.vocab import FOLLOWUP_EVENTS


class Followups(pa.DataFrameModel):
    """One row per post-treatment follow-up assessment.

    Score columns (one per instrument of the catalogue or the study config) are added by
    ``data_schemas.scores``, as for sessions.
    """

    patient_id: Series[str] = pa.Field(
        str_length={"min_value": 1}, description="Patient id; must exist in patients."
    )
    followup_date: Series[pa.DateTime] = pa.Field(
        description="Date of the follow-up (ISO); on or after the day of the patient's last "
                    "session (a follow-up on the day of discharge is allowed)."
    )
    clinician_relapse: Series[pd.BooleanDtype] | None = pa.Field(
        nullable=True, description="Clinician-recorded relapse at this follow-up."
    )
    event: Series[str] | None = pa.Field(
        isin=FOLLOWUP_EVENTS, nullable=True, description="Event ending or marking follow-up."
    )

    class Config:
        strict = False
        name = "followups"


class FollowupsInContext(Followups):
    """Follow-ups with their patient's last session date attached (``ctx_`` columns)."""

    ctx_patient_known: Series[bool] = pa.Field(description="Patient exists in patients.")
    ctx_last_session_date: Series[pa.DateTime] = pa.Field(nullable=True)

    @pa.dataframe_check
    def patient_exists(cls, df: pd.DataFrame) -> Series[bool]:
        """The patient_id must exist in the patients table."""
        return df["ctx_patient_known"]

    @pa.dataframe_check
    def followup_after_last_session(cls, df: pd.DataFrame) -> Series[bool]:
        """followup_date must not be before the day of the patient's last session (the day
        itself is allowed: a follow-up at discharge)."""
        return ~(df["followup_date"] < df["ctx_last_session_date"])


RULE_COLUMNS: dict[str, str] = {
    "patient_exists": "patient_id",
    "followup_after_last_session": "followup_date",
}
__all__ = ["Followups", "FollowupsInContext"]
