"""pipeline.outcomes.completeness: paired-score completeness, one computation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pipeline.config import StudyConfig
from pipeline.estimability import NotEstimable
from pipeline.outcomes import completeness


def _outcomes() -> pd.DataFrame:
    # 4 finished courses: 3 with both change scores; 1 unfinished course with both
    return pd.DataFrame({
        "finished_course": [True, True, True, True, False],
        "phq9_baseline": [15.0, 12, 18, 11, 14], "gad7_baseline": [10.0, 9, 12, 8, 11],
        "phq9_change": [-6.0, -2, np.nan, -4, -3], "gad7_change": [-4.0, -1, -2, -3, -1],
    })


def test_paired_scores_and_share_by_hand() -> None:
    paired = completeness.paired_scores(_outcomes(), ("phq9", "gad7"))
    assert paired.tolist() == [True, True, False, True, False]
    share = completeness.share_paired(pd.Series([3, 0]), pd.Series([4, 0]))
    assert share.iloc[0] == 0.75 and np.isnan(share.iloc[1])
    meets = completeness.meets_standard(pd.Series([0.75, 0.9, np.nan]), 0.9)
    assert meets.tolist()[:2] == [False, True] and pd.isna(meets.iloc[2])


def test_table_uses_the_configured_standard() -> None:
    config = StudyConfig()
    table = completeness.completeness_table(_outcomes(), config)
    assert table.iloc[0].to_dict() == {"finished_courses": 4, "paired": 3, "share_paired": 0.75,
                                       "standard": 0.9, "meets_standard": False}
    lower = dataclasses.replace(config, audit=dataclasses.replace(
        config.audit, completeness_standard=0.7))
    assert bool(completeness.completeness_table(_outcomes(), lower)["meets_standard"].iloc[0])


def test_table_not_estimable_without_finished_courses() -> None:
    outcomes = _outcomes().assign(finished_course=False)
    with pytest.raises(NotEstimable):
        completeness.completeness_table(outcomes, StudyConfig())
