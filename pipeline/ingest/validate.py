"""Validate a study against the data contract: every fault named, every row accounted for.

Steps, for each table in order (patients, sessions, follow-ups):

1. the cleaner's parse failures (cells that are not numbers, dates, booleans);
2. the table's pandera model, validated lazily so that every failure is collected;
3. the cross-table rules, by attaching the patient's dates (``ctx_`` columns) and
   validating the table's in-context model;
4. the cascade: a rejected patient takes its sessions and follow-ups with it.

A row with any failure is quarantined, unchanged, with the reasons; the others are valid.
For every table ``rows_in == rows_valid + rows_quarantined``.

The contract is the study's (``data_schemas.build_contracts``): the score columns are the
instruments of the catalogue and of the study config whose column is in the file (matched
case-insensitively), with their ranges; the allowed conditions include the config's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa

from data_schemas import CONTRACTS, TableContract, build_contracts
from pipeline.config import StudyConfig
from pipeline.ingest.clean import FAILURE_COLUMNS, CleanTable, normalise
from pipeline.io import InputError, RawTable

TABLE_ORDER = ("patients", "sessions", "followups")
REQUIRED_TABLES = tuple(n for n in TABLE_ORDER if CONTRACTS[n].required)


@dataclass(frozen=True)
class ValidationResult:
    """What validation found.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Valid rows, typed (index = source line).
    quarantine : dict of str to DataFrame
        Rejected rows as read, plus ``line`` and ``reason`` columns.
    failure_cases : DataFrame
        One row per fault: table, line, column, value, check, message.
    summary : dict
        Per table: rows_in, rows_valid, rows_quarantined, blank_lines, notes;
        plus failure counts by check.
    """

    tables: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    failure_cases: pd.DataFrame
    summary: dict[str, Any]

    def quarantined_share(self, table: str) -> float:
        """Share of a table's rows that were quarantined (0 for an empty table)."""
        counts = self.summary["tables"][table]
        return counts["rows_quarantined"] / counts["rows_in"] if counts["rows_in"] else 0.0


def check_required_columns(raw: RawTable, contract: TableContract) -> None:
    """Raise ``InputError`` when a required column is missing (case-insensitive match)."""
    present = {c.strip().lower() for c in raw.frame.columns}
    missing = [c for c in contract.required_columns() if c.lower() not in present]
    if missing:
        raise InputError(
            raw.path,
            f"required column(s) missing: {', '.join(missing)} "
            f"(found: {', '.join(map(str, raw.frame.columns))})",
        )


def _builtin_message(check: str, column: str, value: str) -> str:
    """A readable message for a pandera built-in check."""
    if check.startswith("isin("):
        allowed = check[len("isin(") : -1].replace("'", "")
        return f"'{value}' is not an allowed value; allowed: {allowed.strip('[]')}"
    if check.startswith("greater_than_or_equal_to("):
        return f"{value} is below the minimum {check[len('greater_than_or_equal_to(') : -1]}"
    if check.startswith("less_than_or_equal_to("):
        return f"{value} is above the maximum {check[len('less_than_or_equal_to(') : -1]}"
    if check.startswith("str_length"):
        return f"{column} must not be empty"
    if check == "not_nullable":
        return f"{column} is required but missing"
    if check == "field_uniqueness":
        return f"this {column} appears more than once"  # the value is in its own field
    if check == "multiple_fields_uniqueness":
        return "the same (patient_id, session_number) appears more than once"
    return f"failed {check}"


def short_check_name(check: str) -> str:
    """``isin(['a', 'b'])`` -> ``isin``; the arguments go into the message instead."""
    return check.split("(", 1)[0]


def schema_failures(
    frame: pd.DataFrame, raw: pd.DataFrame, contract: TableContract
) -> pd.DataFrame:
    """Validate ``frame`` lazily with the table's in-context model; readable failure cases."""
    try:
        contract.in_context_schema().validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    table_level = cases[cases["index"].isna()]
    if not table_level.empty:
        raise RuntimeError(
            f"{contract.name}: table-level schema failure the cleaner should have prevented: "
            f"{table_level[['column', 'check']].to_dict('records')}"
        )
    messages = contract.rule_texts()
    scales = {instrument.name: instrument for instrument in contract.scores}
    whole_row = cases["schema_context"] == "DataFrameSchema"
    cases = cases.assign(column=cases["column"].where(~whole_row, None))
    rows = []
    for (check, line, column), _group in cases.groupby(
        ["check", "index", "column"], sort=False, dropna=False
    ):
        name = str(check)
        target = str(column) if isinstance(column, str) else contract.rule_columns.get(name, "")
        value = _raw_value(raw, int(line), target)
        message = messages.get(name) or _builtin_message(name, target, value)
        scale = scales.get(target)
        if scale is not None and name.startswith(("greater_than", "less_than")):
            message = f"{message} ({scale.label} scores range {scale.range_text()})"
        rows.append(
            {"table": contract.name, "line": int(line), "column": target, "value": value,
             "check": short_check_name(name), "message": message}
        )
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def _raw_value(raw: pd.DataFrame, line: int, column: str) -> str:
    if column not in raw.columns or line not in raw.index:
        return ""
    value = raw.loc[[line], column].iloc[0]
    if isinstance(value, str):
        return value
    return "" if pd.isna(raw.loc[[line], column]).iloc[0] else str(value)


