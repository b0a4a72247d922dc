r"""The relapse cohort: who is at risk of relapse, from when, and what counts as relapse.

Starts from the validated ``patients``, ``sessions`` and ``followups`` tables and the per-patient
``patient_outcomes`` (``pipeline.outcomes.definitions``), reads its definitions from
``config.relapse`` (:class:`pipeline.config.Relapse`) and returns DataFrames and plain-language
messages. Nothing here reads or writes files, prints or draws.

The relapse cohort (:func:`relapse_cohort`)
    *At risk* (``at_risk``), among patients whose episode ended, on ``instrument`` (default:
    the primary instrument), at the end of acute treatment:

    - ``remission`` (default): ``{instrument}_remission`` is True in ``patient_outcomes``.
      Relapse in the sense of Frank et al. (1991): the return of symptoms meeting criteria
      after remission, before recovery;
    - ``response``: ``{instrument}_response`` is True (relapse after response, Frank et al.
      1991). Responders may end treatment at or above the relapse threshold (a 50% fall from
      a high baseline); a message counts them, since their "relapse" may be persisting
      symptoms;
    - ``completed``: completers of the acute course (``completers``: attended its final phase
      or at least ``populations.completer_min_sessions`` sessions) irrespective of response
      or remission, as maintenance-IPT trials follow everyone after the acute course (Frank
      et al. 1990), but only those whose end-of-treatment score was below the relapse
      threshold: one still at or above it has nothing to relapse from (its first follow-up
      would count as a relapse). With no threshold (clinician-recorded relapse only) every
      completer is at risk.

    When the instrument defines no such outcome (GAD-7 has no remission or response cut-off)
    the analysis is not estimable (:class:`pipeline.estimability.NotEstimable`), never an
    empty cohort presented as a result. So is a study without a follow-up table, with nobody
    at risk, or with nobody at risk followed up.
    *Time origin*: the date of the last attended acute-phase session (``session_number >=
    1``), day 0; time is in weeks, ``(date - origin) / 7 days``. A follow-up on the day of the
    origin (allowed by the followups contract: a discharge assessment) is at time 0: a
    relapse recorded then is an event at time 0, so relapse-free survival starts below 1
    (as R ``survfit`` and lifelines compute it), and a message counts such patients; a
    patient whose only assessment is then is censored at 0 (at risk at 0, no time at risk
    after it).
    *Relapse* (event 1): the first follow-up whose score on the instrument is at or above
    ``threshold`` (default: the instrument's caseness, PHQ-9 >= 10), or at which a relapse is
    recorded by the clinician (``clinician_relapse`` True or ``event == "relapse"``).
    *Competing events* (event 2): ``event`` ``died`` or ``other_treatment``, which end
    follow-up. When a follow-up shows both a relapse and a competing event, the relapse counts.
    *Censoring* (event 0): at the last follow-up at which the patient was known to be
    relapse-free (a score on the instrument, a clinician's relapse judgement, or ``event ==
    "none"``). ``withdrew`` is censoring at the last such follow-up on or before it. Follow-ups
    dated before the origin (possible when sessions after the last attended one were missed)
    are ignored; patients with no usable follow-up are left out.
    Both are counted in the messages. A relapse is seen only at a follow-up, so its time is
    that visit's (the right end of the interval in which it happened); with visits at about
    3, 6 and 12 months the times are heavily tied and the Cox model is in effect a
    grouped-time model (Efron's ties keep it close to the continuous-time hazard ratio
    while the risk per interval is small). The interval itself (from the last relapse-free
    follow-up, :func:`relapse_visits`) is analysed by :mod:`pipeline.relapse.interval`: the
    Turnbull NPMLE of relapse-free survival, the primary curve, and an interval-censored
    Weibull model with the Cox model's terms (:func:`cox_terms`). A score at or above the
    threshold at a single visit counts as relapse even if it reflects measurement noise
    rather than a new episode, which pulls hazard ratios towards 1 (see
    ``tests/golden/relapse_demo_estimand.py``).
    *Maintenance*: a missing ``maintenance`` is counted as False (no maintenance IPT), with a
    message giving the number. Maintenance IPT is an intervention that is recorded when given
    (the demo and most services record it only for completers), so an empty field almost
    always means "not given"; a separate "unknown" level would be collinear with not having
    completed the acute course.

References
----------
Frank E et al. (1990). Three-year outcomes for maintenance therapies in recurrent
depression. Arch Gen Psychiatry 47:1093-1099.
Frank E et al. (1991). Conceptualization and rationale for consensus definitions of terms
in major depressive disorder: remission, recovery, relapse, and recurrence. Arch Gen
Psychiatry 48:851-855.
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.config import StudyConfig
from pipeline.estimability import NotEstimable

__all__ = ["CENSORED", "COMPETING", "RELAPSE", "instrument_and_threshold", "plural",
           "relapse_cohort", "relapse_visits", "shared_cohort"]

logger = logging.getLogger(__name__)

CENSORED, RELAPSE, COMPETING = 0, 1, 2
COMPETING_EVENTS: Final = ("died", "other_treatment")
CENSORING_EVENTS: Final = ("withdrew",)
COVARIATES: Final = ("condition", "format", "problem_area", "age", "sex", "site_id",
                     "therapist_id", "group_id")


def instrument_and_threshold(config: StudyConfig) -> tuple[str, float | None, list[str]]:
    """The relapse instrument and threshold from ``config.relapse`` (see module docstring)."""
    instrument = config.relapse.instrument or config.primary_instrument
    threshold = config.relapse.threshold
    if threshold is None:
        threshold = config.rules(instrument).caseness
    notes = []
    if threshold is None:
        notes.append(f"{instrument} has no caseness threshold and relapse.threshold is not set: "
                     "relapse is taken from clinician-recorded relapses only")
    return instrument, (None if threshold is None else float(threshold)), notes


def _criterion_defined(config: StudyConfig, instrument: str, criterion: str) -> bool:
    """Whether the instrument's rules define the at-risk outcome (``completed`` always)."""
    rules = config.rules(instrument)
    if criterion == "remission":
        return rules.remission_below is not None or rules.remission_at_most is not None
    if criterion == "response":
        return rules.response_reduction is not None
    return True


