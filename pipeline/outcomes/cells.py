"""The cells of the outcome tables: names, condition x format margins and their order.

Every table grouped by ``condition`` x ``format`` also has the margins ``"all"`` (all
conditions within a format, all formats within a condition, and everyone); rows are sorted
in vocabulary order with other values alphabetically and ``"all"`` last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pandas as pd

ALL: Final = "all"
PAIRED_INSTRUMENT: Final = "phq9+gad7"
INSTRUMENT_OUTCOMES: Final = ("response", "remission", "reliable_improvement")
PAIRED_OUTCOMES: Final = ("reliable_improvement", "recovery", "reliable_recovery")
DENOMINATORS: Final = ("observed", "itt")
POPULATIONS: Final = ("started", "finished_course", "completers")
RATE_COLUMNS: Final = (
    "population", "instrument", "outcome", "denominator", "condition", "format",
    "n", "events", "rate", "ci_low", "ci_high",
)


# --------------------------------------------------------------------------------------
# Grouping with margins and ordering
# --------------------------------------------------------------------------------------


def with_margins(frame: pd.DataFrame) -> pd.DataFrame:
    """Stack ``frame`` with copies whose condition, format or both are set to ``"all"``."""
    base = frame.astype({"condition": str, "format": str})
    return pd.concat(
        [
            base,
            base.assign(condition=ALL),
            base.assign(format=ALL),
            base.assign(condition=ALL, format=ALL),
        ],
        ignore_index=True,
    )


def _rank(values: pd.Series, vocabulary: Sequence[str]) -> pd.Series:
    """Sort key: vocabulary order first, other values alphabetically, ``"all"`` last."""
    order = {level: i for i, level in enumerate(vocabulary)}
    extras = sorted(set(values) - set(order) - {ALL})
    order.update({level: len(vocabulary) + i for i, level in enumerate(extras)})
    order[ALL] = len(order) + 1
    return values.map(order)


def sort_cells(table: pd.DataFrame, keys: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Sort rows by the given columns, each in its vocabulary order; reset the index."""
    ranks = pd.DataFrame({column: _rank(table[column], vocab) for column, vocab in keys.items()})
    order = ranks.sort_values(list(keys), kind="stable").index
    return table.loc[order].reset_index(drop=True)
