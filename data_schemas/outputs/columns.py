"""Column builders shared by the output contracts: typed, described columns and checks.

Each builder returns a ``pa.Column`` whose metadata ``kind`` says what the data dictionary
prints as its type (:data:`KINDS`). Suppressed counts (:func:`is_shared_count`) and interval
order (:func:`ordered`) are described in the :mod:`data_schemas.outputs` docstring.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
import pandera.pandas as pa

#: A hidden count: ``<5`` (a count of 1-4; the threshold is configurable) or ``*``
#: (complementary suppression: 5 or more, hidden so that another cannot be worked back).
SUPPRESSION_LABEL: Final = re.compile(r"<\d+|\*")
#: Relative tolerance of the interval-order checks.
TOLERANCE: Final = 1e-9
#: What the dictionary prints as a column's type, by the ``kind`` in its metadata.
KINDS: Final = {
    "text": "text",
    "count": "whole number >= 0",
    "shared_count": "whole number >= 0, `<5` / `*` when suppressed, blank when withheld",
    "integer": "whole number",
    "rate": "proportion in [0, 1]",
    "number": "number",
    "flag": "True / False",
    "p_value": "p-value in [0, 1]",
}


# --------------------------------------------------------------------------------------
# Column helpers
# --------------------------------------------------------------------------------------


def is_shared_count(value: Any) -> bool:
    """A non-negative whole number, or a suppression label (``<5``, ``*``)."""
    if isinstance(value, str):
        text = value.strip()
        return text.isdigit() or SUPPRESSION_LABEL.fullmatch(text) is not None
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | np.integer):
        return int(value) >= 0
    if isinstance(value, float | np.floating):
        return bool(np.isfinite(value)) and float(value) >= 0 and float(value).is_integer()
    return False


def _column(dtype: Any, kind: str, description: str, *, nullable: bool, required: bool,
            checks: Sequence[pa.Check] = (), unique: bool = False,
            name: str | None = None) -> pa.Column:
    regex = name is not None
    return pa.Column(dtype, list(checks), nullable=nullable, required=required and not regex,
                     unique=unique, description=description, metadata={"kind": kind},
                     regex=regex, name=name)


def text(description: str, *, nullable: bool = False, required: bool = True,
         isin: Sequence[str] | None = None, unique: bool = False,
         name: str | None = None) -> pa.Column:
    """A text column (codes, labels, ids); ``isin`` restricts it to a vocabulary."""
    checks = [pa.Check.isin(list(isin))] if isin is not None else []
    return _column(str, "text", description, nullable=nullable, required=required,
                   checks=checks, unique=unique, name=name)


def count(description: str, *, nullable: bool = False, required: bool = True,
          name: str | None = None) -> pa.Column:
    """A whole number >= 0 that is never suppressed."""
    return _column("Int64", "count", description, nullable=nullable, required=required,
                   checks=[pa.Check.ge(0)], name=name)


def integer(description: str, *, nullable: bool = False, required: bool = True) -> pa.Column:
    """A whole number of either sign (a session number, a week)."""
    return _column("Int64", "integer", description, nullable=nullable, required=required)


def shared_count(description: str, *, nullable: bool = True, required: bool = True,
                 name: str | None = None) -> pa.Column:
    """A count of a protected table: a whole number >= 0, ``<5`` / ``*`` when hidden, or
    blank when withheld (where the labels alone would pin a small count:
    ``pipeline.sharing.cell_suppression.withhold_column``)."""
    check = pa.Check(is_shared_count, element_wise=True, name="count_or_suppressed",
                     error="a whole number >= 0, or <5 / * when suppressed")
    return _column(None, "shared_count", description, nullable=nullable, required=required,
                   checks=[check], name=name)


def rate(description: str, *, nullable: bool = True, required: bool = True,
         name: str | None = None) -> pa.Column:
    """A proportion in [0, 1]; blank where undefined or suppressed."""
    return _column(float, "rate", description, nullable=nullable, required=required,
                   checks=[pa.Check.in_range(0.0, 1.0)], name=name)


def number(description: str, *, nullable: bool = True, required: bool = True,
           ge: float | None = None, le: float | None = None,
           name: str | None = None) -> pa.Column:
    """A real number, optionally bounded; blank where not estimable or suppressed."""
    checks = ([pa.Check.ge(ge)] if ge is not None else []) + (
        [pa.Check.le(le)] if le is not None else [])
    return _column(float, "number", description, nullable=nullable, required=required,
                   checks=checks, name=name)


def flag(description: str, *, nullable: bool = False, required: bool = True,
         name: str | None = None) -> pa.Column:
    """A yes/no column written as ``True`` / ``False`` (blank = not known, if nullable)."""
    return _column("boolean", "flag", description, nullable=nullable, required=required,
                   name=name)


def p_value(description: str = "Two-sided p-value of the Wald test of the row's estimate "
                               "(blank when not estimable).") -> pa.Column:
    """A p-value in [0, 1]."""
    return _column(float, "p_value", description, nullable=True, required=True,
                   checks=[pa.Check.in_range(0.0, 1.0)])


def ordered(estimate: str | None, low: str, high: str) -> pa.Check:
    """``low <= estimate <= high`` where present (tolerance :data:`TOLERANCE`).

    Column names may be regular expressions with one group (``ci_low_(\\d+w)``): each
    matching column is paired with the columns of the same group value.
    """
    def check(frame: pd.DataFrame) -> pd.Series:
        ok = pd.Series(True, index=frame.index)
        for est, lo, hi in _triples(frame, estimate, low, high):
            ok &= _within(frame, est, lo, hi)
        return ok

    label = f"{low} <= {estimate} <= {high}" if estimate else f"{low} <= {high}"
    return pa.Check(check, name=f"ordered({label})", error=f"interval out of order: {label}")


def _triples(frame: pd.DataFrame, estimate: str | None, low: str, high: str
             ) -> list[tuple[str | None, str, str]]:
    if re.escape(low) == low:
        present = low in frame.columns and high in frame.columns
        return [(estimate, low, high)] if present else []
    found = []
    for column in frame.columns:
        match = re.fullmatch(low, str(column))
        if match is None:
            continue
        key = match.group(1)
        hi = high.replace("(\\d+w)", key)
        est = estimate.replace("(\\d+w)", key) if estimate else None
        if hi in frame.columns:
            found.append((est, str(column), hi))
    return found


def _numbers(frame: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None or column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _within(frame: pd.DataFrame, estimate: str | None, low: str, high: str) -> pd.Series:
    est, lo, hi = _numbers(frame, estimate), _numbers(frame, low), _numbers(frame, high)
    def le(a: pd.Series, b: pd.Series) -> pd.Series:
        slack = TOLERANCE * np.maximum(1.0, np.maximum(a.abs(), b.abs()))
        return a.isna() | b.isna() | (a <= b + slack)
    return le(lo, est) & le(est, hi) & le(lo, hi)


def schema(name: str, doc: str, columns: dict[str, pa.Column],
           checks: Sequence[pa.Check] = (), *, strict: bool = True) -> pa.DataFrameSchema:
    """An output schema: coerced as described in the module docstring; ``strict`` means
    no column outside the contract (regex columns included)."""
    return pa.DataFrameSchema(columns, checks=list(checks), name=name, description=doc,
                              coerce=True, strict=strict)


# --------------------------------------------------------------------------------------
# Shared column descriptions
# --------------------------------------------------------------------------------------

CONDITION = "Condition code (`data_schemas.vocab.CONDITIONS` or the study's own), or `all` " \
            "for the margin over conditions."
FORMAT = "Treatment format (`individual`, `group`), or `all` for the margin over formats."
SUPPRESSED = "True when a count of this row is hidden (`<5` or `*`) and its rates, " \
             "intervals and means are blanked (`pipeline.sharing`)."
CI_LOW = "Lower bound of the 95% confidence interval of the estimate."
CI_HIGH = "Upper bound of the 95% confidence interval of the estimate."
MODEL = "Name of the mixed model (`growth`, `phases`, `problem_area`, `completers`, " \
        "`pattern_mixture`, or a custom model's `name` from the study config)."
TIME_SCALE = "Time variable of the model: `weeks` since the first treatment session or " \
             "`sessions` (session number), from `trajectories.time_scale`."
STRATUM_VARIABLE = "Variable defining the stratum (`all`, `condition`, `format`, " \
                   "`maintenance`, ...; from `relapse.strata`)."
STRATUM = "Level of the stratum variable (`all` for the whole cohort; `missing` for " \
          "patients with no value)."
UNIT = "The site or therapist id (pseudonymised with `--pseudonymise-therapists`), or " \
       "`all` for the whole service."
LEVEL = "Unit level: `site` or `therapist`."
SLOPE_FORMAT = "Treatment format (`individual`, `group`), or `group - individual` for the " \
               "difference between the formats' slopes."
PATIENT_ID = "Keyed pseudonym of the patient id (HMAC-SHA-256, `p_` + 16 hex digits), or " \
             "the real id with `--keep-ids`."
