r"""Small-number suppression with complementary (secondary) suppression.

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
    number: :math:`\lfloor \max \rfloor - \lceil \min \rceil < 1`.

Algorithm
    A quick pass (:func:`protect_cells` over each relation, repeated until stable) hides the
    next-smallest shown non-zero cell of any relation from which a hidden cell could be
    worked back; then :func:`audit_column` checks every hidden small count against all
    relations at once and hides further cells until none is pinned. Hiding a cell only
    widens the feasible set (its true value satisfies its label's bounds), so a count found
    safe stays safe and each is checked once. This is the audit step of tau-ARGUS
    (Hundepool et al. 2012, chapter 4).

References
----------
Hundepool A, Domingo-Ferrer J, Franconi L, et al. (2012). Statistical Disclosure Control.
Wiley (chapter 4: secondary cell suppression and its audit).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, sparse
from scipy.sparse import csgraph

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

ALL: Final = "all"
SECONDARY: Final = "*"
#: Candidates tried, smallest first, for the one whose hiding alone frees a pinned count.
TRIALS: Final = 4


@dataclass(frozen=True, eq=False)
class Relation:
    """A published additive relation between cells: sum of ``members`` = ``total``."""

    members: IntArray
    total: int


def _flags(mask: npt.ArrayLike | None, size: int) -> BoolArray:
    return np.zeros(size, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)


def _bounds(primary: BoolArray, latent: BoolArray, high: int) -> tuple[FloatArray, FloatArray]:
    """What the reader knows of a hidden cell: ``"<N"`` in [1, high], ``"*"`` in
    [high + 1, inf), a latent cell in [0, inf)."""
    low = np.where(latent, 0.0, np.where(primary, 1.0, high + 1.0))
    top = np.where(primary & ~latent, float(high), np.inf)
    return low, top


def _exposed(values: FloatArray, primary: BoolArray, high: int,
             latent: BoolArray | None = None) -> bool:
    """Whether the total minus the shown cells pins any hidden cell to a single value.

    Cell j can take the values [max(lo_j, S - sum_{i != j} hi_i), min(hi_j, S - sum_{i !=
    j} lo_i)], S being the sum of the hidden cells and [lo, hi] the bounds of
    :func:`_bounds`. Latent cells that are not small need no protection.
    """
    if len(values) == 0:
        return False
    unseen = _flags(latent, len(values))
    low, top = _bounds(primary, unseen, high)
    total = float(values.sum())
    finite = np.where(np.isinf(top), 0.0, top)
    others_infinite = (np.isinf(top).sum() - np.isinf(top)) > 0
    others_top = np.where(others_infinite, np.inf, finite.sum() - finite)
    lowest = np.maximum(low, total - others_top)
    highest = np.minimum(top, total - (low.sum() - low))
    return bool(((highest - lowest < 1) & (~unseen | primary)).any())


def protect_cells(
    values: npt.ArrayLike, hidden: npt.ArrayLike, primary: npt.ArrayLike, high: int,
    latent: npt.ArrayLike | None = None,
) -> tuple[BoolArray, bool]:
    """Secondary suppression within one set of cells whose total is published.

    While the hidden cells could be worked back from the total (:func:`_exposed`; in
    particular whenever exactly one cell is hidden), also hide the smallest shown non-zero
    cell. Returns the new hidden mask and whether protection succeeded (False: no cell
    left to hide, so the caller must hide the total as well).

    Examples
    --------
    >>> mask, ok = protect_cells([3, 12, 40], [True, False, False], [True, False, False], 4)
    >>> mask.tolist(), ok
    ([True, True, False], True)
    """
    cells = np.asarray(values, dtype=float)
    mask = np.asarray(hidden, dtype=bool).copy()
    small = np.asarray(primary, dtype=bool)
    unseen = _flags(latent, len(cells))
    while mask.any() and _exposed(cells[mask], small[mask], high, unseen[mask]):
        candidates = np.flatnonzero(~mask & (cells > 0))
        if len(candidates) == 0:
            return mask, False
        mask[candidates[np.argmin(cells[candidates])]] = True
    return mask, True


def _secondary(values: FloatArray, primary: BoolArray, relations: Sequence[Relation],
               high: int, latent: BoolArray | None = None) -> BoolArray:
    """Quick first pass over every relation, repeated until stable: with its total shown,
    :func:`protect_cells` on its members; with its total hidden, at least one member hidden
    too (else the total is their sum). Latent cells start (and stay) hidden."""
    unseen = _flags(latent, len(values))
    hidden = primary | unseen
    changed = True
    while changed:
        changed = False
        for relation in relations:
            rows = relation.members
            if hidden[relation.total]:
                shown = rows[~hidden[rows] & (values[rows] > 0)]
                mask = hidden[rows].copy()
                if not hidden[rows].any() and len(shown):
                    mask[np.flatnonzero(rows == shown[np.argmin(values[shown])])[0]] = True
            else:
                mask, _ok = protect_cells(values[rows], hidden[rows], primary[rows], high,
                                          unseen[rows])
            if (mask != hidden[rows]).any():
                hidden[rows] = mask
                changed = True
    return hidden


class _Index:
    """The relations as signed terms, with the relations each cell appears in."""

    def __init__(self, relations: Sequence[Relation]) -> None:
        self.terms = [[*((int(m), 1.0) for m in r.members), (int(r.total), -1.0)]
                      for r in relations]
        self.of_cell: dict[int, list[int]] = {}
        for i, terms in enumerate(self.terms):
            for c, _sign in terms:
                self.of_cell.setdefault(c, []).append(i)

    def reach(self, cell: int, hidden: BoolArray) -> list[int]:
        """The relations reachable from ``cell`` through hidden cells: the only ones that
        can bound it (the others share no unknown with it)."""
        reached, frontier, touched = {cell}, [cell], set()
        while frontier:
            current = frontier.pop()
            for i in self.of_cell.get(current, []):
                if i in touched:
                    continue
                touched.add(i)
                for other, _sign in self.terms[i]:
                    if hidden[other] and other not in reached:
                        reached.add(other)
                        frontier.append(other)
        return sorted(touched)


def _end(cell: int, sign: float, values: FloatArray, hidden: BoolArray, primary: BoolArray,
         index: _Index, high: int, latent: BoolArray) -> float:
    """The smallest (``sign`` 1) or largest (-1) value of a hidden cell consistent with
    every relation and the labels (:func:`_bounds`), by linear programming; NaN when
    nothing is (inconsistent relations)."""
    touched = index.reach(cell, hidden)
    unknown = sorted({c for i in touched for c, _s in index.terms[i] if hidden[c]} | {cell})
    position = {c: k for k, c in enumerate(unknown)}
    matrix = np.zeros((len(touched), len(unknown)))
    rhs = np.zeros(len(touched))
    for row, i in enumerate(touched):
        for c, weight in index.terms[i]:
            if hidden[c]:
                matrix[row, position[c]] += weight
            else:
                rhs[row] -= weight * values[c]
    cells = np.array(unknown, dtype=np.intp)
    low, top = _bounds(primary[cells], latent[cells], high)
    bounds = [(float(a), None if math.isinf(b) else float(b))
              for a, b in zip(low, top, strict=True)]
    target = np.zeros(len(unknown))
    target[position[cell]] = sign
    fit = optimize.linprog(target, A_eq=matrix if len(touched) else None,
                           b_eq=rhs if len(touched) else None, bounds=bounds, method="highs")
    if fit.status == 2:
        return float("nan")
    return sign * float(fit.fun) if fit.status == 0 else sign * np.inf


def _pinned(cell: int, values: FloatArray, hidden: BoolArray, primary: BoolArray,
            index: _Index, high: int, latent: BoolArray) -> bool:
    """Whether only one whole number is consistent with what is published:
    :math:`\\lfloor \\max \\rfloor - \\lceil \\min \\rceil < 1`. The true value lies
    between both ends, so the largest value is sought only when the smallest is the true
    one; the end with more room under the label is tried first."""
    truth = float(values[cell])
    low, top = _bounds(primary[[cell]], latent[[cell]], high)
    first = -1.0 if truth - low[0] <= top[0] - truth else 1.0  # the end with room first
    ends = {}
    for sign in (first, -first):
        end = _end(cell, sign, values, hidden, primary, index, high, latent)
        if math.isnan(end):  # inconsistent relations: treat as exposed, to be safe
            return True
        if (sign > 0 and math.ceil(end - 1e-6) < truth) or (
                sign < 0 and math.floor(end + 1e-6) > truth):
            return False
        ends[sign] = end
    return math.floor(ends[-1.0] + 1e-6) - math.ceil(ends[1.0] - 1e-6) < 1


def _candidates(cell: int, values: FloatArray, hidden: BoolArray, index: _Index) -> list[int]:
    """Shown non-zero cells of the relations reachable from ``cell`` through hidden cells,
    smallest first: hiding one of them is what can break a chain of subtractions."""
    shown = {c for i in index.reach(cell, hidden) for c, _s in index.terms[i]
             if not hidden[c] and values[c] > 0}
    return sorted(shown, key=lambda c: (values[c], c))


def audit_column(values: npt.ArrayLike, hidden: npt.ArrayLike, primary: npt.ArrayLike,
                 relations: Sequence[Relation], high: int,
                 latent: npt.ArrayLike | None = None) -> tuple[BoolArray, int]:
    """Hide further cells until no small count is pinned by the relations.

    Each hidden small count is checked by linear programming over all relations at once (so
    that, e.g., a site hidden in one table cannot be rebuilt from its therapists in the
    other). For a pinned one, the smallest candidate (:func:`_candidates`) whose hiding
    frees it is hidden (the smallest candidate if none of the :data:`TRIALS` smallest does
    alone), and the check repeats.
    Hiding only widens the feasible set, so each count is settled once. Returns the hidden
    mask and the number of small counts left pinned (0 unless nothing was left to hide).
    """
    cells = np.asarray(values, dtype=float)
    mask = np.asarray(hidden, dtype=bool).copy()
    small = np.asarray(primary, dtype=bool)
    unseen = _flags(latent, len(cells))
    index = _Index(relations)
    left = 0
    for target in (int(c) for c in np.flatnonzero(mask & small)):
        while _pinned(target, cells, mask, small, index, high, unseen):
            options = _candidates(target, cells, mask, index)
            if not options:
                left += 1
                break
            choice = options[0]
            for option in options[:TRIALS]:
                trial = mask.copy()
                trial[option] = True
                if not _pinned(target, cells, trial, small, index, high, unseen):
                    choice = option
                    break
            mask[choice] = True
    return mask, left


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
           high: int) -> tuple[BoolArray, int]:
    """Primary, quick secondary pass and the joint check of one connected group."""
    primary = (values >= 1) & (values <= high)
    if not primary.any():
        return latent.copy(), 0
    exact = [r for r in relations if values[r.members].sum() == values[r.total]]
    hidden = _secondary(values, primary, exact, high, latent)
    return audit_column(values, hidden, primary, exact, high, latent)


def _hidden_cells(system: _System, high: int) -> tuple[BoolArray, int]:
    """Which cells to hide: equal cells collapsed (:func:`_collapse`), then each connected
    group of quantities solved on its own (:func:`_solve`)."""
    values = np.concatenate(system.values)
    latent = np.concatenate(system.latent)
    if len(values) == 0:
        return latent, 0
    canonical, relations, unseen = _collapse(len(values), system.relations, latent)
    quantities = np.zeros(len(unseen))
    quantities[canonical] = values
    group = _components(len(unseen), relations)
    hidden = unseen.copy()
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
        hidden[cells], left = _solve(quantities[cells], unseen[cells], mapped, high)
        pinned += left
    return hidden[canonical] | latent, pinned


def _blank(column: pd.Series, rows: BoolArray) -> pd.Series:
    if pd.api.types.is_float_dtype(column):
        return column.where(~rows, np.nan)
    return column.astype(object).where(~rows, None)


def _apply(frame: pd.DataFrame, spec: CountTable, system: _System, name: str,
           hidden: BoolArray, high: int) -> pd.DataFrame:
    """Labels ``"<N"`` (hidden small counts) and ``"*"`` (secondary); derived columns
    blanked and ``suppressed`` True in every row with a hidden count or a small
    complement."""
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
        labels = np.where(small, f"<{high + 1}", SECONDARY)
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
    hidden, pinned = _hidden_cells(system, high)
    values = np.concatenate(system.values)
    latent = np.concatenate(system.latent)
    primary = (values >= 1) & (values <= high) & ~latent
    summary = SuppressionSummary(int(primary.sum()), int((hidden & ~primary & ~latent).sum()),
                                 pinned)
    if pinned:
        log.warning("suppression: %d small counts could not be protected", pinned)
    shared = {name: _apply(frame, specs[name], system, name, hidden, high)
              for name, frame in frames.items()}
    for name, frame in tables.items():
        shared[name].index = frame.index
    return shared, summary
