"""Normalise raw tables into typed frames, without dropping a row.

What happens to each cell is decided by the column's type in the data contract
(``data_schemas``): identifiers are trimmed; coded categories are trimmed, case-folded,
spaces and hyphens become underscores and common synonyms are mapped (``1:1`` ->
``individual``); numbers, dates and booleans are parsed. A cell that cannot be parsed
becomes missing in the typed frame *and* a parse failure (table, line, column, value,
check, message), so the validator quarantines its row instead of losing the value silently.

Dates must be ISO (``YYYY-MM-DD``) unless the user gives ``date_format``; a date such as
``03/04/2024`` is never guessed, because it could mean 3 April or 4 March.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from data_schemas import TableContract
from data_schemas.vocab import FALSE_WORDS, SYNONYMS, TRUE_WORDS

NA_TOKENS = frozenset({"", "na", "n/a", "null", "nan", "nat"})
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]00:00(:00(\.0+)?)?)?$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FAILURE_COLUMNS = ["table", "line", "column", "value", "check", "message"]


@dataclass
class CleanTable:
    """A table after normalisation.

    Attributes
    ----------
    frame : pandas.DataFrame
        Typed values, index = source line.
    parse_failures : pandas.DataFrame
        Cells that could not be parsed (``FAILURE_COLUMNS``).
    notes : list of str
        What was changed that a user should know (renamed columns, added empty columns).
    """

    frame: pd.DataFrame
    parse_failures: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _failures(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def _on_uniques(series: pd.Series, transform: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply a string transform to the distinct values only, then spread the results back.

    Session tables repeat a handful of codes (and one id per patient) millions of times;
    transforming the distinct values keeps cleaning linear in rows with a tiny constant.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    transformed = transform(pd.Series(uniques, dtype=object)).astype(object)
    done = transformed.where(transformed.notna(), None).to_numpy(dtype=object)
    values = np.empty(len(codes), dtype=object)
    present = codes >= 0
    values[present] = done[codes[present]]
    values[~present] = None
    return pd.Series(values, index=series.index, dtype=object)


def _trim(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text.str.lower().isin(NA_TOKENS) | text.isna())


def _as_text(series: pd.Series) -> pd.Series:
    """Trimmed text with NA tokens turned into missing values."""
    return _on_uniques(series, _trim).astype("string")


def normalise_code(series: pd.Series, column: str) -> pd.Series:
    """Case-fold a coded category and map synonyms onto canonical codes."""
    synonyms = SYNONYMS.get(column, {})

    def canonical(values: pd.Series) -> pd.Series:
        text = _trim(values).str.lower().str.replace(r"[\s\-]+", "_", regex=True)
        return text.map(lambda v: synonyms.get(v, v) if isinstance(v, str) else v)

    return _on_uniques(series, canonical)


def parse_numbers(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse numbers; return the values and a mask of cells that were not numbers."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        values = series.astype("float64")
        return values, pd.Series(False, index=series.index)
    text = _as_text(series)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    return values, text.notna() & values.isna()


def parse_dates(series: pd.Series, date_format: str | None) -> tuple[pd.Series, pd.Series]:
    """Parse dates (ISO, or ``date_format``); return values and a mask of unparsed cells."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        values = pd.to_datetime(series).dt.tz_localize(None).dt.normalize()
        return values.astype("datetime64[ns]"), pd.Series(False, index=series.index)
    text = _as_text(series)
    if date_format is None:
        iso = text.str.match(ISO_DATE).fillna(False).astype(bool)
        iso_text = text.where(iso).str.slice(0, 10)
        values = pd.to_datetime(iso_text, format="%Y-%m-%d", errors="coerce")
    else:
        values = pd.to_datetime(text, format=date_format, errors="coerce")
    values = values.dt.normalize().astype("datetime64[ns]")
    return values, text.notna() & values.isna()


def parse_booleans(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse yes/no, true/false, 1/0; return a nullable boolean series and a failure mask."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("boolean"), pd.Series(False, index=series.index)
    text = _as_text(series).str.lower()
    values = pd.Series(pd.NA, index=series.index, dtype="boolean")
    values[text.isin(TRUE_WORDS).fillna(False).astype(bool)] = True
    values[text.isin(FALSE_WORDS).fillna(False).astype(bool)] = False
    return values, text.notna() & values.isna()


def date_message(value: str, date_format: str | None) -> str:
    """Explain why a date was not accepted, with an example of the fix."""
    if date_format is not None:
        return f"'{value}' does not match the date format {date_format}"
    match = re.match(r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2,4})$", value)
    if match and int(match.group(1)) <= 12 and int(match.group(2)) <= 12:
        return (
            f"'{value}' is not an ISO date (YYYY-MM-DD) and is ambiguous "
            f"(day {match.group(1)} of month {match.group(2)}, or the reverse); "
            "write dates as YYYY-MM-DD or pass --date-format, e.g. --date-format %d/%m/%Y"
        )
    return (
        f"'{value}' is not an ISO date (YYYY-MM-DD); write dates as YYYY-MM-DD "
        "or pass --date-format, e.g. --date-format %d/%m/%Y"
    )


