"""The ``patient_outcomes`` table as one columnar query (Ibis), for any Ibis backend.

The same table as :func:`pipeline.outcomes.definitions.derive` (contract
``data_schemas.outcomes``), built as an Ibis expression so that it runs out of core in
DuckDB (embedded) or on a Spark cluster, never holding the session rows in Python. The
rules and their sources are those of :mod:`pipeline.outcomes.definitions`; every
threshold is read from the same ``StudyConfig``. What differs is only how the per-patient
steps are expressed:

- "first and last scored session" are ``arg_min``/``arg_max`` of the score by session
  number (``min_by``/``max_by`` in SQL), one aggregation over the attended sessions for
  every instrument at once;
- the longest gap between attended sessions is a ``lag`` window over each patient's
  attended sessions ordered by date;
- three-valued outcomes are SQL's NULL with Kleene ``AND``/``OR``, which is what the
  pandas nullable booleans do.

The ``week`` endpoint rule (score nearest a target week) is not expressed here: a config
that asks for it is refused with :class:`ColumnarUnsupportedError`, and the in-memory route
(``ipt-outcomes run``) computes it.

The output is ordered by ``patient_id`` (reproducible bytes whatever the engine's
partitioning), not in the order of the patients table.
"""

from __future__ import annotations

import math
from typing import Any

import ibis
import ibis.expr.types as ir

from data_schemas.outcomes import PAIRED, PER_INSTRUMENT
from pipeline.config import InstrumentRules, StudyConfig
from pipeline.outcomes.definitions import (
    EPSILON,
    PATIENT_COLUMNS,
    RCI_CRITICAL,
    jt_cutoff,
)

SECONDS_PER_DAY = 86_400
NULL_BOOL = ibis.null().cast("boolean")


class ColumnarUnsupportedError(ValueError):
    """The config asks for a rule that the columnar route does not express."""


def derive(patients: ir.Table, sessions: ir.Table, config: StudyConfig) -> ir.Table:
    """One row per patient: attributes, attendance, populations and outcomes.

    Parameters
    ----------
    patients, sessions : ibis.Table
        Validated tables (the contract of ``data_schemas``; e.g. ``OUT/validated/`` read by
        :func:`pipeline.columnar.engine.read_tables`).
    config : StudyConfig
        The definitions in force.

    Returns
    -------
    ibis.Table
        The ``patient_outcomes`` columns in contract order, ordered by ``patient_id``.
    """
    if config.endpoint.rule != "last":
        raise ColumnarUnsupportedError(
            f"endpoint.rule: {config.endpoint.rule!r} (score nearest a week) is computed by "
            "the in-memory route only (ipt-outcomes run); the columnar route supports 'last'")
    instruments = list(config.instruments_in(sessions.columns))
    visits = _attendance(sessions)
    scores = _baseline_and_endpoint(sessions, instruments, config)
    attributes = [c for c in PATIENT_COLUMNS if c in patients.columns]
    joined = patients.left_join(visits, "patient_id").left_join(scores, "patient_id")
    columns: dict[str, ir.Value] = {name: joined[name] for name in attributes}
    columns.update(_counts(joined))
    columns.update(_populations(joined, config))
    per_instrument: dict[str, dict[str, ir.Value]] = {}
    for name in instruments:
        per_instrument[name] = instrument_outcomes(
            joined[f"{name}__baseline"], joined[f"{name}__endpoint"], config.rules(name))
        columns.update({f"{name}_{key}": value for key, value in per_instrument[name].items()})
    columns.update(paired_outcomes(per_instrument, config))
    return joined.select(**columns).order_by("patient_id")


def _attendance(sessions: ir.Table) -> ir.Table:
    """Per patient: treatment sessions scheduled, attended, missed; last attended number and
    date; the longest gap in weeks between consecutive attended treatment sessions."""
    treatment = sessions.filter(sessions.session_number >= 1)
    attended = treatment.attendance == "attended"
    counts = treatment.group_by("patient_id").aggregate(
        sessions_scheduled=treatment.count(),
        sessions_attended=attended.cast("int64").sum(),
        sessions_did_not_attend=(treatment.attendance == "did_not_attend").cast("int64").sum(),
        last_attended_number=treatment.session_number.max(where=attended),
        last_attended_date=treatment.session_date.max(where=attended),
    )
    visits = treatment.filter(attended)
    seconds = visits.session_date.epoch_seconds()
    window = ibis.window(group_by=visits.patient_id, order_by=visits.session_date)
    steps = visits.select(
        "patient_id",
        gap=((seconds - seconds.lag().over(window)) / SECONDS_PER_DAY).floor() / 7,
    )
    gaps = steps.group_by("patient_id").aggregate(longest_gap_weeks=steps.gap.max())
    return counts.left_join(gaps, "patient_id")


