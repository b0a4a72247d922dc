r"""Patients not on track: the expected recovery curve and the flags of the audit.

Patients not on track (``not_on_track``)
    An expected recovery curve (Finch, Lambert and Schaalje 2001; Lutz et al. 1999) from a
    linear mixed model fitted by REML (``pipeline.trajectories.engines``) on the finished courses'
    treatment-session scores of the primary instrument (a seeded random
    ``max_model_patients`` of them when there are more, stated in the messages; only their
    session rows and those of the patients in treatment are built),

    .. math::

        y_{ij} = \beta_0 + \beta_1 w_{ij} + \beta_2 (b_i - \bar b) + \beta_3 w_{ij}(b_i -
        \bar b) + u_{0i} + u_{1i} w_{ij} + \varepsilon_{ij},

    with :math:`w` weeks since the start date, :math:`b` the baseline score,
    :math:`(u_0, u_1) \sim N(0, G)` and :math:`\varepsilon \sim N(0, \sigma^2)`. For a
    patient still in treatment the latest score is compared with the 90% prediction band
    :math:`\hat y \pm z_{0.95}\sqrt{g_{00} + 2 w g_{01} + w^2 g_{11} + \sigma^2}`; the
    patient is flagged when the score lies above it.

References
----------
Finch AE, Lambert MJ, Schaalje BG (2001). Psychotherapy quality control: the statistical
generation of expected recovery curves for integration into an early warning system.
Clinical Psychology and Psychotherapy 8:231-242.
Lutz W, Martinovich Z, Howard KI (1999). Patient profiling: an application of random
coefficient regression models to depicting the response of a patient to outpatient
psychotherapy. J Consult Clin Psychol 67:571-577.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.audit import funnels as funnel
from pipeline.audit.columns import NOT_ON_TRACK_COLUMNS, FloatArray
from pipeline.config import StudyConfig
from pipeline.estimability import NotEstimable, require
from pipeline.modelling import sampling
from pipeline.trajectories import engines

if TYPE_CHECKING:
    from pipeline.audit.review import AuditOptions

#: The expected recovery curve in lme4 notation: ``score ~ weeks * baseline_centred +
#: (1 + weeks | patient_id)``, fitted by REML through ``pipeline.trajectories.engines``.
CURVE_MODEL: Final = engines.MixedSpec(
    "score", "weeks * baseline_centred", (engines.RandomEffect("patient_id", ("1", "weeks")),))
#: ``auto``: the ``mixedlm`` engine when installed (lme4's algorithm; 1.7 s for the 1,500
#: finished courses of the 2,000-patient demo, against 37 s for the former direct
#: statsmodels MixedLM call), statsmodels otherwise; the two agree to about 1e-8 there.
CURVE_ENGINE: Final = "auto"
MIN_CURVE_PATIENTS: Final = 10


@dataclass(frozen=True)
class RecoveryCurve:
    """A fitted expected recovery curve (see the module docstring for the model).

    Attributes
    ----------
    fixed : tuple of 4 floats
        beta_0 (intercept), beta_1 (weeks), beta_2 (centred baseline), beta_3 (interaction).
    cov_re : tuple of 3 floats
        g_00 (intercept variance), g_01 (covariance), g_11 (slope variance).
    residual_variance : float
        sigma^2.
    baseline_centre : float
        Mean baseline of the patients in the model.
    """

    fixed: tuple[float, float, float, float]
    cov_re: tuple[float, float, float]
    residual_variance: float
    baseline_centre: float

    def expected(self, weeks: npt.ArrayLike, baseline: npt.ArrayLike) -> FloatArray:
        """Fixed-effect prediction at ``weeks`` for intake score ``baseline``."""
        w = np.asarray(weeks, dtype=float)
        b = np.asarray(baseline, dtype=float) - self.baseline_centre
        b0, b1, b2, b3 = self.fixed
        return (b0 + b1 * w + b2 * b + b3 * w * b).astype(np.float64)

    def upper(self, weeks: npt.ArrayLike, baseline: npt.ArrayLike,
              level: float = 0.90) -> FloatArray:
        """Upper limit of the two-sided prediction band at ``level``."""
        w = np.asarray(weeks, dtype=float)
        g00, g01, g11 = self.cov_re
        variance = g00 + 2 * w * g01 + w**2 * g11 + self.residual_variance
        z = funnel.z_value(level)
        return (self.expected(w, baseline) + z * np.sqrt(variance)).astype(np.float64)


def _scored_sessions(sessions: pd.DataFrame, instrument: str) -> pd.Series:
    """Mask of the attended treatment sessions with a score of ``instrument``."""
    return ((sessions["attendance"] == "attended") & (sessions["session_number"] >= 1)
            & sessions[instrument].notna())


def _curve_candidates(patients: pd.DataFrame, sessions: pd.DataFrame,
                      patient_outcomes: pd.DataFrame, instrument: str
                      ) -> npt.NDArray[np.object_]:
    """Finished courses with at least one row in :func:`_score_rows` (a dated scored
    session, a start date and a baseline), found without building the rows."""
    dated = _scored_sessions(sessions, instrument) & sessions["session_date"].notna()
    scored = pd.Index(sessions.loc[dated, "patient_id"].unique())
    started = patients.loc[patients["start_date"].notna(), "patient_id"]
    known = patient_outcomes["finished_course"].astype(bool) & patient_outcomes[
        f"{instrument}_baseline"].notna()
    keep = scored.isin(started) & scored.isin(patient_outcomes.loc[known, "patient_id"])
    candidates: npt.NDArray[np.object_] = scored[keep].to_numpy(dtype=object)
    return candidates


def _score_rows(patients: pd.DataFrame, sessions: pd.DataFrame,
                patient_outcomes: pd.DataFrame, instrument: str,
                among: npt.NDArray[np.object_] | None = None) -> pd.DataFrame:
    """Attended treatment-session scores with weeks since start and the baseline score
    (only of the patients ``among``, when given: the sessions table is not copied)."""
    keep = _scored_sessions(sessions, instrument)
    if among is not None:
        keep &= sessions["patient_id"].isin(among)
    scored = sessions.loc[keep, ["patient_id", "session_number", "session_date", instrument]]
    start = patients.set_index("patient_id")["start_date"]
    baseline = patient_outcomes.set_index("patient_id")[f"{instrument}_baseline"]
    rows = scored.assign(
        weeks=(scored["session_date"] - scored["patient_id"].map(start)).dt.days / 7,
        baseline=scored["patient_id"].map(baseline).astype(float),
        score=scored[instrument].astype(float),
    )
    return rows.loc[rows["baseline"].notna() & rows["weeks"].notna()]



def sample_patients(patient_ids: npt.ArrayLike, options: AuditOptions
                    ) -> tuple[npt.NDArray[np.object_], list[str]]:
    """The patients of the recovery curve: all, or ``max_model_patients`` of them chosen
    by a keyed hash of the id (:func:`pipeline.modelling.sampling.hash_sample`: the same
    whatever the row order, largely the same when patients are added), with a note."""
    patients = np.sort(pd.unique(np.asarray(patient_ids, dtype=object)))
    if len(patients) <= options.max_model_patients:
        return patients, []
    chosen = patients[sampling.hash_sample(pd.Series(patients), options.max_model_patients)]
    return chosen, [f"not on track: curve fitted on a pseudo-random {options.max_model_patients}"
                    f" of {len(patients)} finished courses (chosen by a fixed hash of the "
                    "patient id)"]


def fit_recovery_curve(rows: pd.DataFrame, options: AuditOptions) -> tuple[
        RecoveryCurve, list[str]]:
    """Fit the expected recovery curve by REML on rows (patient_id, weeks, baseline, score).

    At most ``max_model_patients`` patients (:func:`sample_patients`); warnings raised by
    the engine are returned as notes, not filtered; a fit that did not converge is not
    used (:class:`NotEstimable`, so the audit records it and says so).
    """

    chosen, notes = sample_patients(rows["patient_id"], options)
    if notes:
        rows = rows.loc[rows["patient_id"].isin(chosen)]
    require(rows["patient_id"].nunique() >= MIN_CURVE_PATIENTS,
            f"{rows['patient_id'].nunique()} finished courses with scores; the expected "
            f"recovery curve needs at least {MIN_CURVE_PATIENTS}",
            "more finished courses with session-by-session scores")
    n_patients = int(rows["patient_id"].nunique())
    require(len(rows) > 2 * n_patients,
            f"{len(rows):,} scores for {n_patients:,} patients: a random intercept and slope "
            "per patient need more scores than random effects (lme4 refuses this model)",
            "three or more scores per finished course")
    centre = float(rows.groupby("patient_id")["baseline"].first().mean())
    data = rows.assign(baseline_centred=rows["baseline"].astype(float) - centre)
    try:
        fitted = engines.fit(CURVE_MODEL, data, engine=CURVE_ENGINE)
    except (engines.EngineError, np.linalg.LinAlgError, ValueError) as exc:
        raise NotEstimable(f"the expected recovery curve could not be fitted ({exc})",
                           "more finished courses with session-by-session scores") from exc
    require(fitted.converged,
            f"the expected recovery curve (mixed model, {fitted.engine}) did not converge, "
            "so it is not used", "more finished courses with session-by-session scores")
    notes += [f"not on track: {fitted.engine}: {message}" for message in fitted.messages]
    return _curve(fitted, centre), list(dict.fromkeys(notes))


def _curve(fitted: engines.MixedFit, centre: float) -> RecoveryCurve:
    """The curve's parameters from the engine's tidy tables (``MixedFit.coef`` and
    ``MixedFit.variance``: the patient block's variances and covariance, the residual)."""
    coef = fitted.coef
    variance = fitted.variance.set_index(["level", "term"])["variance"]
    slope = "weeks:baseline_centred"
    return RecoveryCurve(
        (float(coef["(Intercept)"]), float(coef["weeks"]), float(coef["baseline_centred"]),
         float(coef[slope])),
        (float(variance[("patient_id", "(Intercept)")]),
         float(variance[("patient_id", "cor((Intercept), weeks)")]),
         float(variance[("patient_id", "weeks")])),
        float(variance[("Residual", "")]), centre)


def flag_not_on_track(latest: pd.DataFrame, curve: RecoveryCurve,
                      options: AuditOptions) -> pd.DataFrame:
    """Expected score, band and flag for each latest score (patient_id, site_id,
    therapist_id, session_number, weeks, baseline, score)."""
    expected = curve.expected(latest["weeks"], latest["baseline"])
    upper = curve.upper(latest["weeks"], latest["baseline"], options.prediction_level)
    remaining = (options.planned_sessions - latest["session_number"].astype(int)).clip(lower=0)
    out = latest.assign(expected=expected, upper_bound=upper, sessions_remaining=remaining,
                        flagged=latest["score"].to_numpy(dtype=float) > upper)
    return out[list(NOT_ON_TRACK_COLUMNS)].reset_index(drop=True)


def not_on_track(
    patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
    config: StudyConfig, options: AuditOptions,
) -> tuple[pd.DataFrame, list[str]]:
    """Patients still in treatment whose latest score lies above the expected band.

    In treatment: ``end_reason == "ongoing"`` or no ``end_date``. Returns the table (raw
    ids; :func:`review` pseudonymises) and notes.
    """

    instrument = options.instrument or config.primary_instrument
    require(instrument in sessions and bool(sessions[instrument].notna().any()),
            f"no {instrument} scores", f"session-by-session {instrument} scores")
    chosen, sampled = sample_patients(
        _curve_candidates(patients, sessions, patient_outcomes, instrument), options)
    ongoing_mask = patients["end_date"].isna() if "end_date" in patients else pd.Series(
        True, index=patients.index)
    if "end_reason" in patients:
        ongoing_mask |= patients["end_reason"] == "ongoing"
    ongoing_ids = patients.loc[ongoing_mask, "patient_id"]
    rows = _score_rows(patients, sessions, patient_outcomes, instrument,
                       np.concatenate([chosen, ongoing_ids.to_numpy(dtype=object)]))
    ongoing = rows[rows["patient_id"].isin(ongoing_ids)]
    latest = ongoing.sort_values(["patient_id", "session_number"]).groupby("patient_id").tail(1)
    units = patient_outcomes.set_index("patient_id").reindex(columns=["site_id",
                                                                      "therapist_id"])
    latest = latest.join(units, on="patient_id")
    require(not latest.empty, "no patient still in treatment has a score to check",
            "patients in treatment (no end_date, or end_reason ongoing) with scores")
    curve, notes = fit_recovery_curve(rows[rows["patient_id"].isin(chosen)], options)
    notes = [*sampled, *notes]
    table = flag_not_on_track(latest, curve, options)
    notes.append(f"not on track: {int(table['flagged'].sum())} of {len(table)} patients in "
                 f"treatment above the {options.prediction_level:.0%} band of the expected "
                 f"{instrument} curve")
    return table, notes