def _kind(column: pa.Column) -> str:
    dtype = str(column.dtype)
    if dtype.startswith("datetime64"):
        return "date"
    if dtype == "boolean":
        return "boolean"
    if dtype.startswith("float") or dtype.startswith("int"):
        return "number"
    has_isin = any(c.name == "isin" for c in column.checks)
    return "code" if has_isin or column.name == "sex" else "text"


def _rename_columns(frame: pd.DataFrame, contract: TableContract) -> tuple[pd.DataFrame, list[str]]:
    """Match contract columns case-insensitively and make extra columns formula-safe names."""
    known = {c.lower(): c for c in contract.schema().columns}
    notes: list[str] = []
    renamed: dict[str, str] = {}
    for column in frame.columns:
        if column in known.values():
            continue
        target = known.get(column.lower())
        if target is None:
            target = re.sub(r"\W+", "_", column.strip().lower()).strip("_") or "column"
            if not IDENTIFIER.match(target):
                target = f"x_{target}"
        if target != column:
            while target in frame.columns or target in renamed.values():
                target = f"{target}_"
            renamed[column] = target
            notes.append(f"column '{column}' renamed to '{target}'")
    return frame.rename(columns=renamed), notes


def _parse_column(
    raw: pd.Series, kind: str, name: str, date_format: str | None
) -> tuple[pd.Series, pd.Series, str, str]:
    """Return (values, failed mask, check name, message template) for one column."""
    failed = pd.Series(False, index=raw.index)
    if kind == "date":
        values, failed = parse_dates(raw, date_format)
        return values, failed, "date_format", "date"
    if kind == "number":
        values, failed = parse_numbers(raw)
        return values, failed, "not_a_number", "'{value}' is not a number"
    if kind == "boolean":
        values, failed = parse_booleans(raw)
        return values, failed, "not_a_boolean", "'{value}' is not yes/no or true/false"
    if kind == "code":
        return normalise_code(raw, name), failed, "", ""
    text = _as_text(raw)
    return text.astype(object).where(text.notna(), None), failed, "", ""


def _covariate(raw: pd.Series) -> pd.Series:
    """An extra column: numeric when every filled cell is a number, trimmed text otherwise."""
    values, failed = parse_numbers(raw)
    if not failed.any():
        return values
    text = _as_text(raw)
    return text.astype(object).where(text.notna(), None)


def normalise(
    frame: pd.DataFrame, contract: TableContract, date_format: str | None = None
) -> CleanTable:
    """Normalise one raw table into the types of its contract; no row is dropped.

    Parameters
    ----------
    frame : pandas.DataFrame
        Raw table (index = source line).
    contract : TableContract
        The table's contract; its column types decide how each cell is parsed.
    date_format : str, optional
        ``strftime`` format of non-ISO dates, e.g. ``%d/%m/%Y``.
    """
    frame, notes = _rename_columns(frame, contract)
    out = pd.DataFrame(index=frame.index)
    failures: list[dict[str, object]] = []
    for name, column in contract.schema().columns.items():
        if name not in frame.columns:
            out[name] = _empty(str(column.dtype), frame.index)
            continue
        values, failed, check, template = _parse_column(
            frame[name], _kind(column), name, date_format
        )
        out[name] = values
        for line, value in frame[name][failed].items():
            text = str(value).strip()
            # a date message already holds the value: formatting it again would read any
            # braces in the value as fields
            message = date_message(text, date_format) if template == "date" \
                else template.format(value=text)
            failures.append(
                {"table": contract.name, "line": line, "column": name, "value": text,
                 "check": check, "message": message}
            )
    for name in frame.columns:
        if name not in out.columns:
            out[name] = _covariate(frame[name])
    return CleanTable(out, _failures(failures), notes)


def _empty(dtype: str, index: pd.Index) -> pd.Series:
    if dtype.startswith("datetime64"):
        return pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")
    if dtype == "boolean":
        return pd.Series(pd.NA, index=index, dtype="boolean")
    if dtype.startswith("float"):
        return pd.Series(np.nan, index=index, dtype="float64")
    return pd.Series(None, index=index, dtype=object)
