r"""Case-mix adjustment of the clinic audit: expected recovery and O/E ratios.

Case-mix adjustment (indirect standardisation)
    A logistic regression (statsmodels GLM, binomial family, logit link) of recovery on the
    PHQ-9 and GAD-7 baselines, condition, format, problem area and age (when recorded; a
    missing age is set to the mean with an indicator), fitted on all patients in the
    recovery denominator of every unit. Levels with fewer than ``min_level_n`` patients are
    pooled into ``other_pooled`` (merged into the most frequent level if still too small).
    For unit :math:`u`: :math:`O_u` = recovered patients, :math:`E_u = \sum_{i \in u}
    \hat p_i`, the ratio :math:`O_u / E_u` with the exact Poisson interval (Garwood 1936;
    Ulm 1990)

    .. math::

        \left[\tfrac{1}{2}\chi^2_{\alpha/2}(2O),\; \tfrac{1}{2}\chi^2_{1-\alpha/2}(2O + 2)
        \right] / E,

    and the indirectly standardised rate :math:`(O_u / E_u) \times \bar p` with
    :math:`\bar p` the level's overall recovery rate (interval scaled likewise). Byar's
    approximation (Breslow and Day 1987) approaches this interval for large :math:`O`.


References
----------
Breslow NE, Day NE (1987). Statistical Methods in Cancer Research II. IARC.
Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.
Ulm K (1990). A simple method to calculate the confidence interval of a standardized
mortality ratio. American Journal of Epidemiology 131:373-375.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from pipeline.audit.columns import FloatArray
from pipeline.config import StudyConfig
from pipeline.modelling import convergence, pooling

if TYPE_CHECKING:
    from pipeline.audit.review import AuditOptions

#: Iteration limit of the case-mix model (statsmodels' default, stated).
GLM_MAXITER = 100
CASE_MIX_NOT_USED = "case mix: the logistic model of recovery is not used"


def _pool(values: pd.Series, name: str, min_n: int) -> tuple[pd.Series, list[str]]:
    """Pool levels rarer than ``min_n`` into ``other_pooled`` (merged into the commonest
    level if still too small): :func:`pipeline.modelling.pooling.pool_rare_levels`."""
    values = values.astype(object).where(values.notna(), "missing").astype(str)
    result = pooling.pool_rare_levels(values, min_n, name=f"case mix: {name}")
    return result.values, list(result.notes)


def _case_mix_design(data: pd.DataFrame, baselines: Sequence[str],
                     options: AuditOptions) -> tuple[pd.DataFrame, list[str]]:
    """Design matrix: intercept, baselines, age (mean-imputed + indicator), dummies."""

    columns: dict[str, pd.Series] = {"Intercept": pd.Series(1.0, index=data.index)}
    for name in baselines:
        columns[name] = data[name].astype(float)
    notes: list[str] = []
    if "age" in options.case_mix_covariates and "age" in data and data["age"].notna().any():
        age = data["age"].astype(float)
        columns["age"] = age.fillna(float(age.mean()))
        if age.isna().any():
            columns["age_missing"] = age.isna().astype(float)
    for name in options.case_mix_covariates:
        if name == "age" or name not in data:
            continue
        values, pooled_notes = _pool(data[name], name, options.min_level_n)
        notes += pooled_notes
        counts = values.value_counts()
        reference = str(counts.index[0]) if len(counts) else ""
        for level in sorted(str(v) for v in counts.index if str(v) != reference):
            columns[f"{name}[{level}]"] = (values == level).astype(float)
    return pd.DataFrame(columns), notes


def case_mix_expected(
    patient_outcomes: pd.DataFrame, config: StudyConfig, options: AuditOptions
) -> tuple[pd.Series, list[str]]:
    """Predicted probability of recovery for every patient in the recovery denominator.

    Returns a float Series aligned with ``patient_outcomes`` (NaN outside the model: not a
    finished course, not at caseness or unpaired) and notes (pooling, fit warnings).

    A model that did not converge within ``GLM_MAXITER`` iterations, or whose covariates
    separate recovery (:func:`pipeline.modelling.convergence.unusable_fit`), is not used:
    the expected probability is then the overall recovery rate (no case-mix adjustment, as
    with too few outcomes), and a note starting ``CASE_MIX_NOT_USED`` says so and why
    (:func:`case_mix_problem`).
    """
    baselines = [f"{name}_baseline" for name in config.paired_instruments]
    known = patient_outcomes["finished_course"].astype(bool) & patient_outcomes[
        "recovery"].notna()
    for name in baselines:
        known &= patient_outcomes[name].notna()
    data = patient_outcomes.loc[known]
    expected = pd.Series(np.nan, index=patient_outcomes.index, dtype=float)
    y = data["recovery"].astype(bool).astype(float)
    if len(data) == 0 or y.nunique() < 2:
        expected.loc[data.index] = float(y.mean()) if len(data) else np.nan
        return expected, ["case mix: too few outcomes to fit a model; crude rate used"]
    design, notes = _case_mix_design(data, baselines, options)
    design = design.loc[:, (design.std() > 0) | (design.columns == "Intercept")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = sm.GLM(y, design, family=sm.families.Binomial()).fit(maxiter=GLM_MAXITER)
    notes += [f"case mix: statsmodels {w.category.__name__}: {w.message}" for w in caught]
    problem = convergence.unusable_fit(fitted, caught)
    if problem is not None:
        expected.loc[data.index] = float(y.mean())
        notes.append(f"{CASE_MIX_NOT_USED} ({problem}): expected recoveries are the overall "
                     "recovery rate, so the O/E ratios and adjusted rates are NOT adjusted "
                     "for case mix")
        return expected, list(dict.fromkeys(notes))
    expected.loc[data.index] = np.asarray(fitted.fittedvalues, dtype=float)
    notes.append(f"case mix: logistic model of recovery on {len(data)} patients with "
                 f"{design.shape[1] - 1} terms ({', '.join(design.columns[1:])})")
    return expected, list(dict.fromkeys(notes))


def case_mix_problem(notes: Sequence[str]) -> str | None:
    """The note of :func:`case_mix_expected` saying its model was not used, if any (the
    audit then records the case-mix model as not estimable)."""
    note = next((note for note in notes if note.startswith(CASE_MIX_NOT_USED)), None)
    return None if note is None else note.removeprefix("case mix: ")


def poisson_ratio_interval(
    observed: npt.ArrayLike, expected: npt.ArrayLike, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    r"""Exact Poisson interval for O/E (Garwood 1936; Ulm 1990).

    :math:`[\chi^2_{\alpha/2}(2O)/2,\ \chi^2_{1-\alpha/2}(2O+2)/2] / E`; lower limit 0 when
    :math:`O = 0`; NaN when :math:`E \le 0`.

    Examples
    --------
    >>> low, high = poisson_ratio_interval([10], [10.0])
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.4795, 1.839)
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    safe_e = np.where(e > 0, e, np.nan)
    low = np.where(o > 0, stats.chi2.ppf(alpha / 2, 2 * np.maximum(o, 1)) / 2, 0.0)
    high = stats.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2
    return (low / safe_e).astype(np.float64), (high / safe_e).astype(np.float64)

