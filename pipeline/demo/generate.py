"""Synthetic cohort of a multi-site Interpersonal Psychotherapy (IPT) service.

The generator is pure and vectorised: it returns DataFrames and a ``truth`` dictionary and
never touches the disk (``pipeline.io`` writes files). Every random draw comes from
``numpy.random.default_rng(seed)``, so the same :class:`DemoConfig` gives identical tables.

Generating model (defaults of :class:`DemoConfig` in brackets)
---------------------------------------------------------------
Service structure
    Six sites ``S01``..``S06`` of unequal size (weights 27/22/17/14/12/8 %) with 8/7/5/4/3/3
    therapists ``T01``..``T30`` nested in them. A share [0.30] of patients is treated in
    closed therapy groups of 6-9 patients who share site, therapist, start date and session
    dates; everyone else is seen individually. Start dates are uniform over
    [``first_start_date`` = 2024-01-08, + 730 days); referral is 7-60 days before the start.
    The data are extracted ``extract_lag_days`` [45] after the last possible start, so recent
    starters are still in treatment (``ongoing``) and late finishers have fewer follow-ups.
Patients
    Condition (major_depression 55 %, dysthymia 10, anxiety 12, eating_disorder 6, bipolar 5,
    adjustment 8, other 4), problem area (grief 20 %, role_disputes 35, role_transitions 30,
    interpersonal_deficits 15), a different secondary problem area for 25 %, age
    N(40, 14) rounded and clipped to 18-80, 65 % female, employment by age band.
Sessions
    Session 0 (assessment) 1-14 days before the start; a planned course of 12-16 weekly
    sessions (12/13/14/15/16 with probabilities 10/10/20/20/40 %, one draw per group);
    session k is on day 7(k-1) from the start with a jitter of -2..+2 days from session 2
    on, shared within a group, so dates strictly increase. Attendance per treatment
    session: attended 86 %, did_not_attend 8 %, cancelled_by_patient 4 %,
    cancelled_by_service 2 % (a group's service cancellations are shared by the group);
    session 0 is always attended.
PHQ-9 trajectory
    ``y_it = b0_i + g_j + b1_i * w_it + e_it`` with ``w_it`` weeks since the assessment
    (session 0), ``b0_i = mu0[condition] + u0_i`` and
    ``b1_i = beta[format] + delta[condition] + delta[problem area] + v_therapist + u1_i``.
    ``mu0``: 16, 14, 12, 13, 14, 11, 12.5 (order of the conditions above); ``beta``:
    -0.55 individual, -0.45 group per week; condition shifts 0, +0.10, 0, +0.08, +0.10,
    -0.05, +0.04; problem-area shifts -0.06 (grief), 0, -0.06 (role_transitions), +0.10
    (interpersonal_deficits). ``(u0, u1)`` bivariate normal, SDs 4 and 0.15, correlation
    -0.3; therapist slope effect ``v`` SD 0.05; therapy-group intercept ``g_j`` SD 1.0;
    residual ``e`` SD 2. Observed PHQ-9 = round(clip(y, 0, 27)).
Other instruments
    GAD-7 = round(clip(shift[condition] + 0.7 * (21/27) * y + a_i + e, 0, 21)) with
    shifts 1, 0.5, 4, 2, 1.5, 2, 1.5, ``a_i`` SD 2 and ``e`` SD 1.5. PHQ-9 and GAD-7 are
    recorded at every attended session, jointly missing at random with probability 0.02.
    At the research sites [S01, S04] HAM-D-17 = round(clip(2 + 1.1 y + N(0, 3), 0, 52)) and
    BDI-II = round(clip(3 + 1.6 y + N(0, 4), 0, 63)) are taken at the assessment, at
    session ``planned // 2`` if attended and at the last attended treatment session of an
    ended episode. No score is ever recorded on a session that was not attended.
Dropout (missing not at random)
    Before each treatment session k = 1..planned-1 the patient drops out with probability
    ``logistic(-3.8 - 0.15 * (b0_i + g_j - y_i,k-1) + 0.5 * [k <= 3])``: the less the latent
    score has improved, the likelier the dropout. Session k is then missed (did_not_attend
    75 %, cancelled_by_patient 25 %) and is the episode's last row and ``end_date``.
    Independently 2 % are transferred and 1.5 % end for another reason at a uniform session
    2..planned-1; the earliest event wins. Everyone else completes the planned course; 35 %
    of completers go on to maintenance IPT. Sessions after the extract date are not in the
    data and an episode whose end lies after it is ``ongoing`` (``end_date`` NaT).
Follow-up and relapse
    Completers and half of the other ended patients are followed up 91, 182 and 365 days
    (+/- 7) after their last attended session. From then, competing exponential times (in
    weeks) to relapse, death, other treatment and withdrawal: the relapse hazard is
    ``exp(-5.6 + 0.08 * phq9_end + log(0.5) * maintenance)`` per week, where ``phq9_end`` is
    the last observed PHQ-9 (latent value if none); the others 0.0002, 0.002 and 0.002 per
    week. An event is recorded at the first follow-up after it (relapse: PHQ-9 >= 10 and
    ``clinician_relapse`` True) and ends follow-up; 4 % of other follow-ups are not reached
    (no scores, event missing). Follow-ups after the extract date are not in the data.

``truth`` records all of these parameters, realised summaries of the cohort and Monte Carlo
expected outcome rates among finished courses, computed from the latent arrays of an
independent population of ``expected_rates_n`` patients simulated with ``seed + 1``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from data_schemas.vocab import (
    ATTENDANCE,
    CONDITIONS,
    END_REASONS,
    FOLLOWUP_EVENTS,
    FORMATS,
    PROBLEM_AREAS,
)

__all__ = ["DemoCohort", "DemoConfig", "generate_cohort", "inject_faults"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

CONDITION_PREVALENCE: Final = (0.55, 0.10, 0.12, 0.06, 0.05, 0.08, 0.04)
CONDITION_BASELINE_PHQ9: Final = (16.0, 14.0, 12.0, 13.0, 14.0, 11.0, 12.5)
CONDITION_SLOPE_SHIFT: Final = (0.0, 0.10, 0.0, 0.08, 0.10, -0.05, 0.04)
CONDITION_GAD7_SHIFT: Final = (1.0, 0.5, 4.0, 2.0, 1.5, 2.0, 1.5)
PROBLEM_AREA_PREVALENCE: Final = (0.20, 0.35, 0.30, 0.15)
PROBLEM_AREA_SLOPE_SHIFT: Final = (-0.06, 0.0, -0.06, 0.10)
SITES: Final = ("S01", "S02", "S03", "S04", "S05", "S06")
SITE_WEIGHTS: Final = (0.27, 0.22, 0.17, 0.14, 0.12, 0.08)
THERAPISTS_PER_SITE: Final = (8, 7, 5, 4, 3, 3)
SEXES: Final = ("female", "male")
EMPLOYMENT: Final = ("employed", "unemployed", "student", "retired")
#: Employment probabilities for ages < 25, 25-64 and >= 65.
EMPLOYMENT_BY_AGE_BAND: Final = ((0.35, 0.20, 0.45, 0.0), (0.68, 0.24, 0.05, 0.03),
                                 (0.12, 0.03, 0.0, 0.85))
ATTENDANCE_PROBS: Final = (0.86, 0.08, 0.04, 0.02)
EVENTS: Final = FOLLOWUP_EVENTS
FOLLOWUP_DAYS: Final = (91, 182, 365)

MIN_PLANNED: Final = 12
MAX_PLANNED: Final = 16
N_COLS: Final = MAX_PLANNED + 1  # session columns 0..16
#: Probabilities of a planned course of 12, 13, 14, 15 and 16 sessions.
PLANNED_PROBS: Final = (0.10, 0.10, 0.20, 0.20, 0.40)
GROUP_SIZES: Final = (6, 9)
NAT_DAY: Final = np.iinfo(np.int64).min  # int64 value of NaT

ATTENDED, DNA, CANCEL_PATIENT, CANCEL_SERVICE = 0, 1, 2, 3
COMPLETED, DROPPED_OUT, TRANSFERRED, ONGOING, OTHER_END = 0, 1, 2, 3, 4
EV_NONE, EV_RELAPSE, EV_DIED, EV_OTHER_TREATMENT, EV_WITHDREW, EV_MISSING = 0, 1, 2, 3, 4, -1


@dataclass(frozen=True)
class DemoConfig:
    """Settings and generating parameters of the synthetic cohort.

    Parameters
    ----------
    n_patients : int
        Number of patients (episodes of care).
    seed : int
        Seed of ``numpy.random.default_rng``; ``seed + 1`` drives the expected-rate population.
    first_start_date : str
        Earliest treatment start (ISO date); starts are uniform over ``recruitment_days``.
    recruitment_days : int
        Length of the recruitment window in days.
    extract_lag_days : int
        Days from the end of recruitment to the data extract (end of observation).
    group_share : float
        Target share of patients treated in groups.
    research_sites : tuple of str
        Sites that also record HAM-D-17 and BDI-II.
    mean_slope_individual, mean_slope_group : float
        Mean PHQ-9 change per week by format (before condition/problem-area shifts).
    sd_intercept, sd_slope, corr_intercept_slope : float
        Patient random intercept and slope SDs and their correlation.
    sd_residual : float
        Residual SD of the PHQ-9 latent score.
    sd_therapist_slope, sd_group_intercept : float
        Therapist random slope SD and therapy-group random intercept SD.
    gad7_per_scaled_phq9, sd_gad7_patient, sd_gad7_residual : float
        GAD-7 link: coefficient on PHQ-9 rescaled to 0-21, patient and residual SDs.
    hamd17_intercept, hamd17_per_phq9, sd_hamd17 : float
        HAM-D-17 link to the latent PHQ-9.
    bdi2_intercept, bdi2_per_phq9, sd_bdi2 : float
        BDI-II link to the latent PHQ-9.
    p_questionnaire_missing : float
        Probability that PHQ-9/GAD-7 are missing at an attended session.
    dropout_intercept, dropout_log_or_per_point, dropout_log_or_initial_phase : float
        Logistic per-session dropout model (per PHQ-9 point of latent improvement, and for
        sessions 1-3).
    p_transferred, p_other_end : float
        Probabilities of a transfer or another ending during the course.
    maintenance_share : float
        Share of completers who receive maintenance IPT.
    followup_share_non_completers : float
        Share of non-completing ended patients who are followed up.
    relapse_log_rate, relapse_log_hr_per_point, relapse_log_hr_maintenance : float
        Weekly relapse hazard ``exp(a + b * phq9_end + c * maintenance)``.
    weekly_rate_died, weekly_rate_other_treatment, weekly_rate_withdrew : float
        Weekly hazards of the competing follow-up events.
    p_followup_not_reached : float
        Probability that a follow-up without event is not reached (no scores).
    expected_rates_n : int
        Size of the Monte Carlo population for ``truth['expected_rates']`` (0 to skip).
    """

    n_patients: int = 2000
    seed: int = 20261122
    first_start_date: str = "2024-01-08"
    recruitment_days: int = 730
    extract_lag_days: int = 45
    group_share: float = 0.30
    research_sites: tuple[str, ...] = ("S01", "S04")
    mean_slope_individual: float = -0.55
    mean_slope_group: float = -0.45
    sd_intercept: float = 4.0
    sd_slope: float = 0.15
    corr_intercept_slope: float = -0.3
    sd_residual: float = 2.0
    sd_therapist_slope: float = 0.05
    sd_group_intercept: float = 1.0
    gad7_per_scaled_phq9: float = 0.7
    sd_gad7_patient: float = 2.0
    sd_gad7_residual: float = 1.5
    hamd17_intercept: float = 2.0
    hamd17_per_phq9: float = 1.1
    sd_hamd17: float = 3.0
    bdi2_intercept: float = 3.0
    bdi2_per_phq9: float = 1.6
    sd_bdi2: float = 4.0
    p_questionnaire_missing: float = 0.02
    dropout_intercept: float = -3.8
    dropout_log_or_per_point: float = -0.15
    dropout_log_or_initial_phase: float = 0.5
    p_transferred: float = 0.02
    p_other_end: float = 0.015
    maintenance_share: float = 0.35
    followup_share_non_completers: float = 0.5
    relapse_log_rate: float = -5.6
    relapse_log_hr_per_point: float = 0.08
    relapse_log_hr_maintenance: float = math.log(0.5)
    weekly_rate_died: float = 0.0002
    weekly_rate_other_treatment: float = 0.002
    weekly_rate_withdrew: float = 0.002
    p_followup_not_reached: float = 0.04
    expected_rates_n: int = 200_000

    @property
    def first_start_day(self) -> int:
        """First possible start date as days since 1970-01-01."""
        return int(np.datetime64(self.first_start_date, "D").astype(np.int64))

    @property
    def extract_day(self) -> int:
        """Data extract (end of observation) as days since 1970-01-01."""
        return self.first_start_day + self.recruitment_days + self.extract_lag_days


@dataclass(frozen=True)
class DemoCohort:
    """A generated cohort: the three input tables and the generating truth.

    Attributes
    ----------
    patients, sessions, followups : DataFrame
        Tables following the input data contract.
    truth : dict
        JSON-serialisable generating parameters, realised summaries and expected rates.
    """

    patients: pd.DataFrame
    sessions: pd.DataFrame
    followups: pd.DataFrame
    truth: dict[str, Any]


@dataclass
class _Units:
    """Structural draws for a set of patients (before sorting by referral)."""

    site: IntArray
    therapist: IntArray
    group: IntArray  # -1 for individual patients
    start: IntArray  # days since epoch
    planned: IntArray
    offsets: IntArray  # (n, N_COLS) day offsets of sessions from the start
    service_cancel: BoolArray  # (n, N_COLS) group-level service cancellations


@dataclass
class _Treatment:
    """Latent and observed per-patient arrays of the treatment phase."""

    units: _Units
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


# --------------------------------------------------------------------------- structure


def _categorical(rng: np.random.Generator, probs: tuple[float, ...], size: int) -> IntArray:
    """Draw category codes 0..len(probs)-1 with the given probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    return rng.choice(p.size, size=size, p=p / p.sum()).astype(np.int64)


