"""An attacker of the shared outcome tables: what can be worked back from them?

The attacker reads the shared CSVs of a run (``OUT/tables``) and knows, as the strongest
reasonable reader does:

* every margin of every table (condition ``all`` = sum of conditions, format ``all`` =
  individual + group, in each count column; only relations that hold are used);
* ``events + (n - events) = n`` in every row, with the complement ``>= 0``;
* cells that tables repeat: ``response_rates_main`` rows and ``benchmark_comparison`` rows
  are rows of ``response_rates``; and slices that count the same patients (an oracle: any
  two slices, in any table, whose whole count grids are equal, and the completeness counts
  and the patient-flow counts equal to an ``all`` x ``all`` cell);
* what the labels mean: ``"<5"`` is 1..4; ``"*"`` is 5 or more (secondary suppression
  hides only shown non-zero counts, so the strongest reader assumes this); a blank count
  is withheld, any count >= 0; counts >= 0.

For every hidden count (``"<5"`` or ``"*"``) and every small complement ``n - events``, the
smallest and largest values consistent with all of that are found by linear programming
(scipy HiGHS) over the connected relations, rounded inwards to whole numbers; a count is
*recovered* when one value is left. The truth (to know which counts are small and which
relations hold) comes from the same run without suppression (``--no-suppress``).

``python -m tests.attacker PUBLISHED_TABLES TRUTH_TABLES`` prints the figures.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from pipeline.sharing.suppression import margin_relations

COUNTS: dict[str, tuple[str, str | None]] = {
    "response_rates": ("n", "events"), "response_rates_main": ("n", "events"),
    "benchmark_comparison": ("n", "events"), "attendance": ("patients", "dropouts"),
    "completeness": ("finished_courses", "paired"), "patient_flow": ("patients", None)}
KEYS = {"response_rates": ("population", "instrument", "outcome", "denominator"),
        "response_rates_main": ("population", "instrument", "outcome", "denominator"),
        "benchmark_comparison": ("outcome",), "attendance": (), "completeness": (),
        "patient_flow": ("step",)}
MARGINS = ("condition", "format")
PAIRED = ("reliable_improvement", "recovery", "reliable_recovery")


@dataclass(frozen=True)
class Attack:
    """hidden: published cells shown as ``<5`` or ``*``; recovered: those pinned to one
    value; small / small_recovered: the hidden counts of 1..4 and those pinned;
    small_complements / complements_recovered: rows whose ``n - events`` is 1..4, and those
    whose complement is pinned."""

    hidden: int
    recovered: int
    small: int
    small_recovered: int
    small_complements: int
    complements_recovered: int
    recovered_cells: tuple[str, ...]


class _Cells:
    def __init__(self) -> None:
        self.truth: list[float] = []
        self.low: list[float] = []
        self.top: list[float] = []
        self.hidden: list[bool] = []
        self.names: list[str] = []

    def add(self, name: str, truth: float, label: str | None) -> int:
        self.names.append(name)
        self.truth.append(truth)
        if label is None or label == "":  # latent, or withheld (published blank)
            bounds, hidden = (0.0, math.inf), True
        elif label.startswith("<"):
            bounds, hidden = (1.0, float(label[1:]) - 1), True
        elif label == "*":
            bounds, hidden = (5.0, math.inf), True
        else:
            bounds, hidden = (float(label), float(label)), False
        self.low.append(bounds[0])
        self.top.append(bounds[1])
        self.hidden.append(hidden)
        return len(self.truth) - 1


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / f"{name}.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.exists() else None


def _relations(cells: _Cells, ids: dict[tuple[str, str], list[int | None]],
               truth: dict[str, pd.DataFrame], primary: str) -> list[list[tuple[int, float]]]:
    values = np.array(cells.truth)
    equations: list[list[tuple[int, float]]] = []

    def equal(a: int | None, b: int | None) -> None:
        if a is not None and b is not None and values[a] == values[b]:
            equations.append([(a, 1.0), (b, -1.0)])

    for name, frame in truth.items():
        if not set(MARGINS) <= set(frame.columns):
            continue
        for relation in margin_relations(frame, KEYS[name], MARGINS):
            for column in (c for c in COUNTS[name] if c is not None):
                cell = ids[(name, column)]
                members = [cell[int(m)] for m in relation.members]
                total = cell[relation.total]
                if total is None or any(m is None for m in members):
                    continue
                if values[[m for m in members if m is not None]].sum() == values[total]:
                    equations.append([*((m, 1.0) for m in members if m is not None),
                                      (total, -1.0)])
    rates = truth.get("response_rates")
    if rates is not None:
        on = ["population", "instrument", "outcome", "denominator", *MARGINS]
        where = {tuple(r): i for i, r in enumerate(rates[on].itertuples(index=False))}
        main = truth.get("response_rates_main")
        for i, row in enumerate([] if main is None else main[on].itertuples(index=False)):
            for column in ("n", "events"):
                equal(ids[("response_rates_main", column)][i],
                      ids[("response_rates", column)][where[tuple(row)]])
        bench = truth.get("benchmark_comparison")
        for i, (condition, outcome) in enumerate(
                [] if bench is None else bench[["condition", "outcome"]].itertuples(index=False)):
            key = ("finished_course", "phq9+gad7" if outcome in PAIRED else primary, outcome,
                   "observed", condition, "all")
            if key in where:
                for column in ("n", "events"):
                    equal(ids[("benchmark_comparison", column)][i],
                          ids[("response_rates", column)][where[key]])
    equations.extend(_same_patients(ids, truth, values))
    return equations


def _same_patients(ids: dict[tuple[str, str], list[int | None]],
                   truth: dict[str, pd.DataFrame],
                   values: np.ndarray) -> list[list[tuple[int, float]]]:
    """The oracle: equal whole grids (any count column of any slice) count the same
    patients; a completeness count equals any ``all`` x ``all`` cell of the same value."""
    grids: dict[tuple[object, ...], list[list[int]]] = {}
    corners: list[int] = []
    for name in ("response_rates", "attendance"):
        frame = truth.get(name)
        if frame is None:
            continue
        groups = (frame.groupby(list(KEYS[name]), sort=False).indices.values()
                  if KEYS[name] else [np.arange(len(frame))])
        for rows in groups:
            for column in (c for c in COUNTS[name] if c is not None):
                cell = [ids[(name, column)][int(r)] for r in rows]
                if any(c is None for c in cell):
                    continue
                chosen = [c for c in cell if c is not None]
                labels = [tuple(frame.iloc[int(r)][list(MARGINS)]) for r in rows]
                corners.extend(c for c, lab in zip(chosen, labels, strict=True)
                               if lab == ("all", "all"))
                key = tuple(sorted(zip(labels, values[chosen].tolist(), strict=True)))
                if values[chosen].any():
                    grids.setdefault(key, []).append(chosen)
    equations = [[(a, 1.0), (b, -1.0)] for same in grids.values() for first in same[1:]
                 for a, b in zip(same[0], first, strict=True)]
    for name, column in (("completeness", "finished_courses"), ("completeness", "paired"),
                         ("patient_flow", "patients")):
        for c in ids.get((name, column), []):
            if c is not None:
                equations.extend([(c, 1.0), (o, -1.0)] for o in corners
                                 if values[o] == values[c])
    return equations


def _merge_equal(cells: _Cells, equations: Sequence[list[tuple[int, float]]]
                 ) -> tuple[list[int], list[list[tuple[int, float]]]]:
    """Cells tied by ``a - b = 0`` become one (the reader substitutes one for the other):
    the root of every cell, its bounds narrowed to the intersection (a shown cell fixes
    its root), and the other equations over roots, without repeats."""
    parent = list(range(len(cells.truth)))

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for equation in equations:
        if len(equation) == 2 and sorted(w for _c, w in equation) == [-1.0, 1.0]:
            first, second = root(equation[0][0]), root(equation[1][0])
            if first != second:
                parent[second] = first
    roots = [root(c) for c in range(len(cells.truth))]
    for c, r in enumerate(roots):
        cells.low[r] = max(cells.low[r], cells.low[c])
        cells.top[r] = min(cells.top[r], cells.top[c])
        cells.hidden[r] = cells.hidden[r] and cells.hidden[c]
    merged: dict[tuple[tuple[int, float], ...], list[tuple[int, float]]] = {}
    for equation in equations:
        terms: dict[int, float] = {}
        for c, w in equation:
            terms[roots[c]] = terms.get(roots[c], 0.0) + w
        kept = tuple(sorted((c, w) for c, w in terms.items() if w != 0.0))
        if kept:
            merged[kept] = list(kept)
    return roots, list(merged.values())


def _range(target: int, cells: _Cells, equations: Sequence[list[tuple[int, float]]],
           of_cell: dict[int, list[int]]) -> tuple[float, float]:
    """The smallest and largest values of ``target`` consistent with what is published
    (linear programming over the equations reachable through hidden cells); the largest
    is sought only when the smallest is the truth (else two whole numbers are left)."""
    hidden = cells.hidden
    reached, frontier, touched = {target}, [target], set()
    while frontier:
        current = frontier.pop()
        for i in of_cell.get(current, []):
            if i not in touched:
                touched.add(i)
                for c, _w in equations[i]:
                    if hidden[c] and c not in reached:
                        reached.add(c)
                        frontier.append(c)
    unknown = sorted(reached)
    position = {c: k for k, c in enumerate(unknown)}
    rows = sorted(touched)
    matrix = np.zeros((len(rows), len(unknown)))
    rhs = np.zeros(len(rows))
    for k, i in enumerate(rows):
        for c, w in equations[i]:
            if hidden[c]:
                matrix[k, position[c]] += w
            else:
                rhs[k] -= w * cells.low[c]
    bounds = [(cells.low[c], None if math.isinf(cells.top[c]) else cells.top[c])
              for c in unknown]
    ends = []
    for sign in (1.0, -1.0):
        objective = np.zeros(len(unknown))
        objective[position[target]] = sign
        fit = optimize.linprog(objective, A_eq=matrix if rows else None,
                               b_eq=rhs if rows else None, bounds=bounds, method="highs")
        assert fit.status in (0, 3), f"the published numbers are inconsistent: {fit.message}"
        ends.append(sign * fit.fun if fit.status == 0 else sign * math.inf)
        if math.ceil(ends[0] - 1e-6) < cells.truth[target]:
            return ends[0], cells.truth[target]
    return ends[0], ends[1]


def _work_back(cells: _Cells, equations: list[list[tuple[int, float]]],
               complements: list[int]) -> Attack:
    """Every hidden count and every small complement, pinned or not: equal cells merged,
    then the smallest and largest value of each by linear programming (:func:`_range`)."""
    latent = set(complements)
    hidden = [c for c in range(len(cells.truth)) if cells.hidden[c] and c not in latent]
    small = [c for c in complements if 1 <= cells.truth[c] <= 4]
    roots, merged = _merge_equal(cells, equations)
    of_cell: dict[int, list[int]] = {}
    for i, equation in enumerate(merged):
        for c, _w in equation:
            of_cell.setdefault(c, []).append(i)
    exposed: dict[int, bool] = {}
    for r in sorted({roots[c] for c in [*hidden, *small]}):
        low, top = _range(r, cells, merged, of_cell) if cells.hidden[r] else (0.0, 0.0)
        exposed[r] = math.floor(top + 1e-6) - math.ceil(low - 1e-6) < 1
    pinned = [c for c in [*hidden, *small] if exposed[roots[c]]]
    tiny = {c for c in hidden if 1 <= cells.truth[c] <= 4}
    return Attack(len(hidden), sum(c not in latent for c in pinned), len(tiny),
                  len(tiny & set(pinned)), len(small), sum(c in latent for c in pinned),
                  tuple(cells.names[c] for c in pinned))


def attack(published: Path, truth: Path, primary: str = "phq9") -> Attack:
    """Work back every hidden count of the shared tables in ``published`` (see module)."""
    cells = _Cells()
    ids: dict[tuple[str, str], list[int | None]] = {}
    true_tables: dict[str, pd.DataFrame] = {}
    complements: list[int] = []
    for name, (den, num) in COUNTS.items():
        shown, real = _read(published, name), _read(truth, name)
        if shown is None or real is None:
            continue
        true_tables[name] = real
        for column in (c for c in (den, num) if c is not None):
            ids[(name, column)] = [
                None if real[column].iloc[p] == "" else
                cells.add(f"{name}:{p}:{column}", float(real[column].iloc[p]),
                          shown[column].iloc[p])
                for p in range(len(real))]
        for p in range(len(real) if num is not None else 0):
            d, n = ids[(name, den)][p], ids[(name, str(num))][p]
            if d is not None and n is not None:
                complements.append(cells.add(f"{name}:{p}:complement",
                                             cells.truth[d] - cells.truth[n], None))
    equations = _relations(cells, ids, true_tables, primary)
    for c in complements:  # numerator + complement = denominator
        name, p, _ = cells.names[c].split(":")
        den, num = COUNTS[name]
        equations.append([(ids[(name, str(num))][int(p)] or 0, 1.0), (c, 1.0),
                          (ids[(name, den)][int(p)] or 0, -1.0)])
    return _work_back(cells, equations, complements)


if __name__ == "__main__":
    result = attack(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"hidden counts: {result.hidden}, recovered: {result.recovered}; of them small "
          f"(1-4): {result.small}, recovered: {result.small_recovered}; small complements: "
          f"{result.small_complements}, recovered: {result.complements_recovered}")


def attack_relapse(published: Path, truth: Path) -> Attack:
    """The same reader of the shared relapse tables: per stratum variable the strata's
    ``n`` and ``events`` add up to the whole cohort's (``relapse_km``), the numbers at risk
    at each time likewise (``relapse_km_at_risk``), ``events + (n - events) = n``, and the
    patients at risk at time 0 are ``n``."""
    cells = _Cells()
    equations: list[list[tuple[int, float]]] = []
    complements: list[int] = []
    km, real = _read(published, "relapse_km"), _read(truth, "relapse_km")
    assert km is not None and real is not None
    ids: dict[tuple[str, str, str], int] = {}
    for p in range(len(real)):
        key = (real["stratum_variable"].iloc[p], real["stratum"].iloc[p])
        for column in ("n", "events"):
            ids[(*key, column)] = cells.add(f"relapse_km:{p}:{column}",
                                            float(real[column].iloc[p]), km[column].iloc[p])
        n, e = ids[(*key, "n")], ids[(*key, "events")]
        c = cells.add(f"relapse_km:{p}:complement", cells.truth[n] - cells.truth[e], None)
        complements.append(c)
        equations.append([(e, 1.0), (c, 1.0), (n, -1.0)])
    risk, real_risk = _read(published, "relapse_km_at_risk"), _read(truth, "relapse_km_at_risk")
    if risk is not None and real_risk is not None:
        for p in range(len(real_risk)):
            key = (real_risk["stratum_variable"].iloc[p], real_risk["stratum"].iloc[p],
                   f"at_risk@{float(real_risk['time_weeks'].iloc[p])}")
            ids[key] = cells.add(f"relapse_km_at_risk:{p}", float(real_risk["at_risk"].iloc[p]),
                                 risk["at_risk"].iloc[p])
            if float(real_risk["time_weeks"].iloc[p]) == 0.0 and (*key[:2], "n") in ids:
                equations.append([(ids[key], 1.0), (ids[(*key[:2], "n")], -1.0)])
    values = np.array(cells.truth)
    columns = {k[2] for k in ids}
    for variable in {k[0] for k in ids} - {"all"}:
        for column in columns:
            members = [i for k, i in ids.items() if k[0] == variable and k[2] == column]
            total = ids.get(("all", "all", column))
            if total is not None and members and values[members].sum() == values[total]:
                equations.append([*((m, 1.0) for m in members), (total, -1.0)])
    return _work_back(cells, equations, complements)
