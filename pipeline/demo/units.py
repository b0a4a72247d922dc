"""Service structure of the synthetic cohort: sites, therapists, therapy groups and individuals.

Draws who is treated where, by whom, in which format, when, and the session calendar, then the
patient demographics (see :mod:`pipeline.demo.generate` for the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.demo.config import (
    ATTENDANCE_PROBS,
    CANCEL_SERVICE,
    CONDITION_PREVALENCE,
    EMPLOYMENT_BY_AGE_BAND,
    GROUP_SIZES,
    MIN_PLANNED,
    N_COLS,
    PLANNED_PROBS,
    PROBLEM_AREA_PREVALENCE,
    SITE_WEIGHTS,
    THERAPISTS_PER_SITE,
    BoolArray,
    DemoConfig,
    IntArray,
)


@dataclass
class Units:
    """Structural draws for a set of patients (before sorting by referral)."""

    site: IntArray
    therapist: IntArray
    group: IntArray  # -1 for individual patients
    start: IntArray  # days since epoch
    planned: IntArray
    offsets: IntArray  # (n, N_COLS) day offsets of sessions from the start
    service_cancel: BoolArray  # (n, N_COLS) group-level service cancellations


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


def _draw_groups(config: DemoConfig, rng: np.random.Generator, n_target: int) -> Units:
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
    return Units(site[member], therapist[member], member, start[member].astype(np.int64),
                  planned[member].astype(np.int64), member_offsets, cancel[member])


def _draw_individuals(config: DemoConfig, rng: np.random.Generator, m: int) -> Units:
    """Structural draws for individually treated patients."""
    site = _categorical(rng, SITE_WEIGHTS, m)
    return Units(
        site=site,
        therapist=_therapist_in_site(rng, site),
        group=np.full(m, -1, dtype=np.int64),
        start=(config.first_start_day + rng.integers(0, config.recruitment_days, size=m)),
        planned=MIN_PLANNED + _categorical(rng, PLANNED_PROBS, m),
        offsets=_session_offsets(rng, m),
        service_cancel=np.zeros((m, N_COLS), dtype=np.bool_),
    )


def draw_structure(
    config: DemoConfig, rng: np.random.Generator, n: int
) -> tuple[Units, IntArray, int]:
    """Groups and individuals, sorted by referral date; returns units, referral, n_groups."""
    groups = _draw_groups(config, rng, round(config.group_share * n))
    n_groups = int(groups.group.max()) + 1 if groups.group.size else 0
    individuals = _draw_individuals(config, rng, n - groups.group.size)
    merged = Units(*(np.concatenate([getattr(groups, f), getattr(individuals, f)])
                      for f in Units.__dataclass_fields__))
    referral = merged.start - rng.integers(7, 61, size=n)
    order = np.argsort(referral, kind="stable")
    units = Units(*(getattr(merged, f)[order] for f in Units.__dataclass_fields__))
    return units, referral[order].astype(np.int64), n_groups


def draw_demographics(rng: np.random.Generator, n: int) -> dict[str, Any]:
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
