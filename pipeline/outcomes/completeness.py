"""Paired-score completeness: the share of finished courses with paired scores.

NHS Talking Therapies counts a finished course (at least two attended treatment sessions)
as *paired* when it has a first and a last score on both paired instruments (PHQ-9 and
GAD-7), and sets a data-completeness standard of 90% paired finished courses (NHS England,
NHS Talking Therapies Manual). The standard is configured once, as
``audit.completeness_standard``; the outcomes stage (one row for the service) and the
audit (one row per site and therapist) both use the functions here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pipeline.config import StudyConfig
from pipeline.estimability import require

__all__ = ["completeness_table", "meets_standard", "paired_scores", "share_paired"]


def paired_scores(patient_outcomes: pd.DataFrame, instruments: Sequence[str]) -> pd.Series:
    """Whether each patient finished a course with a change score on every instrument."""
    paired = patient_outcomes["finished_course"].astype(bool)
    for instrument in instruments:
        paired = paired & patient_outcomes[f"{instrument}_change"].notna()
    return paired


def share_paired(paired: pd.Series, finished: pd.Series) -> pd.Series:
    """Completeness: ``paired / finished`` (missing where nobody finished a course)."""
    return paired.astype(float) / finished.astype(float).where(finished > 0)


def meets_standard(share: pd.Series, standard: float) -> pd.Series:
    """Whether each share reaches the standard (nullable boolean; missing share: NA)."""
    return (share >= standard).astype("boolean").mask(share.isna())


def completeness_table(patient_outcomes: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """The service's paired-score completeness against ``audit.completeness_standard``.

    Returns
    -------
    DataFrame
        One row: ``finished_courses``, ``paired``, ``share_paired``, ``standard``,
        ``meets_standard``.

    Raises
    ------
    NotEstimable
        When a paired instrument is not in the data, or nobody finished a course.
    """
    first, second = config.paired_instruments
    missing = [i for i in (first, second) if f"{i}_change" not in patient_outcomes.columns
               or not patient_outcomes[f"{i}_baseline"].notna().any()]
    require(not missing, f"no {' or '.join(missing)} scores: paired-score completeness "
            "is defined for the paired instruments", f"{first} and {second} scores")
    finished = patient_outcomes["finished_course"].astype(bool)
    require(bool(finished.any()), "no patient finished a course of treatment",
            "patients who ended treatment after >= "
            f"{config.populations.finished_course_min_sessions} attended sessions")
    paired = int(paired_scores(patient_outcomes, (first, second)).sum())
    finished_n = int(finished.sum())
    share = float(share_paired(pd.Series([paired]), pd.Series([finished_n])).iloc[0])
    standard = config.audit.completeness_standard
    return pd.DataFrame({
        "finished_courses": [finished_n], "paired": [paired],
        "share_paired": [share], "standard": [standard],
        "meets_standard": [bool(meets_standard(pd.Series([share]), standard).iloc[0])],
    })
