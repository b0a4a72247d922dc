"""Design matrices shared by the engines: fixed effects (via ``formulaic``) and random blocks.

Both engines fit the same numbers: the fixed-effects matrix is built once here, with
readable column names and aliased columns removed, and the random-effects structure is
turned into :class:`Block` objects (one covariance matrix each) before an engine sees it.

Naming: ``Intercept`` becomes ``(Intercept)`` (as in lme4) and treatment contrasts
``format[T.group]`` become ``format[group]``. Aliased columns are found as in R's ``lm``:
a column is dropped when it lies in the span of the columns before it (relative residual
sum of squares below 1e-10), and a message names it.

``formulaic`` evaluates formula terms as Python, so every fixed part is checked against the
whitelist grammar of :mod:`pipeline.trajectories.formula_grammar` before ``formulaic`` sees it (a
``FormulaError``, a ``ValueError``, otherwise), however the spec was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from formulaic import Formula, model_matrix

from pipeline.estimability import require
from pipeline.trajectories.engines.spec import MixedSpec
from pipeline.trajectories.formula_grammar import check_fixed

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

INTERCEPT: Final = "(Intercept)"
ALIAS_TOLERANCE: Final = 1e-10
_CONTRAST = re.compile(r"\[T\.([^\]]*)\]")


def readable(name: str) -> str:
    """``Intercept`` -> ``(Intercept)``, ``format[T.group]`` -> ``format[group]``."""
    if name == "Intercept":
        return INTERCEPT
    return _CONTRAST.sub(r"[\1]", name)


@dataclass(frozen=True, eq=False)
class FixedDesign:
    """The fixed-effects design of a fitted model, reusable on new data.

    Attributes
    ----------
    spec : formulaic ModelSpec
        The fitted model spec (stores the categorical levels seen in the data).
    keep : tuple of int
        Columns of the formulaic matrix kept after removing aliased ones.
    names : tuple of str
        Readable names of the kept columns.
    """

    spec: Any
    keep: tuple[int, ...]
    names: tuple[str, ...]

    def matrix(self, newdata: pd.DataFrame) -> FloatArray:
        """The design matrix of ``newdata`` (one row per row, one column per term)."""
        full = self.spec.get_model_matrix(newdata)
        out: FloatArray = np.asarray(full, dtype=np.float64)[:, list(self.keep)]
        return out


@dataclass(frozen=True, eq=False)
class Block:
    """One random-effects block: terms of one level sharing one covariance matrix.

    Attributes
    ----------
    level : str
        Grouping column.
    terms : tuple of str
        Display names (``(Intercept)``, ``weeks``).
    columns : ndarray
        (n, q) values of the terms (0 where the block does not apply).
    codes : ndarray
        Level index of each row, ``-1`` where the block does not apply.
    labels : ndarray
        Level values, indexed by code.
    correlated : bool
        Full covariance (True) or a single term (always True for one term).
    """

    level: str
    terms: tuple[str, ...]
    columns: FloatArray
    codes: IntArray
    labels: npt.NDArray[Any]
    correlated: bool

    @property
    def n_levels(self) -> int:
        """Number of levels with at least one row."""
        return int(self.labels.size)


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything an engine needs: outcome, fixed design, random blocks and notes."""

    spec: MixedSpec
    y: FloatArray
    X: FloatArray
    design: FixedDesign
    blocks: tuple[Block, ...]
    index: pd.Index
    n_patients: int
    notes: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Readable fixed-effect names."""
        return self.design.names


def _level_values(data: pd.DataFrame, level: str) -> pd.Series:
    """The grouping column, or the interaction ``a:b`` of two columns pasted together."""
    if level in data.columns:
        return data[level]
    parts = level.split(":")
    if len(parts) > 1 and all(p in data.columns for p in parts):
        pasted = data[parts[0]].astype(str)
        for part in parts[1:]:
            pasted = pasted + ":" + data[part].astype(str)
        return pasted.where(data[parts].notna().all(axis=1))
    raise KeyError(f"grouping level {level!r} is not a column of the data")


def required_columns(spec: MixedSpec, data: pd.DataFrame) -> list[str]:
    """Columns that must be present (and not missing) for a row to be used."""
    check_fixed(spec.fixed)
    needed = [spec.outcome, *sorted(Formula(spec.fixed).required_variables)]
    for effect in spec.random:
        needed += [t for t in effect.terms if t != "1"]
        needed += [effect.level] if effect.level in data.columns else effect.level.split(":")
    for comp in spec.components:
        needed += [comp.term] if comp.term != "1" else []
    return list(dict.fromkeys(needed))


def _complete_rows(spec: MixedSpec, data: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows with every required variable present, and a note on how many were left out."""
    needed = required_columns(spec, data)
    missing = [c for c in needed if c not in data.columns]
    require(not missing, f"model variables not in the data: {', '.join(missing)}",
            "a formula naming columns of the data (the long data of pipeline.trajectories.models)")
    extra = [c.where for c in spec.components if c.where is not None]
    for comp in spec.components:
        extra += [comp.level] if comp.level in data.columns else comp.level.split(":")
    if "patient_id" in data.columns:
        extra.append("patient_id")
    columns = list(dict.fromkeys([*needed, *extra]))
    complete = data[needed].notna().all(axis=1).to_numpy()
    notes: list[str] = []
    if complete.all():
        return data, notes  # no copy: at registry scale the data are large
    notes.append(f"{int((~complete).sum())} of {len(data)} rows left out: missing "
                 f"values in {', '.join(c for c in needed if data[c].isna().any())}")
    return data.loc[complete, columns], notes


#: Row chunks of :func:`crossprod` hold at most this many products (rows x columns^2).
CROSSPROD_WORK: Final = 1 << 18