def _patient_context(sessions: pd.DataFrame, patients_all: pd.DataFrame) -> pd.DataFrame:
    """Attach each session's patient dates (first row per patient_id) as ``ctx_`` columns."""
    first = patients_all.drop_duplicates("patient_id").set_index("patient_id")
    out = sessions.copy()
    out["ctx_patient_known"] = out["patient_id"].isin(first.index)
    out["ctx_start_date"] = out["patient_id"].map(first["start_date"]).astype("datetime64[ns]")
    out["ctx_end_date"] = out["patient_id"].map(first["end_date"]).astype("datetime64[ns]")
    return out


def _followup_context(
    followups: pd.DataFrame, patients_all: pd.DataFrame, sessions_valid: pd.DataFrame
) -> pd.DataFrame:
    last = sessions_valid.groupby("patient_id")["session_date"].max()
    out = followups.copy()
    out["ctx_patient_known"] = out["patient_id"].isin(set(patients_all["patient_id"].dropna()))
    out["ctx_last_session_date"] = out["patient_id"].map(last).astype("datetime64[ns]")
    return out


def _cascade(
    frame: pd.DataFrame, table: str, rejected: dict[str, str]
) -> pd.DataFrame:
    """Failure rows for records whose patient was rejected (``rejected``: id -> lines)."""
    hit = frame["patient_id"].isin(rejected.keys())
    rows = [
        {"table": table, "line": line, "column": "patient_id", "value": str(pid),
         "check": "patient_quarantined",
         "message": f"its patient was quarantined (patients line {rejected[str(pid)]})"}
        for line, pid in frame.loc[hit, "patient_id"].items()
    ]
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def declared_columns(raw: pd.DataFrame, declared: list[str]) -> pd.DataFrame:
    """The declared columns of a raw table, under their contract names.

    A header matches a declared column when it is equal up to case and surrounding spaces
    (``" Patient_ID "`` is ``patient_id``); the first such header wins. Undeclared columns
    (a name, an NHS number) are left out, so they never reach an output.
    """
    chosen: dict[str, str] = {}
    for header in raw.columns:
        name = str(header).strip().lower()
        for column in declared:
            if name == column.lower() and column not in chosen:
                chosen[column] = header
    ordered = [c for c in declared if c in chosen]
    return raw[[chosen[c] for c in ordered]].set_axis(ordered, axis=1)


def _quarantine(raw: pd.DataFrame, failures: pd.DataFrame, declared: list[str]
                ) -> pd.DataFrame:
    """The rejected rows as read (declared columns only, under their contract names), with
    their line and every reason."""
    raw = declared_columns(raw, declared)
    if failures.empty:
        return raw.iloc[0:0].assign(line=pd.Series(dtype=int), reason=pd.Series(dtype=str))
    reasons = (
        failures.assign(text=failures["check"] + ": " + failures["message"])
        .groupby("line", sort=True)["text"]
        .agg(lambda t: "; ".join(dict.fromkeys(t)))
    )
    rejected = raw.loc[raw.index.isin(reasons.index)].copy()
    rejected.insert(0, "line", rejected.index)
    rejected["reason"] = rejected.index.map(reasons.to_dict())
    return rejected.reset_index(drop=True)


def _not_parse_duplicates(schema: pd.DataFrame, parse: pd.DataFrame) -> pd.DataFrame:
    """Drop 'required but missing' for a cell already reported as unparseable."""
    if schema.empty or parse.empty:
        return schema
    unparsed = set(zip(parse["line"], parse["column"], strict=True))
    keys = pd.Series(list(zip(schema["line"], schema["column"], strict=True)), index=schema.index)
    duplicate = (schema["check"] == "not_nullable") & keys.isin(unparsed)
    return schema.loc[~duplicate]


def _combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    kept = [p for p in parts if not p.empty]
    if not kept:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    return pd.concat(kept, ignore_index=True)


def _table_failures(
    contract: TableContract,
    cleaned: dict[str, CleanTable],
    raw: pd.DataFrame,
    valid: dict[str, pd.DataFrame],
    rejected_patients: dict[str, str],
) -> pd.DataFrame:
    """Every fault of one table: parse failures, schema and cross-table rules, cascade."""
    name = contract.name
    frame = cleaned[name].frame
    context = frame
    if name == "sessions":
        context = _patient_context(frame, cleaned["patients"].frame)
    if name == "followups":
        context = _followup_context(frame, cleaned["patients"].frame, valid["sessions"])
    parse_failures = cleaned[name].parse_failures
    schema = _not_parse_duplicates(schema_failures(context, raw, contract), parse_failures)
    parts = [parse_failures, schema]
    if name != "patients":
        parts.append(_cascade(frame, name, rejected_patients))
    return _combine(parts)


