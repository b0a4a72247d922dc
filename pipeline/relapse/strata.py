"""The groups of the relapse cohort that the descriptive analyses report on.

The whole cohort (``all``) first, then every level of each stratifying variable present, in
the order of the study vocabulary (``data_schemas.vocab``) and then alphabetically; a missing
value is its own level, ``missing``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

import pandas as pd

from data_schemas.vocab import CONDITIONS, FORMATS, PROBLEM_AREAS

__all__ = ["ALL", "LEVEL_ORDER", "ordered_levels", "strata", "stratum_labels"]

ALL: Final = "all"
LEVEL_ORDER: Final = {"condition": CONDITIONS, "format": FORMATS, "problem_area": PROBLEM_AREAS,
                      "maintenance": ("False", "True")}


def stratum_labels(values: pd.Series) -> pd.Series:
    """Stratum labels as text (missing values become ``"missing"``)."""
    return values.astype(object).where(values.notna(), "missing").astype(str)


def ordered_levels(labels: pd.Series, variable: str) -> list[str]:
    """Levels present: vocabulary order first, others alphabetically."""
    vocabulary = [str(v) for v in LEVEL_ORDER.get(variable, ())]
    present = set(labels)
    return [v for v in vocabulary if v in present] + sorted(present - set(vocabulary))


def strata(
    cohort: pd.DataFrame, variables: Sequence[str]
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """``("all", "all", cohort)`` then every level of every variable present in the cohort."""
    yield ALL, ALL, cohort
    for variable in variables:
        if variable not in cohort:
            continue
        labels = stratum_labels(cohort[variable])
        for level in ordered_levels(labels, variable):
            yield variable, level, cohort.loc[labels == level]
