r"""Pooling rare levels of a categorical covariate: one rule for every model.

The rule
--------
A level is *rare* when it is held by fewer than ``min_patients`` patients (each patient
counted once, on the row marked by ``first``) or, when an ``outcome`` is given, when its
patients do not have both outcome values (no events, or no non-events). Rare levels are
pooled into one level, ``other_pooled``. If that pooled level is itself rare by the same
test, it is merged into the reference level. The reference is the first of ``preferred``
that survives, otherwise the commonest surviving level (ties: the larger label). When no
level survives, every row is ``other_pooled`` (a single level: the covariate carries no
information and the caller drops it).

Why
---
A coefficient estimated from a handful of patients is unstable (sparse cells), and a level
whose patients all have, or all lack, the event has an infinite maximum-likelihood log odds
ratio (complete separation; Agresti 2013, *Categorical Data Analysis*, 3rd ed., sec. 6.5;
Albert and Anderson 1984). Logistic models also need enough events per parameter (Peduzzi
et al. 1996, J Clin Epidemiol 49:1373-1379). Pooling keeps every row in the model, and the
notes name every level pooled or merged, so the report can say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["POOLED", "PooledLevels", "pool_rare_levels", "rare_levels"]

POOLED: Final = "other_pooled"


@dataclass(frozen=True, eq=False)
class PooledLevels:
    """The result of :func:`pool_rare_levels`.

    Attributes
    ----------
    values : Series
        The recoded labels (``str``), index and order as the input.
    reference : str or None
        The reference level; None when fewer than two levels are left.
    pooled : tuple of str
        The rare levels pooled into ``other_pooled`` (sorted).
    merged_into : str or None
        The level ``other_pooled`` was merged into when it was itself rare.
    notes : tuple of str
        One note naming the pooled levels, and one when the pooled level was merged.
    """

    values: pd.Series
    reference: str | None
    pooled: tuple[str, ...]
    merged_into: str | None
    notes: tuple[str, ...]


def _patient_rows(index: pd.Index, first: npt.ArrayLike | None) -> npt.NDArray[np.bool_]:
    if first is None:
        return np.ones(len(index), dtype=bool)
    mask = np.asarray(first, dtype=bool)
    if mask.shape != (len(index),):
        raise ValueError("first must mark one entry per row of values")
    return mask


def rare_levels(values: pd.Series, min_patients: int, outcome: pd.Series | None = None,
                first: npt.ArrayLike | None = None) -> list[str]:
    """The rare levels of ``values`` (sorted): fewer than ``min_patients`` patients, or,
    with ``outcome``, not both outcome values among the level's patients.

    Parameters
    ----------
    values : Series
        Text labels, one per row (no missing values).
    min_patients : int
        Smallest number of patients a level keeps its own coefficient with.
    outcome : Series of bool or 0/1, optional
        The model's binary outcome, aligned with ``values``.
    first : array of bool, optional
        Marks each patient's first row (patient-level attributes counted once); every
        row is a patient when omitted.
    """
    rows = _patient_rows(values.index, first)
    labels = values[rows]
    if outcome is None:
        counts = labels.value_counts()
        return sorted(str(level) for level, n in counts.items() if n < min_patients)
    events = pd.Series(np.asarray(outcome, dtype=float)[rows], index=labels.index)
    stats = events.groupby(labels).agg(["size", "sum"])
    rare = (stats["size"] < min_patients) | (stats["sum"] == 0) | (
        stats["sum"] == stats["size"])
    return sorted(str(level) for level in stats.index[rare])


def _reference(values: pd.Series, rows: npt.NDArray[np.bool_],
               preferred: Sequence[str]) -> str | None:
    counts = values[rows].value_counts()
    kept = [str(level) for level in counts.index if level != POOLED]
    if not kept:
        return None
    for level in preferred:
        if level in kept:
            return level
    return max(kept, key=lambda level: (int(counts[level]), level))


def pool_rare_levels(
    values: pd.Series, min_patients: int, *, outcome: pd.Series | None = None,
    first: npt.ArrayLike | None = None, preferred: Sequence[str] = (), name: str = "",
) -> PooledLevels:
    """Pool the rare levels of a categorical covariate (the rule: module docstring).

    Parameters
    ----------
    values : Series
        Text labels, one per row; the caller labels missing values first (e.g.
        ``"missing"``), so that every row keeps a level.
    min_patients : int
        Smallest number of patients a level (and the pooled level) may have.
    outcome : Series, optional
        Binary outcome: a level must also have both values (separation).
    first : array of bool, optional
        Marks each patient's first row; patients are counted once.
    preferred : sequence of str
        Reference levels in order of preference (else the commonest level).
    name : str
        The covariate's name, for the notes.

    Returns
    -------
    PooledLevels
        Recoded values, reference, pooled levels and notes.

    Examples
    --------
    >>> values = pd.Series(["a"] * 5 + ["b"] * 2 + ["c"] * 2)
    >>> pooled = pool_rare_levels(values, 3, name="x")
    >>> sorted(set(pooled.values)), pooled.pooled
    (['a', 'other_pooled'], ('b', 'c'))
    """
    values = values.astype(str)
    rows = _patient_rows(values.index, first)
    pooled = tuple(rare_levels(values, min_patients, outcome, rows))
    notes: list[str] = []
    what = f"fewer than {min_patients} patients" + (
        ", or no events or no non-events" if outcome is not None else "")
    if pooled:
        values = values.where(~values.isin(pooled), POOLED)
        notes.append(f"{name}: levels {', '.join(pooled)} pooled into {POOLED} ({what})")
    reference = _reference(values, rows, preferred)
    merged_into = None
    if pooled and reference is not None and POOLED in rare_levels(
            values, min_patients, outcome, rows):
        values = values.replace(POOLED, reference)
        merged_into = reference
        notes.append(f"{name}: {POOLED} still rare ({what}); merged into reference {reference}")
    if values.nunique() < 2:
        reference = None
    return PooledLevels(values, reference, pooled, merged_into, tuple(notes))
