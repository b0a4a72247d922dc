"""The ``truth`` dictionary of a generated cohort: parameters, realised summaries, expected rates.

Expected outcome rates among finished courses are Monte Carlo estimates from the latent arrays of
an independent population of ``expected_rates_n`` patients simulated with ``seed + 1``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from data_schemas.vocab import (
    ATTENDANCE,
    CONDITIONS,
    END_REASONS,
    FORMATS,
    PROBLEM_AREAS,
)
from pipeline.demo.config import (
    ATTENDANCE_PROBS,
    ATTENDED,
    CONDITION_BASELINE_PHQ9,
    CONDITION_GAD7_SHIFT,
    CONDITION_PREVALENCE,
    CONDITION_SLOPE_SHIFT,
    DROPPED_OUT,
    FOLLOWUP_DAYS,
    GROUP_SIZES,
    MIN_PLANNED,
    ONGOING,
    PLANNED_PROBS,
    PROBLEM_AREA_PREVALENCE,
    PROBLEM_AREA_SLOPE_SHIFT,
    SITE_WEIGHTS,
    SITES,
    THERAPISTS_PER_SITE,
    BoolArray,
    DemoConfig,
    FloatArray,
)
from pipeline.demo.scores import Treatment, last_true_col, simulate_treatment

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- truth


def _last_score(scores: FloatArray) -> FloatArray:
    """Last non-missing score at a treatment session (column >= 1), NaN when none."""
    sub = scores[:, 1:]
    last = last_true_col(~np.isnan(sub))
    out: FloatArray = np.where(last >= 0, sub[np.arange(sub.shape[0]), np.maximum(last, 0)],
                               np.nan)
    return out


def _outcome_flags(t: Treatment) -> dict[str, tuple[BoolArray, BoolArray]]:
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


def _rates(t: Treatment) -> dict[str, Any]:
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
    t = simulate_treatment(config, rng, config.expected_rates_n, clinician=False)
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


def _realised(t: Treatment, followups: pd.DataFrame) -> dict[str, Any]:
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


def build_truth(config: DemoConfig, t: Treatment, followups: pd.DataFrame) -> dict[str, Any]:
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
