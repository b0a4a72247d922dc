"""Settings and fixed generating constants of the synthetic IPT cohort.

:class:`DemoConfig` holds the size, seed and tunable parameters; the module constants are the
fixed prevalences, effects and code values described in :mod:`pipeline.demo.generate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from data_schemas.vocab import FOLLOWUP_EVENTS

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
