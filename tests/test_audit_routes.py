"""Clinic audit at scale: the routes taken so that time and memory grow linearly with the
number of patients give the answers of the routes they replaced.

- Effect-size bootstrap: multinomial counts over the distinct (pre, post) pairs instead of
  a (resamples x patients) array of resampled rows. The statistic of a resample is the
  same function of its counts (checked exactly), so the bootstrap distribution is the same;
  the random draws differ, so intervals agree within Monte Carlo error (stated tolerance).
- Per-unit effect sizes: one grouping pass instead of a comparison of every patient's unit
  per unit (same seed, same numbers).
- Patients not on track: only the session rows of the sampled finished courses and of the
  patients in treatment are built (same sample, same curve, same table).
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from pipeline import config
from pipeline.audit import not_on_track as watch_list
from pipeline.audit import review as audit
from pipeline.audit import units as unit_stats
from pipeline.outcomes import definitions as outcomes
from tests.test_audit import OPTIONS, simulate

FloatArray = npt.NDArray[np.float64]

#: Largest difference allowed between the interval ends of the two bootstrap routes with
#: 20,000 resamples each: about 5 Monte Carlo standard errors (0.006 in 20 seeded repeats).
MONTE_CARLO_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    patients, sessions = simulate()
    patient_outcomes = outcomes.derive(patients, sessions, config.from_mapping(None))
    return patients, sessions, patient_outcomes


def _scores(n: int, seed: int) -> tuple[FloatArray, FloatArray]:
    """Whole-number PHQ-9 baselines and endpoints of ``n`` patients."""
    rng = np.random.default_rng(seed)
    pre = np.clip(np.round(rng.normal(15, 4, n)), 0, 27)
    post = np.clip(np.round(pre - rng.normal(6, 5, n)), 0, 27)
    return pre.astype(np.float64), post.astype(np.float64)


def _row_bootstrap(pre: FloatArray, post: FloatArray, resamples: int,
                   rng: np.random.Generator) -> tuple[float, float]:
    """The previous route: a (resamples x n) array of resampled rows."""
    index = rng.integers(0, len(pre), size=(resamples, len(pre)))
    sd = pre[index].std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = (pre[index].mean(axis=1) - post[index].mean(axis=1)) / np.where(
            sd > 0, sd, np.nan)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(low), float(high)


# --------------------------------------------------------------------------------------
# Effect-size bootstrap
# --------------------------------------------------------------------------------------


def test_pair_frequencies_match_sorting_the_rows() -> None:
    pre, post = _scores(500, 1)
    pre_levels, post_levels, frequency = unit_stats._pair_frequencies(pre, post)
    pairs, counts = np.unique(np.column_stack([pre, post]), axis=0, return_counts=True)
    np.testing.assert_array_equal(pre_levels, pairs[:, 0])
    np.testing.assert_array_equal(post_levels, pairs[:, 1])
    np.testing.assert_array_equal(frequency, counts)


def test_statistic_of_counts_is_the_statistic_of_the_resampled_rows() -> None:
    pre, post = _scores(60, 2)
    pre_levels, post_levels, _frequency = unit_stats._pair_frequencies(pre, post)
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, size=(25, len(pre_levels))).astype(float)
    counts[0] = 0.0
    counts[0, 0] = 5.0  # a resample of one pair only: SD 0, so NaN
    draws = unit_stats._effect_size_of_counts(counts, pre_levels, post_levels)
    for row, draw in zip(counts.astype(int), draws, strict=True):
        x = np.repeat(pre_levels, row)
        y = np.repeat(post_levels, row)
        sd = x.std(ddof=1)
        expected = (x.mean() - y.mean()) / sd if sd > 0 else np.nan
        np.testing.assert_allclose(draw, expected, rtol=1e-12, atol=0, equal_nan=True)


def test_multinomial_bootstrap_matches_row_resampling_within_monte_carlo_error() -> None:
    pre, post = _scores(80, 4)
    estimate, low, high = audit.bootstrap_effect_size(pre, post, 20_000,
                                                      np.random.default_rng(5))
    reference_low, reference_high = _row_bootstrap(pre, post, 20_000,
                                                   np.random.default_rng(6))
    assert estimate == pytest.approx((pre.mean() - post.mean()) / pre.std(ddof=1), rel=1e-12)
    assert low == pytest.approx(reference_low, abs=MONTE_CARLO_TOLERANCE)
    assert high == pytest.approx(reference_high, abs=MONTE_CARLO_TOLERANCE)


def test_bootstrap_memory_does_not_grow_with_resamples_times_patients() -> None:
    pre, post = _scores(200_000, 7)  # the row route needs > 2 GB here
    tracemalloc.start()
    try:
        result = audit.bootstrap_effect_size(pre, post, 500, np.random.default_rng(8))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result[1] < result[0] < result[2]
    assert peak < 40e6


def _effect_sizes_loop(data: pd.DataFrame, units: pd.Series, instrument: str,
                       options: audit.AuditOptions) -> pd.DataFrame:
    """The previous per-unit loop (one comparison of every unit label per unit)."""
    rng = np.random.default_rng(options.seed)
    paired = data["finished_course"].astype(bool) & data[f"{instrument}_baseline"].notna() & (
        data[f"{instrument}_endpoint"].notna())
    rows = []
    for unit in [*sorted(units.unique()), audit.ALL]:
        member = paired & ((units == unit) if unit != audit.ALL else True)
        pre = data.loc[member, f"{instrument}_baseline"].to_numpy(dtype=float)
        post = data.loc[member, f"{instrument}_endpoint"].to_numpy(dtype=float)
        # the whole service draws from a fresh generator (one number in both unit tables)
        draw = rng if unit != audit.ALL else np.random.default_rng(options.seed)
        estimate, low, high = audit.bootstrap_effect_size(pre, post,
                                                          options.bootstrap_resamples, draw)
        rows.append({"unit": unit, f"{instrument}_es_n": int(member.sum()),
                     f"{instrument}_effect_size": estimate, f"{instrument}_es_ci_low": low,
                     f"{instrument}_es_ci_high": high})
    return pd.DataFrame(rows).set_index("unit")


@pytest.mark.parametrize("level", ["site", "therapist"])
@pytest.mark.parametrize("instrument", ["phq9", "gad7"])
def test_effect_sizes_by_grouping_equal_the_per_unit_loop(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], level: str,
        instrument: str) -> None:
    patient_outcomes = study[2]
    column = audit.LEVELS[level]
    data = patient_outcomes.loc[patient_outcomes[column].notna()]
    units = data[column].astype(str)
    pd.testing.assert_frame_equal(unit_stats._effect_sizes(data, units, instrument, OPTIONS),
                                  _effect_sizes_loop(data, units, instrument, OPTIONS))


# --------------------------------------------------------------------------------------
# Patients not on track
# --------------------------------------------------------------------------------------


def _not_on_track_all_rows(
    patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
    options: audit.AuditOptions,
) -> tuple[pd.DataFrame, list[str]]:
    """The previous route: the score rows of every patient, then the subsets."""
    instrument = "phq9"
    rows = watch_list._score_rows(patients, sessions, patient_outcomes, instrument)
    finished = patient_outcomes.loc[patient_outcomes["finished_course"].astype(bool),
                                    "patient_id"]
    curve, notes = audit.fit_recovery_curve(rows[rows["patient_id"].isin(finished)], options)
    ongoing_mask = patients["end_date"].isna() | (patients["end_reason"] == "ongoing")
    ongoing = rows[rows["patient_id"].isin(patients.loc[ongoing_mask, "patient_id"])]
    latest = ongoing.sort_values(["patient_id", "session_number"]).groupby("patient_id").tail(1)
    units = patient_outcomes.set_index("patient_id").reindex(columns=["site_id",
                                                                      "therapist_id"])
    latest = latest.join(units, on="patient_id")
    assert curve is not None
    table = audit.flag_not_on_track(latest, curve, options)
    return table, notes


@pytest.mark.parametrize("max_model_patients", [300, 100_000])
def test_not_on_track_from_the_needed_rows_equals_building_every_row(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
        max_model_patients: int) -> None:
    options = dataclasses.replace(OPTIONS, keep_ids=True,
                                  max_model_patients=max_model_patients)
    table, notes = audit.not_on_track(*study, config.from_mapping(None), options)
    reference, reference_notes = _not_on_track_all_rows(*study, options)
    pd.testing.assert_frame_equal(table, reference)
    assert notes[:-1] == reference_notes  # the last note counts the flagged patients
    sampled = [n for n in notes if "curve fitted on a pseudo-random" in n]
    assert len(sampled) == (1 if max_model_patients == 300 else 0)


def test_curve_candidates_are_the_finished_courses_with_score_rows(
        study: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    patients, sessions, patient_outcomes = study
    rows = watch_list._score_rows(patients, sessions, patient_outcomes, "phq9")
    finished = patient_outcomes.loc[patient_outcomes["finished_course"].astype(bool),
                                    "patient_id"]
    expected = set(rows.loc[rows["patient_id"].isin(finished), "patient_id"])
    candidates = watch_list._curve_candidates(patients, sessions, patient_outcomes, "phq9")
    assert len(candidates) == len(expected) and set(candidates) == expected
