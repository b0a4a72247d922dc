r"""Relapse after acute treatment: Kaplan-Meier, log-rank, Cox, PH tests, RMST, Aalen-Johansen.

Everything here starts from the validated ``patients``, ``sessions`` and ``followups`` tables
and the per-patient ``patient_outcomes`` (``pipeline.outcomes.definitions``), reads its
definitions from
``config.relapse`` (:class:`pipeline.config.Relapse`) and returns DataFrames, figures and
plain-language messages. Nothing here reads or writes files or prints.

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

Relapse-free survival (:func:`kaplan_meier_table`)
    Kaplan-Meier, ``S(t) = prod_{t_j <= t} (1 - d_j / n_j)``, with competing events censored
    (the relapse-free survival "if competing events were prevented"). Pointwise 95% limits
    use the exponential Greenwood (log(-log)) transform, lifelines' only method and R
    ``survfit(..., conf.type = "log-log")``: ``exp(-exp(log(-log S) +- z se))`` with
    ``se^2 = sum d_j / (n_j (n_j - d_j)) / (log S)^2`` (Kalbfleisch & Prentice 2002). The
    median's limits are where the limits of S cross 0.5 (Brookmeyer & Crowley 1982).
Log-rank (:func:`logrank_table`)
    ``chi^2 = (O - E)' V^- (O - E)`` on ``k - 1`` df (Mantel 1966), R ``survdiff``.
Cox model (:func:`fit_cox`, :func:`cox_analysis`)
    Cause-specific hazard of relapse (competing events censored), ``h(t | x) = h_0(t)
    exp(x' beta)``, Efron's method for ties (lifelines and R ``coxph`` default), Wald limits
    ``exp(beta +- z se)``, fitted to full convergence. With ``cluster`` the Lin & Wei (1989)
    sandwich variance clustered by therapist or therapy group (individual patients are
    their own cluster), computed here from Efron score residuals as R ``coxph(... +
    cluster(id))`` does; lifelines' ``cluster_col`` treats tied times as distinct and is up
    to 1% off on tied data. Several strata columns reach lifelines as one column of stratum
    numbers (the same strata and fit, several times faster). A fit whose coefficients run
    off to infinity (separation) counts as not converged. At least
    ``min_events_per_parameter`` events per parameter (Peduzzi et al. 1995): otherwise terms
    are dropped in the order :data:`DROP_ORDER` until the model fits, or only the descriptive
    analyses are reported. Levels without relapses (whose hazard ratio would be 0: the
    partial likelihood has no finite maximum, Heinze & Schemper 2001) are merged into the
    reference level; constant covariates are dropped.
PH tests (:func:`ph_test_table`)
    Grambsch & Therneau (1994): for each term, the score test of a slope in the scaled
    Schoenfeld residuals ``r*_k`` against ``g(t_k)``, ``T = (sum_k (g_k - gbar) r*_k)^2 /
    (d var(beta) sum_k (g_k - gbar)^2)`` on 1 df, with ``g`` the rank of the event time (ties
    averaged, as R ``rank``), model-based variance. This is lifelines'
    ``proportional_hazard_test`` and R ``survival`` < 3.0 ``cox.zph(fit, transform =
    "rank")``, given Efron Schoenfeld residuals computed here in ``O(n log n)`` (the same
    numbers as lifelines' own, whose computation is quadratic in the number of patients);
    R >= 3.0 uses a full score test whose numbers can differ a lot (Rossi data, age: 0.90
    against 11.2). A term with ``p < 0.05`` is handled by refitting the model
    stratified on its covariate (tertiles of rank for a numeric one), which then has no
    hazard ratio; the table says which model is reported. Fourteen tests at 5% will flag
    something now and then by chance, and in a large cohort small departures are flagged.
RMST (:func:`rmst_table`)
    ``RMST(tau) = int_0^tau S(t) dt`` of the Kaplan-Meier curve (lifelines
    ``restricted_mean_survival_time``) with the Greenwood-type variance ``Var = sum_{t_j <=
    tau} A_j^2 d_j / (n_j (n_j - d_j))``, ``A_j = int_{t_j}^tau S(t) dt`` (Klein &
    Moeschberger 2003, 4.5; R ``print(survfit, rmean = tau)``, survRM2), normal limits; the
    difference between two groups has variance ``Var_1 + Var_0``. lifelines' own
    ``return_variance`` is the variance of ``min(T, tau)`` in the population, not of the
    estimate, so it is not used.
Cumulative incidence (:func:`cumulative_incidence_table`)
    Aalen-Johansen, ``CIF(t) = sum_{t_j <= t} S(t_j-) d_{1j} / n_j`` with ``S`` the
    all-cause Kaplan-Meier (R ``survfit(Surv(time, factor(status)) ~ 1)``), limits from
    lifelines' Greenwood-type delta-method variance on the log(-log) scale (Collett 2015,
    p. 411; R's survfit uses an infinitesimal-jackknife SE instead, so the limits differ a
    little while the estimates agree). lifelines jitters tied times of different event
    types at random; here each relapse time is moved earlier by a tiny deterministic amount
    instead, which leaves the estimate unchanged (both ``S`` and ``CIF`` telescope over tied
    events) and makes reruns identical.

References
----------
Aalen OO, Johansen S (1978). Scand J Stat 5:141-150.
Brookmeyer R, Crowley J (1982). A confidence interval for the median survival time.
Biometrics 38:29-41.
Collett D (2015). Modelling Survival Data in Medical Research, 3rd ed. CRC Press.
Cox DR (1972). Regression models and life-tables. JRSS B 34:187-220.
Efron B (1977). The efficiency of Cox's likelihood function for censored data. JASA 72:557.
Frank E et al. (1990). Three-year outcomes for maintenance therapies in recurrent
depression. Arch Gen Psychiatry 47:1093-1099.
Frank E et al. (1991). Conceptualization and rationale for consensus definitions of terms
in major depressive disorder: remission, recovery, relapse, and recurrence. Arch Gen
Psychiatry 48:851-855.
Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on
weighted residuals. Biometrika 81:515-526.
Heinze G, Schemper M (2001). A solution to the problem of monotone likelihood in Cox
regression. Biometrics 57:114-119.
Kalbfleisch JD, Prentice RL (2002). The Statistical Analysis of Failure Time Data, 2nd ed.
Klein JP, Moeschberger ML (2003). Survival Analysis, 2nd ed. Springer.
Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model. JASA
84:1074-1078.
Mantel N (1966). Cancer Chemother Rep 50:163-170.
Peduzzi P et al. (1995). Importance of events per independent variable in proportional
hazards regression analysis. J Clin Epidemiol 48:1503-1510.
Royston P, Parmar MKB (2013). Restricted mean survival time. BMC Med Res Methodol 13:152.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from lifelines import AalenJohansenFitter, CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError
from lifelines.statistics import multivariate_logrank_test, proportional_hazard_test
from lifelines.utils import median_survival_times, restricted_mean_survival_time
from matplotlib.figure import Figure
from scipy import stats

from data_schemas.vocab import CONDITIONS, FORMATS, PROBLEM_AREAS
from pipeline.config import StudyConfig
from pipeline.estimability import AnalysisRecord, NotEstimable, attempt, require
from pipeline.outcomes import rates
from pipeline.report import relapse_plots

__all__ = [
    "CoxFit", "CoxSpec", "RelapseResult", "analyse", "at_risk_table", "cif_analysis",
    "cox_analysis", "cox_terms", "cumulative_incidence_table", "fit_cox", "kaplan_meier_table",
    "km_analysis", "logrank_analysis", "logrank_table", "ph_test_table", "relapse_cohort",
    "relapse_visits", "rmst_analysis", "rmst_table", "shared_cohort",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

CENSORED, RELAPSE, COMPETING = 0, 1, 2
COMPETING_EVENTS: Final = ("died", "other_treatment")
CENSORING_EVENTS: Final = ("withdrew",)
COVARIATES: Final = ("condition", "format", "problem_area", "age", "sex", "site_id",
                     "therapist_id", "group_id")
KM_STRATA: Final = ("condition", "format", "maintenance")
RMST_GROUPS: Final = ("format", "maintenance")
CIF_GROUPS: Final = ("format",)
ALL: Final = "all"
#: Preferred reference levels (used when present and with relapses).
REFERENCE_LEVELS: Final = {"format": "individual", "condition": "major_depression",
                           "problem_area": "role_disputes", "maintenance": "False",
                           "sex": "female"}
#: Cox terms dropped first when there are too few events ("residual" = residual score).
DROP_ORDER: Final = ("sex", "age", "problem_area", "condition", "residual", "format",
                     "maintenance")
LEVEL_ORDER: Final = {"condition": CONDITIONS, "format": FORMATS, "problem_area": PROBLEM_AREAS,
                      "maintenance": ("False", "True")}
PH_ALPHA: Final = 0.05
MAX_ABS_COEF: Final = 10.0
#: The one strata column given to lifelines (see :func:`_lifelines_frame`).
STRATUM_CODE: Final = "stratum_code"
#: Newton-Raphson to full convergence (lifelines stops at a relative change of the log
#: partial likelihood of 1e-9, as R does, which leaves coefficients a few 1e-6 apart).
FIT_OPTIONS: Final = {"precision": 1e-12, "r_precision": 1e-12}
Z95: Final = float(stats.norm.ppf(0.975))

KM_COLUMNS: Final = ("stratum_variable", "stratum", "n", "events", "competing", "median_weeks",
                     "median_ci_low", "median_ci_high")
AT_RISK_COLUMNS: Final = ("stratum_variable", "stratum", "time_weeks", "at_risk")
LOGRANK_COLUMNS: Final = ("variable", "groups", "n", "events", "test_statistic", "df",
                          "p_value")
COX_COLUMNS: Final = ("term", "hazard_ratio", "ci_low", "ci_high", "p_value", "coef", "se",
                      "n", "events", "model")
PH_COLUMNS: Final = ("term", "test_statistic", "p_value", "violates_ph", "tested_model",
                     "reported_model")
RMST_COLUMNS: Final = ("variable", "group", "n", "events", "tau_weeks", "rmst", "se", "ci_low",
                       "ci_high")
CIF_COLUMNS: Final = ("stratum_variable", "stratum", "time_weeks", "at_risk", "cif", "ci_low",
                      "ci_high")


@dataclass(frozen=True, eq=False)
class RelapseResult:
    """Tables, figures and report notes of the relapse analysis.

    Attributes
    ----------
    tables : dict of str to DataFrame
        ``relapse_cohort`` (:func:`shared_cohort`), ``relapse_km``, ``relapse_km_at_risk``,
        ``relapse_logrank``, ``relapse_cox``, ``relapse_ph_test``, ``relapse_rmst``,
        ``relapse_cif``, ``relapse_free_interval`` and ``relapse_aft``
        (:mod:`pipeline.relapse.interval`) (columns in the functions that build them), those
        estimable; the CLI writes each as ``tables/<key>.csv`` (patient ids pseudonymised).
    figures : dict of str to Figure
        ``relapse_km``, ``relapse_cif`` and ``relapse_forest``
        (:mod:`pipeline.report.relapse_plots`).
    messages : tuple of str
        Plain-language notes for the report: who was excluded, smaller models, merged levels
        (the reasons of analyses that were not estimable are in ``records``).
    records : tuple of AnalysisRecord
        One per analysis (cohort, km, logrank, cox, rmst, cif, turnbull, aft_interval):
        done, not estimable (with reason and remedy) or failed (:mod:`pipeline.estimability`).
    """

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()


# --------------------------------------------------------------------------------------
# The relapse cohort
# --------------------------------------------------------------------------------------


def _instrument_and_threshold(config: StudyConfig) -> tuple[str, float | None, list[str]]:
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
                notes.append(f"{_n(int(still.sum()), 'responder')} ended treatment at or above "
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
        notes.append(f"{_n(int(left.sum()), 'completer')} not counted as at risk: ended "
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
    note = f"{_n(len(ids), 'patient')} at risk of relapse: treatment {how}"
    if (met & ~ended).any():
        still = int((met & ~ended).sum())
        label = _n(still, "completer") if criterion == "completed" else f"{still} in {criterion}"
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
        notes.append(f"{_n(int(undated.sum()), 'follow-up')} without a date ignored")
    if early.any():
        patients = status.loc[early, "patient_id"].nunique()
        notes.append(f"{_n(int(early.sum()), 'follow-up')} of {_n(patients, 'patient')} "
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
        unknown = _n(int(maintenance.isna().sum()), "patient")
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
    instrument, threshold, notes = _instrument_and_threshold(config)
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
        notes.append(f"{_n(len(ids) - len(origins), 'patient')} at risk without an attended "
                     "acute-phase session left out")
    status, more = _usable_followups(_followup_status(
        followups, instrument, threshold, config.rules(instrument).lower_is_better), origins)
    notes += more
    exits = _exits(status)
    lost = origins.index.difference(exits.index)
    if len(lost):
        notes.append(f"{_n(len(lost), 'patient')} at risk without any follow-up after the end of "
                     "treatment left out")
    if exits.empty:
        raise NotEstimable(f"none of the {_n(len(ids), 'patient')} at risk of relapse has a "
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
    notes.append(f"relapse cohort: {_n(len(cohort), 'patient')}, {int(counts.get(RELAPSE, 0))} "
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
    return [f"{_n(int(at_zero.sum()), 'patient')} left follow-up on the day treatment ended "
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
    instrument, threshold, _ = _instrument_and_threshold(config)
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


def _n(count: int, noun: str) -> str:
    """``1 patient``, ``2 patients``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


