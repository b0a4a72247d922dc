"""The patients and sessions input tables built from the simulated arrays of the cohort."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from data_schemas.vocab import (
    ATTENDANCE,
    CONDITIONS,
    END_REASONS,
    FORMATS,
    PROBLEM_AREAS,
)
from pipeline.demo.config import (
    EMPLOYMENT,
    NAT_DAY,
    ONGOING,
    SEXES,
    SITES,
    THERAPISTS_PER_SITE,
    IntArray,
    ObjArray,
)
from pipeline.demo.scores import Treatment

# --------------------------------------------------------------------------- tables


def days_to_datetime(days: IntArray) -> npt.NDArray[np.datetime64]:
    """Days since epoch (``NAT_DAY`` for missing) as datetime64[ns]."""
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[ns]")


def padded_ids(prefix: str, numbers: IntArray, width: int) -> ObjArray:
    """Identifiers such as ``P000001`` from 1-based numbers."""
    if numbers.size == 0:
        return np.empty(0, dtype=object)
    text = np.char.zfill(numbers.astype(str), width)
    return np.char.add(prefix, text).astype(object)


def _labels(names: tuple[str, ...], codes: IntArray) -> ObjArray:
    """Category labels for codes, None where the code is negative."""
    table = np.asarray((*names, None), dtype=object)
    return table[np.where(codes >= 0, codes, len(names))]


def patients_table(t: Treatment, patient_ids: ObjArray) -> pd.DataFrame:
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
        "therapist_id": padded_ids("T", np.arange(1, n_ther + 1), 2)[u.therapist],
        "condition": _labels(CONDITIONS, t.cond),
        "format": _labels(FORMATS, t.is_group.astype(np.int64)),
        "group_id": _labels(tuple(padded_ids("G", np.arange(1, t.n_groups + 1), 4)), u.group),
        "problem_area": _labels(PROBLEM_AREAS, t.area),
        "secondary_problem_area": _labels(PROBLEM_AREAS, t.area2),
        "referral_date": days_to_datetime(t.referral),
        "start_date": days_to_datetime(u.start),
        "end_date": days_to_datetime(end_day),
        "end_reason": _labels(END_REASONS, t.reason),
        "age": t.age,
        "sex": _labels(SEXES, t.sex),
        "employment": _labels(EMPLOYMENT, t.employment),
        "maintenance": maintenance,
    })


def sessions_table(t: Treatment, patient_ids: ObjArray) -> pd.DataFrame:
    """The sessions table, sorted by patient and session number."""
    rows, cols = np.nonzero(t.present)
    return pd.DataFrame({
        "patient_id": patient_ids[rows],
        "session_number": cols.astype(np.int64),
        "session_date": days_to_datetime(t.dates[rows, cols]),
        "attendance": _labels(ATTENDANCE, t.att[rows, cols]),
        "phq9": t.phq[rows, cols],
        "gad7": t.gad[rows, cols],
        "hamd17": t.hamd[rows, cols],
        "bdi2": t.bdi[rows, cols],
    })
