"""Synthetic cohort of a multi-site Interpersonal Psychotherapy (IPT) service.

The generator is pure and vectorised: it returns DataFrames and a ``truth`` dictionary and
never touches the disk (``pipeline.io`` writes files). Every random draw comes from
``numpy.random.default_rng(seed)``, so the same :class:`DemoConfig` gives identical tables.

Generating model (defaults of :class:`DemoConfig` in brackets)
---------------------------------------------------------------
Service structure
    Six sites ``S01``..``S06`` of unequal size (weights 27/22/17/14/12/8 %) with 8/7/5/4/3/3
    therapists ``T01``..``T30`` nested in them. A share [0.30] of patients is treated in
    closed therapy groups of 6-9 patients who share site, therapist, start date and session
    dates; everyone else is seen individually. Start dates are uniform over
    [``first_start_date`` = 2024-01-08, + 730 days); referral is 7-60 days before the start.
    The data are extracted ``extract_lag_days`` [45] after the last possible start, so recent
    starters are still in treatment (``ongoing``) and late finishers have fewer follow-ups.
Patients
    Condition (major_depression 55 %, dysthymia 10, anxiety 12, eating_disorder 6, bipolar 5,
    adjustment 8, other 4), problem area (grief 20 %, role_disputes 35, role_transitions 30,
    interpersonal_deficits 15), a different secondary problem area for 25 %, age
    N(40, 14) rounded and clipped to 18-80, 65 % female, employment by age band.
Sessions
    Session 0 (assessment) 1-14 days before the start; a planned course of 12-16 weekly
    sessions (12/13/14/15/16 with probabilities 10/10/20/20/40 %, one draw per group);
    session k is on day 7(k-1) from the start with a jitter of -2..+2 days from session 2
    on, shared within a group, so dates strictly increase. Attendance per treatment
    session: attended 86 %, did_not_attend 8 %, cancelled_by_patient 4 %,
    cancelled_by_service 2 % (a group's service cancellations are shared by the group);
    session 0 is always attended.
PHQ-9 trajectory
    ``y_it = b0_i + g_j + b1_i * w_it + e_it`` with ``w_it`` weeks since the assessment
    (session 0), ``b0_i = mu0[condition] + u0_i`` and
    ``b1_i = beta[format] + delta[condition] + delta[problem area] + v_therapist + u1_i``.
    ``mu0``: 16, 14, 12, 13, 14, 11, 12.5 (order of the conditions above); ``beta``:
    -0.55 individual, -0.45 group per week; condition shifts 0, +0.10, 0, +0.08, +0.10,
    -0.05, +0.04; problem-area shifts -0.06 (grief), 0, -0.06 (role_transitions), +0.10
    (interpersonal_deficits). ``(u0, u1)`` bivariate normal, SDs 4 and 0.15, correlation
    -0.3; therapist slope effect ``v`` SD 0.05; therapy-group intercept ``g_j`` SD 1.0;
    residual ``e`` SD 2. Observed PHQ-9 = round(clip(y, 0, 27)).
Other instruments
    GAD-7 = round(clip(shift[condition] + 0.7 * (21/27) * y + a_i + e, 0, 21)) with
    shifts 1, 0.5, 4, 2, 1.5, 2, 1.5, ``a_i`` SD 2 and ``e`` SD 1.5. PHQ-9 and GAD-7 are
    recorded at every attended session, jointly missing at random with probability 0.02.
    At the research sites [S01, S04] HAM-D-17 = round(clip(2 + 1.1 y + N(0, 3), 0, 52)) and
    BDI-II = round(clip(3 + 1.6 y + N(0, 4), 0, 63)) are taken at the assessment, at
    session ``planned // 2`` if attended and at the last attended treatment session of an
    ended episode. No score is ever recorded on a session that was not attended.
Dropout (missing not at random)
    Before each treatment session k = 1..planned-1 the patient drops out with probability
    ``logistic(-3.8 - 0.15 * (b0_i + g_j - y_i,k-1) + 0.5 * [k <= 3])``: the less the latent
    score has improved, the likelier the dropout. Session k is then missed (did_not_attend
    75 %, cancelled_by_patient 25 %) and is the episode's last row and ``end_date``.
    Independently 2 % are transferred and 1.5 % end for another reason at a uniform session
    2..planned-1; the earliest event wins. Everyone else completes the planned course; 35 %
    of completers go on to maintenance IPT. Sessions after the extract date are not in the
    data and an episode whose end lies after it is ``ongoing`` (``end_date`` NaT).
Follow-up and relapse
    Completers and half of the other ended patients are followed up 91, 182 and 365 days
    (+/- 7) after their last attended session. From then, competing exponential times (in
    weeks) to relapse, death, other treatment and withdrawal: the relapse hazard is
    ``exp(-5.6 + 0.08 * phq9_end + log(0.5) * maintenance)`` per week, where ``phq9_end`` is
    the last observed PHQ-9 (latent value if none); the others 0.0002, 0.002 and 0.002 per
    week. An event is recorded at the first follow-up after it (relapse: PHQ-9 >= 10 and
    ``clinician_relapse`` True) and ends follow-up; 4 % of other follow-ups are not reached
    (no scores, event missing). Follow-ups after the extract date are not in the data.

``truth`` records all of these parameters, realised summaries of the cohort and Monte Carlo
expected outcome rates among finished courses, computed from the latent arrays of an
independent population of ``expected_rates_n`` patients simulated with ``seed + 1``.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from pipeline.demo.config import DemoCohort, DemoConfig
from pipeline.demo.faults import inject_faults
from pipeline.demo.followups import simulate_followups
from pipeline.demo.scores import simulate_treatment
from pipeline.demo.tables import padded_ids, patients_table, sessions_table
from pipeline.demo.truth import build_truth

logger = logging.getLogger(__name__)


__all__ = ["DemoCohort", "DemoConfig", "generate_cohort", "inject_faults"]


# --------------------------------------------------------------------------- public API


def generate_cohort(config: DemoConfig) -> DemoCohort:
    """Generate a synthetic multi-site IPT cohort (see the module docstring for the model).

    Parameters
    ----------
    config : DemoConfig
        Size, seed and generating parameters.

    Returns
    -------
    DemoCohort
        Patients, sessions and follow-ups tables and the generating truth.

    Raises
    ------
    ValueError
        If ``config.n_patients`` is below 1.
    """
    if config.n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    tic = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    t = simulate_treatment(config, rng, config.n_patients)
    patient_ids = padded_ids("P", np.arange(1, config.n_patients + 1), 6)
    patients = patients_table(t, patient_ids)
    sessions = sessions_table(t, patient_ids)
    followups = simulate_followups(config, rng, t, patient_ids)
    logger.info("generated %d patients, %d sessions, %d follow-ups in %.2f s",
                len(patients), len(sessions), len(followups), time.perf_counter() - tic)
    truth = build_truth(config, t, followups)
    return DemoCohort(patients, sessions, followups, truth)
