"""Score columns of the contract, generated from the instruments in force.

The sessions and follow-ups models (``data_schemas.sessions``, ``data_schemas.followups``)
hold the fixed columns; the score columns come from the instrument catalogue
(``data_schemas.instruments``) plus any instrument a study config declares. Each becomes
an optional, nullable number column checked against the instrument's range and, when the
instrument is scored in whole numbers, a whole-number rule. Only the instruments whose
column is in the file are added (a registry of millions of sessions does not carry twenty
empty columns).

The generated rules are named and worded here so that the validator's failure report and
the data dictionary say the same thing as for the model's own rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import pandas as pd
import pandera.pandas as pa

from data_schemas.instruments import Instrument
from data_schemas.vocab import ATTENDANCE

#: Generated rule name -> its wording (the model rules' wording is their docstring).
RULE_TEXTS: Final[dict[str, str]] = {
    "whole_score": "This score must be a whole number.",
    "no_score_on_missed_session": "A session that was not attended cannot carry a score.",
}
MISSED: Final = tuple(a for a in ATTENDANCE if a != "attended")


def _whole(values: pd.Series) -> pd.Series:
    return values.isna() | (values == values.round())


def score_column(instrument: Instrument) -> pa.Column:
    """The optional, nullable column of one instrument with its range (and whole) checks."""
    checks = [pa.Check.ge(instrument.min), pa.Check.le(instrument.max)]
    if instrument.whole:
        checks.append(pa.Check(_whole, name="whole_score"))
    kind = "whole number" if instrument.whole else "number"
    better = "lower" if instrument.lower_is_better else "higher"
    return pa.Column(
        float, checks, nullable=True, required=False, name=instrument.name,
        description=f"{instrument.label} total, {instrument.range_text()}, {kind}; "
                    f"{better} is better.",
    )


def score_columns(instruments: Iterable[Instrument]) -> dict[str, pa.Column]:
    """Score columns keyed by name, in the order given."""
    return {instrument.name: score_column(instrument) for instrument in instruments}


def no_score_on_missed_session(names: Iterable[str]) -> pa.Check:
    """The whole-row rule that a session not attended carries no score, on every score
    column in ``names`` (those missing from a frame are skipped)."""
    columns = tuple(names)

    def rule(frame: pd.DataFrame) -> pd.Series:
        present = [c for c in columns if c in frame.columns]
        if not present:
            return pd.Series(True, index=frame.index)
        any_score = frame[present].notna().any(axis=1)
        missed = frame["attendance"].isin(MISSED)
        return ~(any_score & missed)

    return pa.Check(rule, name="no_score_on_missed_session")


def with_scores(schema: pa.DataFrameSchema, instruments: Iterable[Instrument],
                session_rule: bool) -> pa.DataFrameSchema:
    """``schema`` with the instruments' score columns (and, for sessions, the
    missed-session rule over them)."""
    columns = score_columns(instruments)
    extended = schema.add_columns(columns)
    if session_rule:  # add_columns returned a copy, so its check list is ours to extend
        extended.checks = [*extended.checks, no_score_on_missed_session(columns)]
    return extended


__all__ = ["RULE_TEXTS", "no_score_on_missed_session", "score_column", "score_columns",
           "with_scores"]
