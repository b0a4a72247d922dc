r"""Turn an engine's raw estimates into the tidy tables of
:class:`pipeline.trajectories.engines.MixedFit`.

Singular (boundary) fits follow lme4's ``isSingular``: with each block's covariance written
relative to the residual variance, :math:`\Sigma_k / \sigma^2 = \Lambda_k \Lambda_k^\top`
(lower-triangular Cholesky factor), the fit is singular when a diagonal element of some
:math:`\Lambda_k` is below ``1e-4`` -- a variance estimated as zero, or a correlation of
+-1. AIC and BIC use lme4's parameter count: fixed effects, covariance parameters and the
residual variance, with the (RE)ML log-likelihood that was maximised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from pipeline.trajectories.engines.design import INTERCEPT, Block, Prepared
from pipeline.trajectories.engines.result import MixedFit

FloatArray = npt.NDArray[np.float64]
SINGULAR_TOLERANCE: Final = 1e-4
Z_95: Final = float(stats.norm.ppf(0.975))
FIXED_COLUMNS: Final = ("term", "estimate", "std_error", "ci_low", "ci_high", "p_value")
VARIANCE_COLUMNS: Final = ("level", "term", "variance", "sd", "correlation", "icc")


@dataclass(frozen=True, eq=False)
class RawFit:
    """What an engine hands back before the tables are built.

    ``blocks`` are the blocks actually fitted (statsmodels may split a correlated block);
    ``block_cov[k]`` and ``blups[k]`` (levels x terms) belong to ``blocks[k]``.
    """

    engine: str
    beta: FloatArray
    cov_beta: FloatArray
    sigma2: float
    blocks: tuple[Block, ...]
    block_cov: tuple[FloatArray, ...]
    blups: tuple[FloatArray, ...]
    fitted: FloatArray
    loglik: float
    converged: bool
    optimizer: str
    iterations: int
    warnings: tuple[str, ...]


def fixed_table(names: Sequence[str], beta: FloatArray, cov: FloatArray) -> pd.DataFrame:
    """term, estimate, std_error, Wald 95% interval and two-sided p-value."""
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = 2 * stats.norm.sf(np.abs(beta / se))
    return pd.DataFrame({"term": list(names), "estimate": beta, "std_error": se,
                         "ci_low": beta - Z_95 * se, "ci_high": beta + Z_95 * se,
                         "p_value": p_value})


def _rows_of_block(block: Block, cov: FloatArray) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for j, term in enumerate(block.terms):
        rows.append({"level": block.level, "term": term, "variance": cov[j, j],
                     "sd": np.sqrt(max(cov[j, j], 0.0))})
    for i in range(len(block.terms)):
        for j in range(i + 1, len(block.terms)):
            denominator = np.sqrt(max(cov[i, i] * cov[j, j], 0.0))
            rows.append({"level": block.level,
                         "term": f"cor({block.terms[i]}, {block.terms[j]})",
                         "variance": cov[i, j],
                         "correlation": cov[i, j] / denominator if denominator > 0 else np.nan})
    return rows


def variance_table(blocks: Sequence[Block], covs: Sequence[FloatArray],
                   sigma2: float) -> pd.DataFrame:
    """Variances, SDs, correlations, the residual and ICC rows (see ``MixedFit``)."""
    rows: list[dict[str, object]] = []
    intercepts: dict[str, float] = {}
    for block, cov in zip(blocks, covs, strict=True):
        rows += _rows_of_block(block, cov)
        if INTERCEPT in block.terms:
            j = block.terms.index(INTERCEPT)
            intercepts[block.level] = intercepts.get(block.level, 0.0) + float(cov[j, j])
    rows.append({"level": "Residual", "term": "", "variance": sigma2, "sd": np.sqrt(sigma2)})
    total = sum(intercepts.values()) + sigma2
    for level, variance in intercepts.items():
        rows.append({"level": level, "term": "ICC", "icc": variance / total})
    table = pd.DataFrame(rows, columns=list(VARIANCE_COLUMNS))
    return table.astype({c: float for c in VARIANCE_COLUMNS[2:]})


def boundary_terms(blocks: Sequence[Block], covs: Sequence[FloatArray],
                   sigma2: float) -> list[str]:
    """Terms whose relative Cholesky factor has a diagonal below 1e-4 (lme4's rule)."""
    found: list[str] = []
    for block, cov in zip(blocks, covs, strict=True):
        relative = cov / sigma2
        try:
            diagonal = np.diag(np.linalg.cholesky(relative))
        except np.linalg.LinAlgError:
            eigen = np.linalg.eigvalsh(relative)
            diagonal = np.sqrt(np.clip(np.sort(eigen)[::-1], 0.0, None))
        for term, value in zip(block.terms, diagonal, strict=True):
            if not value >= SINGULAR_TOLERANCE:
                found.append(f"{block.level} {term}")
    return found


def _random_effects(blocks: Sequence[Block], blups: Sequence[FloatArray]
                    ) -> dict[str, pd.DataFrame]:
    out: dict[str, pd.DataFrame] = {}
    for block, values in zip(blocks, blups, strict=True):
        frame = pd.DataFrame(values, index=pd.Index(block.labels, name=block.level),
                             columns=list(block.terms))
        if block.level in out:
            frame = out[block.level].join(frame, how="outer", rsuffix="_2")
        out[block.level] = frame
    return out


def _n_groups(blocks: Sequence[Block]) -> str:
    counts: dict[str, int] = {}
    for block in blocks:
        counts[block.level] = max(counts.get(block.level, 0), block.n_levels)
    return "; ".join(f"{level}={n}" for level, n in counts.items())


def _messages(prepared: Prepared, raw: RawFit, singular_terms: list[str]) -> list[str]:
    messages = [*prepared.notes, *dict.fromkeys(raw.warnings)]
    if not raw.converged:
        messages.append(f"{raw.engine}: the optimiser ({raw.optimizer}) did not report "
                        "convergence; treat the estimates with caution")
    if singular_terms:
        messages.append(f"{raw.engine}: boundary (singular) fit; variance or correlation "
                        f"at its limit for {', '.join(singular_terms)}")
    return messages


def assemble(prepared: Prepared, raw: RawFit) -> tuple[pd.DataFrame, pd.DataFrame,
                                                       pd.DataFrame, pd.DataFrame,
                                                       dict[str, pd.DataFrame], list[str]]:
    """(fixed, variance, diagnostics, fitted, random effects, messages) of a raw fit."""
    fixed = fixed_table(prepared.names, raw.beta, raw.cov_beta)
    variance = variance_table(raw.blocks, raw.block_cov, raw.sigma2)
    singular_terms = boundary_terms(raw.blocks, raw.block_cov, raw.sigma2)
    n_obs = int(prepared.y.size)
    n_par = raw.beta.size + sum(len(b.terms) * (len(b.terms) + 1) // 2 for b in raw.blocks) + 1
    messages = _messages(prepared, raw, singular_terms)
    diagnostics = pd.DataFrame([{
        "engine": raw.engine, "method": "REML" if prepared.spec.reml else "ML",
        "converged": bool(raw.converged), "singular": bool(singular_terms),
        "optimizer": raw.optimizer, "iterations": int(raw.iterations),
        "loglik": raw.loglik, "aic": -2 * raw.loglik + 2 * n_par,
        "bic": -2 * raw.loglik + n_par * np.log(n_obs), "n_obs": n_obs,
        "n_patients": prepared.n_patients, "n_groups": _n_groups(raw.blocks),
        "warnings": " | ".join(messages)}])
    fitted_fixed = prepared.X @ raw.beta
    fitted = pd.DataFrame({"fitted": raw.fitted, "fitted_fixed": fitted_fixed,
                           "residual": prepared.y - raw.fitted}, index=prepared.index)
    ranef = _random_effects(raw.blocks, raw.blups)
    return fixed, variance, diagnostics, fitted, ranef, messages


def build_fit(prepared: Prepared, raw: RawFit) -> MixedFit:
    """The :class:`MixedFit` of an engine's raw estimates (shared by the engines)."""
    fixed, variance, diagnostics, fitted, ranef, messages = assemble(prepared, raw)
    names = list(prepared.names)
    coef = pd.Series(raw.beta, index=names, name="estimate")
    cov = pd.DataFrame(raw.cov_beta, index=names, columns=names)
    return MixedFit(prepared.spec, raw.engine, fixed, variance, diagnostics, fitted, ranef,
                    coef, cov, prepared.design, tuple(messages))