def _rejected_patients(patients: pd.DataFrame, bad_lines: set[int]) -> dict[str, str]:
    """Rejected patient id -> the patients lines it was on."""
    rejected = patients.loc[patients.index.isin(bad_lines), "patient_id"].dropna()
    lines: dict[str, list[int]] = {}
    for line, pid in rejected.items():
        lines.setdefault(str(pid), []).append(int(str(line)))
    return {pid: ", ".join(map(str, sorted(found))) for pid, found in lines.items()}


def study_contracts(
    raw_tables: dict[str, RawTable], config: StudyConfig | None = None
) -> dict[str, TableContract]:
    """The contract of each table: the config's instruments (catalogue plus declared) with
    a column in the file, and the config's conditions (``None``: the defaults)."""
    config = config or StudyConfig()
    contracts = build_contracts(config.catalogue().values(), config.condition_codes())
    return {name: contracts[name].for_columns([str(c) for c in table.frame.columns])
            for name, table in raw_tables.items()}


def run(raw_tables: dict[str, RawTable], date_format: str | None = None,
        config: StudyConfig | None = None) -> ValidationResult:
    """Validate the raw tables of a study; see the module docstring for the steps.

    Parameters
    ----------
    raw_tables : dict of str to RawTable
        The tables as read (``pipeline.io.read_study``).
    date_format : str, optional
        ``strftime`` format of non-ISO dates.
    config : StudyConfig, optional
        The study config: its instruments and conditions extend the contract (``None``:
        the catalogue and the built-in conditions).

    Raises
    ------
    InputError
        When a required column is missing (the table cannot be checked at all).
    """
    contracts = study_contracts(raw_tables, config)
    for name, table in raw_tables.items():
        check_required_columns(table, contracts[name])
    cleaned = {
        name: normalise(table.frame, contracts[name], date_format)
        for name, table in raw_tables.items()
    }
    failures: dict[str, pd.DataFrame] = {}
    valid: dict[str, pd.DataFrame] = {}
    rejected: dict[str, str] = {}
    for name in [n for n in TABLE_ORDER if n in cleaned]:
        failures[name] = _table_failures(contracts[name], cleaned, raw_tables[name].frame,
                                         valid, rejected)
        bad_lines = set(failures[name]["line"])
        frame = cleaned[name].frame
        valid[name] = frame.loc[~frame.index.isin(bad_lines)]
        if name == "patients":
            rejected = _rejected_patients(frame, bad_lines)
    return _result(raw_tables, cleaned, valid, failures)


def _result(
    raw_tables: dict[str, RawTable],
    cleaned: dict[str, CleanTable],
    valid: dict[str, pd.DataFrame],
    failures: dict[str, pd.DataFrame],
) -> ValidationResult:
    quarantine = {n: _quarantine(raw_tables[n].frame, f, list(CONTRACTS[n].schema().columns))
                  for n, f in failures.items()}
    all_failures = _combine(list(failures.values()))
    if not all_failures.empty:
        order = {n: i for i, n in enumerate(TABLE_ORDER)}
        all_failures = (
            all_failures.assign(_t=all_failures["table"].map(order))
            .sort_values(["_t", "line", "column", "check"], kind="stable")
            .drop(columns="_t")
            .reset_index(drop=True)
        )
    tables_summary = {
        name: {
            "file": raw_tables[name].path.name,
            "rows_in": len(raw_tables[name].frame),
            "rows_valid": len(valid[name]),
            "rows_quarantined": len(quarantine[name]),
            "blank_lines_skipped": raw_tables[name].blank_lines,
            "notes": cleaned[name].notes,
        }
        for name in failures
    }
    by_check = (
        all_failures.groupby(["table", "check"]).size().rename("n").reset_index()
        if not all_failures.empty
        else pd.DataFrame(columns=["table", "check", "n"])
    )
    summary = {
        "tables": tables_summary,
        "failures_by_check": [
            {"table": str(t), "check": str(c), "n": int(n)}
            for t, c, n in by_check[["table", "check", "n"]].itertuples(index=False)
        ],
        "n_failures": len(all_failures),
        "period": data_period(valid.get("sessions")),
    }
    return ValidationResult(valid, quarantine, all_failures, summary)


def data_period(sessions: pd.DataFrame | None) -> dict[str, str | None]:
    """The months of the first and last valid session (``YYYY-MM``; a month, not a day,
    so that the period names no patient's visit); None when there is none."""
    dates = (pd.Series(dtype="datetime64[ns]") if sessions is None or sessions.empty
             else pd.to_datetime(sessions["session_date"]).dropna())
    if dates.empty:
        return {"first": None, "last": None}
    return {"first": dates.min().strftime("%Y-%m"), "last": dates.max().strftime("%Y-%m")}
