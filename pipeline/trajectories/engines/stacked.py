r"""Linear algebra on stacks of small matrices, one per unit (units on the last axis).

The fit on sufficient statistics (:mod:`pipeline.trajectories.engines.sufficient`) works on
one small block per patient, therapy group or therapist: a (q, k, n) array holds n
matrices of q x k, so every operation below is a handful of contiguous vector operations
over the units rather than n calls of LAPACK on 2 x 2 matrices (which cost more in calls
than in arithmetic). Nothing here calls a threaded BLAS: a product over a million units
would start OpenBLAS's threads, which on a busy machine spend most of the time waiting
for each other (the same finding as :func:`pipeline.trajectories.engines.design.crossprod`,
which the one large product, :math:`\sum_j R_j^\top R_j`, goes through).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

__all__ = ["at_parents", "backward", "cholesky", "forward", "gram", "left", "mul", "right",
           "scatter", "transpose"]


def cholesky(matrices: FloatArray) -> FloatArray:
    """Lower Cholesky factors of a stack (q, q, n) of small positive definite matrices
    (the column-by-column algorithm, vectorised over the units: LAPACK per 2 x 2 matrix
    costs more in calls than in arithmetic)."""
    q = matrices.shape[0]
    out = np.zeros_like(matrices)
    for j in range(q):
        pivot = matrices[j, j] - (out[j, :j] ** 2).sum(axis=0)
        if (pivot <= 0).any():
            raise np.linalg.LinAlgError("not positive definite")
        out[j, j] = np.sqrt(pivot)
        for i in range(j + 1, q):
            out[i, j] = (matrices[i, j] - (out[i, :j] * out[j, :j]).sum(axis=0)) / out[j, j]
    return out


def forward(lower: FloatArray, rhs: FloatArray) -> FloatArray:
    """Solve :math:`L x = b` for stacks ``lower`` (q, q, n), lower triangular, and ``rhs``
    (q, k, n)."""
    out = np.empty_like(rhs)
    for i in range(lower.shape[0]):
        acc = rhs[i].copy()
        for j in range(i):
            acc -= lower[i, j] * out[j]
        out[i] = acc / lower[i, i]
    return out


def backward(lower: FloatArray, rhs: FloatArray) -> FloatArray:
    r"""Solve :math:`L^\top x = b` for stacks ``lower`` (q, q, n) and ``rhs`` (q, n)."""
    q = lower.shape[0]
    out = np.empty_like(rhs)
    for i in reversed(range(q)):
        acc = rhs[i].copy()
        for k in range(i + 1, q):
            acc -= lower[k, i] * out[k]
        out[i] = acc / lower[i, i]
    return out


def left(lam: FloatArray, stack: FloatArray) -> FloatArray:
    r""":math:`\Lambda^\top S` for each unit of ``stack`` (q, k, n), term by term (no BLAS:
    see the module docstring)."""
    out = np.zeros((lam.shape[1], *stack.shape[1:]))
    for i in range(lam.shape[1]):
        for a in range(lam.shape[0]):
            if lam[a, i] != 0.0:
                out[i] += lam[a, i] * stack[a]
    return out


def right(stack: FloatArray, lam: FloatArray) -> FloatArray:
    r""":math:`S \Lambda` for each unit of ``stack`` (q, m, n), term by term."""
    out = np.zeros((stack.shape[0], lam.shape[1], stack.shape[2]))
    for j in range(lam.shape[1]):
        for b in range(lam.shape[0]):
            if lam[b, j] != 0.0:
                out[:, j] += stack[:, b] * lam[b, j]
    return out


def gram(left: FloatArray, right: FloatArray) -> FloatArray:
    r""":math:`G^\top H` for each unit of ``left`` (q, a, n) and ``right`` (q, b, n)."""
    out: FloatArray = np.einsum("qan,qbn->abn", left, right)
    return out


def scatter(gather: sparse.csr_matrix, values: FloatArray) -> FloatArray:
    """Sum ``values`` (a, b, n_inner) into the parents: (a, b, n_outer)."""
    a, b, n = values.shape
    out: FloatArray = np.asarray(gather @ values.reshape(a * b, n).T).T.reshape(a, b, -1)
    return out


def mul(left: FloatArray, right: FloatArray) -> FloatArray:
    """:math:`A B` for each unit of ``left`` (q, a, n) and ``right`` (a, b, n).

    ``einsum``'s own loop (not its BLAS path, ``optimize=False``): two to ten times faster
    on these shapes than a sum of broadcast products, which builds a temporary per term;
    an inner dimension of one is a plain broadcast product."""
    if left.shape[1] == 1:
        out: FloatArray = left[:, 0, None, :] * right[None, 0, :, :]
        return out
    product: FloatArray = np.einsum("ian,abn->ibn", left, right)
    return product


def transpose(stack: FloatArray) -> FloatArray:
    r""":math:`A^\top` for each unit of ``stack`` (a, b, n)."""
    return np.swapaxes(stack, 0, 1)


def at_parents(values: FloatArray, parent: IntArray) -> FloatArray:
    """``values`` (a, b, n_outer) of each inner unit's parent (zero where it has none)."""
    out = values[:, :, np.maximum(parent, 0)]
    out[:, :, parent < 0] = 0.0
    return out