def crossprod(matrix: FloatArray, chunk: int | None = None) -> FloatArray:
    """``matrix.T @ matrix`` summed over row chunks (fast and lean for tall matrices).

    By default a chunk has about ``CROSSPROD_WORK / columns**2`` rows (at least 256):
    products that small run on one BLAS thread, which for a tall, narrow matrix is as fast
    as several threads and, on a busy machine, costs a tenth of the CPU time (OpenBLAS
    threads a product of 65,536 rows and then spends most of it waiting on its threads).
    The result is only used to find aliased columns (:func:`_alias_free`).
    """
    if chunk is None:
        chunk = max(256, CROSSPROD_WORK // max(matrix.shape[1], 1) ** 2)
    out = np.zeros((matrix.shape[1], matrix.shape[1]))
    for start in range(0, matrix.shape[0], chunk):
        block = np.ascontiguousarray(matrix[start:start + chunk])
        out += block.T @ block
    return out


def _alias_free(matrix: FloatArray) -> list[int]:
    """Indices of columns not in the span of earlier columns (R's order of aliasing)."""
    cross = crossprod(matrix)
    keep: list[int] = []
    for j in range(cross.shape[0]):
        if cross[j, j] <= 0:
            continue
        if keep:
            sub = cross[np.ix_(keep, keep)]
            coef = np.linalg.lstsq(sub, cross[keep, j], rcond=None)[0]
            residual = cross[j, j] - cross[j, keep] @ coef
            if residual <= ALIAS_TOLERANCE * cross[j, j]:
                continue
        keep.append(j)
    return keep


def build_fixed(rhs: str, data: pd.DataFrame) -> tuple[FloatArray, FixedDesign, list[str]]:
    """The fixed-effects matrix of ``rhs`` on ``data`` without aliased columns.

    Returns
    -------
    (ndarray, FixedDesign, list of str)
        The matrix, its reusable design, and notes naming dropped columns.

    Raises
    ------
    pipeline.trajectories.formula_grammar.FormulaError
        If ``rhs`` is outside the whitelist grammar (it is never evaluated then).
    """
    check_fixed(rhs)
    frame = model_matrix(rhs, data, na_action="ignore")
    names = [readable(str(c)) for c in frame.columns]
    matrix = np.empty(frame.shape, order="F")  # column by column: 5x faster than to_numpy
    for j in range(frame.shape[1]):
        matrix[:, j] = frame.iloc[:, j].to_numpy(dtype=np.float64)
    spec = frame.model_spec
    del frame
    keep = _alias_free(matrix)
    notes = []
    if len(keep) < len(names):
        dropped = [n for i, n in enumerate(names) if i not in keep]
        notes.append(f"fixed-effect terms dropped as aliased (not estimable from these "
                     f"data): {', '.join(dropped)}")
        matrix = np.asfortranarray(matrix[:, keep])
    design = FixedDesign(spec, tuple(keep), tuple(names[i] for i in keep))
    return matrix, design, notes


def _term_column(data: pd.DataFrame, term: str) -> FloatArray:
    if term == "1":
        return np.ones(len(data), dtype=np.float64)
    return data[term].to_numpy(dtype=np.float64)


def _block(data: pd.DataFrame, level: str, terms: tuple[str, ...], correlated: bool,
           active: npt.NDArray[np.bool_] | None = None) -> Block:
    """A block of ``terms`` for ``level``; rows outside ``active`` get code -1."""
    values = _level_values(data, level)
    use = values.notna().to_numpy() if active is None else active & values.notna().to_numpy()
    codes, labels = pd.factorize(values.where(use), sort=True)
    columns = np.column_stack([_term_column(data, t) for t in terms])
    columns[~use] = 0.0
    names = tuple(INTERCEPT if t == "1" else t for t in terms)
    return Block(level, names, columns, codes.astype(np.int64), np.asarray(labels),
                 correlated or len(terms) == 1)


def build_blocks(spec: MixedSpec, data: pd.DataFrame) -> tuple[Block, ...]:
    """Random blocks: correlated effects as one block, independent terms one block each."""
    blocks: list[Block] = []
    for effect in spec.random:
        if effect.correlated:
            blocks.append(_block(data, effect.level, effect.terms, True))
        else:
            blocks += [_block(data, effect.level, (t,), True) for t in effect.terms]
    for comp in spec.components:
        active = None
        if comp.where is not None:
            active = data[comp.where].fillna(False).to_numpy(dtype=bool)
        blocks.append(_block(data, comp.level, (comp.term,), True, active))
    return tuple(b for b in blocks if b.n_levels > 0)


def prepare(spec: MixedSpec, data: pd.DataFrame) -> Prepared:
    """Complete rows, fixed design and random blocks of ``spec`` on ``data``.

    Raises
    ------
    pipeline.estimability.NotEstimable
        If no complete row is left, or no more rows than fixed effects.
    """
    rows, notes = _complete_rows(spec, data)
    require(not rows.empty, f"no score has every variable of {spec.lme4()}",
            "scores with every variable the model names")
    matrix, design, dropped = build_fixed(spec.fixed, rows)
    require(len(rows) > matrix.shape[1],
            f"{len(rows):,} observations for {matrix.shape[1]} fixed effects: no residual "
            "degrees of freedom", "more scores, or fewer fixed effects")
    blocks = build_blocks(spec, rows)
    unit = "patient_id" if "patient_id" in rows.columns else (
        spec.random[0].level if spec.random else None)
    n_patients = int(_level_values(rows, unit).nunique()) if unit else 0
    y = rows[spec.outcome].to_numpy(dtype=np.float64)
    return Prepared(spec, y, matrix, design, blocks, rows.index, n_patients, (*notes, *dropped))
