"""Outcomes and rate tables of studies that are not PHQ-9/GAD-7 shaped: the cut-offs come
from the catalogue (``data_schemas/instruments.csv``) or the study config, and an outcome an
instrument does not define is missing for every patient and absent from every rate table.

Hand computations are beside each fixture.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from data_schemas.outcomes import per_instrument_schema
from pipeline import config as study_config
from pipeline.cli import BENCHMARK_EXAMPLE
from pipeline.estimability import NotEstimable
from pipeline.outcomes import definitions as outcomes
from pipeline.outcomes import rates
from pipeline.outcomes import tables as outcome_tables

START = pd.Timestamp("2024-01-08")


def study(scores: dict[str, dict[str, tuple[float, float]]]) -> tuple[pd.DataFrame,
                                                                      pd.DataFrame]:
    """Completed patients with sessions 0-2 attended; ``scores[patient][column]`` = (score
    at session 0, score at session 2)."""
    patients, rows = [], []
    for pid, by_column in scores.items():
        patients.append({
            "patient_id": pid, "site_id": "S1", "therapist_id": "T1", "group_id": None,
            "condition": "major_depression", "format": "individual", "problem_area": "grief",
            "start_date": START, "end_date": START + pd.Timedelta(weeks=2),
            "end_reason": "completed"})
        for number in (0, 1, 2):
            values: dict[str, Any] = {c: (v[0] if number == 0 else v[1] if number == 2
                                          else float("nan")) for c, v in by_column.items()}
            rows.append({"patient_id": pid, "session_number": float(number),
                         "session_date": START + pd.Timedelta(weeks=number),
                         "attendance": "attended", **values})
    return pd.DataFrame(patients), pd.DataFrame(rows)


def derive(scores: dict[str, dict[str, tuple[float, float]]],
           config: study_config.StudyConfig) -> pd.DataFrame:
    patients, sessions = study(scores)
    return outcomes.derive(patients, sessions, config).set_index("patient_id")


def rate_pairs(table: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(table["instrument"], table["outcome"], strict=True))


# MADRS: response = fall >= 50%, remission < 10 (Hawley et al. 2002); no reliable change.
# M1 30 -> 14: fall 53% -> response; 14 >= 10 -> no remission
# M2 24 -> 9:  fall 62.5% -> response; 9 < 10 -> remission
# M3 20 -> 10: fall exactly 50% -> response; 10 is not < 10 -> no remission
# M4 18 -> 12: fall 33% -> no response; no remission
MADRS = {"M1": {"madrs": (30, 14)}, "M2": {"madrs": (24, 9)}, "M3": {"madrs": (20, 10)},
         "M4": {"madrs": (18, 12)}}
MADRS_CONFIG = {"primary_instrument": "madrs"}


@pytest.fixture(scope="module")
def madrs_outcomes() -> pd.DataFrame:
    return derive(MADRS, study_config.from_mapping(MADRS_CONFIG))


def test_madrs_only_study_uses_catalogue_cut_offs(madrs_outcomes: pd.DataFrame) -> None:
    table = madrs_outcomes
    assert table["madrs_response"].tolist() == [True, True, True, False]
    assert table["madrs_remission"].tolist() == [False, True, False, False]
    assert table["madrs_reliable_improvement"].isna().all()  # not defined for MADRS
    assert table["madrs_jt_class"].isna().all()
    assert not any(c.startswith(("phq9_", "gad7_", "bdi2_")) for c in table.columns)
    for paired in ("recovery", "reliable_improvement", "caseness_at_start"):
        assert table[paired].isna().all()  # the paired instruments are not in the data
    per_instrument_schema().validate(table.reset_index(), lazy=True)


def test_madrs_rate_tables_hold_only_defined_outcomes(madrs_outcomes: pd.DataFrame) -> None:
    benchmarks = pd.read_csv(BENCHMARK_EXAMPLE)
    config = study_config.from_mapping(MADRS_CONFIG)
    table = madrs_outcomes.reset_index()
    rate_table = outcome_tables.rate_table(table, config)
    assert rate_pairs(rate_table) == {("madrs", "response"), ("madrs", "remission")}
    finished = rate_table[(rate_table["population"] == "finished_course")
                          & (rate_table["denominator"] == "observed")
                          & (rate_table["condition"] == "all")
                          & (rate_table["format"] == "all")].set_index("outcome")
    assert finished.loc["response", ["n", "events"]].tolist() == [4, 3]
    assert finished.loc["remission", ["n", "events"]].tolist() == [4, 1]
    # recovery and reliable improvement benchmarks need the paired instruments: absent
    compared = rates.benchmark_comparison(
        rate_table, benchmarks, primary="madrs",
        defined=outcome_tables.defined_outcomes(table, config))
    assert set(compared["outcome"]) == {"response", "remission"}


# CORE-10: caseness >= 11, reliable change 6 (Barkham et al. 2013); JT cut-off = caseness.
# C1 25 -> 12: fall 13 -> reliable improvement; 12 >= 11 still clinical -> improved
# C2 14 -> 8:  fall exactly 6 -> reliable improvement; 14 >= 11 and 8 < 11 -> recovered
# C3 10 -> 17: rise 7 -> reliable deterioration -> deteriorated
# C4 12 -> 9:  fall 3 -> unchanged
CORE10 = {"C1": {"core10": (25, 12)}, "C2": {"core10": (14, 8)}, "C3": {"core10": (10, 17)},
          "C4": {"core10": (12, 9)}}


def test_core10_only_study_uses_catalogue_cut_offs() -> None:
    table = derive(CORE10, study_config.from_mapping({"primary_instrument": "core10"}))
    assert table["core10_reliable_improvement"].tolist() == [True, True, False, False]
    assert table["core10_reliable_deterioration"].tolist() == [False, False, True, False]
    assert table["core10_jt_class"].tolist() == ["improved", "recovered", "deteriorated",
                                                 "unchanged"]
    assert table["core10_response"].isna().all() and table["core10_remission"].isna().all()


def test_core10_rates_have_no_response_or_remission_rows() -> None:
    config = study_config.from_mapping({"primary_instrument": "core10"})
    table = derive(CORE10, config)
    assert rate_pairs(outcome_tables.rate_table(table.reset_index(), config)) == \
        {("core10", "reliable_improvement")}
    with pytest.raises(NotEstimable, match="response is not defined for core10"):
        outcome_tables.format_comparison(table.reset_index(), config)


# A study's own wellbeing scale, higher is better, reliable change 8, caseness <= 40.
# W1 30 -> 45: rise 15 -> reliable improvement; 30 <= 40 clinical, 45 > 40 -> recovered
# W2 50 -> 44: fall 6 -> not reliable -> unchanged
# W3 35 -> 25: fall 10 -> reliable deterioration -> deteriorated
# W4 36 -> 44: rise exactly 8 -> reliable improvement; 36 -> 44 crosses 40 -> recovered
WELLBEING = {"W1": {"wellbeing": (30, 45)}, "W2": {"wellbeing": (50, 44)},
             "W3": {"wellbeing": (35, 25)}, "W4": {"wellbeing": (36, 44)}}
WELLBEING_CONFIG = {"primary_instrument": "wellbeing", "instruments": {"wellbeing": {
    "min": 14, "max": 70, "direction": "higher_is_better", "caseness": 40,
    "reliable_change": 8}}}


def test_declared_higher_is_better_scale() -> None:
    config = study_config.from_mapping(WELLBEING_CONFIG)
    table = derive(WELLBEING, config)
    assert table["wellbeing_change"].tolist() == [15, -6, -10, 8]
    assert table["wellbeing_reliable_improvement"].tolist() == [True, False, False, True]
    assert table["wellbeing_reliable_deterioration"].tolist() == [False, False, True, False]
    assert table["wellbeing_jt_class"].tolist() == ["recovered", "unchanged", "deteriorated",
                                                    "recovered"]
    assert table["wellbeing_response"].isna().all()  # no % fall on a higher-is-better scale
    schema = per_instrument_schema(config.catalogue().values())
    schema.validate(table.reset_index(), lazy=True)
    assert rate_pairs(outcome_tables.rate_table(table.reset_index(), config)) == \
        {("wellbeing", "reliable_improvement")}


# BDI-II now defines response (fall >= 50%) and remission (<= 13).
# B1 30 -> 13: fall 57% -> response; 13 <= 13 -> remission
# B2 30 -> 16: fall 47% -> no response; no remission
BDI = {"B1": {"bdi2": (30, 13)}, "B2": {"bdi2": (30, 16)}}


def test_bdi2_response_and_remission_are_defined() -> None:
    table = derive(BDI, study_config.from_mapping(None))
    assert table["bdi2_response"].tolist() == [True, False]
    assert table["bdi2_remission"].tolist() == [True, False]


# PHQ-9 + GAD-7: GAD-7 defines no response or remission.
PAIRED = {"P1": {"phq9": (20, 8), "gad7": (15, 6)}, "P2": {"phq9": (12, 11), "gad7": (9, 9)}}


def test_no_rate_row_for_an_undefined_outcome() -> None:
    config = study_config.from_mapping(None)
    table = derive(PAIRED, config)
    pairs = rate_pairs(outcome_tables.rate_table(table.reset_index(), config))
    assert ("gad7", "response") not in pairs and ("gad7", "remission") not in pairs
    assert ("gad7", "reliable_improvement") in pairs
    assert {("phq9", "response"), ("phq9", "remission"), ("phq9+gad7", "recovery")} <= pairs
    # P1: at caseness, both below caseness at the end -> recovered; P2: not recovered
    assert table["recovery"].tolist() == [True, False]


def test_paired_measures_need_the_paired_rules() -> None:
    config = study_config.from_mapping({"instruments": {"gad7": {"caseness": None}}})
    table = derive(PAIRED, config)
    assert table["recovery"].isna().all() and table["caseness_at_start"].isna().all()
    assert table["reliable_improvement"].tolist() == [True, False]
    paired = {o for i, o in rate_pairs(outcome_tables.rate_table(table.reset_index(), config))
              if i == "phq9+gad7"}
    assert paired == {"reliable_improvement"}


def test_audit_without_the_paired_instruments_is_not_estimable(
        madrs_outcomes: pd.DataFrame) -> None:
    from pipeline.audit import review as audit

    patients, sessions = study(MADRS)
    result = audit.review(patients, sessions, madrs_outcomes.reset_index(),
                          study_config.from_mapping(MADRS_CONFIG), key=b"k" * 32)
    units = [r for r in result.records if r.analysis.startswith("units")]
    assert [r.status for r in units] == ["not estimable"]
    assert "no phq9 or gad7 scores" in units[0].reason
