"""Per-patient outcomes: attendance, populations, and response, remission, reliable change
and recovery per instrument and for the paired PHQ-9 + GAD-7 measures.

The instruments are those in force (the catalogue, ``data_schemas/instruments.csv``, plus
any the config declares) that have a column in the sessions table; an outcome whose
threshold the instrument does not define is missing (not known) for every patient, and the
paired measures are missing unless both paired instruments are present.

Every rule is read from the ``StudyConfig`` (``pipeline.config``), whose docstring gives
the formulas and sources. Conventions used here:

- Treatment sessions have ``session_number >= 1``; session 0 is the pre-treatment assessment.
- Baseline: the score at session 0 when it was scored, else at the first scored treatment
  session (``baseline_rule: assessment_else_first``, NHS Talking Therapies); or the first
  scored treatment session only (``first_treatment``).
- Endpoint: the last score at a treatment session after the baseline session (``last``, NHS
  Talking Therapies), or the score nearest ``endpoint.week`` weeks after start_date within
  ``endpoint.window_weeks`` (``week``). A patient with one score has no endpoint.
- Outcomes are three-valued: a missing value means not known (no paired scores, or not
  defined), never False. Paired measures follow Kleene logic: reliable deterioration is
  True when either measure deteriorated even if the other is missing.
- Direction: for a ``higher_is_better`` scale improvement is a rise, so reliable
  improvement is a rise of at least the reliable change, caseness is a score at or below
  ``caseness``, and response (a percentage fall) and remission are not defined.
- Jacobson & Truax (1991) classes, for scales where lower is better: *deteriorated*
  (reliable deterioration), *recovered* (reliable improvement and moved from the
  dysfunctional to the functional side of the cut-off), *improved* (reliable improvement
  otherwise), *unchanged*. Cut-offs: a = M_clin - 2 SD_clin (clinical SD);
  b = M_func + 2 SD_func (functional SD); c = (SD_clin M_func + SD_func M_clin) /
  (SD_clin + SD_func) (both SDs); ``caseness``: below the caseness threshold. For a
  higher-is-better scale a = M_clin + 2 SD_clin, b = M_func - 2 SD_func, and recovery is a
  move from at or below the cut-off to above it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from data_schemas.outcomes import PAIRED, instrument_columns
from pipeline.config import InstrumentRules, StudyConfig

RCI_CRITICAL = 1.96
EPSILON = 1e-9


def attendance(patients: pd.DataFrame, sessions: pd.DataFrame) -> pd.DataFrame:
    """Per patient: treatment sessions scheduled, attended and missed; last attended date.

    Returns a frame indexed by patient_id with sessions_scheduled, sessions_attended,
    sessions_did_not_attend, attendance_rate, last_attended_date, longest_gap_weeks and
    attended_sessions (the attended session numbers' maximum).
    """
    treatment = sessions[sessions["session_number"] >= 1]
    attended = treatment[treatment["attendance"] == "attended"]
    by_patient = treatment.groupby("patient_id")
    table = pd.DataFrame(index=pd.Index(patients["patient_id"], name="patient_id"))
    table["sessions_scheduled"] = by_patient.size()
    table["sessions_attended"] = attended.groupby("patient_id").size()
    table["sessions_did_not_attend"] = (
        treatment[treatment["attendance"] == "did_not_attend"].groupby("patient_id").size()
    )
    counts = ["sessions_scheduled", "sessions_attended", "sessions_did_not_attend"]
    table[counts] = table[counts].fillna(0).astype(int)
    table["attendance_rate"] = table["sessions_attended"] / table["sessions_scheduled"].where(
        table["sessions_scheduled"] > 0
    )
    table["last_attended_number"] = attended.groupby("patient_id")["session_number"].max()
    table["last_attended_date"] = attended.groupby("patient_id")["session_date"].max()
    gaps = attended.sort_values(["patient_id", "session_date"])
    step = gaps.groupby("patient_id")["session_date"].diff().dt.days / 7
    table["longest_gap_weeks"] = step.groupby(gaps["patient_id"]).max()
    return table


def populations(patients: pd.DataFrame, visits: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Flags ended, started, finished_course, completers and dropout per patient.

    - started: at least one attended treatment session;
    - finished_course: ended and >= ``finished_course_min_sessions`` attended treatment
      sessions (NHS Talking Therapies: 2);
    - completers: attended a session of the final phase (``session_number >=
      final_phase_start``) or >= ``completer_min_sessions`` attended treatment sessions;
    - dropout: started, ended before the final phase without completing, and either
      end_reason is dropped_out or there was a gap of more than ``dropout_gap_weeks`` weeks
      between attended sessions or from the last attended session to end_date.
    """
    rules = config.populations
    frame = patients.set_index("patient_id")
    ended = frame["end_date"].notna() & (frame["end_reason"] != "ongoing")
    attended = visits["sessions_attended"]
    final_phase = visits["last_attended_number"].fillna(0) >= rules.final_phase_start
    completers = final_phase | (attended >= rules.completer_min_sessions)
    tail_gap = (frame["end_date"] - visits["last_attended_date"]).dt.days / 7
    long_gap = (visits["longest_gap_weeks"].fillna(0) > rules.dropout_gap_weeks) | (
        tail_gap.fillna(0) > rules.dropout_gap_weeks
    )
    started = attended >= 1
    dropout = started & ended & ~completers & (
        (frame["end_reason"] == "dropped_out") | long_gap
    )
    return pd.DataFrame(
        {
            "ended": ended.astype(bool),
            "dropout": dropout.astype(bool),
            "started": started.astype(bool),
            "finished_course": (ended & (attended >= rules.finished_course_min_sessions)).astype(
                bool
            ),
            "completers": (completers & started).astype(bool),
        }
    )


#: Populations of a service (NHS Talking Therapies) and, with ``populations.definition:
#: trial``, of a trial (reported first; see :func:`trial_populations`).
SERVICE_POPULATIONS = ("started", "finished_course", "completers")
TRIAL_POPULATIONS = ("randomised", "assessed")


def population_columns(config: StudyConfig) -> tuple[str, ...]:
    """The population columns of ``patient_outcomes`` in reporting order."""
    if config.populations.definition == "trial":
        return TRIAL_POPULATIONS + SERVICE_POPULATIONS
    return SERVICE_POPULATIONS


def main_population(config: StudyConfig) -> str:
    """The population of the headline rates, the format comparison and the benchmarks:
    ``finished_course`` for a service, ``randomised`` (intention to treat) for a trial."""
    return "randomised" if config.populations.definition == "trial" else "finished_course"


def trial_populations(
    patients: pd.DataFrame, sessions: pd.DataFrame, config: StudyConfig
) -> pd.DataFrame:
    """The populations of a randomised trial (``populations.definition: trial``).

    - randomised: every row of ``patients`` (intention to treat: all randomised patients,
      analysed in the arm to which they were allocated, whatever treatment they received;
      CONSORT 2010 item 16, Moher et al. 2010 BMJ 340:c869; ICH E9 1998). With the ``itt``
      denominator of the rates a patient without an endpoint counts as a non-event; with
      ``observed`` only patients with the outcome known count (available cases);
    - assessed: at least one scored, attended assessment of the primary instrument after
      the baseline one (a post-baseline assessment; the available-case set for the primary
      outcome, White et al. 2011 BMJ 342:d40). Not a per-protocol population: adherence to
      treatment is not known from assessments alone.

    Treatment sessions are not needed: trials often record only scheduled assessments
    (session 0, then weeks 8, 16, ...), where ``started`` and ``finished_course`` say little.
    """
    instrument = config.primary_instrument
    index = pd.Index(patients["patient_id"], name="patient_id")
    if instrument in sessions.columns:
        scored = sessions.loc[(sessions["attendance"] == "attended")
                              & sessions[instrument].notna(), ["patient_id", "session_number"]]
        if config.baseline_rule == "first_treatment":
            scored = scored[scored["session_number"] >= 1]
        counts = scored.groupby("patient_id").size().reindex(index, fill_value=0)
    else:
        counts = pd.Series(0, index=index)
    return pd.DataFrame({"randomised": True, "assessed": counts.to_numpy() >= 2}, index=index)


def population_notes(patient_outcomes: pd.DataFrame, config: StudyConfig) -> list[str]:
    """Plain-language notes on the populations: assessment-only data, trial sizes."""
    if len(patient_outcomes) == 0:
        return []
    if config.populations.definition == "trial":
        return [f"trial populations: {len(patient_outcomes)} randomised (intention to treat, "
                f"the main population), {int(patient_outcomes['assessed'].sum())} assessed "
                f"after baseline on {config.primary_instrument}"]
    remedy = ("; if this is a trial that records assessments rather than treatment sessions, "
              "set populations.definition: trial (intention to treat: every randomised "
              "patient)")
    if not patient_outcomes["started"].any():
        return ["no patient attended a treatment session (session_number >= 1): every "
                "population (started, finished_course, completers) is empty and so is every "
                "rate" + remedy]
    if not patient_outcomes["finished_course"].any():
        return ["no patient finished a course (treatment ended with >= "
                f"{config.populations.finished_course_min_sessions} attended treatment "
                "sessions): the main rates (finished_course) are empty" + remedy]
    return []


def baseline_and_endpoint(
    patients: pd.DataFrame, sessions: pd.DataFrame, instrument: str, config: StudyConfig
) -> pd.DataFrame:
    """Baseline and endpoint scores of one instrument per patient (see module docstring)."""
    index = pd.Index(patients["patient_id"], name="patient_id")
    if instrument not in sessions.columns:
        return pd.DataFrame({"baseline": np.nan, "endpoint": np.nan}, index=index)
    scored = sessions.loc[
        (sessions["attendance"] == "attended") & sessions[instrument].notna(),
        ["patient_id", "session_number", "session_date", instrument],
    ].sort_values(["patient_id", "session_number"])
    if config.baseline_rule == "first_treatment":
        scored = scored[scored["session_number"] >= 1]
    first = scored.groupby("patient_id").first()
    baseline_number = scored["patient_id"].map(first["session_number"])
    later = scored[(scored["session_number"] > baseline_number) & (scored["session_number"] >= 1)]
    if config.endpoint.rule == "week":
        end = _score_near_week(later, patients, instrument, config)
    else:
        end = later.groupby("patient_id")[instrument].last()
    return pd.DataFrame(
        {
            "baseline": first[instrument].reindex(index).astype(float),
            "endpoint": end.reindex(index).astype(float),
        }
    )


def _score_near_week(
    later: pd.DataFrame, patients: pd.DataFrame, instrument: str, config: StudyConfig
) -> pd.Series:
    """The score nearest the target week (ties: the earlier session) within the window."""
    start = later["patient_id"].map(patients.set_index("patient_id")["start_date"])
    weeks = (later["session_date"] - start).dt.days / 7
    distance = (weeks - float(config.endpoint.week or 0)).abs()
    near = later.assign(distance=distance)[distance <= config.endpoint.window_weeks]
    near = near.sort_values(["patient_id", "distance", "session_number"])
    return near.groupby("patient_id")[instrument].first()


def _known(condition: pd.Series, known: pd.Series) -> pd.Series:
    """A nullable boolean: ``condition`` where ``known``, missing elsewhere."""
    values = pd.Series(condition.to_numpy(dtype=bool), index=condition.index, dtype="boolean")
    return values.mask(~known.to_numpy(dtype=bool))


def _unknown(index: pd.Index) -> pd.Series:
    """An all-missing nullable boolean: the outcome is not defined by the config."""
    return pd.Series(pd.NA, index=index, dtype="boolean")


def jt_cutoff(rules: InstrumentRules) -> float | None:
    """The Jacobson-Truax cut-off in force (see module docstring), or None."""
    if rules.jt_cutoff == "caseness":
        return rules.caseness
    m_c, s_c, m_f, s_f = (rules.clinical_mean, rules.clinical_sd, rules.functional_mean,
                          rules.functional_sd)
    toward_health = -1 if rules.lower_is_better else 1
    if rules.jt_cutoff == "a" and m_c is not None and s_c is not None:
        return m_c + toward_health * 2 * s_c
    if rules.jt_cutoff == "b" and m_f is not None and s_f is not None:
        return m_f - toward_health * 2 * s_f
    if rules.jt_cutoff == "c" and None not in (m_c, s_c, m_f, s_f):
        return (s_c * m_f + s_f * m_c) / (s_c + s_f)  # type: ignore[operator]
    return None


def clinical(scores: pd.Series, threshold: float, rules: InstrumentRules) -> pd.Series:
    """Scores on the clinical side of ``threshold``: >= for lower-is-better scales, <= for
    higher-is-better ones (missing scores give False)."""
    return scores >= threshold if rules.lower_is_better else scores <= threshold


def reliable_change_index(change: pd.Series, rules: InstrumentRules) -> pd.Series:
    """Jacobson-Truax RCI = change / S_diff, S_diff = sqrt(2 SE^2), SE = SD sqrt(1 - r)."""
    if rules.reliability is None or rules.sd_pre is None:
        return pd.Series(np.nan, index=change.index)
    s_diff = math.sqrt(2 * (rules.sd_pre * math.sqrt(1 - rules.reliability)) ** 2)
    return change / s_diff


def _reliable(change: pd.Series, rules: InstrumentRules) -> tuple[pd.Series, pd.Series]:
    """(reliable improvement, reliable deterioration) as nullable booleans; ``change`` is
    endpoint - baseline, turned round for higher-is-better scales."""
    known = change.notna()
    gain = -change if rules.lower_is_better else change
    if rules.reliable_change is not None:
        improved = gain >= rules.reliable_change - EPSILON
        worse = gain <= -rules.reliable_change + EPSILON
    elif rules.reliability is not None and rules.sd_pre is not None:
        rci = reliable_change_index(gain, rules)
        improved, worse = rci > RCI_CRITICAL, rci < -RCI_CRITICAL
    else:
        known = pd.Series(False, index=change.index)
        improved = worse = pd.Series(False, index=change.index)
    return _known(improved, known), _known(worse, known)


def instrument_outcomes(scores: pd.DataFrame, rules: InstrumentRules) -> pd.DataFrame:
    """Change, response, remission, reliable change and JT class from baseline/endpoint."""
    base, end = scores["baseline"], scores["endpoint"]
    paired = base.notna() & end.notna()
    change = end - base
    out = pd.DataFrame(index=scores.index)
    out["baseline"], out["endpoint"], out["change"] = base, end, change
    out["pct_change"] = 100 * change / base.where(base > 0)
    if rules.defines("response") and rules.response_reduction is not None:
        out["response"] = _known(-change >= rules.response_reduction * base - EPSILON,
                                 paired & (base > 0))
    else:
        out["response"] = _unknown(scores.index)
    if rules.defines("remission") and rules.remission_below is not None:
        out["remission"] = _known(end < rules.remission_below, paired)
    elif rules.defines("remission") and rules.remission_at_most is not None:
        out["remission"] = _known(end <= rules.remission_at_most, paired)
    else:
        out["remission"] = _unknown(scores.index)
    improved, worse = _reliable(change, rules)
    out["reliable_improvement"], out["reliable_deterioration"] = improved, worse
    out["jt_class"] = _jt_class(base, end, improved, worse, rules)
    return out


def _jt_class(base: pd.Series, end: pd.Series, improved: pd.Series, worse: pd.Series,
              rules: InstrumentRules) -> pd.Series:
    known = improved.notna()
    cutoff = jt_cutoff(rules)
    recovered = pd.Series(False, index=base.index)
    if cutoff is not None:
        crossed = clinical(base, cutoff, rules) & ~clinical(end, cutoff, rules)
        recovered = improved.fillna(False).astype(bool) & crossed.astype(bool)
    labels = np.select(
        [worse.fillna(False).to_numpy(bool), recovered.to_numpy(bool),
         improved.fillna(False).to_numpy(bool)],
        ["deteriorated", "recovered", "improved"],
        default="unchanged",
    )
    return pd.Series(labels, index=base.index, dtype=object).where(known, None)


def paired_outcomes(per_instrument: dict[str, pd.DataFrame], config: StudyConfig,
                    index: pd.Index | None = None) -> pd.DataFrame:
    """NHS Talking Therapies paired measures from the two paired instruments.

    caseness_at_start: either baseline at caseness (missing when neither is at caseness and
    one is unknown); recovery: at caseness at start and below caseness on both at the end
    (missing for patients not at caseness at start); reliable improvement: reliable
    improvement on either with reliable deterioration on neither (both must be paired);
    reliable deterioration: on either; reliable recovery: recovery and reliable improvement.

    A measure is missing for everyone when the paired instruments are not both in
    ``per_instrument`` (not in the data) or their rules do not define it (recovery needs
    caseness on both, reliable improvement a reliable change on both).
    """
    first, second = config.paired_instruments
    if index is None:
        index = next(iter(per_instrument.values())).index
    out = pd.DataFrame({name: _unknown(index) for name in PAIRED}, index=index)
    if first not in per_instrument or second not in per_instrument:
        return out
    a, b = per_instrument[first], per_instrument[second]
    ra, rb = config.rules(first), config.rules(second)
    defined = config.paired_outcomes_defined()
    if ra.caseness is not None and rb.caseness is not None:
        case_a = _known(clinical(a["baseline"], ra.caseness, ra), a["baseline"].notna())
        case_b = _known(clinical(b["baseline"], rb.caseness, rb), b["baseline"].notna())
        out["caseness_at_start"] = case_a | case_b
    both_paired = a["change"].notna() & b["change"].notna()
    if "reliable_improvement" in defined:
        deteriorated = a["reliable_deterioration"] | b["reliable_deterioration"]
        improved_any = a["reliable_improvement"] | b["reliable_improvement"]
        improvement = improved_any.fillna(False) & ~deteriorated.fillna(True)
        out["reliable_improvement"] = _known(improvement, both_paired)
        out["reliable_deterioration"] = deteriorated
    if "recovery" not in defined or ra.caseness is None or rb.caseness is None:
        return out
    below_both = ~clinical(a["endpoint"], ra.caseness, ra) & \
        ~clinical(b["endpoint"], rb.caseness, rb)
    at_caseness = out["caseness_at_start"].fillna(False).astype(bool)
    out["recovery"] = _known(below_both, at_caseness & both_paired)
    if "reliable_recovery" not in defined:
        return out
    out["reliable_recovery"] = out["recovery"] & out["reliable_improvement"]
    out["reliable_recovery"] = out["reliable_recovery"].mask(out["recovery"].isna())
    return out


PATIENT_COLUMNS = ("patient_id", "site_id", "therapist_id", "group_id", "condition", "format",
                   "problem_area", "secondary_problem_area", "end_reason", "age", "sex",
                   "maintenance", "arm")


def derive(patients: pd.DataFrame, sessions: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """One row per patient: attributes, attendance, populations and outcomes.

    Parameters
    ----------
    patients, sessions : pandas.DataFrame
        Validated tables (``pipeline.ingest.validate``).
    config : StudyConfig
        The definitions in force.

    Returns
    -------
    pandas.DataFrame
        The ``patient_outcomes`` table (contract: ``data_schemas.outcomes``), in the order of
        ``patients``.
    """
    # Patients are grouped by their position in ``patients`` (one hash pass over the ids)
    # rather than by the id text: grouping and sorting text ids is what made this stage
    # grow faster than linearly at registry scale. The ids are put back at the end.
    # The sessions are rebuilt once with only the columns used and attendance as a
    # categorical (each comparison with a text code was a pass over Python strings).
    ids = pd.Index(patients["patient_id"], name="patient_id")
    by_position = patients.assign(patient_id=np.arange(len(ids)))
    instruments = config.instruments_in(sessions.columns)
    used = {name: sessions[name] for name in ("session_number", "session_date", *instruments)
            if name in sessions.columns}
    sessions = pd.DataFrame({"patient_id": ids.get_indexer(sessions["patient_id"]),
                             "attendance": sessions["attendance"].astype("category"), **used},
                            index=sessions.index)
    visits = attendance(by_position, sessions)
    flags = populations(by_position, visits, config)
    if config.populations.definition == "trial":
        flags = pd.concat([trial_populations(by_position, sessions, config), flags], axis=1)
    per_instrument = {
        name: instrument_outcomes(
            baseline_and_endpoint(by_position, sessions, name, config), config.rules(name)
        )
        for name in instruments
    }
    columns = [c for c in PATIENT_COLUMNS if c in patients.columns]
    table = by_position[columns].set_index("patient_id")
    counts = ["sessions_scheduled", "sessions_attended", "sessions_did_not_attend",
              "attendance_rate"]
    parts = [table, visits[counts], flags]
    for name, values in per_instrument.items():
        parts.append(values.set_axis(instrument_columns(name), axis=1))
    parts.append(paired_outcomes(per_instrument, config, flags.index))
    derived = pd.concat(parts, axis=1)
    return derived.set_axis(ids[derived.index.to_numpy()], axis=0).reset_index()
