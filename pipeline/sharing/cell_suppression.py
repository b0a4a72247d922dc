r"""Secondary suppression of one column of cells bound by additive relations.

The cell-level half of :mod:`pipeline.sharing.suppression` (whose docstring states the
reader assumed and the algorithm): :class:`Relation` (``sum(members) = total``), the quick
pass :func:`protect_cells` over one relation, and :func:`audit_column`, which checks every
hidden small count against all relations at once by linear programming (scipy ``linprog``,
HiGHS) and hides further cells until none is pinned
(:math:`\lfloor \max \rfloor - \lceil \min \rceil < 1`).

References
----------
Hundepool A, Domingo-Ferrer J, Franconi L, et al. (2012). Statistical Disclosure Control.
Wiley (chapter 4: secondary cell suppression and its audit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import optimize

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


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
    nothing is (inconsistent relations), and -inf or inf for an end left open."""
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
    if fit.status == 3:  # unbounded: nothing published closes this end
        return -sign * np.inf
    if fit.status != 0:  # infeasible, or the solver gave up: treat as exposed, to be safe
        return float("nan")
    return sign * float(fit.fun)


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
        if (sign > 0 and np.ceil(end - 1e-6) < truth) or (
                sign < 0 and np.floor(end + 1e-6) > truth):
            return False
        ends[sign] = end
    return bool(np.floor(ends[-1.0] + 1e-6) - np.ceil(ends[1.0] - 1e-6) < 1)


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
    mask and the number of small counts left pinned (0 unless nothing was left to hide;
    :func:`withhold_column` withholds those instead).
    """
    mask, _withheld, left = _audit(values, hidden, primary, relations, high, latent, False)
    return mask, left


def withhold_column(values: npt.ArrayLike, hidden: npt.ArrayLike, primary: npt.ArrayLike,
                    relations: Sequence[Relation], high: int,
                    latent: npt.ArrayLike | None = None
                    ) -> tuple[BoolArray, BoolArray, int]:
    r""":func:`audit_column` with a last resort: a small count still pinned when no shown
    non-zero cell is left to hide is *withheld*, with every hidden cell it is bound
    through, and those cells are published blank (any count :math:`\ge 0`, not
    ``"<N"`` or ``"*"``).

    Why that protects: with nothing left to hide, every shown cell of those relations is
    zero, so the relations over the withheld cells are homogeneous,
    :math:`\sum_i s_i x_i = 0`; with only :math:`x \ge 0` known, :math:`t x` is a solution
    for every :math:`t \ge 0`, and no non-zero count is pinned. (In a study of a handful
    of patients the labels themselves can pin: a ``"<5"`` total of four ``"<5"`` members
    makes each member 1.)

    Returns the hidden mask, the withheld mask (a subset of it) and the number of small
    counts left pinned (0 but for relations that are inconsistent).
    """
    return _audit(values, hidden, primary, relations, high, latent, True)


def _audit(values: npt.ArrayLike, hidden: npt.ArrayLike, primary: npt.ArrayLike,
           relations: Sequence[Relation], high: int, latent: npt.ArrayLike | None,
           withhold: bool) -> tuple[BoolArray, BoolArray, int]:
    cells = np.asarray(values, dtype=float)
    mask = np.asarray(hidden, dtype=bool).copy()
    small = np.asarray(primary, dtype=bool)
    unseen = _flags(latent, len(cells)).copy()
    withheld = np.zeros(len(cells), dtype=bool)
    index = _Index(relations)
    left = 0
    for target in (int(c) for c in np.flatnonzero(mask & small)):
        while _pinned(target, cells, mask, small, index, high, unseen):
            options = _candidates(target, cells, mask, index)
            if not options:
                if withhold and not withheld[target]:
                    bound = [target, *(c for i in index.reach(target, mask)
                                       for c, _s in index.terms[i] if mask[c])]
                    withheld[bound] = True
                    unseen[bound] = True  # published blank: the reader knows only >= 0
                    continue
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
    return mask, withheld, left
