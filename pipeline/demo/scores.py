"""Latent PHQ-9 trajectories, attendance, dropout and the observed questionnaire scores.

Simulates the treatment phase of the synthetic cohort (see :mod:`pipeline.demo.generate` for
the generating model): random effects, latent scores, attendance, endings, and the PHQ-9,
GAD-7, HAM-D-17 and BDI-II recorded at attended sessions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.demo.config import (
    ATTENDANCE_PROBS,
    ATTENDED,
    CANCEL_PATIENT,
    CANCEL_SERVICE,
    COMPLETED,
    CONDITION_BASELINE_PHQ9,
    CONDITION_GAD7_SHIFT,
    CONDITION_SLOPE_SHIFT,
    DNA,
    DROPPED_OUT,
    N_COLS,
    ONGOING,
    OTHER_END,
    PROBLEM_AREA_SLOPE_SHIFT,
    SITES,
    THERAPISTS_PER_SITE,
    TRANSFERRED,
    BoolArray,
    DemoConfig,
    FloatArray,
    IntArray,
)
from pipeline.demo.units import Units, draw_demographics, draw_structure


@dataclass
class Treatment:
    """Latent and observed per-patient arrays of the treatment phase."""

    units: Units
    referral: IntArray
    cond: IntArray
    area: IntArray
    area2: IntArray  # -1 when none
    age: FloatArray
    sex: IntArray
    employment: IntArray
    n_groups: int
    base: FloatArray  # b0_i + g_j
    mu: FloatArray  # (n, N_COLS) noise-free latent PHQ-9
    y: FloatArray  # (n, N_COLS) latent PHQ-9
    gad_patient: FloatArray
    att: IntArray  # (n, N_COLS) attendance codes
    present: BoolArray  # (n, N_COLS) session row exists
    end_col: IntArray  # column of the last scheduled session of an ended episode
    reason: IntArray
    maintenance: IntArray  # 1, 0, or -1 (not a completer)
    phq: FloatArray
    gad: FloatArray
    hamd: FloatArray
    bdi: FloatArray

    @property
    def dates(self) -> IntArray:
        """Session dates, days since epoch, shape (n, N_COLS)."""
        out: IntArray = self.units.start[:, None] + self.units.offsets
        return out

    @property
    def is_group(self) -> BoolArray:
        """Group-format flag per patient."""
        out: BoolArray = self.units.group >= 0
        return out


# --------------------------------------------------------------------------- latent model


def _random_effects(
    config: DemoConfig, rng: np.random.Generator, n: int
) -> tuple[FloatArray, FloatArray]:
    """Correlated patient random intercepts and slopes."""
    z = rng.standard_normal((n, 2))
    r = config.corr_intercept_slope
    u0 = config.sd_intercept * z[:, 0]
    u1 = config.sd_slope * (r * z[:, 0] + math.sqrt(1.0 - r * r) * z[:, 1])
    return u0, u1


def _draw_latent(
    config: DemoConfig, rng: np.random.Generator, units: Units, demo: dict[str, Any],
    n_groups: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Latent PHQ-9: returns baseline level, noise-free trajectory and noisy trajectory."""
    n = units.site.size
    u0, u1 = _random_effects(config, rng, n)
    therapist_re = rng.normal(0.0, config.sd_therapist_slope, sum(THERAPISTS_PER_SITE))
    group_re = rng.normal(0.0, config.sd_group_intercept, max(n_groups, 1))
    is_group = units.group >= 0
    g = np.where(is_group, group_re[np.maximum(units.group, 0)], 0.0)
    base = np.asarray(CONDITION_BASELINE_PHQ9)[demo["cond"]] + u0 + g
    slope = (
        np.where(is_group, config.mean_slope_group, config.mean_slope_individual)
        + np.asarray(CONDITION_SLOPE_SHIFT)[demo["cond"]]
        + np.asarray(PROBLEM_AREA_SLOPE_SHIFT)[demo["area"]]
        + therapist_re[units.therapist]
        + u1
    )
    weeks = (units.offsets - units.offsets[:, :1]) / 7.0
    mu = base[:, None] + slope[:, None] * weeks
    y = mu + rng.normal(0.0, config.sd_residual, size=mu.shape)
    return base, mu, y


def _draw_attendance(rng: np.random.Generator, units: Units) -> IntArray:
    """Attendance codes; service cancellations of group sessions are shared by the group."""
    n = units.site.size
    cum = np.cumsum(ATTENDANCE_PROBS)[:-1]
    att = np.searchsorted(cum, rng.random((n, N_COLS)), side="right").astype(np.int64)
    is_group = (units.group >= 0)[:, None]
    att = np.where(is_group & (att == CANCEL_SERVICE), ATTENDED, att)
    att = np.where(units.service_cancel, CANCEL_SERVICE, att)
    att[:, 0] = ATTENDED
    return att