def _counts(joined: ir.Table) -> dict[str, ir.Value]:
    scheduled = joined.sessions_scheduled.fill_null(0)
    attended = joined.sessions_attended.fill_null(0)
    return {
        "sessions_scheduled": scheduled,
        "sessions_attended": attended,
        "sessions_did_not_attend": joined.sessions_did_not_attend.fill_null(0),
        "attendance_rate": ibis.ifelse(scheduled > 0, attended / scheduled,
                                       ibis.null().cast("float64")),
    }


def _populations(joined: ir.Table, config: StudyConfig) -> dict[str, ir.Value]:
    """ended, dropout, started, finished_course, completers (and the trial populations);
    the rules of :func:`pipeline.outcomes.definitions.populations`."""
    rules = config.populations
    attended = joined.sessions_attended.fill_null(0)
    reason = joined.end_reason
    ended = joined.end_date.notnull() & (reason.isnull() | (reason != "ongoing"))
    final_phase = joined.last_attended_number.fill_null(0) >= rules.final_phase_start
    completers = final_phase | (attended >= rules.completer_min_sessions)
    tail_days = ((joined.end_date.epoch_seconds() - joined.last_attended_date.epoch_seconds())
                 / SECONDS_PER_DAY).floor()
    long_gap = (joined.longest_gap_weeks.fill_null(0) > rules.dropout_gap_weeks) | (
        (tail_days / 7).fill_null(0) > rules.dropout_gap_weeks)
    started = attended >= 1
    dropped = (reason == "dropped_out").fill_null(False)
    flags: dict[str, ir.Value] = {}
    if config.populations.definition == "trial":
        flags["randomised"] = ibis.literal(True)
        flags["assessed"] = joined["__assessed"].fill_null(0) >= 2
    flags.update({
        "ended": ended,
        "dropout": started & ended & ~completers & (dropped | long_gap),
        "started": started,
        "finished_course": ended & (attended >= rules.finished_course_min_sessions),
        "completers": completers & started,
    })
    return flags


def _baseline_and_endpoint(sessions: ir.Table, instruments: list[str],
                           config: StudyConfig) -> ir.Table:
    """Per patient and instrument: the baseline (first scored attended session, session 0
    included unless ``baseline_rule: first_treatment``) and the endpoint (last scored
    treatment session after the baseline one); columns ``{instrument}__baseline`` and
    ``{instrument}__endpoint``, and ``__assessed`` (scored sessions of the primary
    instrument)."""
    attended = sessions.filter(sessions.attendance == "attended")
    number = attended.session_number
    aggregates: dict[str, ir.Value] = {}
    for name in instruments:
        scored = attended[name].notnull()
        if config.baseline_rule == "first_treatment":
            scored = scored & (number >= 1)
        aggregates[f"{name}__first_n"] = number.min(where=scored)
        aggregates[f"{name}__last_n"] = number.max(where=scored)
        aggregates[f"{name}__first"] = attended[name].argmin(number, where=scored)
        aggregates[f"{name}__last"] = attended[name].argmax(number, where=scored)
        if name == config.primary_instrument:
            aggregates["__assessed"] = scored.cast("int64").sum()
    if not aggregates:
        return attended.select("patient_id").distinct()
    per_patient = attended.group_by("patient_id").aggregate(**aggregates)
    columns: dict[str, ir.Value] = {"patient_id": per_patient.patient_id}
    for name in instruments:
        first_n, last_n = per_patient[f"{name}__first_n"], per_patient[f"{name}__last_n"]
        columns[f"{name}__baseline"] = per_patient[f"{name}__first"].cast("float64")
        has_end = (last_n > first_n) & (last_n >= 1)
        columns[f"{name}__endpoint"] = ibis.ifelse(
            has_end, per_patient[f"{name}__last"].cast("float64"),
            ibis.null().cast("float64"))
    if "__assessed" in aggregates:
        columns["__assessed"] = per_patient["__assessed"]
    return per_patient.select(**columns)


def _known(condition: ir.BooleanValue, known: ir.BooleanValue) -> ir.BooleanValue:
    """``condition`` (NULL counted as False) where ``known``, NULL elsewhere."""
    return ibis.ifelse(known.fill_null(False), condition.fill_null(False), NULL_BOOL)


def _clinical(scores: ir.NumericValue, threshold: float, rules: InstrumentRules) -> Any:
    """On the clinical side of ``threshold`` (NULL for a missing score)."""
    return scores >= threshold if rules.lower_is_better else scores <= threshold


