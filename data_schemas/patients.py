"""Contract for the ``patients`` table: one row per patient episode of care."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_schemas.vocab import CONDITIONS, END_REASONS, FORMATS, PROBLEM_AREAS

ENDED_REASONS = ("completed", "dropped_out", "transferred", "other")


class Patients(pa.DataFrameModel):
    """One row per patient episode of care.

    Any column not named here is kept as a covariate for the models; its name must be a
    valid identifier (letters, digits, underscores) so it can be used in a model formula.
    """

    patient_id: Series[str] = pa.Field(
        unique=True, str_length={"min_value": 1}, description="Pseudonymous patient id, unique."
    )
    site_id: Series[str] = pa.Field(
        str_length={"min_value": 1}, description="Clinic or service delivering the therapy."
    )
    therapist_id: Series[str] | None = pa.Field(nullable=True, description="Therapist id.")
    condition: Series[str] = pa.Field(isin=CONDITIONS, description="Primary diagnosis treated.")
    format: Series[str] = pa.Field(isin=FORMATS, description="Individual (1:1) or group IPT.")
    group_id: Series[str] | None = pa.Field(
        nullable=True,
        description="Therapy group of a group-format patient (empty if not recorded: analyses "
                    "that cluster by group then say they could not); empty for individual IPT.",
    )
    problem_area: Series[str] = pa.Field(
        isin=PROBLEM_AREAS, description="Main IPT problem area (focus of treatment)."
    )
    secondary_problem_area: Series[str] | None = pa.Field(
        isin=PROBLEM_AREAS, nullable=True, description="Second problem area, if any."
    )
    referral_date: Series[pa.DateTime] = pa.Field(description="Date referred (ISO).")
    start_date: Series[pa.DateTime] = pa.Field(description="First treatment session (ISO).")
    end_date: Series[pa.DateTime] | None = pa.Field(
        nullable=True, description="End of the episode; empty while ongoing."
    )
    end_reason: Series[str] | None = pa.Field(
        isin=END_REASONS, nullable=True, description="Why the episode ended."
    )
    age: Series[float] | None = pa.Field(
        ge=12, le=110, nullable=True, description="Age in whole years at referral (12-110)."
    )
    sex: Series[str] | None = pa.Field(nullable=True, description="Sex as recorded.")
    maintenance: Series[pd.BooleanDtype] | None = pa.Field(
        nullable=True, description="Monthly maintenance IPT after the acute phase."
    )
    arm: Series[str] | None = pa.Field(nullable=True, description="Trial arm, if a trial.")

    class Config:
        strict = False
        name = "patients"

    @pa.check("age")
    def whole_years(cls, age: Series[float]) -> Series[bool]:
        """Age must be a whole number of years."""
        return age.isna() | (age == age.round())

    @pa.dataframe_check
    def group_id_matches_format(cls, df: pd.DataFrame) -> Series[bool]:
        """An individual patient must not have a group_id; a group-format patient may lack one
        (many services do not record the group), and clustered analyses then say so."""
        return ~(df["group_id"].notna() & (df["format"] != "group"))

    @pa.dataframe_check
    def secondary_differs_from_primary(cls, df: pd.DataFrame) -> Series[bool]:
        """The secondary problem area must differ from the main problem area."""
        return df["secondary_problem_area"].isna() | (
            df["secondary_problem_area"] != df["problem_area"]
        )

    @pa.dataframe_check
    def start_not_before_referral(cls, df: pd.DataFrame) -> Series[bool]:
        """start_date must not be before referral_date."""
        return ~(df["start_date"] < df["referral_date"])

    @pa.dataframe_check
    def end_not_before_start(cls, df: pd.DataFrame) -> Series[bool]:
        """end_date must not be before start_date."""
        return ~(df["end_date"] < df["start_date"])

    @pa.dataframe_check
    def end_date_matches_end_reason(cls, df: pd.DataFrame) -> Series[bool]:
        """An ended episode (completed, dropped_out, transferred, other) needs an end_date;
        an ongoing one must not have one."""
        ended = df["end_reason"].isin(ENDED_REASONS)
        ongoing = df["end_reason"] == "ongoing"
        has_end = df["end_date"].notna()
        return ~((ended & ~has_end) | (ongoing & has_end))

    @pa.dataframe_check
    def group_in_one_site(cls, df: pd.DataFrame) -> Series[bool]:
        """All patients of a therapy group must share its site."""
        grouped = df[df["group_id"].notna()]
        sites_per_group = grouped.groupby("group_id")["site_id"].nunique()
        mixed = sites_per_group[sites_per_group > 1].index
        return ~df["group_id"].isin(mixed)


#: The column each whole-row rule is about, for the failure report.
RULE_COLUMNS: dict[str, str] = {
    "group_id_matches_format": "group_id",
    "secondary_differs_from_primary": "secondary_problem_area",
    "start_not_before_referral": "start_date",
    "end_not_before_start": "end_date",
    "end_date_matches_end_reason": "end_date",
    "group_in_one_site": "group_id",
}