def _draw_endings(
    config: DemoConfig, rng: np.random.Generator, units: Units, base: FloatArray,
    y: FloatArray, att: IntArray,
) -> tuple[IntArray, IntArray]:
    """Dropout (MNAR), transfers and other endings; returns end column and reason codes."""
    n = base.size
    k = np.arange(1, N_COLS)
    improvement = base[:, None] - y[:, :-1]
    logit = (config.dropout_intercept + config.dropout_log_or_per_point * improvement
             + config.dropout_log_or_initial_phase * (k <= 3)[None, :])
    eligible = k[None, :] < units.planned[:, None]
    drop = (rng.random((n, N_COLS - 1)) < 1.0 / (1.0 + np.exp(-logit))) & eligible
    big = N_COLS + 1
    drop_col = np.where(drop.any(axis=1), drop.argmax(axis=1) + 1, big)
    u = rng.random(n)
    alt_col = rng.integers(2, units.planned)
    transfer = u < config.p_transferred
    other = ~transfer & (u < config.p_transferred + config.p_other_end)
    alt_col = np.where(transfer | other, alt_col, big)
    end_col = np.minimum(np.minimum(drop_col, alt_col), units.planned)
    reason = np.full(n, COMPLETED, dtype=np.int64)
    reason[transfer & (alt_col == end_col)] = TRANSFERRED
    reason[other & (alt_col == end_col)] = OTHER_END
    dropped = drop_col == end_col
    reason[dropped] = DROPPED_OUT
    missed = np.where(rng.random(n) < 0.75, DNA, CANCEL_PATIENT)
    rows = np.flatnonzero(dropped)
    att[rows, end_col[rows]] = missed[rows]
    return end_col.astype(np.int64), reason


def _censor(
    config: DemoConfig, units: Units, end_col: IntArray, reason: IntArray
) -> tuple[BoolArray, IntArray]:
    """Rows present at the extract date; episodes ending after it become ongoing."""
    dates = units.start[:, None] + units.offsets
    k = np.arange(N_COLS)
    present = (k[None, :] <= end_col[:, None]) & (dates <= config.extract_day)
    end_day = dates[np.arange(end_col.size), end_col]
    out = np.where(end_day > config.extract_day, ONGOING, reason).astype(np.int64)
    return present, out


# --------------------------------------------------------------------------- measurement


def observe(latent: FloatArray, upper: float, mask: BoolArray) -> FloatArray:
    """Round and clip a latent score to its range; NaN where not measured."""
    out: FloatArray = np.where(mask, np.round(np.clip(latent, 0.0, upper)), np.nan)
    return out


def last_true_col(mask: BoolArray) -> IntArray:
    """Index of the last True per row (-1 when none)."""
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    out: IntArray = np.where(mask.any(axis=1), last, -1).astype(np.int64)
    return out


def _questionnaires(
    config: DemoConfig, rng: np.random.Generator, cond: IntArray, y: FloatArray,
    attended: BoolArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Observed PHQ-9 and GAD-7 (jointly missing at random) and the GAD-7 patient effect."""
    gad_patient = rng.normal(0.0, config.sd_gad7_patient, int(y.shape[0]))
    scale = config.gad7_per_scaled_phq9 * 21.0 / 27.0
    gad_latent = (np.asarray(CONDITION_GAD7_SHIFT)[cond][:, None] + gad_patient[:, None]
                  + scale * y + rng.normal(0.0, config.sd_gad7_residual, y.shape))
    measured = attended & (rng.random(y.shape) >= config.p_questionnaire_missing)
    return observe(y, 27.0, measured), observe(gad_latent, 21.0, measured), gad_patient


def _clinician_scores(
    config: DemoConfig, rng: np.random.Generator, units: Units, y: FloatArray,
    attended: BoolArray, ended: BoolArray,
) -> tuple[FloatArray, FloatArray]:
    """HAM-D-17 and BDI-II at research sites: assessment, mid-point, last attended session."""
    n = y.shape[0]
    rows = np.arange(n)
    research = np.isin(units.site, [SITES.index(s) for s in config.research_sites])
    when = np.zeros_like(attended)
    when[:, 0] = True
    mid = units.planned // 2
    when[rows, mid] = attended[rows, mid]
    treated = attended.copy()
    treated[:, 0] = False
    last = last_true_col(treated)
    has_last = ended & (last >= 1)
    when[rows[has_last], last[has_last]] = True
    when &= attended & research[:, None]
    hamd = config.hamd17_intercept + config.hamd17_per_phq9 * y
    hamd = hamd + rng.normal(0.0, config.sd_hamd17, y.shape)
    bdi = config.bdi2_intercept + config.bdi2_per_phq9 * y
    bdi = bdi + rng.normal(0.0, config.sd_bdi2, y.shape)
    return observe(hamd, 52.0, when), observe(bdi, 63.0, when)


def simulate_treatment(
    config: DemoConfig, rng: np.random.Generator, n: int, clinician: bool = True
) -> Treatment:
    """Simulate structure, latent trajectories, attendance, endings and scores."""
    units, referral, n_groups = draw_structure(config, rng, n)
    demo = draw_demographics(rng, n)
    base, mu, y = _draw_latent(config, rng, units, demo, n_groups)
    att = _draw_attendance(rng, units)
    end_col, reason = _draw_endings(config, rng, units, base, y, att)
    present, reason = _censor(config, units, end_col, reason)
    attended = present & (att == ATTENDED)
    phq, gad, gad_patient = _questionnaires(config, rng, demo["cond"], y, attended)
    if clinician:
        hamd, bdi = _clinician_scores(config, rng, units, y, attended, reason != ONGOING)
    else:
        hamd = bdi = np.full(y.shape, np.nan)
    completed = reason == COMPLETED
    maintenance = np.where(completed, rng.random(n) < config.maintenance_share, -1)
    return Treatment(
        units=units, referral=referral, cond=demo["cond"], area=demo["area"],
        area2=demo["area2"], age=demo["age"], sex=demo["sex"], employment=demo["employment"],
        n_groups=n_groups, base=base, mu=mu, y=y, gad_patient=gad_patient, att=att,
        present=present, end_col=end_col, reason=reason,
        maintenance=maintenance.astype(np.int64), phq=phq, gad=gad, hamd=hamd, bdi=bdi,
    )
