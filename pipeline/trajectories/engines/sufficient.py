r"""Linear mixed models fitted on per-unit sufficient statistics (nested random effects).

When every random-effects level is nested in the next (patients within therapy groups
within therapists, say), the profiled (RE)ML deviance of lme4 depends on the data only
through sums over each unit's rows. With :math:`z_\ell` the term columns of level
:math:`\ell` (zero where the level does not apply) and :math:`w = (x, y)` a row's fixed
effects and outcome, the statistics are, per unit :math:`j` of level :math:`\ell`,

.. math:: S_j = \sum_{r \in j} z_{\ell r} z_{\ell r}^\top, \quad
          U_{jm} = \sum_{r \in j} z_{\ell r} z_{m r}^\top \ (m \text{ outer to } \ell), \quad
          C_j = \sum_{r \in j} z_{\ell r} w_r^\top,

and :math:`W = \sum_r w_r w_r^\top` once. They are computed in one pass over the rows;
every evaluation of the deviance then costs :math:`O(\text{units})`, not
:math:`O(\text{rows})`, and never holds the sparse :math:`Z`.

The deviance is lme4's (Bates et al. 2015, eqs. 34 and 41): the Cholesky factor of

.. math:: \begin{pmatrix} \Lambda^\top Z^\top Z \Lambda + I & \Lambda^\top Z^\top X &
          \Lambda^\top Z^\top y \\ \cdot & X^\top X & X^\top y \\ \cdot & \cdot & y^\top y
          \end{pmatrix}

is taken level by level, innermost first. Because each unit has one parent per outer
level, eliminating a unit only changes its parents' blocks, the coupling of those parents
and the trailing :math:`(X, y)` block (no fill-in elsewhere): the elimination is a
batched :math:`q \times q` Cholesky per level. What remains is
:math:`R_X^\top R_X` (the fixed-effects information), :math:`c_\beta` and the penalised
residual sum of squares :math:`r^2_\theta`; then

.. math:: d(\theta) = \log|L_\theta|^2 + n\left(1 + \log\frac{2\pi r^2_\theta}{n}\right)
          \qquad d_R(\theta) = \log|L_\theta|^2 + \log|R_X|^2 +
          (n-p)\left(1 + \log\frac{2\pi r^2_\theta}{n-p}\right).

The gradient is exact (:func:`value_and_gradient`): the trace terms of
:math:`\partial \log|H|` need only the blocks of :math:`H^{-1}` on the pattern of the
factor, which the same tree gives from the root down (Takahashi et al. 1973), and the
residual term follows from the envelope theorem. An evaluation with its gradient costs
a few passes over the units. The estimates at a :math:`\theta` (fixed effects, their
covariance :math:`\hat\sigma^2 (R_X^\top R_X)^{-1}`, the conditional modes by back
substitution, :math:`\hat\sigma^2 = r^2/n` or :math:`r^2/(n-p)`) are those of ``mixedlm``
at the same :math:`\theta`: ``tests/test_engines_sufficient.py`` checks values, gradients
and estimates against ``mixedlm``'s native evaluator at random :math:`\theta`, on the
golden data and on generated nested shapes, and the fits
(:mod:`pipeline.trajectories.engines.sufficient_fit`) against ``mixedlm``'s and R
lme4's.

A structure that is not nested (therapy groups led by several therapists, crossed
effects) is not handled here: :func:`statistics` returns None and the caller takes the
general sparse route.

References
----------
Bates D, Maechler M, Bolker B, Walker S (2015). Fitting linear mixed-effects models using
lme4. Journal of Statistical Software 67(1):1-48.
Pinheiro JC, Bates DM (2000). Mixed-Effects Models in S and S-PLUS. Springer (ch. 2.2:
the nested decomposition).
Takahashi K, Fagan J, Chen MS (1973). Formation of a sparse bus impedance matrix and its
application to short circuit study. Proceedings of the 8th PICA Conference, 63-69 (the
selected inverse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import sparse

from pipeline.trajectories.engines.design import Block, Prepared, crossprod
from pipeline.trajectories.engines.stacked import (
    at_parents,
    backward,
    cholesky,
    forward,
    gram,
    left,
    mul,
    right,
    scatter,
    transpose,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = ["Estimates", "Statistics", "evaluate", "factors", "statistics",
           "value_and_gradient"]

#: Units of the innermost level handled together (see :func:`_in_chunks`).
CHUNK: Final = 16_384


@dataclass(frozen=True, eq=False)
class Level:
    """One grouping level: its blocks, units and statistics (see the module docstring).

    Attributes
    ----------
    blocks : tuple of int
        Indices of the model's blocks on this level (in ``Prepared.blocks`` order).
    q : int
        Terms of the level (the blocks' terms side by side).
    n : int
        Units.
    own : ndarray
        (q, q, n) :math:`S_j` (units on the last axis, as in every stack here).
    up : dict
        Outer level index m -> (q, q_m, n) :math:`U_{jm}`.
    parent : dict
        Outer level index m -> (n,) parent code at m, -1 where the unit has none.
    tail : ndarray
        (q, p + 1, n) :math:`C_j`.
    gather : dict
        Outer level index m -> sparse (units at m) x (units here) membership matrix: sums
        this level's blocks into their parents'.
    """

    blocks: tuple[int, ...]
    q: int
    n: int
    own: FloatArray
    up: dict[int, FloatArray]
    parent: dict[int, IntArray]
    tail: FloatArray
    gather: dict[int, sparse.csr_matrix] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Statistics:
    r"""The sufficient statistics of a nested model.

    Attributes
    ----------
    levels : tuple of Level
        Innermost (patients) first.
    cross : ndarray
        :math:`W = (X, y)^\top (X, y)`.
    n_obs, p : int
        Rows and fixed effects.
    theta_slices : tuple of slice
        Where each block's covariance parameters lie in :math:`\theta`.
    block_terms : tuple of int
        Terms of each block.
    """

    levels: tuple[Level, ...]
    cross: FloatArray
    n_obs: int
    p: int
    theta_slices: tuple[slice, ...]
    block_terms: tuple[int, ...]


def _sums(codes: IntArray, n: int, z: FloatArray, columns: list[FloatArray]) -> FloatArray:
    """(q, k, n): sums by unit ``codes`` (all >= 0) of ``z[:, i] * columns[k]``.

    Units are the last axis throughout, so each per-unit operation is a contiguous vector
    operation; one ``bincount`` per product keeps the memory to one column."""
    out = np.empty((z.shape[1], len(columns), n))
    for i in range(z.shape[1]):
        for k, column in enumerate(columns):
            out[i, k] = np.bincount(codes, weights=z[:, i] * column, minlength=n)
    return out


def _level_codes(blocks: list[Block]) -> IntArray | None:
    """One code per row for blocks on the same level (-1 where none applies)."""
    codes = blocks[0].codes.copy()
    for block in blocks[1:]:
        both = (codes >= 0) & (block.codes >= 0)
        if not np.array_equal(codes[both], block.codes[both]) or \
                not np.array_equal(block.labels, blocks[0].labels):
            return None
        codes = np.maximum(codes, block.codes)
    return codes


def _parents(inner: IntArray, outer: IntArray, n_inner: int) -> IntArray | None:
    """The outer code of each inner unit (-1 if none) when every inner unit has at most one."""
    both = (inner >= 0) & (outer >= 0)
    parent = np.full(n_inner, -1, dtype=np.int64)
    parent[inner[both]] = outer[both]
    if not np.array_equal(parent[inner[both]], outer[both]):
        return None
    return parent


def _nesting(codes: list[IntArray], sizes: list[int]) -> list[dict[int, IntArray]] | None:
    """Parent codes of each level's units at every outer level, or None when not nested
    (a unit with two parents at a level, or parents that disagree through the chain)."""
    parents: list[dict[int, IntArray]] = []
    for a in range(len(codes)):
        mine: dict[int, IntArray] = {}
        for m in range(a + 1, len(codes)):
            parent = _parents(codes[a], codes[m], sizes[a])
            if parent is None:
                return None
            mine[m] = parent
        parents.append(mine)
    for a in range(len(codes)):
        for m in range(a + 1, len(codes)):
            for m2 in range(m + 1, len(codes)):
                pm, pm2 = parents[a][m], parents[a][m2]
                both = (pm >= 0) & (pm2 >= 0)
                if not np.array_equal(parents[m][m2][pm[both]], pm2[both]):
                    return None
    return parents


def _gathers(parents: dict[int, IntArray], sizes: list[int]) -> dict[int, sparse.csr_matrix]:
    """Sparse (parent units) x (units) membership matrices, one per outer level."""
    out = {}
    for m, parent in parents.items():
        has = np.flatnonzero(parent >= 0)
        out[m] = sparse.csr_matrix((np.ones(has.size), (parent[has], has)),
                                   shape=(sizes[m], parent.size))
    return out


def _in_chunks(levels: list[Level], sizes: list[int]) -> list[Level]:
    """The innermost level split into consecutive runs of ``CHUNK`` units, each a level of
    its own (outer levels renumbered after them).

    Units of one level never touch each other in the factor (only their parents), so
    eliminating them run by run is the same elimination; a run's working arrays stay small
    enough for the allocator to reuse (arrays of hundreds of MB are mapped and faulted in
    afresh at every evaluation, which at a million patients cost more system time than
    arithmetic)."""
    first = levels[0]
    starts = range(0, first.n, CHUNK)
    if len(starts) <= 1:
        return levels
    shift = len(starts) - 1
    out = []
    for start in starts:
        units = slice(start, min(start + CHUNK, first.n))
        parent = {m + shift: first.parent[m][units] for m in first.parent}
        out.append(Level(first.blocks, first.q, units.stop - units.start,
                         np.ascontiguousarray(first.own[:, :, units]),
                         {m + shift: np.ascontiguousarray(u[:, :, units])
                          for m, u in first.up.items()},
                         parent, np.ascontiguousarray(first.tail[:, :, units]),
                         _gathers(parent, [0] * (shift + 1) + sizes[1:])))
    for level in levels[1:]:
        out.append(Level(level.blocks, level.q, level.n, level.own,
                         {m + shift: u for m, u in level.up.items()},
                         {m + shift: p for m, p in level.parent.items()}, level.tail,
                         {m + shift: g for m, g in level.gather.items()}))
    return out


def statistics(prepared: Prepared) -> Statistics | None:
    """The sufficient statistics of ``prepared``, or None when its levels are not nested.

    Levels (blocks grouped by grouping column) are ordered innermost first (by the number
    of other levels each is nested in, then by decreasing number of units); each must be
    nested in every outer level, and the parents must agree (a unit's parent
    at an outer level is its parent's parent there). The innermost level must cover every
    row.
    """
    by_level: dict[str, list[int]] = {}
    for k, block in enumerate(prepared.blocks):
        by_level.setdefault(block.level, []).append(k)
    groups = list(by_level.values())
    level_codes: list[IntArray] = []
    for ks in groups:
        codes = _level_codes([prepared.blocks[k] for k in ks])
        if codes is None:
            return None
        level_codes.append(codes)
    # innermost first: the number of other levels a level is nested in, then its size
    sizes = [prepared.blocks[ks[0]].n_levels for ks in groups]
    depth = [sum(_parents(level_codes[a], level_codes[m], sizes[a]) is not None
                 for m in range(len(groups)) if m != a) for a in range(len(groups))]
    order = sorted(range(len(groups)), key=lambda a: (-depth[a], -sizes[a]))
    groups = [groups[a] for a in order]
    level_codes = [level_codes[a] for a in order]
    sizes = [sizes[a] for a in order]
    if (level_codes[0] < 0).any():
        return None
    parents = _nesting(level_codes, sizes)
    if parents is None:
        return None
    columns = []
    for ks, codes in zip(groups, level_codes, strict=True):
        z = np.column_stack([prepared.blocks[k].columns for k in ks]).astype(np.float64)
        z[codes < 0] = 0.0
        columns.append(z)
    tail_columns = [prepared.X[:, j] for j in range(prepared.X.shape[1])] + [prepared.y]
    levels = []
    for a, (ks, codes) in enumerate(zip(groups, level_codes, strict=True)):
        n, z = sizes[a], columns[a]
        # rows outside this level (code -1) are summed into a spare unit n, then dropped:
        # the same per-unit sums, in the same order, without copying the rows that count
        binned = np.where(codes >= 0, codes, n)

        def sums(other: list[FloatArray], binned: IntArray = binned, z: FloatArray = z,
                 n: int = n) -> FloatArray:
            return _sums(binned, n + 1, z, other)[:, :, :n]
        own = sums(list(z.T))
        up = {m: sums(list(columns[m].T)) for m in parents[a]}
        tail = sums(tail_columns)
        levels.append(Level(tuple(ks), z.shape[1], n, own, up, parents[a], tail,
                            _gathers(parents[a], sizes)))
    levels = _in_chunks(levels, sizes)
    cross = np.empty((prepared.X.shape[1] + 1,) * 2)
    cross[:-1, :-1] = crossprod(prepared.X)
    cross[:-1, -1] = cross[-1, :-1] = prepared.X.T @ prepared.y
    cross[-1, -1] = float(prepared.y @ prepared.y)
    slices, start = [], 0
    for block in prepared.blocks:
        q = len(block.terms)
        size = q * (q + 1) // 2
        slices.append(slice(start, start + size))
        start += size
    return Statistics(tuple(levels), cross, int(prepared.y.size), int(prepared.X.shape[1]),
                      tuple(slices), tuple(len(b.terms) for b in prepared.blocks))


def factors(stats: Statistics, theta: FloatArray) -> list[FloatArray]:
    r""":math:`\Lambda_\ell` of each level (block diagonal from its blocks' factors;
    lme4's layout: the lower triangle of each block's factor filled row by row)."""
    out = []
    for level in stats.levels:
        lam = np.zeros((level.q, level.q))
        at = 0
        for k in level.blocks:
            q = stats.block_terms[k]
            block = np.zeros((q, q))
            block[np.tril_indices(q)] = theta[stats.theta_slices[k]]
            lam[at:at + q, at:at + q] = block
            at += q
        out.append(lam)
    return out


@dataclass(frozen=True, eq=False)
class Estimates:
    r"""Everything at one :math:`\theta`: the criterion and the estimates it implies."""

    deviance: float
    beta: FloatArray
    sigma2: float
    fixed_information: FloatArray
    modes: tuple[FloatArray, ...]


@dataclass(frozen=True, eq=False)
class _Factor:
    r"""One level's part of the Cholesky factor: its diagonal blocks :math:`L_{jj}`, the
    transposed blocks to each parent :math:`L_{aj}^\top` and to :math:`(X, y)`."""

    chol: FloatArray
    to_parent: dict[int, FloatArray]
    tail: FloatArray


@dataclass(frozen=True, eq=False)
class _Factorisation:
    r"""The block Cholesky factorisation at one :math:`\theta` and the deviance it gives."""

    value: float
    factors: list[FloatArray]
    levels: list[_Factor]
    rx: FloatArray
    information: FloatArray
    beta: FloatArray
    pwrss: float
    denominator: int


def _factorise(stats: Statistics, theta: FloatArray, reml: bool) -> _Factorisation:
    """Eliminate the levels innermost first (module docstring) and evaluate the deviance."""
    lams = factors(stats, theta)
    levels = stats.levels
    # scaled working copies: D (own), B (up), C (tail)
    diag = [right(left(lam, lv.own), lam) + np.eye(lv.q)[:, :, None]
            for lv, lam in zip(levels, lams, strict=True)]
    up = [{m: right(left(lams[a], u), lams[m]) for m, u in lv.up.items()}
          for a, lv in enumerate(levels)]
    tail = [left(lam, lv.tail) for lv, lam in zip(levels, lams, strict=True)]
    cross = stats.cross.copy()
    logdet = 0.0
    kept: list[_Factor] = []
    for a, level in enumerate(levels):
        chol = cholesky(diag[a])
        logdet += 2.0 * float(sum(np.log(chol[i, i]).sum() for i in range(level.q)))
        to_parent = {m: forward(chol, u) for m, u in up[a].items()}
        r = forward(chol, tail[a])
        for i in range(level.q):
            cross -= crossprod(r[i].T)  # single-threaded BLAS in small row chunks
        outer = sorted(to_parent)
        for i, m in enumerate(outer):
            g = to_parent[m]
            gather = level.gather[m]
            diag[m] -= scatter(gather, gram(g, g))
            tail[m] -= scatter(gather, gram(g, r))
            for m2 in outer[i + 1:]:
                # a unit with parents at m and m2 links them; m's unit has parent m2 there
                up[m][m2] -= scatter(gather, gram(g, to_parent[m2]))
        kept.append(_Factor(chol, to_parent, r))
    p = stats.p
    information = cross[:p, :p]
    rx: FloatArray = np.asarray(np.linalg.cholesky(information), dtype=np.float64)
    c_beta = np.linalg.solve(rx, cross[:p, p])
    pwrss = float(cross[p, p] - c_beta @ c_beta)
    denominator = stats.n_obs - p if reml else stats.n_obs
    value = logdet + denominator * (1.0 + np.log(2.0 * np.pi * pwrss / denominator))
    if reml:
        value += 2.0 * float(np.log(np.diag(rx)).sum())
    beta = np.asarray(np.linalg.solve(rx.T, c_beta), dtype=np.float64)
    return _Factorisation(float(value), lams, kept, rx, information, beta, pwrss, denominator)


def _spherical(stats: Statistics, fac: _Factorisation) -> list[FloatArray]:
    r"""The spherical conditional modes :math:`u` of each level (q, n), by back
    substitution from the outermost level: :math:`L_{jj}^\top u_j = c_{u,j} -
    \sum_a L_{aj}^\top u_a - R_{ZX,j} \hat\beta`."""
    p, levels = stats.p, stats.levels
    spherical: list[FloatArray] = [np.empty((lv.q, lv.n)) for lv in levels]
    for a in reversed(range(len(levels))):
        part = fac.levels[a]
        rhs = part.tail[:, p, :] - np.einsum("qpn,p->qn", part.tail[:, :p, :], fac.beta)
        for m, g in part.to_parent.items():
            rhs -= (g * at_parents(spherical[m][None, :, :], levels[a].parent[m])).sum(axis=1)
        spherical[a] = backward(part.chol, rhs)
    return spherical


def evaluate(stats: Statistics, theta: FloatArray, reml: bool,
             estimates: bool = False) -> tuple[float, Estimates | None]:
    r"""The profiled (RE)ML deviance at ``theta`` (module docstring), and with ``estimates``
    the fixed effects, :math:`\hat\sigma^2`, the fixed-effects information and the
    conditional modes :math:`b = \Lambda u` of each level (units x terms)."""
    fac = _factorise(stats, theta, reml)
    if not estimates:
        return fac.value, None
    spherical = _spherical(stats, fac)
    modes = tuple((lam @ u).T.copy() for u, lam in zip(spherical, fac.factors, strict=True))
    return fac.value, Estimates(fac.value, fac.beta, fac.pwrss / fac.denominator,
                                fac.information, modes)


def _selected_inverse(stats: Statistics, fac: _Factorisation, reml: bool
                      ) -> tuple[list[FloatArray], list[dict[int, FloatArray]],
                                 list[FloatArray | None]]:
    r"""The blocks of :math:`H^{-1}` on the pattern of the factor (Takahashi et al. 1973):
    each unit's diagonal block, its blocks with its parents and (REML) with
    :math:`\beta`. :math:`H` is the system of :math:`(u, \beta)` under REML and of
    :math:`u` alone under ML. From the root down, with :math:`P(j)` the parents of unit
    :math:`j` (and :math:`\beta`),

    .. math:: \Sigma_{jk} = -L_{jj}^{-\top} \sum_{a \in P(j)} L_{aj}^\top \Sigma_{ak}
              \ (k \in P(j)), \qquad
              \Sigma_{jj} = L_{jj}^{-\top}\Big(L_{jj}^{-1} - \sum_{a \in P(j)}
              L_{aj}^\top \Sigma_{ja}^\top\Big).
    """
    p, levels = stats.p, stats.levels
    count = len(levels)
    sig_diag: list[FloatArray] = [np.empty(0)] * count
    sig_up: list[dict[int, FloatArray]] = [{} for _ in range(count)]
    sig_beta: list[FloatArray | None] = [None] * count
    beta_beta = np.linalg.inv(fac.information) if reml else None

    def between(a: int, m: int, k: int) -> FloatArray:
        r""":math:`\Sigma` between the parents at m and k of level a's units."""
        if m == k:
            return at_parents(sig_diag[m], levels[a].parent[m])
        if m < k:
            return at_parents(sig_up[m][k], levels[a].parent[m])
        return transpose(at_parents(sig_up[k][m], levels[a].parent[k]))

    for a in reversed(range(count)):
        part, level = fac.levels[a], levels[a]
        rx_part = part.tail[:, :p, :]
        # the parents' blocks with beta, gathered once per unit (the largest arrays here)
        beta_at: dict[int, FloatArray] = {}
        for m in part.to_parent if beta_beta is not None else ():
            beta_m = sig_beta[m]
            assert beta_m is not None
            beta_at[m] = at_parents(beta_m, level.parent[m])
        for k in part.to_parent:
            acc = sum((mul(g, between(a, m, k)) for m, g in part.to_parent.items()),
                      np.zeros((level.q, levels[k].q, level.n)))
            if beta_beta is not None:
                acc += mul(rx_part, np.ascontiguousarray(transpose(beta_at[k])))
            sig_up[a][k] = -backward(part.chol, acc)
            sig_up[a][k][:, :, level.parent[k] < 0] = 0.0
        inner = np.zeros((level.q, level.q, level.n))
        for m, g in part.to_parent.items():
            inner += mul(g, transpose(sig_up[a][m]))
        if beta_beta is not None:
            acc = np.einsum("qpn,pr->qrn", rx_part, beta_beta)
            for m, g in part.to_parent.items():
                acc = acc + mul(g, beta_at[m])
            own_beta = -backward(part.chol, acc)
            sig_beta[a] = own_beta
            inner += mul(rx_part, transpose(own_beta))
        identity = np.broadcast_to(np.eye(level.q)[:, :, None], part.chol.shape)
        sig_diag[a] = backward(part.chol, forward(part.chol, identity) - inner)
    return sig_diag, sig_up, sig_beta


def value_and_gradient(stats: Statistics, theta: FloatArray, reml: bool
                       ) -> tuple[float, FloatArray]:
    r"""The deviance and its exact gradient at ``theta``.

    With :math:`E_k = \partial\Lambda/\partial\theta_k` and :math:`\Sigma = H^{-1}`
    (:func:`_selected_inverse`), :math:`r = y - X\hat\beta - Z\Lambda u` and
    :math:`\nu = n` (ML) or :math:`n - p` (REML),

    .. math:: \frac{\partial d}{\partial\theta_k} = 2\,\mathrm{tr}\big(\Sigma_{uu}
              \Lambda^\top Z^\top Z E_k\big) + 2\,[\mathrm{REML}]\,
              \mathrm{tr}\big(\Sigma_{u\beta} X^\top Z E_k\big)
              - \frac{2\nu}{r^2_\theta}\, r^\top Z E_k u,

    the first two terms from :math:`\partial \log|H| = \mathrm{tr}(H^{-1}\partial H)`,
    the last from the envelope theorem applied to the penalised residual sum of squares.
    Each is a sum over units of products of the statistics with :math:`\Sigma` blocks.
    """
    fac = _factorise(stats, theta, reml)
    p, levels = stats.p, stats.levels
    spherical = _spherical(stats, fac)
    sig_diag, sig_up, sig_beta = _selected_inverse(stats, fac, reml)
    lams = fac.factors
    trace = [np.zeros((lv.q, lv.q)) for lv in levels]
    residual = [np.empty(0)] * len(levels)
    for a, level in enumerate(levels):
        scaled = right(level.own, lams[a])
        trace[a] += mul(scaled, sig_diag[a]).sum(axis=2)
        residual[a] = level.tail[:, p, :] - np.einsum("qpn,p->qn", level.tail[:, :p, :],
                                                      fac.beta)
        residual[a] -= (scaled * spherical[a][None, :, :]).sum(axis=1)
        beta_a = sig_beta[a]
        if beta_a is not None:
            trace[a] += np.einsum("ipn,jpn->ij", level.tail[:, :p, :], beta_a)
    for a, level in enumerate(levels):
        for m, u in level.up.items():
            between = sig_up[a][m]
            trace[a] += mul(right(u, lams[m]), transpose(between)).sum(axis=2)
            trace[m] += mul(transpose(left(lams[a], u)), between).sum(axis=2)
            scaled = right(u, lams[m])
            residual[a] -= (scaled * at_parents(spherical[m][None, :, :],
                                                 level.parent[m])[0][None, :, :]).sum(axis=1)
            # the children's part of their parents' Z'r
            child = (left(lams[a], u) * spherical[a][:, None, :]).sum(axis=0)
            residual[m] -= scatter(level.gather[m], child[None, :, :])[0]
    gradient = np.zeros(theta.size)
    scale = 2.0 * fac.denominator / fac.pwrss
    for a, level in enumerate(levels):
        moment = np.einsum("in,jn->ij", residual[a], spherical[a])
        at = 0
        for k in level.blocks:
            q = stats.block_terms[k]
            rows, cols = np.tril_indices(q)
            positions = range(stats.theta_slices[k].start, stats.theta_slices[k].stop)
            for index, r, c in zip(positions, rows + at, cols + at, strict=True):
                gradient[index] += 2.0 * trace[a][r, c] - scale * moment[r, c]
            at += q
    return fac.value, gradient
