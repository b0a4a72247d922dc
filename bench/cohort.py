"""A light, vectorised generator of long-format IPT scores for the benchmark.

Much faster and leaner than :mod:`pipeline.demo.generate` at a million patients because it
writes the model's long data directly (integer ids, categorical factors) instead of the three input
tables. The trajectory model matches the growth model of :mod:`pipeline.trajectories.models`:

``score = mu0[condition] + u0 + g_group + a_therapist + (slope[format] + u1 + a'_therapist)
* weeks + e``, rounded and clipped to 0-27, with (u0, u1) SDs 4 and 0.15 (correlation
-0.3), therapy-group intercept SD 1, therapist intercept SD 0.7 and slope SD 0.05, residual
SD 2. Sessions: assessment 1-14 days before the start, then 12-16 weekly sessions (+-2 days
from session 2), each missed with probability 0.15; 20% drop out at a uniform session
3..planned-1 (their later sessions are absent). 30% are treated in groups of 8 sharing a
therapist; there is one therapist per 50 patients.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONDITIONS = ("major_depression", "dysthymia", "anxiety", "eating_disorder", "bipolar",
              "adjustment", "other")
CONDITION_P = (0.55, 0.10, 0.12, 0.06, 0.05, 0.08, 0.04)
BASELINE = np.array([16.0, 14.0, 12.0, 13.0, 14.0, 11.0, 12.5])
MAX_SESSION = 16


def _patients(n: int, rng: np.random.Generator) -> pd.DataFrame:
    therapist = rng.integers(0, max(5, n // 50), n)
    is_group = rng.random(n) < 0.3
    order = np.lexsort((np.arange(n), therapist, ~is_group))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    group = np.where(is_group, therapist * 10_000 + rank // 8, -1)
    return pd.DataFrame({
        "patient_id": np.arange(n, dtype=np.int64),
        "therapist_id": therapist,
        "group_id": np.where(is_group, group, np.nan),
        "format": pd.Categorical.from_codes(is_group.astype(int), ["individual", "group"]),
        "condition": pd.Categorical.from_codes(
            rng.choice(len(CONDITIONS), n, p=CONDITION_P), list(CONDITIONS)),
        "problem_area": pd.Categorical.from_codes(
            rng.choice(4, n, p=(0.2, 0.35, 0.3, 0.15)),
            ["grief", "role_disputes", "role_transitions", "interpersonal_deficits"]),
        "age": np.clip(np.round(rng.normal(40, 14, n)), 18, 80),
        "sex": pd.Categorical.from_codes((rng.random(n) >= 0.65).astype(int),
                                         ["female", "male"]),
    })


def generate(n: int, seed: int = 20261122) -> pd.DataFrame:
    """Long data (one row per observed score) of ``n`` patients."""
    rng = np.random.default_rng(seed)
    patients = _patients(n, rng)
    planned = rng.integers(12, 17, n)
    dropout = rng.random(n) < 0.2
    drop_at = np.where(dropout, rng.integers(3, planned), planned)
    k = np.arange(MAX_SESSION + 1)
    days = 7 * (k[None, :] - 1) + np.where(k >= 2, rng.integers(-2, 3, (n, k.size)), 0)
    days[:, 0] = -rng.integers(1, 15, n)
    present = (k[None, :] <= drop_at[:, None]) & ((k == 0) | (rng.random((n, k.size)) > 0.15))
    weeks = days / 7.0
    z = rng.standard_normal((n, 2))
    therapists = patients["therapist_id"].to_numpy()
    n_ther = int(therapists.max()) + 1
    a0, a1 = rng.normal(0, 0.7, n_ther)[therapists], rng.normal(0, 0.05, n_ther)[therapists]
    groups = patients["group_id"].fillna(-1).to_numpy(dtype=np.int64)
    codes, uniques = pd.factorize(groups)
    g = np.where(groups >= 0, rng.normal(0, 1.0, uniques.size)[codes], 0.0)
    is_group = groups >= 0
    intercept = BASELINE[patients["condition"].cat.codes.to_numpy()] + 4 * z[:, 0] + g + a0
    slope = np.where(is_group, -0.45, -0.55) + a1 + 0.15 * (-0.3 * z[:, 0] + 0.954 * z[:, 1])
    latent = intercept[:, None] + slope[:, None] * weeks
    score = np.clip(np.round(latent + rng.normal(0, 2, latent.shape)), 0, 27)
    rows, cols = np.nonzero(present)
    long = patients.iloc[rows].reset_index(drop=True)
    long["session_number"] = cols.astype(float)
    long["weeks"] = weeks[rows, cols]
    long["log_weeks"] = np.log1p(np.clip(long["weeks"].to_numpy(), 0, None))
    long["time"] = long["weeks"]
    long["score"] = score[rows, cols]
    long["dropout"] = dropout[rows]
    long["completers"] = ~dropout[rows]
    long["baseline_phq9"] = score[rows, 0]
    return long
