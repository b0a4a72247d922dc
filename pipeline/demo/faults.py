"""Deliberate data faults injected into a generated cohort, to exercise cleaning and validation."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.demo.config import DemoCohort

logger = logging.getLogger(__name__)


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