def instrument_outcomes(base: ir.NumericValue, end: ir.NumericValue,
                        rules: InstrumentRules) -> dict[str, ir.Value]:
    """Change, response, remission, reliable change and JT class: the rules of
    :func:`pipeline.outcomes.definitions.instrument_outcomes`."""
    paired = base.notnull() & end.notnull()
    change = end - base
    out: dict[str, ir.Value] = {
        "baseline": base, "endpoint": end, "change": change,
        "pct_change": ibis.ifelse(base > 0, 100 * change / base, ibis.null().cast("float64")),
        "response": NULL_BOOL, "remission": NULL_BOOL,
    }
    if rules.defines("response") and rules.response_reduction is not None:
        out["response"] = _known(-change >= rules.response_reduction * base - EPSILON,
                                 paired & (base > 0))
    if rules.defines("remission") and rules.remission_below is not None:
        out["remission"] = _known(end < rules.remission_below, paired)
    elif rules.defines("remission") and rules.remission_at_most is not None:
        out["remission"] = _known(end <= rules.remission_at_most, paired)
    gain = -change if rules.lower_is_better else change
    known = change.notnull()
    if rules.reliable_change is not None:
        improved: Any = gain >= rules.reliable_change - EPSILON
        worse: Any = gain <= -rules.reliable_change + EPSILON
    elif rules.reliability is not None and rules.sd_pre is not None:
        s_diff = math.sqrt(2 * (rules.sd_pre * math.sqrt(1 - rules.reliability)) ** 2)
        improved, worse = gain / s_diff > RCI_CRITICAL, gain / s_diff < -RCI_CRITICAL
    else:
        known = ibis.literal(False)
        improved = worse = ibis.literal(False)
    out["reliable_improvement"] = _known(improved, known)
    out["reliable_deterioration"] = _known(worse, known)
    cutoff = jt_cutoff(rules)
    recovered: Any = ibis.literal(False)
    if cutoff is not None:
        crossed = _clinical(base, cutoff, rules).fill_null(False) & ~_clinical(
            end, cutoff, rules).fill_null(False)
        recovered = out["reliable_improvement"].fill_null(False) & crossed
    known_class = out["reliable_improvement"].notnull()
    out["jt_class"] = ibis.ifelse(
        known_class,
        ibis.cases(
            (out["reliable_deterioration"].fill_null(False), "deteriorated"),
            (recovered, "recovered"),
            (out["reliable_improvement"].fill_null(False), "improved"),
            else_="unchanged",
        ),
        ibis.null().cast("string"),
    )
    assert list(out) == list(PER_INSTRUMENT)
    return out


def paired_outcomes(per_instrument: dict[str, dict[str, ir.Value]],
                    config: StudyConfig) -> dict[str, ir.Value]:
    """The NHS Talking Therapies paired measures: the rules of
    :func:`pipeline.outcomes.definitions.paired_outcomes`, with SQL's three-valued logic."""
    out: dict[str, Any] = {name: NULL_BOOL for name in PAIRED}
    first, second = config.paired_instruments
    if first not in per_instrument or second not in per_instrument:
        return out
    a, b = per_instrument[first], per_instrument[second]
    ra, rb = config.rules(first), config.rules(second)
    defined = config.paired_outcomes_defined()
    if ra.caseness is not None and rb.caseness is not None:
        out["caseness_at_start"] = (_clinical(a["baseline"], ra.caseness, ra)
                                    | _clinical(b["baseline"], rb.caseness, rb))
    both_paired = a["change"].notnull() & b["change"].notnull()
    if "reliable_improvement" in defined:
        deteriorated: Any = a["reliable_deterioration"] | b["reliable_deterioration"]
        improved_any: Any = a["reliable_improvement"] | b["reliable_improvement"]
        improvement = improved_any.fill_null(False) & ~deteriorated.fill_null(True)
        out["reliable_improvement"] = _known(improvement, both_paired)
        out["reliable_deterioration"] = deteriorated
    if "recovery" not in defined or ra.caseness is None or rb.caseness is None:
        return out
    below_both = ~_clinical(a["endpoint"], ra.caseness, ra).fill_null(False) & ~_clinical(
        b["endpoint"], rb.caseness, rb).fill_null(False)
    at_caseness = out["caseness_at_start"].fill_null(False)
    out["recovery"] = _known(below_both, at_caseness & both_paired)
    if "reliable_recovery" in defined:
        both = out["recovery"] & out["reliable_improvement"]
        out["reliable_recovery"] = ibis.ifelse(out["recovery"].isnull(), NULL_BOOL, both)
    return out
