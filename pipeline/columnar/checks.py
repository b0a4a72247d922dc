"""The contract's row rules that the columnar derivation relies on, checked on the engine.

The columnar route takes tables that meet the contract (``data_schemas``); the full
validation with its quarantine of each bad row is the in-memory route's (``ipt-outcomes
validate``). A registry extract that breaks a rule the derivation depends on must not give
numbers silently, so before deriving anything the route counts, on the engine, the rows
that break each of these rules (named as in the contract and the validation report):

- ``patients``: ``patient_id`` present (``str_length``) and unique (``unique``);
  ``condition`` and ``format`` present, ``format`` one of the vocabulary (``isin``);
- ``sessions``: ``patient_id`` present and in patients (``patient_exists``);
  ``session_number`` >= 0 (``greater_than_or_equal_to(0)``) and whole (``whole_number``);
  ``session_date`` present (``not_nullable``); ``attendance`` one of the vocabulary
  (``isin``); each score within its instrument's range (``in_range``) and no score on a
  session not attended (``no_score_on_missed_session``); one row per patient and session
  number (``multiple_fields_uniqueness``).

Any count above zero refuses the run (:class:`RegistryRefusedError`) with a message that
names the file, the rule, the number of rows and the first offending row.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from data_schemas.vocab import ATTENDANCE, FORMATS
from pipeline.columnar.engine import RAW_PREFIX
from pipeline.config import StudyConfig


class RegistryRefusedError(ValueError):
    """Rows break a rule the columnar derivation relies on (the message says which)."""


@dataclass(frozen=True)
class Breach:
    """Rows of one table that break one rule."""

    table: str
    rule: str
    rows: int
    example: str


def _count(value: object) -> int:
    """A count from the engine: None or NaN (a sum over no rows) is 0."""
    return 0 if value is None or value != value else int(value)  # type: ignore[call-overload]


def _row_rules(patients: ir.Table, sessions: ir.Table, config: StudyConfig
               ) -> dict[tuple[str, str], ir.BooleanValue]:
    """(table, rule) -> a predicate true on the rows of that table that break it."""
    rules: dict[tuple[str, str], ir.BooleanValue] = {
        ("patients", "str_length(patient_id)"):
            patients.patient_id.isnull() | (patients.patient_id.length() < 1),
        ("patients", "not_nullable(condition)"): patients.condition.isnull(),
        ("patients", "isin(format)"): patients.format.isnull() | ~patients.format.isin(FORMATS),
        ("sessions", "greater_than_or_equal_to(0)"):
            sessions.session_number.isnull() | (sessions.session_number < 0),
        ("sessions", "whole_number"): sessions.session_number.cast("float64")
            != sessions.session_number.cast("float64").floor(),
        ("sessions", "not_nullable(session_date)"): sessions.session_date.isnull(),
        ("sessions", "isin(attendance)"):
            sessions.attendance.isnull() | ~sessions.attendance.isin(ATTENDANCE),
    }
    scored: ir.BooleanValue = ibis.literal(False)
    for name in config.instruments_in(sessions.columns):
        rules_of = config.rules(name)
        score = sessions[name]
        scored = scored | score.notnull()
        low = rules_of.min if rules_of.min is not None else float("-inf")
        high = rules_of.max if rules_of.max is not None else float("inf")
        rules[("sessions", f"in_range({name})")] = score.notnull() & (
            (score < low) | (score > high))
    rules[("sessions", "no_score_on_missed_session")] = scored & (
        sessions.attendance != "attended")
    for table_name, table in (("patients", patients), ("sessions", sessions)):
        for raw in (c for c in table.columns if c.startswith(RAW_PREFIX)):
            name = raw[len(RAW_PREFIX):]
            rules[(table_name, f"dtype({name})")] = table[raw].notnull() & table[name].isnull()
    return {key: rule.fill_null(False) for key, rule in rules.items()}


def breaches(patients: ir.Table, sessions: ir.Table, config: StudyConfig) -> list[Breach]:
    """Every rule of the module docstring broken by at least one row, with an example.

    Two passes over the sessions at most: one aggregation by patient counts every row rule,
    the rows, and the distinct session numbers (duplicates), and only its one row per
    patient is joined to the patients (``patient_exists``); examples are fetched only for
    the rules that were broken.
    """
    rules = _row_rules(patients, sessions, config)
    mine = {rule: p for (t, rule), p in rules.items() if t == "patients"}
    theirs = {rule: p for (t, rule), p in rules.items() if t == "sessions"}
    totals = patients.aggregate(
        __rows=patients.count(), __ids=patients.patient_id.nunique(),
        **{f"r{i}": p.cast("int64").sum() for i, p in enumerate(mine.values())}
    ).to_pandas().iloc[0]
    found = [Breach("patients", rule, _count(totals[f"r{i}"]), _example(patients, p))
             for i, (rule, p) in enumerate(mine.items()) if _count(totals[f"r{i}"])]
    extra = _count(totals["__rows"]) - _count(totals["__ids"])
    if extra:
        found.append(Breach("patients", "unique(patient_id)", extra,
                            _duplicate_example(patients, ["patient_id"])))
    per_patient = sessions.group_by("patient_id").aggregate(
        __rows=sessions.count(), __numbers=sessions.session_number.count(),
        __distinct=sessions.session_number.nunique(),
        **{f"s{i}": p.cast("int64").sum() for i, p in enumerate(theirs.values())})
    known = patients.select(patient_id=patients.patient_id, __known=ibis.literal(True)
                            ).distinct()
    linked = per_patient.left_join(known, "patient_id")
    sums = linked.aggregate(
        __unknown=linked["__rows"].sum(where=linked["__known"].isnull()),
        __duplicates=(linked["__numbers"] - linked["__distinct"]).sum(),
        **{f"s{i}": linked[f"s{i}"].sum() for i in range(len(theirs))}
    ).to_pandas().iloc[0]
    unknown = _count(sums["__unknown"])
    if unknown:
        orphans = sessions.anti_join(patients, "patient_id")
        found.append(Breach("sessions", "patient_exists", unknown,
                            _example(orphans, ibis.literal(True))))
    found += [Breach("sessions", rule, _count(sums[f"s{i}"]), _example(sessions, p))
              for i, (rule, p) in enumerate(theirs.items()) if _count(sums[f"s{i}"])]
    duplicates = _count(sums["__duplicates"])
    if duplicates:
        found.append(Breach("sessions", "multiple_fields_uniqueness", duplicates,
                            _duplicate_example(sessions, ["patient_id", "session_number"])))
    return found


def _example(table: ir.Table, predicate: ir.BooleanValue) -> str:
    columns = [c for c in ("patient_id", "session_number", "session_date", "attendance")
               if c in table.columns]
    first = table.filter(predicate).select(*columns).limit(1).to_pandas()
    return ", ".join(f"{c}={first[c].iloc[0]}" for c in columns) if len(first) else ""


def _duplicate_example(table: ir.Table, keys: list[str]) -> str:
    groups = table.group_by(keys).aggregate(rows=table.count()).filter(lambda t: t.rows > 1)
    first = groups.limit(1).to_pandas()
    return ", ".join(f"{k}={first[k].iloc[0]}" for k in keys) if len(first) else ""


def check(patients: ir.Table, sessions: ir.Table, config: StudyConfig,
          source: str) -> None:
    """Raise :class:`RegistryRefusedError` naming every broken rule (none: return)."""
    found = breaches(patients, sessions, config)
    if not found:
        return
    lines = [f"{source}/{b.table}: {b.rows:,} row(s) break {b.rule} (first: {b.example})"
             for b in found]
    raise RegistryRefusedError(
        "the columnar route needs tables that meet the contract:\n  " + "\n  ".join(lines)
        + "\nrun `ipt-outcomes validate` on the study for the quarantine with reasons, or "
        "fix the extract")