def _require_criterion(config: StudyConfig, instrument: str, criterion: str) -> None:
    """Raise :class:`NotEstimable` when ``relapse.at_risk`` names an outcome that the
    instrument does not define (GAD-7 has no remission or response cut-off)."""
    if _criterion_defined(config, instrument, criterion):
        return
    usable = [c for c in ("remission", "response") if _criterion_defined(config, instrument, c)]
    raise NotEstimable(
        f"{instrument} defines no {criterion}, so nobody can be at risk of relapse from "
        f"{criterion} on it",
        f"set relapse.at_risk: {' or '.join([*usable, 'completed'])}, or give "
        f"instruments.{instrument} a {criterion} cut-off with its source, or choose another "
        "relapse.instrument")


def _met_at_end(
    patient_outcomes: pd.DataFrame, instrument: str, criterion: str, threshold: float | None
) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """Who met the at-risk criterion at the end of acute treatment (module docstring)."""
    if criterion != "completed":
        column = f"{instrument}_{criterion}"
        if column not in patient_outcomes:
            raise NotEstimable(f"no {column} outcome in patient_outcomes",
                               f"scores on {instrument} in the sessions table")
        met = patient_outcomes[column].astype("boolean").fillna(False).to_numpy(dtype=bool)
        notes = []
        if criterion == "response" and threshold is not None:
            still = met & (patient_outcomes[f"{instrument}_endpoint"] >= threshold).to_numpy()
            if still.any():
                notes.append(f"{plural(int(still.sum()), 'responder')} ended treatment at or above "
                             f"the relapse threshold ({instrument} >= {threshold:g}): a "
                             "'relapse' at their first follow-up may be persisting symptoms")
        return met, notes
    completers = patient_outcomes["completers"].astype(bool).to_numpy()
    if threshold is None:
        return completers, []
    if f"{instrument}_endpoint" not in patient_outcomes:
        raise NotEstimable(f"no end-of-treatment {instrument} score in the data: nobody can be "
                           f"known to have ended treatment below the relapse threshold",
                           f"{instrument} scores during treatment, or a relapse.instrument "
                           "that was scored")
    endpoint = patient_outcomes[f"{instrument}_endpoint"].astype(float)
    below = (endpoint < threshold).to_numpy()
    notes = []
    left = completers & ~below
    if left.any():
        unknown = int((completers & endpoint.isna().to_numpy()).sum())
        notes.append(f"{plural(int(left.sum()), 'completer')} not counted as at risk: ended "
                     f"treatment at or above the relapse threshold ({instrument} >= "
                     f"{threshold:g}; nothing to relapse from) or without an end-of-treatment "
                     f"score ({unknown})")
    return completers & below, notes