def _session_offsets(rng: np.random.Generator, m: int) -> IntArray:
    """Day offsets from the start of sessions 0..16: assessment 1-14 days before, then weekly."""
    k = np.arange(N_COLS, dtype=np.int64)
    jitter = rng.integers(-2, 3, size=(m, N_COLS))
    jitter[:, :2] = 0
    offsets = 7 * (k[None, :] - 1) + jitter
    offsets[:, 0] = -rng.integers(1, 15, size=m)
    return offsets.astype(np.int64)


def _therapist_in_site(rng: np.random.Generator, site: IntArray) -> IntArray:
    """A therapist index of the given site (therapists are numbered site by site)."""
    per_site = np.asarray(THERAPISTS_PER_SITE, dtype=np.int64)
    first = np.concatenate([[0], np.cumsum(per_site)[:-1]])
    within = np.floor(rng.random(site.size) * per_site[site]).astype(np.int64)
    out: IntArray = first[site] + within
    return out


def _group_sizes(rng: np.random.Generator, n_target: int) -> IntArray:
    """Group sizes (6-9) whose total does not exceed ``n_target``."""
    lo, hi = GROUP_SIZES
    sizes = rng.integers(lo, hi + 1, size=n_target // lo + 1)
    return sizes[np.cumsum(sizes) <= n_target].astype(np.int64)


def _draw_groups(config: DemoConfig, rng: np.random.Generator, n_target: int) -> _Units:
    """Therapy groups and their members: shared site, therapist, start and session dates."""
    sizes = _group_sizes(rng, n_target)
    g = sizes.size
    site = _categorical(rng, SITE_WEIGHTS, g)
    therapist = _therapist_in_site(rng, site)
    start = np.sort(config.first_start_day + rng.integers(0, config.recruitment_days, size=g))
    planned = MIN_PLANNED + _categorical(rng, PLANNED_PROBS, g)
    offsets = _session_offsets(rng, g)
    cancel = rng.random((g, N_COLS)) < ATTENDANCE_PROBS[CANCEL_SERVICE]
    cancel[:, 0] = False
    member = np.repeat(np.arange(g, dtype=np.int64), sizes)
    member_offsets = offsets[member]
    member_offsets[:, 0] = -rng.integers(1, 15, size=member.size)
    return _Units(site[member], therapist[member], member, start[member].astype(np.int64),
                  planned[member].astype(np.int64), member_offsets, cancel[member])


def _draw_individuals(config: DemoConfig, rng: np.random.Generator, m: int) -> _Units:
    """Structural draws for individually treated patients."""
    site = _categorical(rng, SITE_WEIGHTS, m)
    return _Units(
        site=site,
        therapist=_therapist_in_site(rng, site),
        group=np.full(m, -1, dtype=np.int64),
        start=(config.first_start_day + rng.integers(0, config.recruitment_days, size=m)),
        planned=MIN_PLANNED + _categorical(rng, PLANNED_PROBS, m),
        offsets=_session_offsets(rng, m),
        service_cancel=np.zeros((m, N_COLS), dtype=np.bool_),
    )


def _draw_structure(
    config: DemoConfig, rng: np.random.Generator, n: int
) -> tuple[_Units, IntArray, int]:
    """Groups and individuals, sorted by referral date; returns units, referral, n_groups."""
    groups = _draw_groups(config, rng, round(config.group_share * n))
    n_groups = int(groups.group.max()) + 1 if groups.group.size else 0
    individuals = _draw_individuals(config, rng, n - groups.group.size)
    merged = _Units(*(np.concatenate([getattr(groups, f), getattr(individuals, f)])
                      for f in _Units.__dataclass_fields__))
    referral = merged.start - rng.integers(7, 61, size=n)
    order = np.argsort(referral, kind="stable")
    units = _Units(*(getattr(merged, f)[order] for f in _Units.__dataclass_fields__))
    return units, referral[order].astype(np.int64), n_groups


def _draw_demographics(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Condition, problem areas, age, sex and employment."""
    area = _categorical(rng, PROBLEM_AREA_PREVALENCE, n)
    has_second = rng.random(n) < 0.25
    area2 = np.where(has_second, (area + rng.integers(1, 4, size=n)) % 4, -1)
    age = np.clip(np.round(rng.normal(40.0, 14.0, size=n)), 18, 80)
    band = np.digitize(age, [25.0, 65.0])
    cum = np.cumsum(np.asarray(EMPLOYMENT_BY_AGE_BAND), axis=1)[band]
    employment = (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1)
    return {
        "cond": _categorical(rng, CONDITION_PREVALENCE, n),
        "area": area,
        "area2": area2.astype(np.int64),
        "age": age.astype(np.float64),
        "sex": (rng.random(n) >= 0.65).astype(np.int64),
        "employment": employment.astype(np.int64),
    }


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
    config: DemoConfig, rng: np.random.Generator, units: _Units, demo: dict[str, Any],
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


def _draw_attendance(rng: np.random.Generator, units: _Units) -> IntArray:
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
    config: DemoConfig, rng: np.random.Generator, units: _Units, base: FloatArray,
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
    config: DemoConfig, units: _Units, end_col: IntArray, reason: IntArray
) -> tuple[BoolArray, IntArray]:
    """Rows present at the extract date; episodes ending after it become ongoing."""
    dates = units.start[:, None] + units.offsets
    k = np.arange(N_COLS)
    present = (k[None, :] <= end_col[:, None]) & (dates <= config.extract_day)
    end_day = dates[np.arange(end_col.size), end_col]
    out = np.where(end_day > config.extract_day, ONGOING, reason).astype(np.int64)
    return present, out


# --------------------------------------------------------------------------- measurement


def _observe(latent: FloatArray, upper: float, mask: BoolArray) -> FloatArray:
    """Round and clip a latent score to its range; NaN where not measured."""
    out: FloatArray = np.where(mask, np.round(np.clip(latent, 0.0, upper)), np.nan)
    return out


def _last_true_col(mask: BoolArray) -> IntArray:
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
    return _observe(y, 27.0, measured), _observe(gad_latent, 21.0, measured), gad_patient


def _clinician_scores(
    config: DemoConfig, rng: np.random.Generator, units: _Units, y: FloatArray,
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
    last = _last_true_col(treated)
    has_last = ended & (last >= 1)
    when[rows[has_last], last[has_last]] = True
    when &= attended & research[:, None]
    hamd = config.hamd17_intercept + config.hamd17_per_phq9 * y
    hamd = hamd + rng.normal(0.0, config.sd_hamd17, y.shape)
    bdi = config.bdi2_intercept + config.bdi2_per_phq9 * y
    bdi = bdi + rng.normal(0.0, config.sd_bdi2, y.shape)
    return _observe(hamd, 52.0, when), _observe(bdi, 63.0, when)


def _simulate_treatment(
    config: DemoConfig, rng: np.random.Generator, n: int, clinician: bool = True
) -> _Treatment:
    """Simulate structure, latent trajectories, attendance, endings and scores."""
    units, referral, n_groups = _draw_structure(config, rng, n)
    demo = _draw_demographics(rng, n)
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
    return _Treatment(
        units=units, referral=referral, cond=demo["cond"], area=demo["area"],
        area2=demo["area2"], age=demo["age"], sex=demo["sex"], employment=demo["employment"],
        n_groups=n_groups, base=base, mu=mu, y=y, gad_patient=gad_patient, att=att,
        present=present, end_col=end_col, reason=reason,
        maintenance=maintenance.astype(np.int64), phq=phq, gad=gad, hamd=hamd, bdi=bdi,
    )


# --------------------------------------------------------------------------- follow-up


def _end_of_treatment(t: _Treatment) -> tuple[IntArray, FloatArray, FloatArray]:
    """Column of the last attended session, end PHQ-9 (observed, else latent) and its mu."""
    rows = np.arange(t.base.size)
    last_att = np.maximum(_last_true_col(t.present & (t.att == ATTENDED)), 0)
    last_obs = _last_true_col(~np.isnan(t.phq))
    latent_end = np.round(np.clip(t.y[rows, last_att], 0.0, 27.0))
    phq_end = np.where(last_obs >= 0, t.phq[rows, np.maximum(last_obs, 0)], latent_end)
    return last_att, phq_end, t.mu[rows, last_att]


def _event_times(
    config: DemoConfig, rng: np.random.Generator, phq_end: FloatArray, maintenance: BoolArray
) -> tuple[FloatArray, IntArray]:
    """Time (weeks) and type of the first of the competing follow-up events."""
    m = phq_end.size
    relapse = np.exp(config.relapse_log_rate + config.relapse_log_hr_per_point * phq_end
                     + config.relapse_log_hr_maintenance * maintenance)
    rates = np.column_stack([
        relapse,
        np.full(m, config.weekly_rate_died),
        np.full(m, config.weekly_rate_other_treatment),
        np.full(m, config.weekly_rate_withdrew),
    ])
    times = rng.exponential(1.0, size=(m, 4)) / rates
    first = times.argmin(axis=1)
    codes = np.asarray([EV_RELAPSE, EV_DIED, EV_OTHER_TREATMENT, EV_WITHDREW])
    return times.min(axis=1), codes[first].astype(np.int64)


def _followup_scores(
    config: DemoConfig, rng: np.random.Generator, t: _Treatment, who: IntArray,
    mu_end: FloatArray, event: IntArray,
) -> dict[str, FloatArray]:
    """Scores at follow-up rows (``who``: patient index per row; ``event``: code per row)."""
    m = who.size
    y = mu_end + rng.normal(0.0, config.sd_residual + 0.5, m)
    relapse = event == EV_RELAPSE
    y = np.where(relapse, np.maximum(10.0, mu_end + 8.0 + rng.normal(0.0, 3.0, m)), y)
    scored = (event == EV_NONE) | relapse
    scale = config.gad7_per_scaled_phq9 * 21.0 / 27.0
    gad = (np.asarray(CONDITION_GAD7_SHIFT)[t.cond[who]] + t.gad_patient[who] + scale * y
           + rng.normal(0.0, config.sd_gad7_residual, m))
    research = np.isin(t.units.site[who], [SITES.index(s) for s in config.research_sites])
    hamd = config.hamd17_intercept + config.hamd17_per_phq9 * y
    bdi = config.bdi2_intercept + config.bdi2_per_phq9 * y
    return {
        "phq9": _observe(np.maximum(y, np.where(relapse, 10.0, 0.0)), 27.0, scored),
        "gad7": _observe(gad, 21.0, scored),
        "hamd17": _observe(hamd + rng.normal(0.0, config.sd_hamd17, m), 52.0,
                           scored & research),
        "bdi2": _observe(bdi + rng.normal(0.0, config.sd_bdi2, m), 63.0, scored & research),
    }


def _followup_schedule(
    config: DemoConfig, rng: np.random.Generator, t: _Treatment
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Followed-up patients: rows (patient, date, event code) and the patients' end mu."""
    n = t.base.size
    ended = t.reason != ONGOING
    chosen = ended & ((t.reason == COMPLETED)
                      | (rng.random(n) < config.followup_share_non_completers))
    idx = np.flatnonzero(chosen)
    last_att, phq_end, mu_end = _end_of_treatment(t)
    dates = t.dates
    anchor = dates[idx, last_att[idx]]
    last_day = dates[idx, _last_true_col(t.present[idx])]
    fu = anchor[:, None] + np.asarray(FOLLOWUP_DAYS)[None, :]
    fu = np.maximum(fu + rng.integers(-7, 8, size=fu.shape), last_day[:, None] + 1)
    weeks, code = _event_times(config, rng, phq_end[idx], t.maintenance[idx] == 1)
    after = fu >= (anchor + np.ceil(weeks * 7.0))[:, None]
    event_j = np.where(after.any(axis=1), after.argmax(axis=1), len(FOLLOWUP_DAYS))
    j = np.arange(len(FOLLOWUP_DAYS))[None, :]
    keep = (j <= event_j[:, None]) & (fu <= config.extract_day)
    events = np.where(j == event_j[:, None], code[:, None], EV_NONE)
    rows, cols = np.nonzero(keep)
    return idx[rows], fu[rows, cols], events[rows, cols], mu_end[idx[rows]]


def _simulate_followups(
    config: DemoConfig, rng: np.random.Generator, t: _Treatment, patient_ids: ObjArray
) -> pd.DataFrame:
    """The follow-ups table."""
    who, day, event, mu_end = _followup_schedule(config, rng, t)
    not_reached = (event == EV_NONE) & (rng.random(who.size) < config.p_followup_not_reached)
    event = np.where(not_reached, EV_MISSING, event)
    scores = _followup_scores(config, rng, t, who, mu_end, event)
    relapse = pd.arrays.BooleanArray(event == EV_RELAPSE,
                                     ~np.isin(event, [EV_NONE, EV_RELAPSE]))
    event_names = np.asarray((*EVENTS, None), dtype=object)
    return pd.DataFrame({
        "patient_id": patient_ids[who],
        "followup_date": _to_datetime(day),
        **scores,
        "clinician_relapse": relapse,
        "event": event_names[event],
    })


# --------------------------------------------------------------------------- tables


def _to_datetime(days: IntArray) -> npt.NDArray[np.datetime64]:
    """Days since epoch (``NAT_DAY`` for missing) as datetime64[ns]."""
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[ns]")


def _ids(prefix: str, numbers: IntArray, width: int) -> ObjArray:
    """Identifiers such as ``P000001`` from 1-based numbers."""
    if numbers.size == 0:
        return np.empty(0, dtype=object)
    text = np.char.zfill(numbers.astype(str), width)
    return np.char.add(prefix, text).astype(object)


def _labels(names: tuple[str, ...], codes: IntArray) -> ObjArray:
    """Category labels for codes, None where the code is negative."""
    table = np.asarray((*names, None), dtype=object)
    return table[np.where(codes >= 0, codes, len(names))]


def _patients_table(t: _Treatment, patient_ids: ObjArray) -> pd.DataFrame:
    """The patients table."""
    u = t.units
    n = t.base.size
    end_day = t.dates[np.arange(n), t.end_col]
    end_day = np.where(t.reason == ONGOING, NAT_DAY, end_day)
    maintenance = pd.arrays.BooleanArray(t.maintenance == 1, t.maintenance < 0)
    n_ther = sum(THERAPISTS_PER_SITE)
    return pd.DataFrame({
        "patient_id": patient_ids,
        "site_id": np.asarray(SITES, dtype=object)[u.site],
        "therapist_id": _ids("T", np.arange(1, n_ther + 1), 2)[u.therapist],
        "condition": _labels(CONDITIONS, t.cond),
        "format": _labels(FORMATS, t.is_group.astype(np.int64)),
        "group_id": _labels(tuple(_ids("G", np.arange(1, t.n_groups + 1), 4)), u.group),
        "problem_area": _labels(PROBLEM_AREAS, t.area),
        "secondary_problem_area": _labels(PROBLEM_AREAS, t.area2),
        "referral_date": _to_datetime(t.referral),
        "start_date": _to_datetime(u.start),
        "end_date": _to_datetime(end_day),
        "end_reason": _labels(END_REASONS, t.reason),
        "age": t.age,
        "sex": _labels(SEXES, t.sex),
        "employment": _labels(EMPLOYMENT, t.employment),
        "maintenance": maintenance,
    })


def _sessions_table(t: _Treatment, patient_ids: ObjArray) -> pd.DataFrame:
    """The sessions table, sorted by patient and session number."""
    rows, cols = np.nonzero(t.present)
    return pd.DataFrame({
        "patient_id": patient_ids[rows],
        "session_number": cols.astype(np.int64),
        "session_date": _to_datetime(t.dates[rows, cols]),
        "attendance": _labels(ATTENDANCE, t.att[rows, cols]),
        "phq9": t.phq[rows, cols],
        "gad7": t.gad[rows, cols],
        "hamd17": t.hamd[rows, cols],
        "bdi2": t.bdi[rows, cols],
    })


# --------------------------------------------------------------------------- truth


def _last_score(scores: FloatArray) -> FloatArray:
    """Last non-missing score at a treatment session (column >= 1), NaN when none."""
    sub = scores[:, 1:]
    last = _last_true_col(~np.isnan(sub))
    out: FloatArray = np.where(last >= 0, sub[np.arange(sub.shape[0]), np.maximum(last, 0)],
                               np.nan)
    return out


def _outcome_flags(t: _Treatment) -> dict[str, tuple[BoolArray, BoolArray]]:
    """Per-patient (denominator, numerator) flags of response, remission and recovery."""
    treated = t.present[:, 1:] & (t.att[:, 1:] == ATTENDED)
    finished = (t.reason != ONGOING) & (treated.sum(axis=1) >= 2)
    phq0, gad0 = t.phq[:, 0], t.gad[:, 0]
    phq_end, gad_end = _last_score(t.phq), _last_score(t.gad)
    both = finished & ~np.isnan(phq0) & ~np.isnan(phq_end)
    with np.errstate(invalid="ignore"):
        response_den = both & (phq0 > 0)
        caseness = (phq0 >= 10) | (gad0 >= 8)
        recovery_den = (both & ~np.isnan(gad0) & ~np.isnan(gad_end) & caseness)
        return {
            "phq9_response_finished_course": (response_den, phq_end <= 0.5 * phq0),
            "phq9_remission_finished_course": (both, phq_end < 5),
            "recovery_finished_course": (recovery_den, (phq_end < 10) & (gad_end < 8)),
        }


def _share(den: BoolArray, num: BoolArray) -> float | None:
    """Share of ``num`` among ``den`` (None for an empty denominator)."""
    total = int(den.sum())
    return float((den & num).sum() / total) if total else None


def _rates(t: _Treatment) -> dict[str, Any]:
    """Outcome rates among finished courses, overall and by format and condition."""
    out: dict[str, Any] = {}
    for name, (den, num) in _outcome_flags(t).items():
        out[name] = {
            "by_format": {f: _share(den & (t.is_group == bool(i)), num)
                          for i, f in enumerate(FORMATS)},
            "by_condition": {c: _share(den & (t.cond == i), num)
                             for i, c in enumerate(CONDITIONS)},
            "all": _share(den, num),
            "n": int(den.sum()),
        }
    ended = t.reason != ONGOING
    out["dropout_share_of_ended"] = _share(ended, t.reason == DROPPED_OUT)
    return out


def _expected_rates(config: DemoConfig) -> dict[str, Any]:
    """Monte Carlo rates from an independent population simulated with ``seed + 1``."""
    if config.expected_rates_n <= 0:
        return {}
    tic = time.perf_counter()
    rng = np.random.default_rng(config.seed + 1)
    t = _simulate_treatment(config, rng, config.expected_rates_n, clinician=False)
    rates = _rates(t)
    rates["population_n"] = config.expected_rates_n
    rates["population_seed"] = config.seed + 1
    logger.info("expected rates from %d simulated patients in %.1f s",
                config.expected_rates_n, time.perf_counter() - tic)
    return rates


def _parameters() -> dict[str, Any]:
    """Category-level generating parameters (the scalar ones are in the config)."""
    return {
        "conditions": list(CONDITIONS),
        "condition_prevalence": dict(zip(CONDITIONS, CONDITION_PREVALENCE, strict=True)),
        "baseline_phq9_by_condition": dict(zip(CONDITIONS, CONDITION_BASELINE_PHQ9,
                                               strict=True)),
        "slope_shift_by_condition": dict(zip(CONDITIONS, CONDITION_SLOPE_SHIFT, strict=True)),
        "gad7_shift_by_condition": dict(zip(CONDITIONS, CONDITION_GAD7_SHIFT, strict=True)),
        "problem_area_prevalence": dict(zip(PROBLEM_AREAS, PROBLEM_AREA_PREVALENCE,
                                            strict=True)),
        "slope_shift_by_problem_area": dict(zip(PROBLEM_AREAS, PROBLEM_AREA_SLOPE_SHIFT,
                                                strict=True)),
        "site_weights": dict(zip(SITES, SITE_WEIGHTS, strict=True)),
        "therapists_per_site": dict(zip(SITES, THERAPISTS_PER_SITE, strict=True)),
        "attendance_probabilities": dict(zip(ATTENDANCE, ATTENDANCE_PROBS, strict=True)),
        "planned_sessions_probabilities": {
            str(MIN_PLANNED + i): p for i, p in enumerate(PLANNED_PROBS)},
        "group_size_range": list(GROUP_SIZES),
        "followup_days": list(FOLLOWUP_DAYS),
        "secondary_problem_area_share": 0.25,
        "female_share": 0.65,
        "dropout_session_missed_as_dna_share": 0.75,
    }


def _model_summary(config: DemoConfig) -> dict[str, Any]:
    """The fixed effects, random effects and event models in a readable form."""
    return {
        "phq9_model": "y = b0 + g_group + b1 * weeks + e; observed = round(clip(y, 0, 27))",
        "mean_slope_by_format": {"individual": config.mean_slope_individual,
                                 "group": config.mean_slope_group},
        "random_effects": {"sd_intercept": config.sd_intercept, "sd_slope": config.sd_slope,
                           "corr_intercept_slope": config.corr_intercept_slope,
                           "sd_therapist_slope": config.sd_therapist_slope,
                           "sd_group_intercept": config.sd_group_intercept},
        "sd_residual": config.sd_residual,
        "dropout_model": {
            "form": "logit h_k = a + b * (b0 + g - y_{k-1}) + c * [k <= 3], k = 1..planned-1",
            "a": config.dropout_intercept, "b": config.dropout_log_or_per_point,
            "c": config.dropout_log_or_initial_phase},
        "relapse_model": {
            "form": "weekly hazard = exp(a + b * phq9_end + c * maintenance)",
            "a": config.relapse_log_rate, "b": config.relapse_log_hr_per_point,
            "c_maintenance_log_hr": config.relapse_log_hr_maintenance,
            "maintenance_hr": math.exp(config.relapse_log_hr_maintenance)},
    }


def _realised(t: _Treatment, followups: pd.DataFrame) -> dict[str, Any]:
    """Realised summaries of the generated cohort."""
    n = t.base.size
    return {
        "n_groups": t.n_groups,
        "group_share": float(t.is_group.mean()) if n else 0.0,
        "end_reason_counts": {r: int((t.reason == i).sum()) for i, r in enumerate(END_REASONS)},
        "n_sessions": int(t.present.sum()),
        "n_followups": len(followups),
        "event_counts": {str(k): int(v) for k, v in
                         followups["event"].value_counts(dropna=False).items()},
        "rates": _rates(t),
    }


def _truth(config: DemoConfig, t: _Treatment, followups: pd.DataFrame) -> dict[str, Any]:
    """The JSON-serialisable truth dictionary."""
    settings = asdict(config)
    settings["research_sites"] = list(config.research_sites)
    return {
        "seed": config.seed,
        "n_patients": config.n_patients,
        "extract_date": str(np.datetime64(config.extract_day, "D")),
        "config": settings,
        "model": _model_summary(config),
        "parameters": _parameters(),
        "definitions": {
            "finished_course": "end_reason not ongoing and >= 2 attended sessions numbered >= 1",
            "baseline": "PHQ-9 (GAD-7) at session 0",
            "endpoint": "last observed score at an attended session numbered >= 1",
            "response": "endpoint <= 0.5 * baseline, baseline > 0",
            "remission": "endpoint PHQ-9 < 5",
            "recovery": "caseness at baseline (PHQ-9 >= 10 or GAD-7 >= 8); "
                        "endpoint PHQ-9 < 10 and GAD-7 < 8",
        },
        "realised": _realised(t, followups),
        "expected_rates": _expected_rates(config),
    }


# --------------------------------------------------------------------------- public API


def generate_cohort(config: DemoConfig) -> DemoCohort:
    """Generate a synthetic multi-site IPT cohort (see the module docstring for the model).

    Parameters
    ----------
    config : DemoConfig
        Size, seed and generating parameters.

    Returns
    -------
    DemoCohort
        Patients, sessions and follow-ups tables and the generating truth.

    Raises
    ------
    ValueError
        If ``config.n_patients`` is below 1.
    """
    if config.n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    tic = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    t = _simulate_treatment(config, rng, config.n_patients)
    patient_ids = _ids("P", np.arange(1, config.n_patients + 1), 6)
    patients = _patients_table(t, patient_ids)
    sessions = _sessions_table(t, patient_ids)
    followups = _simulate_followups(config, rng, t, patient_ids)
    logger.info("generated %d patients, %d sessions, %d follow-ups in %.2f s",
                len(patients), len(sessions), len(followups), time.perf_counter() - tic)
    truth = _truth(config, t, followups)
    return DemoCohort(patients, sessions, followups, truth)


# --------------------------------------------------------------------------- faults


@dataclass
class _FaultState:
    """Tables being corrupted, the patients already used and the fault records."""

    patients: pd.DataFrame
    sessions: pd.DataFrame
    followups: pd.DataFrame
    rng: np.random.Generator
    used: set[str]
    records: list[dict[str, str]]

    def pick(self, frame: pd.DataFrame, mask: pd.Series) -> Any:
        """Index label of a random row of ``frame[mask]`` whose patient is not used yet."""
        candidates = frame.index[mask & ~frame["patient_id"].isin(self.used)]
        if candidates.size == 0:
            raise ValueError("cohort too small to inject every fault")
        label = candidates[int(self.rng.integers(candidates.size))]
        self.used.add(str(frame.at[label, "patient_id"]))
        return label

    def record(self, table: str, patient_id: Any, column: str, fault: str) -> None:
        """Append a fault record."""
        self.records.append({"table": table, "patient_id": str(patient_id),
                             "column": column, "fault": fault})


def _fault_session_scores(s: _FaultState) -> None:
    """A PHQ-9 of 31 on an attended session and a score on a did_not_attend session."""
    ses = s.sessions
    label = s.pick(ses, (ses["attendance"] == "attended") & ses["phq9"].notna())
    ses.loc[label, "phq9"] = 31.0
    s.record("sessions", ses.at[label, "patient_id"], "phq9", "out_of_range")
    label = s.pick(ses, ses["attendance"] == "did_not_attend")
    ses.loc[label, "phq9"] = 12.0
    s.record("sessions", ses.at[label, "patient_id"], "phq9", "score_on_non_attended_session")


def _fault_extra_session_rows(s: _FaultState) -> None:
    """A session of an unknown patient and a duplicated (patient_id, session_number)."""
    ses = s.sessions
    unknown = ses.loc[[s.pick(ses, ses["session_number"] == 1)]].copy()
    unknown_id = "P" + "9" * 6
    while unknown_id in set(s.patients["patient_id"]):
        unknown_id += "9"
    unknown["patient_id"] = unknown_id
    s.record("sessions", unknown_id, "patient_id", "unknown_patient_id")
    duplicate = ses.loc[[s.pick(ses, ses["session_number"] >= 1)]].copy()
    s.record("sessions", duplicate["patient_id"].iloc[0], "session_number",
             "duplicate_session")
    s.sessions = pd.concat([ses, unknown, duplicate], ignore_index=True)


def _fault_patients(s: _FaultState) -> None:
    """An individual patient with a group_id (of no other patient, so the group's site rule
    is not hit too) and a misspelt condition. A group patient without group_id is allowed."""
    pat = s.patients
    label = s.pick(pat, pat["format"] == "individual")
    pat.loc[label, "group_id"] = "G_FAULT"
    s.record("patients", pat.at[label, "patient_id"], "group_id", "unexpected_group_id")
    label = s.pick(pat, pat["condition"] == "major_depression")
    pat.loc[label, "condition"] = "depresion"
    s.record("patients", pat.at[label, "patient_id"], "condition", "invalid_category")


def _fault_dates(s: _FaultState) -> None:
    """A session after the end date and a follow-up before the last session."""
    pat, ses, fol = s.patients, s.sessions, s.followups
    end = ses["patient_id"].map(pat.set_index("patient_id")["end_date"])
    first_fu = ses["patient_id"].map(fol.groupby("patient_id")["followup_date"].min())
    is_last = ses["session_date"] == ses.groupby("patient_id")["session_date"].transform("max")
    roomy = first_fu.isna() | (first_fu > end + pd.Timedelta(days=30))
    label = s.pick(ses, is_last & end.notna() & roomy)
    ses.loc[label, "session_date"] = end[label] + pd.Timedelta(days=7)
    s.record("sessions", ses.at[label, "patient_id"], "session_date", "session_after_end_date")
    last = fol["patient_id"].map(ses.groupby("patient_id")["session_date"].max())
    label = s.pick(fol, fol["followup_date"] == fol.groupby("patient_id")["followup_date"]
                   .transform("min"))
    fol.loc[label, "followup_date"] = last[label] - pd.Timedelta(days=3)
    s.record("followups", fol.at[label, "patient_id"], "followup_date",
             "followup_before_last_session")


def inject_faults(cohort: DemoCohort, seed: int) -> tuple[DemoCohort, pd.DataFrame]:
    """Return a copy of the cohort with one faulty row of each of eight kinds.

    Each fault hits a different patient, and nothing else is broken: a PHQ-9 of 31 on an
    attended session, a PHQ-9 on a did_not_attend session, a session of an unknown
    patient, a duplicated (patient_id, session_number), an individual patient with a group_id,
    the condition ``depresion``, a session after the patient's end_date and a follow-up
    before the patient's last session.

    Parameters
    ----------
    cohort : DemoCohort
        A clean cohort from :func:`generate_cohort` (it is not modified).
    seed : int
        Seed for choosing the rows.

    Returns
    -------
    tuple of DemoCohort and DataFrame
        The faulty cohort and one row per fault: table, patient_id, column, fault.

    Raises
    ------
    ValueError
        If the cohort is too small to offer a distinct patient for every fault.
    """
    state = _FaultState(cohort.patients.copy(), cohort.sessions.copy(),
                        cohort.followups.copy(), np.random.default_rng(seed), set(), [])
    _fault_session_scores(state)
    _fault_patients(state)
    _fault_dates(state)
    _fault_extra_session_rows(state)
    sessions = state.sessions.sort_values(["patient_id", "session_number"], kind="stable")
    faulty = DemoCohort(state.patients, sessions.reset_index(drop=True), state.followups,
                        copy.deepcopy(cohort.truth))
    faults = pd.DataFrame(state.records, columns=["table", "patient_id", "column", "fault"])
    logger.info("injected %d faults", len(faults))
    return faulty, faults
