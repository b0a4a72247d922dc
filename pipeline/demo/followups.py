"""Follow-up visits and competing events (relapse, death, other treatment, withdrawal).

See :mod:`pipeline.demo.generate` for the generating model of the follow-up phase.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.demo.config import (
    ATTENDED,
    COMPLETED,
    CONDITION_GAD7_SHIFT,
    EV_DIED,
    EV_MISSING,
    EV_NONE,
    EV_OTHER_TREATMENT,
    EV_RELAPSE,
    EV_WITHDREW,
    EVENTS,
    FOLLOWUP_DAYS,
    ONGOING,
    SITES,
    BoolArray,
    DemoConfig,
    FloatArray,
    IntArray,
    ObjArray,
)
from pipeline.demo.scores import Treatment, last_true_col, observe
from pipeline.demo.tables import days_to_datetime

# --------------------------------------------------------------------------- follow-up


def _end_of_treatment(t: Treatment) -> tuple[IntArray, FloatArray, FloatArray]:
    """Column of the last attended session, end PHQ-9 (observed, else latent) and its mu."""
    rows = np.arange(t.base.size)
    last_att = np.maximum(last_true_col(t.present & (t.att == ATTENDED)), 0)
    last_obs = last_true_col(~np.isnan(t.phq))
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
    config: DemoConfig, rng: np.random.Generator, t: Treatment, who: IntArray,
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
        "phq9": observe(np.maximum(y, np.where(relapse, 10.0, 0.0)), 27.0, scored),
        "gad7": observe(gad, 21.0, scored),
        "hamd17": observe(hamd + rng.normal(0.0, config.sd_hamd17, m), 52.0,
                           scored & research),
        "bdi2": observe(bdi + rng.normal(0.0, config.sd_bdi2, m), 63.0, scored & research),
    }


def _followup_schedule(
    config: DemoConfig, rng: np.random.Generator, t: Treatment
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
    last_day = dates[idx, last_true_col(t.present[idx])]
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


def simulate_followups(
    config: DemoConfig, rng: np.random.Generator, t: Treatment, patient_ids: ObjArray
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
        "followup_date": days_to_datetime(day),
        **scores,
        "clinician_relapse": relapse,
        "event": event_names[event],
    })