def _at_risk_ids(
    patient_outcomes: pd.DataFrame, instrument: str, criterion: str,
    threshold: float | None = None,
) -> tuple[pd.Index, list[str]]:
    """Patients who ended treatment having met the criterion on the instrument.

    Raises
    ------
    NotEstimable
        When nobody is at risk (or the outcome column is missing).
    """
    if len(patient_outcomes) == 0:
        raise NotEstimable("no patients", "patients with treatment sessions")
    met, notes = _met_at_end(patient_outcomes, instrument, criterion, threshold)
    ended = patient_outcomes["ended"].astype(bool).to_numpy()
    ids = pd.Index(patient_outcomes.loc[met & ended, "patient_id"].astype(str))
    how = ("completed the acute course" if criterion == "completed"
           else f"ended in {criterion} on {instrument}")
    note = f"{plural(len(ids), 'patient')} at risk of relapse: treatment {how}"
    if (met & ~ended).any():
        still = int((met & ~ended).sum())
        label = (plural(still, "completer") if criterion == "completed"
                 else f"{still} in {criterion}")
        note += f" ({label} but still in treatment not counted)"
    endpoint = f"{instrument}_endpoint"
    if criterion != "completed" and endpoint in patient_outcomes \
            and not patient_outcomes[endpoint].notna().any():
        raise NotEstimable(f"no end-of-treatment {instrument} score in the data: nobody can "
                           f"be known to have ended treatment in {criterion}",
                           f"{instrument} scores during treatment, or a relapse.instrument "
                           "that was scored")
    if not len(ids):
        raise NotEstimable(f"nobody is at risk of relapse: no patient's treatment {how}",
                           "patients whose treatment ended in the at-risk state (see "
                           "relapse.at_risk: remission, response or completed)")
    return ids, [note, *notes]


