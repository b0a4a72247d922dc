"""Parameter recovery of the growth model on simulated cohorts with known truth.

200 cohorts of 400 patients are simulated from the growth model of
``pipeline.trajectories.models`` (missing at random: 15% of sessions missed, 20% stop early at
random) and fitted with the fast engine (``mixedlm``); the 95% Wald interval of the
time x format effect must cover the truth in 90-99% of cohorts, and its estimates must be
unbiased. Run with ``make validate-stats`` (about two
minutes on two cores).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.trajectories import engines
from pipeline.trajectories import models as trajectories

REPLICATES = 200
N_PATIENTS = 400
N_THERAPISTS = 16
TRUE_DIFFERENCE = 0.10  # group slope -0.45 minus individual slope -0.55 per week
CONDITIONS = ("major_depression", "dysthymia", "anxiety")
BASELINE = np.array([16.0, 14.0, 12.0])


def simulate(seed: int) -> pd.DataFrame:
    """Long data of one cohort (the columns ``long_scores`` gives the models)."""
    rng = np.random.default_rng(seed)
    n = N_PATIENTS
    therapist = rng.integers(0, N_THERAPISTS, n)
    is_group = rng.random(n) < 0.3
    order = np.lexsort((np.arange(n), therapist, ~is_group))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    group = np.where(is_group, therapist * 1000 + rank // 8, -1)
    condition = rng.choice(len(CONDITIONS), n, p=(0.6, 0.2, 0.2))
    z = rng.standard_normal((n, 2))
    _, group_codes = np.unique(group, return_inverse=True)
    g = np.where(is_group, rng.normal(0, 1.0, group_codes.max() + 1)[group_codes], 0.0)
    a0, a1 = rng.normal(0, 0.7, N_THERAPISTS), rng.normal(0, 0.05, N_THERAPISTS)
    intercept = BASELINE[condition] + 4 * z[:, 0] + g + a0[therapist]
    slope = (np.where(is_group, -0.55 + TRUE_DIFFERENCE, -0.55) + a1[therapist]
             + 0.15 * (-0.3 * z[:, 0] + np.sqrt(1 - 0.09) * z[:, 1]))
    sessions = np.arange(17)
    weeks = np.broadcast_to(sessions - 1.0, (n, 17)).copy()
    weeks[:, 0] = -rng.integers(1, 15, n) / 7
    last = np.where(rng.random(n) < 0.2, rng.integers(3, 16, n), rng.integers(12, 17, n))
    present = (sessions <= last[:, None]) & ((sessions == 0) | (rng.random((n, 17)) > 0.15))
    score = intercept[:, None] + slope[:, None] * weeks + rng.normal(0, 2, (n, 17))
    rows, cols = np.nonzero(present)
    return pd.DataFrame({
        "patient_id": rows, "therapist_id": therapist[rows],
        "group_id": np.where(is_group[rows], group[rows], np.nan),
        "format": np.where(is_group[rows], "group", "individual"),
        "condition": np.asarray(CONDITIONS)[condition[rows]], "problem_area": "grief",
        "age": 40.0, "sex": "female", "weeks": weeks[rows, cols],
        "score": score[rows, cols], "dropout": False})


def fit_difference(seed: int) -> tuple[float, float, float]:
    """Estimate and 95% interval of weeks:format[group] in one simulated cohort."""
    frame, covariates, _ = trajectories.model_data(simulate(seed))
    components, _ = trajectories.random_structure(frame, "weeks")
    spec = trajectories.model_spec("growth", "weeks", covariates, components)
    fixed = engines.fit(spec, frame, "mixedlm").fixed.set_index("term")
    row = fixed.loc["weeks:format[group]"]
    return float(row["estimate"]), float(row["ci_low"]), float(row["ci_high"])


def test_time_by_format_coverage() -> None:
    results = np.array([fit_difference(20261122 + r) for r in range(REPLICATES)])
    covered = (results[:, 1] <= TRUE_DIFFERENCE) & (results[:, 2] >= TRUE_DIFFERENCE)
    coverage = covered.mean()
    mean_se = ((results[:, 2] - results[:, 1]) / (2 * 1.959964)).mean()
    print(f"coverage {coverage:.3f} over {REPLICATES} cohorts; mean estimate "
          f"{results[:, 0].mean():.4f} (truth {TRUE_DIFFERENCE}); empirical SD "
          f"{results[:, 0].std(ddof=1):.4f}, mean model SE {mean_se:.4f}")
    assert 0.90 <= coverage <= 0.99
    assert abs(results[:, 0].mean() - TRUE_DIFFERENCE) < 3 * results[:, 0].std() / np.sqrt(
        REPLICATES)