# --------------------------------------------------------------------------------------
# Strata
# --------------------------------------------------------------------------------------


def _labels(values: pd.Series) -> pd.Series:
    """Stratum labels as text (missing values become ``"missing"``)."""
    return values.astype(object).where(values.notna(), "missing").astype(str)


def _ordered_levels(labels: pd.Series, variable: str) -> list[str]:
    """Levels present: vocabulary order first, others alphabetically."""
    vocabulary = [str(v) for v in LEVEL_ORDER.get(variable, ())]
    present = set(labels)
    return [v for v in vocabulary if v in present] + sorted(present - set(vocabulary))


def _strata(
    cohort: pd.DataFrame, variables: Sequence[str]
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``("all", "all", cohort)`` then every level of every variable present in the cohort."""
    yield ALL, ALL, cohort
    for variable in variables:
        if variable not in cohort:
            continue
        labels = _labels(cohort[variable])
        for level in _ordered_levels(labels, variable):
            yield variable, level, cohort.loc[labels == level]


def _horizon(h: float) -> str:
    """Column suffix of a horizon, e.g. ``26w``."""
    return f"{h:g}w"


# --------------------------------------------------------------------------------------
# Kaplan-Meier and log-rank
# --------------------------------------------------------------------------------------


def _finite(value: Any) -> float:
    """``value`` as float, NaN when infinite (a median or limit not reached)."""
    number = float(value)
    return number if np.isfinite(number) else float("nan")


def _step_values(frame: pd.DataFrame, times: FloatArray) -> FloatArray:
    """Rows of a step function (indexed by time) in force at each of ``times``."""
    position = np.searchsorted(frame.index.to_numpy(dtype=float), times, side="right") - 1
    return np.asarray(frame.iloc[np.maximum(position, 0)].to_numpy(dtype=float))


def _step_value(frame: pd.DataFrame, t: float) -> FloatArray:
    """Row of a step function (indexed by time) in force at time ``t``."""
    row: FloatArray = _step_values(frame, np.array([t], dtype=float))[0]
    return row


def _km_row(sub: pd.DataFrame, horizons: Sequence[float]) -> tuple[dict[str, Any], list[str]]:
    """One stratum's Kaplan-Meier summary: counts, median with limits, S at the horizons."""
    kmf = KaplanMeierFitter().fit(sub["time_weeks"], sub["event"] == RELAPSE)
    limits = median_survival_times(kmf.confidence_interval_survival_function_)
    row: dict[str, Any] = {
        "n": len(sub),
        "events": int((sub["event"] == RELAPSE).sum()),
        "competing": int((sub["event"] == COMPETING).sum()),
        "median_weeks": _finite(kmf.median_survival_time_),
        "median_ci_low": _finite(limits.iloc[0, 0]),
        "median_ci_high": _finite(limits.iloc[0, 1]),
    }
    notes = []
    survival = kmf.survival_function_
    bands = kmf.confidence_interval_survival_function_
    longest = float(sub["time_weeks"].max())
    for h in horizons:
        s = float(_step_value(survival, h)[0])
        low, high = _step_value(bands, h)
        if s >= 1.0:
            low = high = 1.0
        if h > longest:
            s = low = high = float("nan")
            notes.append(f"follow-up shorter than {h:g} weeks")
        key = _horizon(h)
        row.update({f"relapse_free_{key}": s, f"ci_low_{key}": low, f"ci_high_{key}": high})
    return row, notes


def kaplan_meier_table(
    cohort: pd.DataFrame, horizons: Sequence[float], by: Sequence[str] = KM_STRATA
) -> tuple[pd.DataFrame, list[str]]:
    """Kaplan-Meier relapse-free survival overall and by stratum (competing events censored).

    Parameters
    ----------
    cohort : DataFrame
        Columns time_weeks, event (1 = relapse; 0 and 2 are censored here) and ``by``.
    horizons : sequence of float
        Weeks at which relapse-free survival is reported.
    by : sequence of str
        Stratifying columns (those absent are skipped).

    Returns
    -------
    (DataFrame, list of str)
        stratum_variable, stratum (``"all"`` first), n, events, competing, median_weeks,
        median_ci_low, median_ci_high and, per horizon h, relapse_free_<h>w, ci_low_<h>w,
        ci_high_<h>w (95% log(-log) limits, R ``conf.type = "log-log"``; 1 when no relapse
        has happened yet). A median or limit that is not reached within follow-up is
        missing (NaN), as in R; horizons beyond a stratum's follow-up are missing too. The
        messages say where.
    """
    columns = [*KM_COLUMNS, *(f"{p}_{_horizon(h)}" for h in horizons
                              for p in ("relapse_free", "ci_low", "ci_high"))]
    rows, notes = [], []
    for variable, level, sub in _strata(cohort, by) if len(cohort) else ():
        row, more = _km_row(sub, horizons)
        rows.append({"stratum_variable": variable, "stratum": level, **row})
        where = "overall" if variable == ALL else f"{variable} = {level}"
        notes += [f"{note} ({where}): relapse-free proportion not estimated" for note in more]
        if row["events"] == 0:
            notes.append(f"no relapses ({where}): relapse-free survival stays at 1")
    table = pd.DataFrame(rows, columns=columns)
    unreached = int(table["median_weeks"].isna().sum())
    if unreached:
        notes.append(f"median relapse-free time not reached in {unreached} of {len(table)} "
                     "strata (left empty)")
    return table.astype({"n": np.int64, "events": np.int64, "competing": np.int64}), notes


def at_risk_table(
    cohort: pd.DataFrame, horizons: Sequence[float], by: Sequence[str] = KM_STRATA,
    step: float = 13.0,
) -> pd.DataFrame:
    """Numbers at risk every ``step`` weeks up to the last horizon, as under the KM figure.

    ``at_risk`` counts patients still followed just after ``t`` without relapse or competing
    event, ``#(time_weeks > t)`` (``n`` at 0): lifelines ``add_at_risk_counts``, whose numbers
    are printed under :func:`pipeline.report.relapse_plots.km_figure`. R's ``summary(survfit,
    times = t)$n.risk`` counts ``time >= t`` instead, which differs at the follow-up dates
    (13, 26, 52 weeks).

    Returns
    -------
    DataFrame
        stratum_variable, stratum, time_weeks, at_risk.
    """
    last = max(horizons, default=step)
    grid = sorted({0.0, *map(float, horizons), *np.arange(step, last + 1e-9, step).tolist()})
    rows = [
        {"stratum_variable": variable, "stratum": level, "time_weeks": t,
         "at_risk": int((sub["time_weeks"] > t).sum()) if t > 0 else len(sub)}
        for variable, level, sub in (_strata(cohort, by) if len(cohort) else ())
        for t in grid
    ]
    return pd.DataFrame(rows, columns=list(AT_RISK_COLUMNS))


def logrank_table(
    cohort: pd.DataFrame, by: Sequence[str] = KM_STRATA
) -> tuple[pd.DataFrame, list[str]]:
    """Log-rank tests of relapse-free survival across the levels of each variable.

    lifelines ``multivariate_logrank_test`` (R ``survdiff``); competing events censored.

    Returns
    -------
    (DataFrame, list of str)
        variable, groups, n, events, test_statistic, df, p_value; variables with fewer than
        two levels or no relapses are left out with a message.
    """
    rows, notes = [], []
    relapsed = cohort["event"] == RELAPSE
    for variable in by:
        if variable not in cohort or len(cohort) == 0:
            continue
        labels = _labels(cohort[variable])
        if labels.nunique() < 2 or not relapsed.any():
            notes.append(f"no log-rank test by {variable}: "
                         + ("only one level" if labels.nunique() < 2 else "no relapses"))
            continue
        result = multivariate_logrank_test(cohort["time_weeks"], labels, relapsed)
        rows.append({"variable": variable, "groups": int(labels.nunique()), "n": len(cohort),
                     "events": int(relapsed.sum()),
                     "test_statistic": float(result.test_statistic),
                     "df": int(result.degrees_of_freedom), "p_value": float(result.p_value)})
    return pd.DataFrame(rows, columns=list(LOGRANK_COLUMNS)), notes


# --------------------------------------------------------------------------------------
# Cox model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoxSpec:
    """Terms of a Cox model of relapse.

    Attributes
    ----------
    categorical : tuple of str
        Covariates coded as indicators ``var[level]`` against a reference level.
    numeric : tuple of str
        Covariates entered as they are (per unit).
    references : dict of str to str
        Reference level per categorical covariate (default: :data:`REFERENCE_LEVELS`,
        else the most frequent level).
    cluster : str or None
        Column of cluster ids for the robust (sandwich) variance.
    strata : tuple of str
        Columns whose levels get their own baseline hazard.
    """

    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    references: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None
    strata: tuple[str, ...] = ()

    @property
    def covariates(self) -> tuple[str, ...]:
        """Categorical then numeric covariates."""
        return self.categorical + self.numeric

    def without(self, variable: str) -> CoxSpec:
        """The same spec without one covariate."""
        return replace(self, categorical=tuple(v for v in self.categorical if v != variable),
                       numeric=tuple(v for v in self.numeric if v != variable))

    def describe(self) -> str:
        """Readable model description for the tables, e.g. ``Cox: format + age``."""
        text = "Cox (Efron ties): " + (" + ".join(self.covariates) or "no covariates")
        if self.strata:
            text += "; stratified by " + ", ".join(self.strata)
        if self.cluster:
            text += f"; robust SE clustered by {self.cluster}"
        return text


@dataclass(frozen=True, eq=False)
class CoxFit:
    """A fitted Cox model: the lifelines fitter, its design, spec, tidy table and warnings."""

    fitter: Any
    design: pd.DataFrame
    spec: CoxSpec
    table: pd.DataFrame
    warnings: tuple[str, ...]


def _reference(labels: pd.Series, variable: str, spec: CoxSpec) -> str:
    """Reference level: the spec's, else the preferred one if present, else the commonest."""
    present = set(labels)
    for candidate in (spec.references.get(variable), REFERENCE_LEVELS.get(variable)):
        if candidate is not None and candidate in present:
            return candidate
    counts = labels.value_counts()
    return str(counts.index[counts.to_numpy() == counts.max()].sort_values()[0])


def cox_design(data: pd.DataFrame, spec: CoxSpec) -> pd.DataFrame:
    """Design frame: time_weeks, event (relapse = 1, else 0), indicator and numeric terms,
    the cluster and strata columns."""
    columns: dict[str, pd.Series] = {
        "time_weeks": data["time_weeks"].astype(float),
        "event": (data["event"] == RELAPSE).astype(np.int64),
    }
    for variable in spec.categorical:
        labels = _labels(data[variable])
        reference = _reference(labels, variable, spec)
        for level in _ordered_levels(labels, variable):
            if level != reference:
                columns[f"{variable}[{level}]"] = (labels == level).astype(float)
    for variable in spec.numeric:
        columns[variable] = data[variable].astype(float)
    for extra in (*([spec.cluster] if spec.cluster else []), *spec.strata):
        columns[extra] = _labels(data[extra])
    return pd.DataFrame(columns, index=data.index)


def _warning_text(caught: Sequence[warnings.WarningMessage]) -> tuple[str, ...]:
    """First lines of captured warnings, without repeats."""
    lines = (str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    return tuple(dict.fromkeys(lines))


@dataclass(frozen=True, eq=False)
class _EfronSums:
    """Efron's fractional risk sets summed per distinct event time (:func:`_efron_time_sums`).

    Attributes
    ----------
    times : ndarray, shape (g,)
        Distinct event times, ascending.
    mean : ndarray, shape (g, p)
        ``mean_k m_k``: the covariate mean subtracted from the failures' covariates.
    survivor_weight, survivor_mean : ndarray, shapes (g,) and (g, p)
        ``sum_k 1/D_k`` and ``sum_k m_k/D_k``, for those at risk who do not fail then.
    failer_weight, failer_mean : ndarray, shapes (g,) and (g, p)
        ``sum_k (1 - k/d)/D_k`` and ``sum_k (1 - k/d) m_k/D_k``, for those who fail then.
    """

    times: FloatArray
    mean: FloatArray
    survivor_weight: FloatArray
    survivor_mean: FloatArray
    failer_weight: FloatArray
    failer_mean: FloatArray


def _efron_time_sums(
    x: FloatArray, time: FloatArray, event: BoolArray, risk: FloatArray
) -> _EfronSums:
    r"""Efron's fractional risk sets at every distinct event time, without a loop over times.

    At an event time with ``d`` tied events, the k-th (k = 0..d-1) fractional risk set has
    ``D_k = S0 - (k/d) S0_dead`` and mean ``m_k = (S1 - (k/d) S1_dead) / D_k``, with ``S0 =
    sum r_i`` and ``S1 = sum r_i x_i`` over those at risk (``time >= t``) and the ``_dead``
    sums over the failures at ``t``. The sums are formed once per distinct time and
    accumulated from the last time backwards, so the cost is ``O(n log n)`` however many
    distinct times there are (masking everyone at risk at each time is ``O(n x times)``).

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Covariates.
    time : ndarray, shape (n,)
        Follow-up times.
    event : ndarray of bool, shape (n,)
        Event indicators.
    risk : ndarray, shape (n,)
        Relative risks ``exp(x' beta)``.

    Returns
    -------
    _EfronSums
        The sums per distinct event time (all empty without events).
    """
    if not event.any():
        none, nothing = np.zeros((0, x.shape[1])), np.zeros(0)
        return _EfronSums(nothing, none, nothing, none, nothing, none)
    order = np.argsort(time, kind="stable")
    all_times, starts = np.unique(time[order], return_index=True)
    at_risk = np.add.reduceat(risk[order], starts)[::-1].cumsum()[::-1]
    at_risk_x = np.add.reduceat(risk[order, None] * x[order], starts, axis=0)[::-1]
    at_risk_x = at_risk_x.cumsum(axis=0)[::-1]
    dead = np.flatnonzero(event)[np.argsort(time[event], kind="stable")]
    times, first, ties = np.unique(time[dead], return_index=True, return_counts=True)
    position = np.searchsorted(all_times, times)
    group = np.repeat(np.arange(len(times)), ties)
    fraction = (np.arange(len(dead)) - first[group]) / ties[group]
    dead_risk = np.add.reduceat(risk[dead], first)[group]
    dead_x = np.add.reduceat(risk[dead, None] * x[dead], first, axis=0)[group]
    denominator = at_risk[position][group] - fraction * dead_risk
    means = (at_risk_x[position][group] - fraction[:, None] * dead_x) / denominator[:, None]
    survivor, failer = 1.0 / denominator, (1.0 - fraction) / denominator
    return _EfronSums(
        times=times.astype(float),
        mean=np.add.reduceat(means, first, axis=0) / ties[:, None],
        survivor_weight=np.add.reduceat(survivor, first),
        survivor_mean=np.add.reduceat(survivor[:, None] * means, first, axis=0),
        failer_weight=np.add.reduceat(failer, first),
        failer_mean=np.add.reduceat(failer[:, None] * means, first, axis=0),
    )


def _efron_score_residuals(
    x: FloatArray, time: FloatArray, event: BoolArray, beta: FloatArray
) -> FloatArray:
    r"""Score residuals of a Cox model with Efron's ties (R ``residuals(fit, "score")``).

    Subject i's residual is ``delta_i (x_i - mean_k m_k) - r_i sum_k w_ik (x_i - m_k) / D_k``
    summed over the event times up to its own (:func:`_efron_time_sums`), with ``w_ik = 1``
    for those at risk and ``1 - k/d`` for those who fail then: cumulative sums over the
    event times, so ``O(n log n)``.
    """
    if not event.any():
        return np.zeros_like(x)
    risk = np.exp(x @ beta)
    sums = _efron_time_sums(x, time, event, risk)
    last = np.searchsorted(sums.times, time, side="right") - 1  # last event time <= own
    seen = last >= 0
    at = np.where(seen, last, 0)
    before_weight = np.concatenate(([0.0], np.cumsum(sums.survivor_weight)))[at]
    before_mean = np.vstack([np.zeros((1, x.shape[1])),
                             np.cumsum(sums.survivor_mean, axis=0)])[at]
    own_weight = np.where(event, sums.failer_weight[at], sums.survivor_weight[at])
    own_mean = np.where(event[:, None], sums.failer_mean[at], sums.survivor_mean[at])
    weight = np.where(seen, before_weight + own_weight, 0.0)
    mean = np.where(seen[:, None], before_mean + own_mean, 0.0)
    residuals = -risk[:, None] * (x * weight[:, None] - mean)
    residuals[event] += x[event] - sums.mean[at[event]]
    return np.asarray(residuals, dtype=np.float64)


def _efron_schoenfeld_residuals(
    x: FloatArray, time: FloatArray, event: BoolArray, beta: FloatArray
) -> FloatArray:
    r"""Schoenfeld residuals with Efron's ties, ``x_i - mean_k m_k`` for a failure, else 0.

    The residuals of lifelines ``CoxPHFitter.compute_residuals(kind="schoenfeld")`` (R
    ``residuals(fit, "schoenfeld")``), from :func:`_efron_time_sums` in ``O(n log n)``:
    lifelines 0.30 grows its result with ``np.append`` once per subject, which copies the
    whole result each time and so is quadratic in the number of subjects (it was most of
    the relapse stage's time from 50,000 patients at risk on).
    """
    sums = _efron_time_sums(x, time, event, np.exp(x @ beta))
    residuals = np.zeros_like(x)
    residuals[event] = x[event] - sums.mean[np.searchsorted(sums.times, time[event])]
    return residuals


def _stratum_codes(design: pd.DataFrame, spec: CoxSpec) -> npt.NDArray[np.int64]:
    """Stratum of each row (a combination of the spec's strata columns) as an integer,
    numbered in the sorted order of the combinations; all 0 without strata."""
    if not spec.strata:
        return np.zeros(len(design), dtype=np.int64)
    codes = design.groupby(list(spec.strata), sort=True).ngroup()
    return np.asarray(codes, dtype=np.int64)


def _lifelines_frame(design: pd.DataFrame, spec: CoxSpec) -> pd.DataFrame:
    """The design as given to ``CoxPHFitter.fit``: without the cluster column, and with the
    strata columns replaced by one column of stratum numbers (:func:`_stratum_codes`).

    The strata are the same, and in the same order, as with the columns themselves, so the
    fit is the same; but lifelines selects each stratum's rows by index label at every
    Newton step, which on the multi-level index of several strata columns (built from
    tuples) takes several times longer than on one integer level.
    """
    frame = design.drop(columns=[spec.cluster] if spec.cluster else [])
    if not spec.strata:
        return frame
    return frame.drop(columns=list(spec.strata)).assign(
        **{STRATUM_CODE: _stratum_codes(design, spec)})


def _residuals_within_strata(
    design: pd.DataFrame, spec: CoxSpec, fitter: Any,
    residuals: Callable[[FloatArray, FloatArray, BoolArray, FloatArray], FloatArray],
) -> FloatArray:
    """Per-subject residuals (rows of ``design``) computed within each stratum of the spec."""
    terms = list(fitter.params_.index)
    beta = fitter.params_.to_numpy(dtype=float)
    result = np.zeros((len(design), len(terms)))
    codes = _stratum_codes(design, spec)
    for rows in pd.Series(codes).groupby(codes).indices.values():
        part = design.iloc[rows]
        result[rows] = residuals(
            part[terms].to_numpy(dtype=float), part["time_weeks"].to_numpy(dtype=float),
            part["event"].to_numpy(dtype=bool), beta)
    return result


def _robust_variance(fitter: Any, design: pd.DataFrame, spec: CoxSpec) -> FloatArray:
    """Lin-Wei sandwich ``(sum_c D_c)' (sum_c D_c)``, ``D = score residuals x V`` summed
    within clusters (R ``coxph(... + cluster(id))``), residuals within strata."""
    residuals = _residuals_within_strata(design, spec, fitter, _efron_score_residuals)
    dfbeta = residuals @ fitter.variance_matrix_.to_numpy(dtype=float)
    assert spec.cluster is not None
    summed = pd.DataFrame(dfbeta).groupby(design[spec.cluster].to_numpy()).sum().to_numpy()
    return np.asarray(summed.T @ summed, dtype=np.float64)


def _coefficient_table(coef: FloatArray, se: FloatArray, terms: list[str]) -> pd.DataFrame:
    """Hazard ratios with 95% Wald limits ``exp(beta +- z se)`` and two-sided p-values.

    Overflow under separation gives infinite limits, caught by :func:`_checked_fit`.
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return pd.DataFrame({
            "term": terms,
            "hazard_ratio": np.exp(coef),
            "ci_low": np.exp(coef - Z95 * se),
            "ci_high": np.exp(coef + Z95 * se),
            "p_value": 2.0 * stats.norm.sf(np.abs(coef / se)),
            "coef": coef,
            "se": se,
        })


def fit_cox(data: pd.DataFrame, spec: CoxSpec) -> CoxFit:
    """Fit a Cox model of relapse (lifelines ``CoxPHFitter``, Efron ties).

    With ``spec.cluster`` the variance is the Lin-Wei sandwich computed here from Efron
    score residuals, which matches R ``coxph(... + cluster(id))``; lifelines' own
    ``cluster_col`` builds its score residuals as if there were no tied times, which put its
    robust standard errors up to 1% away from R's on the (heavily tied) demo follow-up.

    Parameters
    ----------
    data : DataFrame
        time_weeks, event (1 = relapse, other codes censored: the cause-specific hazard) and
        the spec's columns, without missing covariates.
    spec : CoxSpec
        Terms, reference levels, cluster and strata.

    Returns
    -------
    CoxFit
        ``table``: term, hazard_ratio, ci_low, ci_high (95% Wald), p_value, coef, se, n,
        events, model. Warnings of the fitter are captured in ``warnings``; ``fitter`` has
        the model-based variance.

    Raises
    ------
    lifelines.exceptions.ConvergenceError
        When the partial likelihood cannot be maximised.
    """
    design = cox_design(data, spec)
    fitter = CoxPHFitter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitter.fit(_lifelines_frame(design, spec), duration_col="time_weeks",
                   event_col="event", strata=[STRATUM_CODE] if spec.strata else None,
                   fit_options=FIT_OPTIONS)
    coef = fitter.params_.to_numpy(dtype=float)
    if spec.cluster:
        se = np.sqrt(np.diag(_robust_variance(fitter, design, spec)))
    else:
        se = fitter.standard_errors_.to_numpy(dtype=float)
    table = _coefficient_table(coef, se, [str(t) for t in fitter.params_.index])
    table["n"] = len(design)
    table["events"] = int(design["event"].sum())
    table["model"] = spec.describe()
    return CoxFit(fitter, design, spec, table, _warning_text(caught))


def _average_event_rank(durations: pd.Series, events: pd.Series, weights: Any) -> pd.Series:
    """Ranks of the event times among event times, ties averaged (R ``rank``)."""
    observed = events.to_numpy(dtype=bool)
    ranks = np.full(len(durations), np.nan)
    ranks[observed] = stats.rankdata(durations.to_numpy(dtype=float)[observed])
    return pd.Series(ranks, index=durations.index)


def _scaled_schoenfeld(fit: CoxFit) -> pd.DataFrame:
    """Scaled Schoenfeld residuals ``d x r_k V`` of the failures, in the fitter's order.

    What lifelines ``compute_residuals(kind="scaled_schoenfeld")`` returns (failures sorted
    by stratum and time, as the fitter's ``durations``; the order within tied times does not
    matter to the test), with the residuals of :func:`_efron_schoenfeld_residuals`.
    """
    fitter, spec = fit.fitter, fit.spec
    residuals = _residuals_within_strata(fit.design, spec, fitter, _efron_schoenfeld_residuals)
    ordered = pd.DataFrame({
        STRATUM_CODE: _stratum_codes(fit.design, spec),
        "time_weeks": fit.design["time_weeks"].to_numpy(dtype=float),
        "event": fit.design["event"].to_numpy(dtype=np.int64),
    }).sort_values([STRATUM_CODE, "time_weeks", "event"])
    rows = ordered.index.to_numpy()[ordered["event"].to_numpy(dtype=bool)]
    expected = fitter.durations.to_numpy(dtype=float)[fitter.event_observed.to_numpy(dtype=bool)]
    if not np.array_equal(fit.design["time_weeks"].to_numpy(dtype=float)[rows], expected):
        raise RuntimeError("Schoenfeld residuals out of line with the fitter's event times")
    scaled = len(rows) * residuals[rows] @ fitter.variance_matrix_.to_numpy(dtype=float)
    return pd.DataFrame(scaled, columns=fitter.params_.index)


def ph_test_table(fit: CoxFit) -> pd.DataFrame:
    """Grambsch-Therneau tests of proportional hazards per term (rank of event time).

    lifelines ``proportional_hazard_test`` on the scaled Schoenfeld residuals of
    :func:`_scaled_schoenfeld` (passed as ``precomputed_residuals``; the same numbers as
    lifelines' own, in linear rather than quadratic time). Uses the model-based variance (as
    R ``cox.zph``), also for a fit with ``cluster``. See the module docstring for the
    statistic.

    Returns
    -------
    DataFrame
        term, test_statistic, p_value (chi-squared, 1 df).
    """
    result = proportional_hazard_test(fit.fitter, None, time_transform=_average_event_rank,
                                      precomputed_residuals=_scaled_schoenfeld(fit))
    summary = result.summary.reindex(fit.fitter.params_.index)  # lifelines sorts by name
    return pd.DataFrame({
        "term": [str(t) for t in summary.index],
        "test_statistic": summary["test_statistic"].to_numpy(dtype=float),
        "p_value": summary["p"].to_numpy(dtype=float),
    })


def _cluster_ids(data: pd.DataFrame, cluster: str) -> tuple[pd.DataFrame, str | None, list[str]]:
    """Add the cluster column for ``config.relapse.cluster`` (therapist or therapy group)."""
    if cluster == "none":
        return data, None, []
    source = "therapist_id" if cluster == "therapist" else "group_id"
    ids = data[source] if source in data else pd.Series(np.nan, index=data.index)
    own = "patient " + data["patient_id"].astype(str)
    data = data.assign(**{source: ids.astype(object).where(ids.notna(), own)})
    count = int(data[source].nunique())
    note = (f"Cox standard errors are robust (sandwich), clustered by {source}; "
            f"{_n(int(ids.isna().sum()), 'patient')} without one form their own cluster; "
            f"{count} clusters")
    if count < 30:
        note += " (fewer than 30: the robust standard errors may be too small)"
    notes = [note]
    if cluster == "group":
        notes += rates.missing_group_note(data.assign(group_id=ids), "each as its own cluster")
    return data, source, notes


def _candidate_model(
    cohort: pd.DataFrame, instrument: str, cluster: str
) -> tuple[pd.DataFrame, CoxSpec, list[str]]:
    """The full IPT model's spec and its complete cases."""
    categorical = tuple(v for v in ("format", "condition", "maintenance", "problem_area", "sex")
                        if v in cohort and cohort[v].notna().any())
    numeric = tuple(v for v in (f"residual_{instrument}", "age")
                    if v in cohort and cohort[v].notna().any())
    complete = cohort[list(categorical + numeric)].notna().all(axis=1)
    notes = []
    if not complete.all():
        notes.append(f"{_n(int((~complete).sum()), 'patient')} with a missing covariate left "
                     "out of the Cox model")
    data, column, more = _cluster_ids(cohort.loc[complete], cluster)
    return data, CoxSpec(categorical, numeric, cluster=column), notes + more


def _tidy_levels(data: pd.DataFrame, spec: CoxSpec) -> tuple[pd.DataFrame, CoxSpec, list[str]]:
    """Merge levels without relapses into the reference; drop constant covariates."""
    notes: list[str] = []
    relapsed = data["event"] == RELAPSE
    references = dict(spec.references)
    for variable in spec.categorical:
        labels = _labels(data[variable])
        events = relapsed.groupby(labels).sum()
        with_events = labels.loc[labels.isin(events.index[events > 0])]
        if labels.nunique() < 2:
            notes.append(f"{variable} dropped from the Cox model: the same for everyone")
            spec = spec.without(variable)
            continue
        if with_events.nunique() < 2:
            notes.append(f"{variable} dropped from the Cox model: relapses in one level only")
            spec = spec.without(variable)
            continue
        reference = _reference(with_events, variable, spec)
        references[variable] = reference
        empty = sorted(set(labels) - set(with_events))
        if empty:
            notes.append(f"{variable}: level(s) {', '.join(empty)} without relapses merged "
                         f"into the reference level {reference} for the Cox model")
            data = data.assign(**{variable: labels.where(labels.isin(with_events), reference)})
    for variable in spec.numeric:
        if data[variable].astype(float).nunique() < 2:
            notes.append(f"{variable} dropped from the Cox model: the same for everyone")
            spec = spec.without(variable)
    return data, replace(spec, references=references), notes


def _n_parameters(data: pd.DataFrame, spec: CoxSpec) -> int:
    """Number of coefficients: levels - 1 per categorical covariate, 1 per numeric one."""
    levels = sum(_labels(data[v]).nunique() - 1 for v in spec.categorical)
    return int(levels) + len(spec.numeric)


def _next_to_drop(spec: CoxSpec) -> str | None:
    """The first covariate of the spec in :data:`DROP_ORDER` (None when none is left)."""
    for name in DROP_ORDER:
        for variable in spec.covariates:
            if variable == name or (name == "residual" and variable.startswith("residual_")):
                return variable
    return spec.covariates[0] if spec.covariates else None


def _reduce_for_events(
    data: pd.DataFrame, spec: CoxSpec, per_parameter: int
) -> tuple[CoxSpec, list[str]]:
    """Drop terms in :data:`DROP_ORDER` until there are enough events per parameter
    (:class:`NotEstimable` when no term is left)."""
    events = int((data["event"] == RELAPSE).sum())
    wanted = _n_parameters(data, spec)
    dropped = []
    while spec.covariates and events < per_parameter * _n_parameters(data, spec):
        variable = _next_to_drop(spec)
        assert variable is not None
        dropped.append(variable)
        spec = spec.without(variable)
    notes = []
    if dropped:
        notes.append(f"only {events} relapses for {wanted} Cox parameters (at least "
                     f"{per_parameter} per parameter wanted): dropped {', '.join(dropped)}")
    if not spec.covariates:
        raise NotEstimable(
            f"too few relapses for a Cox model: {events} relapses, fewer than "
            f"{per_parameter} per parameter for even the smallest model (Peduzzi et al. "
            "1995); the descriptive analyses (Kaplan-Meier, log-rank, RMST, cumulative "
            "incidence) stand",
            f"at least {per_parameter} relapses per model parameter (longer or larger "
            "follow-up), or a lower relapse.min_events_per_parameter with its justification")
    if dropped:
        notes.append(f"the smaller Cox model has {', '.join(spec.covariates)}")
    return spec, notes


def _checked_fit(data: pd.DataFrame, spec: CoxSpec) -> CoxFit:
    """:func:`fit_cox`, raising ``ConvergenceError`` for a fit without a finite maximum.

    Infinite or missing limits, or ``|beta| > MAX_ABS_COEF`` (a hazard ratio beyond
    ``e^10``), mean separation (monotone likelihood, Heinze & Schemper 2001), which lifelines
    reports only as a warning.
    """
    fit = fit_cox(data, spec)
    numbers = fit.table[["hazard_ratio", "ci_low", "ci_high", "p_value", "se"]]
    finite = np.isfinite(numbers.to_numpy(dtype=float)).all()
    if not finite or (fit.table["coef"].abs() > MAX_ABS_COEF).any():
        raise ConvergenceError("no finite maximum of the partial likelihood (separation)")
    return fit


def _fit_reducing(data: pd.DataFrame, spec: CoxSpec) -> tuple[CoxFit, list[str]]:
    """Fit the model; when it does not converge, drop terms in :data:`DROP_ORDER` and retry
    (:class:`NotEstimable` when no term is left)."""
    notes: list[str] = []
    while spec.covariates:
        try:
            return _checked_fit(data, spec), notes
        except (ConvergenceError, np.linalg.LinAlgError) as error:
            variable = _next_to_drop(spec)
            assert variable is not None
            reason = (str(error).strip() or "error").splitlines()[0].split(". ")[0]
            notes.append(f"Cox model did not converge ({reason}): dropped {variable}")
            spec = spec.without(variable)
    raise NotEstimable("no Cox model could be fitted: " + "; ".join(notes),
                       "more relapses, or fewer sparse covariate levels")


def _stratum_column(data: pd.DataFrame, variable: str, spec: CoxSpec) -> tuple[pd.DataFrame, str]:
    """A categorical covariate stratifies as it is; a numeric one by its tertiles."""
    if variable in spec.categorical:
        return data, variable
    column = f"{variable}_tertile"
    tertile = pd.qcut(data[variable].astype(float).rank(method="first"), 3, labels=False)
    return data.assign(**{column: tertile.astype(str)}), column


def _stratify_on_violations(
    data: pd.DataFrame, fit: CoxFit, ph: pd.DataFrame
) -> tuple[CoxFit, list[str]]:
    """Refit stratified on the covariates whose PH test has p < 0.05 (see module docstring)."""
    terms = ph.loc[ph["p_value"] < PH_ALPHA, "term"]
    variables = list(dict.fromkeys(t.split("[")[0] for t in terms))
    if not variables:
        return fit, []
    spec = fit.spec
    for variable in variables:
        data, column = _stratum_column(data, variable, spec)
        spec = replace(spec.without(variable), strata=(*spec.strata, column))
    listed = ", ".join(variables)
    if not spec.covariates:
        return fit, [f"proportional hazards doubtful for {listed} (p < {PH_ALPHA}), but "
                     "stratifying on it would leave no covariate: the unstratified model is "
                     "reported"]
    try:
        stratified = _checked_fit(data, spec)
    except (ConvergenceError, np.linalg.LinAlgError):
        return fit, [f"proportional hazards doubtful for {listed}; the stratified model did "
                     "not converge: the unstratified model is reported"]
    return stratified, [f"proportional hazards doubtful for {listed} (Schoenfeld residual "
                        f"test p < {PH_ALPHA}): the Cox model is stratified on "
                        f"{', '.join(spec.strata)} and reports no hazard ratio for it (the "
                        "Kaplan-Meier curves compare its groups without assuming "
                        "proportional hazards)"]


def cox_terms(
    cohort: pd.DataFrame, instrument: str, config: StudyConfig, model: str = "Cox model"
) -> tuple[pd.DataFrame, CoxSpec, list[str]]:
    """The data and terms of the relapse regression model before fitting.

    Complete cases of the full IPT model (:func:`cox_analysis`), levels without relapses
    merged into the reference, constant covariates dropped and terms dropped in
    :data:`DROP_ORDER` for too few events per parameter. The Cox model and the
    interval-censored Weibull model (:mod:`pipeline.relapse.interval`) share them.

    Raises
    ------
    NotEstimable
        No relapses, or too few relapses per parameter for even one term.
    """
    require(len(cohort) > 0 and bool((cohort["event"] == RELAPSE).any()),
            f"no relapses in the relapse cohort: no {model}",
            "longer follow-up of the patients at risk")
    data, spec, notes = _candidate_model(cohort, instrument, config.relapse.cluster)
    data, spec, more = _tidy_levels(data, spec)
    reduced, more2 = _reduce_for_events(data, spec, config.relapse.min_events_per_parameter)
    return data, reduced, notes + more + more2


def cox_analysis(
    cohort: pd.DataFrame, instrument: str, config: StudyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The relapse Cox model with PH tests, smaller models and stratification as needed.

    Model: format + condition + maintenance + problem_area (+ sex) + residual score (+ age),
    reference levels :data:`REFERENCE_LEVELS`; then (module docstring) complete cases,
    levels without relapses merged, events per parameter, convergence, PH tests and a
    stratified refit, robust SEs by ``config.relapse.cluster``.

    Returns
    -------
    (DataFrame, DataFrame, list of str)
        The ``relapse_cox`` table (columns of :func:`fit_cox`), the ``relapse_ph_test``
        table (term, test_statistic, p_value, violates_ph, tested_model: the unstratified
        model tested, reported_model: the model whose hazard ratios are in
        ``relapse_cox``) and the messages.

    Raises
    ------
    NotEstimable
        No relapses, too few relapses per parameter for even one term, or no model that
        converges.
    """
    data, reduced, notes = cox_terms(cohort, instrument, config)
    fit, more = _fit_reducing(data, reduced)
    notes += more
    ph = ph_test_table(fit)
    final, more = _stratify_on_violations(data, fit, ph)
    notes += more + [f"Cox model warning: {w}" for w in final.warnings]
    if ph["p_value"].isna().any():
        notes.append("proportional-hazards test not computable for "
                     f"{', '.join(ph.loc[ph['p_value'].isna(), 'term'])} (no spread of relapse "
                     "times)")
    ph = ph.assign(violates_ph=ph["p_value"] < PH_ALPHA, tested_model=fit.spec.describe(),
                   reported_model=final.spec.describe())
    return final.table, ph, notes


# --------------------------------------------------------------------------------------
# Restricted mean survival time
# --------------------------------------------------------------------------------------


def _rmst(sub: pd.DataFrame, tau: float) -> tuple[float, float]:
    """RMST to ``tau`` of the relapse-free Kaplan-Meier curve and its Greenwood variance."""
    kmf = KaplanMeierFitter().fit(sub["time_weeks"], sub["event"] == RELAPSE)
    rmst = float(restricted_mean_survival_time(kmf, t=tau))
    curve = kmf.survival_function_.iloc[:, 0]
    times = curve.index.to_numpy(dtype=float)
    keep = times < tau
    knots = np.append(times[keep], tau)
    area = curve.to_numpy(dtype=float)[keep] * np.diff(knots)
    after = np.cumsum(area[::-1])[::-1]  # A_j = integral of S from t_j to tau
    table = kmf.event_table.loc[times[keep]]
    deaths = table["observed"].to_numpy(dtype=float)
    at_risk = table["at_risk"].to_numpy(dtype=float)
    safe = np.where(at_risk > deaths, at_risk - deaths, 1.0)
    term = np.where(at_risk > deaths, deaths / (at_risk * safe), 0.0)
    return rmst, float(np.sum(after**2 * term))


def _rmst_row(variable: str, group: str, sub: pd.DataFrame, tau: float) -> dict[str, Any]:
    rmst, variance = _rmst(sub, tau)
    se = float(np.sqrt(variance))
    return {"variable": variable, "group": group, "n": len(sub),
            "events": int((sub["event"] == RELAPSE).sum()), "tau_weeks": tau, "rmst": rmst,
            "se": se, "ci_low": rmst - Z95 * se, "ci_high": rmst + Z95 * se}


def _difference_row(variable: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Second level minus the first (reference): ``se = sqrt(se_1^2 + se_0^2)``."""
    reference, other = rows[0], rows[1]
    estimate = other["rmst"] - reference["rmst"]
    se = float(np.hypot(other["se"], reference["se"]))
    return {"variable": variable, "group": f"{other['group']} - {reference['group']}",
            "n": other["n"] + reference["n"], "events": other["events"] + reference["events"],
            "tau_weeks": reference["tau_weeks"], "rmst": estimate, "se": se,
            "ci_low": estimate - Z95 * se, "ci_high": estimate + Z95 * se}


def rmst_table(
    cohort: pd.DataFrame, tau: float, by: Sequence[str] = RMST_GROUPS
) -> tuple[pd.DataFrame, list[str]]:
    """Restricted mean relapse-free time to ``tau`` weeks by group, with the difference.

    Returns
    -------
    (DataFrame, list of str)
        variable (``all`` first), group, n, events, tau_weeks, rmst, se, ci_low, ci_high
        (normal 95% limits). For a variable with two levels a row ``"<other> - <reference>"``
        (reference: individual format, no maintenance) holds the difference. A group whose
        follow-up ends before ``tau`` has its curve carried forward flat (as R does), with a
        message.
    """
    rows, notes = [], []
    pieces: dict[str, list[dict[str, Any]]] = {}
    for variable, level, sub in (_strata(cohort, by) if len(cohort) else ()):
        row = _rmst_row(variable, level, sub, tau)
        rows.append(row)
        pieces.setdefault(variable, []).append(row)
        if float(sub["time_weeks"].max()) < tau:
            where = "overall" if variable == ALL else f"{variable} = {level}"
            notes.append(f"follow-up ({where}) ends before {tau:g} weeks: RMST carries the last "
                         "relapse-free proportion forward")
    for variable in by:
        levels = pieces.get(variable, [])
        if len(levels) == 2:
            rows.append(_difference_row(variable, levels))
        elif levels:
            notes.append(f"no RMST difference by {variable}: {len(levels)} level(s) present")
    return pd.DataFrame(rows, columns=list(RMST_COLUMNS)), notes


# --------------------------------------------------------------------------------------
# Cumulative incidence (Aalen-Johansen)
# --------------------------------------------------------------------------------------


def _untied_times(times: pd.Series, events: pd.Series) -> tuple[pd.Series, float]:
    """Relapse times moved earlier by a deterministic ``epsilon`` (see module docstring),
    and the shift of the whole time axis that keeps them at or after 0.

    ``epsilon`` is 1/100 of the smallest gap between distinct times (and of the smallest
    time), so no moved time reaches another; lifelines then finds no ties to jitter. A
    relapse at time 0 (a follow-up on the day treatment ended) would move to or below 0,
    where lifelines' Aalen-Johansen does not count it; then every time is moved
    ``2 epsilon`` later (returned as the shift, to be added to the times at which the curve
    is read, so each reading sees the same events as without the shift).
    """
    distinct = np.unique(times.to_numpy(dtype=float))
    gaps = np.diff(distinct)
    candidates = [*gaps[gaps > 0], *distinct[distinct > 0]]
    epsilon = (min(candidates) if candidates else 1.0) / 100.0
    relapse = (events == RELAPSE).to_numpy()
    shift = 2 * epsilon if bool((times.to_numpy(dtype=float)[relapse] <= 0).any()) else 0.0
    return times.astype(float) - np.where(relapse, epsilon, 0.0) + shift, shift


def _aalen_johansen(sub: pd.DataFrame) -> pd.DataFrame:
    """Cumulative incidence of relapse at 0 and at each distinct relapse time of ``sub``."""
    times = sub["time_weeks"].astype(float)
    events = sub["event"].astype(np.int64)
    ajf = AalenJohansenFitter(calculate_variance=True, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # log(0) in CI where CIF = 0
        untied, shift = _untied_times(times, events)
        ajf.fit(untied, events, event_of_interest=RELAPSE)
    curve = pd.concat([ajf.cumulative_density_, ajf.confidence_interval_], axis=1)
    grid = np.unique(np.append(0.0, times[events == RELAPSE].to_numpy()))
    values = _step_values(curve, grid + shift)
    cif = values[:, 0]
    lower, upper = np.fmin(values[:, 1], values[:, 2]), np.fmax(values[:, 1], values[:, 2])
    zero = cif <= 0
    return pd.DataFrame({
        "time_weeks": grid,
        "at_risk": len(times) - np.searchsorted(np.sort(times.to_numpy()), grid, side="left"),
        "cif": cif,
        "ci_low": np.where(zero, 0.0, lower),
        "ci_high": np.where(zero, 0.0, upper),
    })


def cumulative_incidence_table(
    cohort: pd.DataFrame, by: Sequence[str] = CIF_GROUPS
) -> tuple[pd.DataFrame, list[str]]:
    """Aalen-Johansen cumulative incidence of relapse, competing events as competing risks.

    Returns
    -------
    (DataFrame, list of str)
        stratum_variable, stratum, time_weeks (0 and each relapse time), at_risk, cif,
        ci_low, ci_high (95% log(-log) limits; 0 while the incidence is 0). Deterministic:
        ties are broken as described in the module docstring, never at random.
    """
    pieces, notes = [], []
    for variable, level, sub in (_strata(cohort, by) if len(cohort) else ()):
        piece = _aalen_johansen(sub)
        pieces.append(piece.assign(stratum_variable=variable, stratum=level))
        if piece[["ci_low", "ci_high"]].isna().any().any():
            notes.append(f"cumulative incidence limits not estimable at the last time "
                         f"({variable} = {level}): everyone left had an event")
    if not pieces:
        return pd.DataFrame(columns=list(CIF_COLUMNS)), notes
    return pd.concat(pieces, ignore_index=True)[list(CIF_COLUMNS)], notes


# --------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------


def km_analysis(
    cohort: pd.DataFrame, config: StudyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Kaplan-Meier tables (:func:`kaplan_meier_table`, :func:`at_risk_table`).

    Estimable with no relapse (relapse-free survival then stays at 1, as the tables say);
    :class:`NotEstimable` only for an empty cohort.
    """
    require(len(cohort) > 0, "the relapse cohort is empty", "patients at risk with follow-up")
    km, notes = kaplan_meier_table(cohort, config.relapse.horizon_weeks)
    return km, at_risk_table(cohort, config.relapse.horizon_weeks), notes


def logrank_analysis(cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Log-rank tests (:func:`logrank_table`); :class:`NotEstimable` without relapses or
    without any variable with two levels."""
    require(bool((cohort["event"] == RELAPSE).any()),
            "no relapses in the relapse cohort: nothing for a log-rank test to compare",
            "longer follow-up of the patients at risk")
    table, notes = logrank_table(cohort)
    require(len(table) > 0,
            f"no variable of {', '.join(KM_STRATA)} has two levels in the relapse cohort",
            "patients at risk in more than one format, condition or maintenance group")
    return table, notes


def rmst_analysis(cohort: pd.DataFrame, config: StudyConfig) -> tuple[pd.DataFrame, list[str]]:
    """Restricted mean relapse-free time (:func:`rmst_table`); :class:`NotEstimable` for an
    empty cohort (a curve without relapses gives RMST = tau, which is an estimate)."""
    require(len(cohort) > 0, "the relapse cohort is empty", "patients at risk with follow-up")
    return rmst_table(cohort, config.relapse.rmst_weeks)


def cif_analysis(cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Aalen-Johansen cumulative incidence (:func:`cumulative_incidence_table`)."""
    require(len(cohort) > 0, "the relapse cohort is empty", "patients at risk with follow-up")
    return cumulative_incidence_table(cohort)


def analyse(
    patients: pd.DataFrame,
    sessions: pd.DataFrame,
    followups: pd.DataFrame | None,
    patient_outcomes: pd.DataFrame,
    config: StudyConfig,
) -> RelapseResult:
    """Relapse after acute treatment: every analysis at its own boundary.

    Each analysis (``cohort`` :func:`relapse_cohort`, ``km`` :func:`km_analysis`,
    ``logrank`` :func:`logrank_analysis`, ``cox`` :func:`cox_analysis`, ``rmst``
    :func:`rmst_analysis`, ``cif`` :func:`cif_analysis`) runs through
    :func:`pipeline.estimability.attempt`: one that the data cannot support is recorded as
    *not estimable* with its reason and remedy (the report shows them in place) and leaves
    no table; the others still run. Without a cohort nothing else runs.

    Parameters are those of :func:`relapse_cohort`.

    Returns
    -------
    RelapseResult
        Tables ``relapse_cohort`` (:func:`shared_cohort`), ``relapse_km``,
        ``relapse_km_at_risk``, ``relapse_logrank``, ``relapse_cox``, ``relapse_ph_test``,
        ``relapse_rmst``, ``relapse_cif`` (those estimable); figures ``relapse_km``,
        ``relapse_cif``, ``relapse_forest`` (those whose analysis was done); the messages in
        order; the analysis records.
    """
    records: list[AnalysisRecord] = []
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    built = attempt("relapse", "cohort", lambda: relapse_cohort(
        patients, sessions, followups, patient_outcomes, config), records)
    if built is not None:
        cohort, messages = built
        notes += messages
        tables["relapse_cohort"] = shared_cohort(cohort)
        _run_on_cohort(cohort, config, tables, notes, records)
        _run_interval(cohort, followups, config, tables, notes, records)
    for note in notes:
        logger.info("relapse: %s", note)
    return RelapseResult(tables, _figures(tables, built, config), tuple(dict.fromkeys(notes)),
                         tuple(records))


def _run_on_cohort(cohort: pd.DataFrame, config: StudyConfig, tables: dict[str, pd.DataFrame],
                   notes: list[str], records: list[AnalysisRecord]) -> None:
    """The analyses of a cohort, each through ``attempt``; tables and notes filled in."""
    instrument, _, _ = _instrument_and_threshold(config)
    km = attempt("relapse", "km", lambda: km_analysis(cohort, config), records)
    if km is not None:
        tables["relapse_km"], tables["relapse_km_at_risk"], more = km
        notes += more
    steps: list[tuple[str, tuple[str, ...], Callable[[], Any]]] = [
        ("logrank", ("relapse_logrank",), lambda: logrank_analysis(cohort)),
        ("cox", ("relapse_cox", "relapse_ph_test"),
         lambda: cox_analysis(cohort, instrument, config)),
        ("rmst", ("relapse_rmst",), lambda: rmst_analysis(cohort, config)),
        ("cif", ("relapse_cif",), lambda: cif_analysis(cohort)),
    ]
    for name, keys, run in steps:
        result = attempt("relapse", name, run, records)
        if result is not None:
            tables.update(zip(keys, result[:-1], strict=True))
            notes += result[-1]


def _run_interval(cohort: pd.DataFrame, followups: pd.DataFrame | None, config: StudyConfig,
                  tables: dict[str, pd.DataFrame], notes: list[str],
                  records: list[AnalysisRecord]) -> None:
    """The interval-censored analyses (:mod:`pipeline.relapse.interval`), each through
    ``attempt``: the Turnbull curve and the Weibull AFT sensitivity model."""
    from pipeline.relapse import interval as relapse_interval

    instrument, _, _ = _instrument_and_threshold(config)

    def intervals() -> pd.DataFrame:
        require(followups is not None, "no follow-up table", "a followups table")
        assert followups is not None
        return relapse_interval.interval_data(cohort, relapse_visits(followups, cohort, config),
                                              config.relapse.clinician_relapse_exact)

    steps: list[tuple[str, str, Callable[[], tuple[pd.DataFrame, list[str]]]]] = [
        ("turnbull", "relapse_free_interval",
         lambda: relapse_interval.turnbull_analysis(intervals(), config)),
        ("aft_interval", "relapse_aft",
         lambda: relapse_interval.aft_analysis(intervals(), instrument, config)),
    ]
    for name, key, run in steps:
        result = attempt("relapse", name, run, records)
        if result is not None:
            tables[key], more = result
            notes += more


def _figures(tables: dict[str, pd.DataFrame],
             built: tuple[pd.DataFrame, tuple[str, ...]] | None,
             config: StudyConfig) -> dict[str, Figure]:
    """The relapse figures of the analyses that were done (drawn from their tables)."""
    figures: dict[str, Figure] = {}
    if built is not None and "relapse_km" in tables:
        figures["relapse_km"] = relapse_plots.km_figure(
            built[0], ("format", "maintenance"), config.relapse.min_at_risk,
            tables.get("relapse_free_interval"))
    if "relapse_cif" in tables:
        figures["relapse_cif"] = relapse_plots.cif_figure(tables["relapse_cif"])
    if "relapse_cox" in tables:
        figures["relapse_forest"] = relapse_plots.forest_figure(tables["relapse_cox"])
    return figures