def _origins(sessions: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """Date of the last attended acute-phase session (number >= 1) per patient."""
    attended = sessions.loc[
        (sessions["session_number"] >= 1) & (sessions["attendance"] == "attended")
        & sessions["patient_id"].isin(ids), ["patient_id", "session_date"]]
    return attended.groupby("patient_id")["session_date"].max().rename("origin_date")


def _followup_status(
    followups: pd.DataFrame, instrument: str, threshold: float | None,
    lower_is_better: bool = True,
) -> pd.DataFrame:
    """Per follow-up: relapse, competing event, withdrawal, and relapse-free assessment
    (a relapse score is at or beyond the threshold: <= it on a higher-is-better scale)."""
    n = len(followups)
    index = followups.index
    missing = pd.Series(np.nan, index=index)
    score = followups[instrument].astype(float) if instrument in followups else missing
    clinician = (followups["clinician_relapse"].astype("boolean")
                 if "clinician_relapse" in followups else pd.Series(pd.NA, index, "boolean"))
    event = (followups["event"].astype(object) if "event" in followups
             else pd.Series([None] * n, index=index, dtype=object))
    crossed = ((score >= threshold if lower_is_better else score <= threshold)
               if threshold is not None else pd.Series(False, index=index))
    recorded = clinician.fillna(False).astype(bool) | (event == "relapse")
    relapse = crossed | recorded
    competing = ~relapse & event.isin(COMPETING_EVENTS)
    return pd.DataFrame({
        "patient_id": followups["patient_id"].astype(str),
        "followup_date": pd.to_datetime(followups["followup_date"]),
        "relapse": relapse.to_numpy(dtype=bool),
        "clinician": recorded.to_numpy(dtype=bool),
        "competing": competing.to_numpy(dtype=bool),
        "withdrew": (~relapse & ~competing & event.isin(CENSORING_EVENTS)).to_numpy(dtype=bool),
        "assessed": (score.notna() | clinician.notna() | (event == "none")).to_numpy(dtype=bool),
    })


def _usable_followups(status: pd.DataFrame, origins: pd.Series) -> tuple[pd.DataFrame, list[str]]:
    """Follow-ups on or after the origin (time 0 included), up to and including each
    patient's first terminal one."""
    notes = []
    status = status.loc[status["patient_id"].isin(origins.index)]
    undated = status["followup_date"].isna()
    early = status["patient_id"].map(origins) > status["followup_date"]
    if undated.any():
        notes.append(f"{plural(int(undated.sum()), 'follow-up')} without a date ignored")
    if early.any():
        patients = status.loc[early, "patient_id"].nunique()
        notes.append(f"{plural(int(early.sum()), 'follow-up')} of {plural(patients, 'patient')} "
                     "dated before the last attended acute-phase session ignored")
    status = status.loc[~undated & ~early].sort_values(["patient_id", "followup_date"],
                                                      kind="stable")
    terminal = status["relapse"] | status["competing"] | status["withdrew"]
    before = terminal.astype(int).groupby(status["patient_id"]).cumsum() - terminal.astype(int)
    return status.loc[before == 0], notes


def _exits(status: pd.DataFrame) -> pd.DataFrame:
    """Exit date and event code per patient (patients without a usable follow-up absent)."""
    ending = status.loc[status["relapse"] | status["competing"]]
    ending = ending.groupby("patient_id").first()
    events = pd.DataFrame({
        "exit_date": ending["followup_date"],
        "event": np.where(ending["relapse"], RELAPSE, COMPETING).astype(np.int64),
    })
    rest = status.loc[~status["patient_id"].isin(ending.index) & status["assessed"]]
    censored = pd.DataFrame({"exit_date": rest.groupby("patient_id")["followup_date"].max()})
    censored["event"] = np.int64(CENSORED)
    return pd.concat([events, censored]).sort_index()


def _covariates(
    patients: pd.DataFrame, patient_outcomes: pd.DataFrame, ids: pd.Index, instrument: str
) -> tuple[pd.DataFrame, list[str]]:
    """Covariates, residual score and maintenance (missing = False) of the given patients."""
    base = (patients.assign(patient_id=patients["patient_id"].astype(str))
            .drop_duplicates("patient_id").set_index("patient_id"))
    present = [c for c in COVARIATES if c in base and base[c].notna().any()]
    frame = base.reindex(ids)[present].copy()
    endpoint = patient_outcomes.set_index(patient_outcomes["patient_id"].astype(str))
    residual = (endpoint[f"{instrument}_endpoint"] if f"{instrument}_endpoint" in endpoint
                else pd.Series(np.nan, index=endpoint.index))  # clinician-recorded relapse only
    frame[f"residual_{instrument}"] = residual.reindex(ids).astype(float)
    notes = []
    if "maintenance" in base:
        maintenance = base["maintenance"].reindex(ids).astype("boolean")
    else:
        maintenance = pd.Series(pd.NA, index=ids, dtype="boolean")
    if maintenance.isna().any():
        unknown = plural(int(maintenance.isna().sum()), "patient")
        notes.append(f"maintenance not recorded for {unknown} at risk: counted as no "
                     "maintenance IPT")
    frame["maintenance"] = maintenance.fillna(False).astype(bool)
    return frame, notes


def _empty_cohort(instrument: str) -> pd.DataFrame:
    columns = ["patient_id", *COVARIATES, f"residual_{instrument}", "maintenance",
               "origin_date", "exit_date", "time_weeks", "event"]
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return frame.astype({"time_weeks": float, "event": np.int64, "maintenance": bool})


def relapse_cohort(
    patients: pd.DataFrame,
    sessions: pd.DataFrame,
    followups: pd.DataFrame | None,
    patient_outcomes: pd.DataFrame,
    config: StudyConfig,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """One row per patient at risk of relapse, with time to relapse in weeks.

    Definitions in the module docstring (at risk, origin, relapse, competing events,
    censoring, maintenance).

    Parameters
    ----------
    patients, sessions, followups : DataFrame
        Validated input tables (``followups`` may be None: nobody has follow-up).
    patient_outcomes : DataFrame
        Per-patient outcomes from :func:`pipeline.outcomes.definitions.derive`.
    config : StudyConfig
        Uses ``config.relapse`` and the instrument rules.

    Returns
    -------
    (DataFrame, tuple of str)
        Columns patient_id, the covariates present (condition, format, problem_area, age,
        sex, site_id, therapist_id, group_id), ``residual_<instrument>`` (the endpoint score),
        maintenance (bool), origin_date, exit_date, time_weeks (float), event (0 censored, 1
        relapse, 2 competing); sorted by patient_id. And the messages.

    Raises
    ------
    NotEstimable
        No follow-up table; ``relapse.at_risk`` names an outcome the instrument does not
        define (GAD-7 has no remission); nobody at risk; no patient at risk with a follow-up.
    """
    instrument, threshold, notes = instrument_and_threshold(config)
    if followups is None:
        raise NotEstimable("no follow-up table: relapse after treatment needs assessments "
                           "after the end of treatment",
                           "a followups table (patient_id, followup_date, scores and/or "
                           "clinician_relapse, event)")
    _require_criterion(config, instrument, config.relapse.at_risk)
    ids, more = _at_risk_ids(patient_outcomes, instrument, config.relapse.at_risk, threshold)
    notes += more
    origins = _origins(sessions, ids)
    if len(origins) < len(ids):
        notes.append(f"{plural(len(ids) - len(origins), 'patient')} at risk without an attended "
                     "acute-phase session left out")
    status, more = _usable_followups(_followup_status(
        followups, instrument, threshold, config.rules(instrument).lower_is_better), origins)
    notes += more
    exits = _exits(status)
    lost = origins.index.difference(exits.index)
    if len(lost):
        notes.append(f"{plural(len(lost), 'patient')} at risk without any follow-up after the "
                     "end of treatment left out")
    if exits.empty:
        raise NotEstimable(f"none of the {plural(len(ids), 'patient')} at risk of relapse has a "
                           "usable follow-up after the end of treatment",
                           "follow-up assessments (a score on "
                           f"{instrument}, a clinician's relapse judgement or an event) of "
                           "patients at risk, dated on or after their last session")
    covariates, more = _covariates(patients, patient_outcomes, exits.index, instrument)
    notes += more
    cohort = covariates.join(origins).join(exits)
    cohort["time_weeks"] = (cohort["exit_date"] - cohort["origin_date"]).dt.days / 7.0
    cohort["event"] = cohort.pop("event")
    cohort = cohort.rename_axis("patient_id").reset_index().sort_values("patient_id")
    counts = cohort["event"].value_counts()
    notes.append(f"relapse cohort: {plural(len(cohort), 'patient')}, {int(counts.get(RELAPSE, 0))} "
                 f"relapses, {int(counts.get(COMPETING, 0))} competing events (died or other "
                 f"treatment), {int(counts.get(CENSORED, 0))} censored")
    notes += _time_zero_notes(cohort)
    logger.info("relapse cohort of %d patients", len(cohort))
    return cohort.reset_index(drop=True), tuple(notes)


def _time_zero_notes(cohort: pd.DataFrame) -> list[str]:
    """Say how many left follow-up on the day treatment ended (time 0, see module docstring)."""
    at_zero = cohort["time_weeks"] == 0
    if not at_zero.any():
        return []
    relapsed = int((at_zero & (cohort["event"] == RELAPSE)).sum())
    return [f"{plural(int(at_zero.sum()), 'patient')} left follow-up on the day treatment ended "
            f"(time 0), {relapsed} of them with a relapse recorded that day (relapse-free "
            "survival starts below 1; check those end-of-treatment assessments)"]


def relapse_visits(
    followups: pd.DataFrame, cohort: pd.DataFrame, config: StudyConfig
) -> pd.DataFrame:
    """When each patient of the cohort was last known to be relapse-free, for the
    interval-censored analyses (:mod:`pipeline.relapse.interval`).

    The follow-ups are those :func:`relapse_cohort` uses (on or after the origin, up to the
    first terminal one). A follow-up shows the patient relapse-free when it is assessed (a
    score, a clinician's judgement or ``event == "none"``) and is not a relapse.

    Parameters
    ----------
    followups : DataFrame
        The validated followups table.
    cohort : DataFrame
        :func:`relapse_cohort` (with ``origin_date`` and ``exit_date``).
    config : StudyConfig
        Uses ``config.relapse`` and the instrument rules.

    Returns
    -------
    DataFrame
        Indexed by patient_id (the cohort's): ``last_free_weeks``, weeks from the origin to
        the last relapse-free follow-up before the exit (0, the end of treatment in the
        at-risk state, when there is none), and ``clinician_relapse``, whether the relapse
        that ended follow-up was recorded by the clinician (``clinician_relapse`` or
        ``event == "relapse"``; False for patients without a relapse).
    """
    instrument, threshold, _ = instrument_and_threshold(config)
    origins = cohort.set_index(cohort["patient_id"].astype(str))["origin_date"]
    exits = cohort.set_index(cohort["patient_id"].astype(str))["exit_date"]
    status, _ = _usable_followups(_followup_status(
        followups, instrument, threshold, config.rules(instrument).lower_is_better), origins)
    exit_of = status["patient_id"].map(exits)
    free = status.loc[status["assessed"] & ~status["relapse"]
                      & (status["followup_date"] <= exit_of)]
    last_free = free.groupby("patient_id")["followup_date"].max().reindex(origins.index)
    weeks = ((last_free - origins).dt.days / 7.0).fillna(0.0)
    ending = status.loc[status["relapse"]].groupby("patient_id")["clinician"].first()
    relapsed = (cohort["event"] == RELAPSE).to_numpy()
    clinician = ending.reindex(origins.index).astype("boolean").fillna(False).to_numpy(
        dtype=bool) & relapsed
    return pd.DataFrame({"last_free_weeks": weeks.astype(float),
                         "clinician_relapse": clinician},
                        index=origins.index.rename("patient_id"))


def shared_cohort(cohort: pd.DataFrame) -> pd.DataFrame:
    """The cohort as written to ``relapse_cohort.csv``: without origin and exit dates.

    Exact dates of discharge and follow-up are quasi-identifiers; ``time_weeks`` carries
    what the analyses use. ``patient_id`` is pseudonymised by the command line.
    """
    return cohort.drop(columns=["origin_date", "exit_date"])


def plural(count: int, noun: str) -> str:
    """``1 patient``, ``2 patients``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
