r"""The long data of the trajectory models: one row per observed score, and phase times.

Every observed score of an attended session is an outcome row (the assessment, session 0,
included), so patients who drop out contribute the scores they have (see
:mod:`pipeline.trajectories.models`). Time :math:`t_{ij}` is weeks since ``start_date``
(days / 7; the assessment is slightly negative), the session number, or
:math:`\log(1 + \max(\text{weeks}, 0))` (``trajectories.time``).

``phases`` time is piecewise linear with knots at session 3 and at session :math:`F_i - 3`:
:math:`t^{(1)} = \min(t, T_{1i})`, :math:`t^{(2)} = \min(\max(t - T_{1i}, 0),
T_{2i} - T_{1i})`, :math:`t^{(3)} = \max(t - T_{2i}, 0)`, where :math:`T_{1i}` and
:math:`T_{2i}` are patient :math:`i`'s times of those sessions (scheduled dates, or one
week per session after the last scheduled one). *Final session* :math:`F_i`: a
completer's last scheduled treatment session; for anyone else (dropouts, transfers,
ongoing) the planned end of a standard course, ``max(last scheduled session,
populations.final_phase_start + 2)`` (session 16 by default), because a patient who leaves
early never reaches the ending phase (Weissman, Markowitz and Klerman 2000).

The coded model frame (factors, covariates, dropout pattern) is built by
:func:`pipeline.trajectories.models.model_data`.

References
----------
Weissman MM, Markowitz JC, Klerman GL (2000). Comprehensive Guide to Interpersonal
Psychotherapy. Basic Books.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from data_schemas.outcomes import outcome_instruments
from pipeline.config import StudyConfig

__all__ = ["FLAGS", "INITIAL_PHASE_END", "MODEL_PATIENT_COLUMNS", "MODEL_SESSION_COLUMNS",
           "PHASES", "TIME_SCALES", "add_phases", "long_scores"]

TIME_SCALES: Final = ("weeks", "session_number", "log_weeks")
FLAGS: Final = ("dropout", "completers", "finished_course", "started", "ended")
#: The columns the built-in models use (custom models get every column).
MODEL_PATIENT_COLUMNS: Final = ("patient_id", "start_date", "format", "condition",
                                "problem_area", "age", "sex", "therapist_id", "group_id")
MODEL_SESSION_COLUMNS: Final = ("patient_id", "session_number", "session_date", "attendance")
INITIAL_PHASE_END: Final = 3
PHASES: Final = ("phase_initial", "phase_middle", "phase_final")


def long_scores(patients: pd.DataFrame, sessions: pd.DataFrame,
                patient_outcomes: pd.DataFrame, instrument: str,
                time: str = "weeks") -> pd.DataFrame:
    """One row per observed score of ``instrument`` at an attended session.

    Parameters
    ----------
    patients, sessions : DataFrame
        Validated input tables.
    patient_outcomes : DataFrame
        From :func:`pipeline.outcomes.definitions.derive` (baselines and population flags).
    instrument : str
        Score column, e.g. ``"phq9"``.
    time : str
        ``weeks``, ``session_number`` or ``log_weeks``: copied into column ``time``.

    Returns
    -------
    DataFrame
        Sorted by patient and session: ``patient_id``, ``session_number``,
        ``session_date``, every score column of the sessions table, ``score`` (the
        instrument's), ``weeks`` ((session_date - start_date) days / 7),
        ``log_weeks`` (log(1 + max(weeks, 0))), ``time``, ``is_baseline`` (the patient's
        first scored session), ``baseline_<instrument>`` for every instrument, the flags
        dropout, completers, finished_course, started, ended, and every patients column.

    Raises
    ------
    ValueError
        For an unknown time scale (an instrument missing from ``sessions`` has no scores).
    """
    if time not in TIME_SCALES:
        raise ValueError(f"time must be one of {', '.join(TIME_SCALES)}; got {time!r}")
    if instrument not in sessions.columns:  # the contract adds only the score columns a
        sessions = sessions.assign(**{instrument: np.nan})  # file has: none scored
    scored = sessions.loc[(sessions["attendance"] == "attended") & sessions[instrument].notna()]
    # the rows sorted by patient and session first, then joined to their patient by
    # position: each id is hashed once (at registry scale a merge, a sort on the text ids
    # and one map per column cost minutes); the same rows and order as merge + sort
    ids, labels = pd.factorize(scored["patient_id"], sort=True)
    order = np.lexsort((scored["session_number"].to_numpy(), ids))
    ranked = ids[order]
    at = np.where(ranked >= 0, _positions(pd.Index(patients["patient_id"]), labels)[ranked],
                  -1)  # a missing id (-1) joins no patient, as in the merge
    joined = at >= 0
    long = scored.drop(columns=["attendance"]).take(order[joined]).reset_index(drop=True)
    attached = patients.drop(columns=["patient_id"]).take(at[joined]).reset_index(drop=True)
    long = long.join(attached, lsuffix="_x", rsuffix="_y")  # a shared column: as merge does
    long["session_number"] = long["session_number"].astype(float)
    long["score"] = long[instrument].astype(float)
    long["weeks"] = (long["session_date"] - long["start_date"]).dt.days / 7.0
    long["log_weeks"] = np.log1p(long["weeks"].clip(lower=0.0))
    long["time"] = long[time]
    first = np.ones(len(long), dtype=bool)
    patient = ranked[joined]
    first[1:] = patient[1:] != patient[:-1]  # sorted by patient: a new id starts a course
    long["is_baseline"] = first
    outcomes = patient_outcomes.set_index("patient_id")
    row = _positions(outcomes.index, labels)[patient]  # each distinct id looked up once
    for name in outcome_instruments(outcomes):  # the instruments in force and in the data
        long[f"baseline_{name}"] = _at(outcomes[f"{name}_baseline"], row).astype(float)
    for flag in FLAGS:
        if flag in outcomes.columns:
            long[flag] = _at(outcomes[flag], row).fillna(False).astype(bool)
    return long


def _positions(index: pd.Index, values: pd.Index) -> npt.NDArray[np.intp]:
    """Where each of ``values`` is in ``index`` (unique), -1 where it is not."""
    found: npt.NDArray[np.intp] = index.get_indexer(values)
    return found


def _at(column: pd.Series, positions: npt.NDArray[np.intp]) -> pd.Series:
    """``column``'s values at ``positions`` (missing at -1), as ``Series.map`` would give."""
    values = column.reset_index(drop=True).reindex(positions)
    return values.reset_index(drop=True)


def _final_session(sessions: pd.DataFrame, outcomes: pd.DataFrame,
                   final_phase_start: int) -> pd.Series:
    """Per patient the final session F (see the module docstring)."""
    last = sessions.loc[sessions["session_number"] >= 1].groupby("patient_id")[
        "session_number"].max()
    completer = outcomes.set_index("patient_id")["completers"].reindex(last.index)
    standard = np.maximum(last, final_phase_start + 2)
    return last.where(completer.fillna(False).astype(bool), standard).astype(float)


def _knot_times(sessions: pd.DataFrame, patients: pd.DataFrame, knots: pd.DataFrame,
                time: str) -> pd.Series:
    """Time of each (patient, session) in ``knots``: scheduled, else extrapolated weekly."""
    start = sessions["patient_id"].map(patients.set_index("patient_id")["start_date"])
    weeks = (sessions["session_date"] - start).dt.days / 7.0
    table = pd.DataFrame({"patient_id": sessions["patient_id"],
                          "session": sessions["session_number"].astype(float), "weeks": weeks})
    exact = knots.merge(table, on=["patient_id", "session"], how="left")["weeks"]
    last = table.sort_values("session").groupby("patient_id").last()
    anchor = knots["patient_id"].map(last["weeks"]) + (
        knots["session"] - knots["patient_id"].map(last["session"]))
    weeks_at = exact.fillna(pd.Series(anchor.to_numpy(), index=exact.index))
    if time == "session_number":
        return pd.Series(knots["session"].to_numpy(), index=knots.index)
    if time == "log_weeks":
        return pd.Series(np.log1p(weeks_at.clip(lower=0.0)).to_numpy(), index=knots.index)
    return pd.Series(weeks_at.to_numpy(), index=knots.index)


def add_phases(frame: pd.DataFrame, sessions: pd.DataFrame, patients: pd.DataFrame,
               outcomes: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Add the piecewise time columns ``phase_initial``, ``phase_middle``, ``phase_final``."""
    time = config.trajectories.time
    final = _final_session(sessions, outcomes, config.populations.final_phase_start)
    ids = frame["patient_id"].drop_duplicates().reset_index(drop=True)
    second = np.maximum(ids.map(final).fillna(INITIAL_PHASE_END).to_numpy(dtype=float) - 3,
                        INITIAL_PHASE_END)
    knots = pd.DataFrame({"patient_id": pd.concat([ids, ids], ignore_index=True),
                          "session": np.concatenate([np.full(ids.size, INITIAL_PHASE_END),
                                                     second])})
    times = _knot_times(sessions, patients, knots, time).to_numpy()
    first_knot = pd.Series(times[: ids.size], index=ids)
    second_knot = pd.Series(np.maximum(times[ids.size:], times[: ids.size]), index=ids)
    t = frame[time].to_numpy(dtype=float)
    t1 = frame["patient_id"].map(first_knot).to_numpy(dtype=float)
    t2 = frame["patient_id"].map(second_knot).to_numpy(dtype=float)
    out = frame.copy()
    out["phase_initial"] = np.minimum(t, t1)
    out["phase_middle"] = np.clip(t - t1, 0.0, t2 - t1)
    out["phase_final"] = np.maximum(t - t2, 0.0)
    return out
