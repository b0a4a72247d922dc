"""Small-number suppression with complementary (secondary) suppression.

Primary suppression hides every count of 1..high (shown as ``"<N"``, N = high + 1; zero is
not hidden). A hidden count is still disclosed when the other published numbers pin it:
a margin minus the shown cells of its row, a cell repeated in another table, or a
denominator minus a shown numerator. Secondary suppression hides further counts (shown
as :data:`SECONDARY`, ``"*"``) until no hidden small count can be worked back.

Cells and relations
    Every count that is published, or that is implied by published counts (a
    *latent* cell such as the complement ``n - events``, never shown itself), is one cell.
    A :class:`Relation` states ``sum(members) = total``; an equality between two cells that
    stand for the same quantity is the relation with one member.

The reader (attacker) assumed
    Knows every relation, that a ``"<N"`` cell lies in ``[1, high]``, that a ``"*"`` cell
    lies in ``[high + 1, inf)`` (secondary suppression only ever hides shown non-zero
    counts, which are at least ``high + 1``), and that a latent cell is ``>= 0``. A hidden
    small count is *pinned* when the smallest and largest values of it consistent with all
    of that, found by linear programming (scipy ``linprog``, HiGHS), leave only one whole
    number: :math:`\\lfloor \\max \rfloor - \\lceil \\min \rceil < 1`.

Algorithm
    A quick pass (:func:`protect_cells` over each relation, repeated until stable) hides the
    next-smallest shown non-zero cell of any relation from which a hidden cell could be
    worked back; then :func:`audit_column` checks every hidden small count against all
    relations at once and hides further cells until none is pinned. Hiding a cell only
    widens the feasible set (its true value satisfies its label's bounds), so a count found
    safe stays safe and each is checked once. This is the audit step of tau-ARGUS
    (Hundepool et al. 2012, chapter 4).

    The cell-level half (:class:`Relation`, :func:`protect_cells`, :func:`audit_column`) is
    :mod:`pipeline.sharing.cell_suppression`; this module builds the relations of tidy
    tables with ``"all"`` margins and applies the result (:func:`protect_tables`).

References
----------
Hundepool A, Domingo-Ferrer J, Franconi L, et al. (2012). Statistical Disclosure Control.
Wiley (chapter 4: secondary cell suppression and its audit).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from pipeline.sharing.cell_suppression import (
    SECONDARY,
    TRIALS,
    BoolArray,
    FloatArray,
    IntArray,
    Relation,
    audit_column,
    protect_cells,
    withhold_column,
)

# pipeline.audit.review runs the quick pass on its own relations.
from pipeline.sharing.cell_suppression import _secondary as _secondary

__all__ = [
    "ALL",
    "SECONDARY",
    "TRIALS",
    "BoolArray",
    "CountTable",
    "FloatArray",
    "IntArray",
    "Relation",
    "SuppressionSummary",
    "audit_column",
    "margin_relations",
    "protect_cells",
    "protect_tables",
    "withhold_column",
]

log = logging.getLogger(__name__)


ALL: Final = "all"


# --------------------------------------------------------------------------------------
# Tidy tables with "all" margins
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountTable:
    """How one shared table's counts are protected.

    Attributes
    ----------
    denominator : str
        The count of patients in a row (``n``, ``patients``).
    numerator : str or None
        The count of those with the event (``events``, ``dropouts``); its complement
        ``denominator - numerator`` is protected as well (a latent cell).
    derived : tuple of str
        Columns computed from the counts (rates, intervals), blanked in any row with a
        hidden count or a small complement.
    keys : tuple of str
        Columns naming a slice (population, instrument, outcome, denominator).
    margins : tuple of str
        Margin dimensions (condition, format) in which the value ``"all"`` is the sum of
        the other values.
    """

    denominator: str
    numerator: str | None = None
    derived: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    margins: tuple[str, ...] = ()


def margin_relations(frame: pd.DataFrame, keys: Sequence[str], margins: Sequence[str],
                     total: str = ALL) -> list[Relation]:
    """The additive relations between the rows (by position) of a tidy table with margins.

    Within each slice of ``keys``, for each margin dimension ``d`` and each combination of
    the other margin columns, the rows with ``d != total`` sum to the row with ``d ==
    total`` (for condition x format: each row of the grid to its ``all`` cell, each column
    likewise, and so the grand total). Whether a relation holds for a given count column is
    checked by the caller.

    Examples
    --------
    >>> grid = pd.DataFrame({"condition": ["a", "a", "a", "all", "all", "all"],
    ...                      "format": ["i", "g", "all", "i", "g", "all"]})
    >>> [(r.members.tolist(), r.total) for r in margin_relations(grid, [], ["condition"])]
    [([0], 3), ([1], 4), ([2], 5)]
    """
    table = frame.reset_index(drop=True)
    relations: list[Relation] = []
    for dimension in margins:
        others = [*keys, *(m for m in margins if m != dimension)]
        groups = (table.groupby(others, sort=False, dropna=False).indices.values() if others
                  else [np.arange(len(table))])
        for rows in groups:
            is_total = (table[dimension].to_numpy()[rows] == total)
            if is_total.sum() == 1 and (~is_total).any():
                relations.append(Relation(np.asarray(rows[~is_total], dtype=np.intp),
                                          int(rows[is_total][0])))
    return relations


@dataclass
class _System:
    """All cells of the tables protected together: per table and kind (denominator,
    numerator, complement) a block of cells, one per row."""

    values: list[FloatArray] = field(default_factory=list)
    latent: list[BoolArray] = field(default_factory=list)
    slice_of: list[IntArray] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    blocks: dict[tuple[str, str], int] = field(default_factory=dict)
    size: int = 0

    def add(self, name: str, kind: str, values: FloatArray, slices: IntArray,
            latent: bool = False) -> int:
        self.blocks[(name, kind)] = self.size
        self.values.append(values)
        self.latent.append(np.full(len(values), latent))
        self.slice_of.append(slices)
        self.size += len(values)
        return self.blocks[(name, kind)]


def _counts(frame: pd.DataFrame, column: str) -> FloatArray:
    return pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy(dtype=float)


def _slice_ids(frame: pd.DataFrame, keys: Sequence[str], start: int) -> IntArray:
    if not keys:
        return np.full(len(frame), start, dtype=np.intp)
    codes = frame.groupby(list(keys), sort=False, dropna=False).ngroup().to_numpy()
    return np.asarray(codes + start, dtype=np.intp)


def _build(tables: Mapping[str, pd.DataFrame], specs: Mapping[str, CountTable]) -> _System:
    """Cells, slices and the relations within each table (margins, and numerator +
    complement = denominator in each row)."""
    system = _System()
    next_slice = 0
    for name, frame in tables.items():
        spec = specs[name]
        slices = _slice_ids(frame, spec.keys, next_slice)
        next_slice = int(slices.max()) + 1 if len(slices) else next_slice
        margin = margin_relations(frame, spec.keys, spec.margins)
        den = system.add(name, "den", _counts(frame, spec.denominator), slices)
        kinds = [den]
        if spec.numerator is not None:
            num_values = _counts(frame, spec.numerator)
            num = system.add(name, "num", num_values, slices)
            comp = system.add(name, "comp", _counts(frame, spec.denominator) - num_values,
                              slices, latent=True)
            kinds.append(num)
            system.relations.extend(Relation(np.array([num + p, comp + p]), den + p)
                                    for p in range(len(frame)))
        for start in kinds:
            system.relations.extend(Relation(r.members + start, r.total + start)
                                    for r in margin)
    return system


def _labels(tables: Mapping[str, pd.DataFrame],
            specs: Mapping[str, CountTable]) -> list[tuple[str, ...]]:
    """Each cell's place in the margins, over the union of the margin columns (a table
    without a margin column counts as its ``"all"``)."""
    union = list(dict.fromkeys(m for s in specs.values() for m in s.margins))
    labels: list[tuple[str, ...]] = []
    for name, frame in tables.items():
        spec = specs[name]
        rows = [tuple(str(frame[m].iloc[p]) if m in spec.margins else ALL for m in union)
                for p in range(len(frame))]
        labels.extend(rows * (3 if spec.numerator is not None else 1))
    return labels


def _link_repeated(system: _System, labels: Sequence[tuple[str, ...]]) -> list[Relation]:
    """Equalities between slices that repeat the same counts (the same quantity in two
    tables, or in two slices of one table, e.g. events over two denominators): each cell of
    a non-zero block of one slice equals its cell in every slice whose block has the same
    values on the same margin cells (or, for a block with fewer margin cells, on those)."""
    values = np.concatenate(system.values)
    latent = np.concatenate(system.latent)
    slice_of = np.concatenate(system.slice_of)
    blocks: list[dict[tuple[str, ...], int]] = []
    for start, column in zip(system.blocks.values(), system.values, strict=True):
        if len(column) == 0 or latent[start]:
            continue
        owner = slice_of[start:start + len(column)]
        for s in np.unique(owner):
            cells = start + np.flatnonzero(owner == s)
            if values[cells].any():
                blocks.append({labels[int(c)]: int(c) for c in cells})
    groups: dict[tuple[tuple[tuple[str, ...], float], ...], list[dict[tuple[str, ...], int]]]
    groups = {}
    for block in blocks:
        key = tuple(sorted((label, float(values[c])) for label, c in block.items()))
        groups.setdefault(key, []).append(block)
    links: list[Relation] = []
    for members in groups.values():
        for first, second in itertools.pairwise(members):
            links.extend(Relation(np.array([first[k]]), second[k]) for k in first)
    for small in (b for b in blocks if len(b) < max(len(o) for o in blocks)):
        for other in blocks:
            if other is not small and len(other) > len(small) and all(
                    k in other and values[other[k]] == values[c] for k, c in small.items()):
                links.extend(Relation(np.array([c]), other[k]) for k, c in small.items())
    return links


def _components(size: int, relations: Sequence[Relation]) -> IntArray:
    """Connected groups of cells: two cells are connected when a relation holds both."""
    rows = [np.full(len(r.members), r.total, dtype=np.intp) for r in relations]
    cols = [r.members for r in relations]
    edges = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
    ends = np.concatenate(cols) if cols else np.zeros(0, dtype=np.intp)
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges, ends)), shape=(size, size))
    return np.asarray(csgraph.connected_components(graph, directed=False)[1], dtype=np.intp)


def _collapse(size: int, relations: Sequence[Relation],
              latent: BoolArray) -> tuple[IntArray, list[Relation], BoolArray]:
    """Cells that stand for one quantity (tied by an equality, a relation with one member)
    become one cell: the canonical index of every cell, the other relations over canonical
    cells without repeats, and which canonical cells are latent (only when all of their
    cells are: a quantity shown anywhere is shown)."""
    equalities = [r for r in relations if len(r.members) == 1]
    same = _components(size, equalities)
    _first, canonical = np.unique(same, return_inverse=True)
    canonical = np.asarray(canonical, dtype=np.intp)
    count = int(canonical.max()) + 1 if size else 0
    shown = np.zeros(count, dtype=bool)
    np.logical_or.at(shown, canonical, ~latent)
    seen: set[tuple[tuple[int, ...], int]] = set()
    mapped: list[Relation] = []
    for relation in relations:
        members = tuple(sorted(int(m) for m in canonical[relation.members]))
        key = (members, int(canonical[relation.total]))
        if len(relation.members) == 1 or key in seen:
            continue
        seen.add(key)
        mapped.append(Relation(np.array(members, dtype=np.intp), key[1]))
    return canonical, mapped, ~shown


@dataclass(frozen=True)
class SuppressionSummary:
    """How many counts were hidden: small (primary), complementary (secondary), and small
    counts that could not be protected (nothing left to hide)."""

    primary: int = 0
    secondary: int = 0
    pinned: int = 0


def _solve(values: FloatArray, latent: BoolArray, relations: Sequence[Relation],
           high: int) -> tuple[BoolArray, BoolArray, int]:
    """Primary, quick secondary pass and the joint check of one connected group (with
    withholding as the last resort, :func:`withhold_column`)."""
    primary = (values >= 1) & (values <= high)
    if not primary.any():
        return latent.copy(), np.zeros(len(values), dtype=bool), 0
    exact = [r for r in relations if values[r.members].sum() == values[r.total]]
    hidden = _secondary(values, primary, exact, high, latent)
    return withhold_column(values, hidden, primary, exact, high, latent)


def _hidden_cells(system: _System, high: int) -> tuple[BoolArray, BoolArray, int]:
    """Which cells to hide, and which of them to withhold (publish blank): equal cells
    collapsed (:func:`_collapse`), then each connected group of quantities solved on its
    own (:func:`_solve`)."""
    values = np.concatenate(system.values)
    latent = np.concatenate(system.latent)
    if len(values) == 0:
        return latent, np.zeros(0, dtype=bool), 0
    canonical, relations, unseen = _collapse(len(values), system.relations, latent)
    quantities = np.zeros(len(unseen))
    quantities[canonical] = values
    group = _components(len(unseen), relations)
    hidden = unseen.copy()
    withheld = np.zeros(len(unseen), dtype=bool)
    pinned = 0
    by_group: dict[int, list[Relation]] = {}
    for relation in relations:
        by_group.setdefault(int(group[relation.total]), []).append(relation)
    local = np.zeros(len(unseen), dtype=np.intp)
    for g in np.unique(group):
        cells = np.flatnonzero(group == g)
        local[cells] = np.arange(len(cells))
        mapped = [Relation(local[r.members], int(local[r.total]))
                  for r in by_group.get(int(g), [])]
        hidden[cells], withheld[cells], left = _solve(quantities[cells], unseen[cells],
                                                      mapped, high)
        pinned += left
    return hidden[canonical] | latent, withheld[canonical] & ~latent, pinned


def _blank(column: pd.Series, rows: BoolArray) -> pd.Series:
    if pd.api.types.is_float_dtype(column):
        return column.where(~rows, np.nan)
    return column.astype(object).where(~rows, None)


def _apply(frame: pd.DataFrame, spec: CountTable, system: _System, name: str,
           hidden: BoolArray, high: int, withheld: BoolArray) -> pd.DataFrame:
    """Labels ``"<N"`` (hidden small counts) and ``"*"`` (secondary), blank for withheld
    counts (any count >= 0: :func:`withhold_column`); derived columns blanked and
    ``suppressed`` True in every row with a hidden count or a small complement."""
    shared = frame.copy()
    size = len(frame)
    rows = np.zeros(size, dtype=bool)
    for kind, column in (("den", spec.denominator), ("num", spec.numerator)):
        if column is None:
            continue
        start = system.blocks[(name, kind)]
        values = _counts(frame, column)
        mask = hidden[start:start + size]
        small = (values >= 1) & (values <= high)
        labels = np.where(small, f"<{high + 1}", SECONDARY).astype(object)
        labels[withheld[start:start + size]] = None
        shared[column] = frame[column].astype(object).where(~mask, pd.Series(labels,
                                                                              frame.index))
        rows |= mask
    if spec.numerator is not None:
        start = system.blocks[(name, "comp")]
        complement = np.concatenate(system.values)[start:start + size]
        rows |= (complement >= 1) & (complement <= high)
    for column in (c for c in spec.derived if c in shared):
        shared[column] = _blank(shared[column], rows)
    shared["suppressed"] = rows
    return shared


def protect_tables(tables: Mapping[str, pd.DataFrame], specs: Mapping[str, CountTable],
                   high: int) -> tuple[dict[str, pd.DataFrame], SuppressionSummary]:
    """Primary and secondary suppression of tables protected together.

    The relations are those of each table's margins (:func:`margin_relations`, used for a
    count column only where they hold exactly), numerator + complement = denominator in
    every row, and equalities between slices that repeat the same counts
    (:func:`_link_repeated`); connected groups of slices are solved separately.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        The unsuppressed tables; not modified.
    specs : mapping of str to CountTable
        How each table's counts are protected (one entry per table).
    high : int
        Counts of 1..high are small (``suppress_below - 1``).

    Returns
    -------
    dict of str to DataFrame, SuppressionSummary
        Copies with hidden counts labelled ``"<N"`` or ``"*"``, derived columns blanked and
        a boolean column ``suppressed``; and the numbers of hidden counts.
    """
    frames = {name: frame.reset_index(drop=True) for name, frame in tables.items()}
    if not frames:
        return {}, SuppressionSummary()
    system = _build(frames, specs)
    system.relations.extend(_link_repeated(system, _labels(frames, specs)))
    hidden, withheld, pinned = _hidden_cells(system, high)
    values = np.concatenate(system.values)
    latent = np.concatenate(system.latent)
    primary = (values >= 1) & (values <= high) & ~latent
    summary = SuppressionSummary(int(primary.sum()), int((hidden & ~primary & ~latent).sum()),
                                 pinned)
    if pinned:
        log.warning("suppression: %d small counts could not be protected", pinned)
    if withheld.any():
        log.info("suppression: %d counts withheld (published blank): the labels alone "
                 "would pin a small count", int(withheld.sum()))
    shared = {name: _apply(frame, specs[name], system, name, hidden, high, withheld)
              for name, frame in frames.items()}
    for name, frame in tables.items():
        shared[name].index = frame.index
    return shared, summary
