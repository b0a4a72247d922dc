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


def _rules(patients: ir.Table, sessions: ir.Table,
           config: StudyConfig) -> dict[tuple[str, str], tuple[ir.Table, ir.BooleanValue]]:
    """(table, rule) -> (table, a predicate true on the rows that break it)."""
    known = patients.select(patient_id=patients.patient_id, __known=ibis.literal(True))
    linked = sessions.left_join(known, "patient_id")
    rules: dict[tuple[str, str], tuple[ir.Table, ir.BooleanValue]] = {
        ("patients", "str_length(patient_id)"): (
            patients, patients.patient_id.isnull() | (patients.patient_id.length() < 1)),
        ("patients", "not_nullable(condition)"): (patients, patients.condition.isnull()),
        ("patients", "isin(format)"): (
            patients, patients.format.isnull() | ~patients.format.isin(FORMATS)),
        ("sessions", "patient_exists"): (linked, linked["__known"].isnull()),
        ("sessions", "greater_than_or_equal_to(0)"): (
            linked, linked.session_number.isnull() | (linked.session_number < 0)),
        ("sessions", "whole_number"): (
            linked, linked.session_number.cast("float64") != linked.session_number.cast(
                "float64").floor()),
        ("sessions", "not_nullable(session_date)"): (linked, linked.session_date.isnull()),
        ("sessions", "isin(attendance)"): (
            linked, linked.attendance.isnull() | ~linked.attendance.isin(ATTENDANCE)),
    }
    scored = ibis.literal(False)
    for name in config.instruments_in(sessions.columns):
        rules_of = config.rules(name)
        score = linked[name]
        scored = scored | score.notnull()
        low = rules_of.min if rules_of.min is not None else float("-inf")
        high = rules_of.max if rules_of.max is not None else float("inf")
        rules[("sessions", f"in_range({name})")] = (
            linked, score.notnull() & ((score < low) | (score > high)))
    rules[("sessions", "no_score_on_missed_session")] = (
        linked, scored & (linked.attendance != "attended"))
    return rules


def breaches(patients: ir.Table, sessions: ir.Table, config: StudyConfig) -> list[Breach]:
    """Every rule of the module docstring broken by at least one row, with an example."""
    rules = _rules(patients, sessions, config)
    found: list[Breach] = []
    for table_name in ("patients", "sessions"):
        mine = {rule: pair for (t, rule), pair in rules.items() if t == table_name}
        table = next(iter(mine.values()))[0]
        counts = table.aggregate(**{f"r{i}": predicate.fill_null(False).cast("int64").sum()
                                    for i, (_t, predicate) in enumerate(mine.values())})
        row = counts.to_pandas().iloc[0]
        for i, (rule, (_t, predicate)) in enumerate(mine.items()):
            count = int(row[f"r{i}"] or 0)
            if count:
                found.append(Breach(table_name, rule, count,
                                    _example(table, predicate.fill_null(False))))
    found += _duplicates(patients, ["patient_id"], "patients", "unique(patient_id)")
    found += _duplicates(sessions, ["patient_id", "session_number"], "sessions",
                         "multiple_fields_uniqueness")
    return found


def _example(table: ir.Table, predicate: ir.BooleanValue) -> str:
    columns = [c for c in ("patient_id", "session_number", "session_date", "attendance")
               if c in table.columns]
    first = table.filter(predicate).select(*columns).limit(1).to_pandas()
    return ", ".join(f"{c}={first[c].iloc[0]}" for c in columns) if len(first) else ""


def _duplicates(table: ir.Table, keys: list[str], name: str, rule: str) -> list[Breach]:
    groups = table.group_by(keys).aggregate(rows=table.count()).filter(lambda t: t.rows > 1)
    extra = groups.aggregate(extra=(groups.rows - 1).sum()).to_pandas()["extra"].iloc[0]
    if not extra or extra != extra:  # None or NaN: no duplicates
        return []
    first = groups.limit(1).to_pandas()
    example = ", ".join(f"{k}={first[k].iloc[0]}" for k in keys)
    return [Breach(name, rule, int(extra), example)]


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
