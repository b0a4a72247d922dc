r"""Quantities derived from a fitted trajectory model: linear combinations :math:`L\hat\beta`.

Model-based means by condition x format over time points 0..16 (weeks; session numbers
when ``time`` is ``session_number``; weeks, entered as log(1 + weeks), for ``log_weeks``),
with baseline covariates at their means (growth, completers, pattern mixture); slopes per
time unit by format, averaged over the condition (and problem-area or pattern) distribution
of the patients in the model; the format difference (group minus individual) at each of
``contrast_weeks`` (session numbers on the session scale), also divided by the SD of the
baseline scores of the patients in the model (a standardised mean difference treating that
SD as known; Feingold 2009); and for ``phases`` the slope of each phase by format. Each has
a Wald 95% interval.

In the pattern-mixture model (:mod:`pipeline.trajectories.specs`) marginal quantities
average the patterns with the observed pattern shares within each format,
:math:`\hat\mu_f = \sum_p \hat\pi_{p|f}\hat\mu_{fp}`, with delta-method variance
:math:`\ell^\top V\ell + \hat m^\top \Sigma_\pi \hat m`,
:math:`\Sigma_\pi = (\mathrm{diag}\,\hat\pi - \hat\pi\hat\pi^\top)/n_f` (Hedeker and
Gibbons 1997).

References
----------
Hedeker D, Gibbons RD (1997). Application of random-effects pattern-mixture models for
missing data in longitudinal studies. Psychological Methods 2:64-78.
Feingold A (2009). Effect sizes for growth-modeling analysis for controlled clinical trials
in the same metric as for classical analysis. Psychological Methods 14:43-53.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from pipeline.trajectories import engines
from pipeline.trajectories.data import PHASES, TIME_SCALES
from pipeline.trajectories.engines import MixedFit

__all__ = ["TIME_POINTS", "format_difference", "patient_fitted", "phase_slopes",
           "slope_table", "trajectory_table"]

FloatArray = npt.NDArray[np.float64]
TIME_POINTS: Final = tuple(float(t) for t in range(17))


@dataclass(frozen=True)
class _Mean:
    """A model-based mean: pattern-specific rows L (P x k), pattern shares and n."""

    rows: FloatArray
    shares: FloatArray
    n: int


def _weights(patients: pd.DataFrame, column: str) -> pd.Series:
    """Patient shares of each level of ``column`` (``patients``: one row per patient)."""
    shares = patients[column].value_counts(normalize=True, sort=False)
    return shares[shares > 0]


def _patient_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, with the patient-level columns the weights use."""
    columns = [c for c in ("patient_id", "format", "condition", "problem_area", "pattern")
               if c in frame.columns]
    return frame[columns].drop_duplicates("patient_id")


def _newdata(frame: pd.DataFrame, rows: list[dict[str, object]]) -> pd.DataFrame:
    """New rows with categorical columns coded like ``frame``; covariates at their means."""
    newdata = pd.DataFrame(rows)
    for column in frame.columns:
        if column in newdata.columns:
            if isinstance(frame[column].dtype, pd.CategoricalDtype):
                newdata[column] = pd.Categorical(newdata[column],
                                                 categories=frame[column].cat.categories)
        elif column in ("age_centred", *PHASES, *TIME_SCALES) or column.startswith("sex["):
            newdata[column] = 0.0
    return newdata


def _patterns(fit: MixedFit, patients: pd.DataFrame, fmt: object) -> tuple[pd.Series, int]:
    """Pattern shares within a format (pattern-mixture model), else one dummy pattern."""
    if "pattern" not in fit.spec.fixed:
        return pd.Series([1.0], index=[None]), 0
    within = patients.loc[patients["format"] == fmt]
    return _weights(within, "pattern"), len(within)


def _means(fit: MixedFit, frame: pd.DataFrame, focals: list[dict[str, object]],
           average: tuple[str, ...]) -> list[_Mean]:
    """Means at each focal point, averaged over the patient shares of ``average`` (and, in
    the pattern-mixture model, of the patterns within the focal format); one design pass."""
    patients = _patient_rows(frame)
    margins = list(itertools.product(*[_weights(patients, c).items() for c in average]))
    patterns = {fmt: _patterns(fit, patients, fmt) for fmt in {f.get("format") for f in focals}}
    rows: list[dict[str, object]] = []
    weights: list[float] = []
    owners: list[tuple[int, int]] = []
    layout: list[tuple[pd.Series, int]] = []
    for i, focal in enumerate(focals):
        shares, n = patterns[focal.get("format")]
        layout.append((shares, n))
        for j, pattern in enumerate(shares.index):
            for combo in margins:
                row = {**focal, **dict(zip(average, (level for level, _ in combo),
                                           strict=True))}
                if pattern is not None:
                    row["pattern"] = pattern
                rows.append(row)
                weights.append(float(np.prod([share for _, share in combo])))
                owners.append((i, j))
    matrix = fit.design.matrix(_newdata(frame, rows)) * np.asarray(weights)[:, None]
    out = []
    for i, (shares, n) in enumerate(layout):
        block = np.zeros((shares.size, matrix.shape[1]))
        for r, (owner, j) in enumerate(owners):
            if owner == i:
                block[j] += matrix[r]
        out.append(_Mean(block, shares.to_numpy(dtype=float), n))
    return out


def _combine(fit: MixedFit, parts: list[tuple[float, _Mean]]) -> tuple[float, float]:
    """Estimate and SE of sum c * mean, with the pattern-share variance (module docstring)."""
    beta = fit.coef.to_numpy(dtype=float)
    cov = fit.cov.to_numpy(dtype=float)
    ell = sum(c * m.shares @ m.rows for c, m in parts)
    variance = float(ell @ cov @ ell)
    for c, m in parts:
        if m.n > 0:
            means = m.rows @ beta
            sigma = (np.diag(m.shares) - np.outer(m.shares, m.shares)) / m.n
            variance += c * c * float(means @ sigma @ means)
    return float(ell @ beta), float(np.sqrt(variance))


def _row(estimate: float, se: float, **keys: object) -> dict[str, object]:
    z = engines.Z_95
    p = float(2 * stats.norm.sf(abs(estimate / se))) if se > 0 else np.nan
    return {**keys, "estimate": estimate, "std_error": se, "ci_low": estimate - z * se,
            "ci_high": estimate + z * se, "p_value": p}


def _time_value(point: float, time: str) -> float:
    """The model's time value of a time point (week or session number)."""
    return float(np.log1p(point)) if time == "log_weeks" else float(point)


def _averaged_over(model: str) -> tuple[str, ...]:
    return ("problem_area", "condition") if model == "problem_area" else ("condition",)


def _formats(frame: pd.DataFrame) -> list[str]:
    return [str(f) for f in frame["format"].cat.categories]


def trajectory_table(model: str, fit: MixedFit, frame: pd.DataFrame,
                     time: str) -> pd.DataFrame:
    """Model-based means by condition x format at time points 0..16 (see module docstring)."""
    cells = list(itertools.product(frame["condition"].cat.categories, _formats(frame),
                                   TIME_POINTS))
    focals = [{"condition": c, "format": f, time: _time_value(t, time)} for c, f, t in cells]
    average = ("problem_area",) if model == "problem_area" else ()
    rows = []
    for (condition, fmt, point), focal, mean in zip(
            cells, focals, _means(fit, frame, focals, average), strict=True):
        rows.append(_row(*_combine(fit, [(1.0, mean)]), model=model, condition=condition,
                         format=fmt, time_scale=time, time_point=point, time=focal[time]))
    return pd.DataFrame(rows).drop(columns="p_value")


def _contrasts(fit: MixedFit, frame: pd.DataFrame, focal: dict[str, object],
               varying: str, average: tuple[str, ...]) -> dict[str, list[tuple[float, _Mean]]]:
    """Per format: mean at ``varying`` = 1 minus mean at ``varying`` = 0 (a slope), with
    ``group - individual`` added when both formats are present."""
    formats = _formats(frame)
    focals = [{**focal, "format": f, varying: v} for f in formats for v in (1.0, 0.0)]
    means = _means(fit, frame, focals, average)
    parts = {f: [(1.0, means[2 * i]), (-1.0, means[2 * i + 1])] for i, f in enumerate(formats)}
    if {"individual", "group"} <= set(parts):
        parts["group - individual"] = parts["group"] + [(-c, m) for c, m in parts["individual"]]
    return parts


def slope_table(model: str, fit: MixedFit, frame: pd.DataFrame, time: str) -> pd.DataFrame:
    """Slope per time unit by format and group minus individual (marginal over conditions)."""
    parts = _contrasts(fit, frame, {}, time, _averaged_over(model))
    return pd.DataFrame([_row(*_combine(fit, p), model=model, time_scale=time, format=f)
                         for f, p in parts.items()])


def format_difference(model: str, fit: MixedFit, frame: pd.DataFrame, time: str,
                      weeks: Sequence[float], baseline_sd: float) -> pd.DataFrame:
    r"""Group minus individual at each of ``weeks``: points and standardised by the
    baseline SD.

    Each row is a linear combination :math:`L\hat\beta` of the fixed effects (the mean of
    group minus the mean of individual at that week, averaged over the condition
    distribution of the patients in the model; see :func:`_combine`) with standard error
    :math:`\sqrt{L V L^\top}`, :math:`V` the fixed-effects covariance matrix (plus the
    pattern-share term in the pattern-mixture model), and a Wald 95% interval.

    Returns
    -------
    DataFrame
        One row per week, in the order given (empty when the data hold one format only).
    """
    if not {"individual", "group"} <= set(_formats(frame)):
        return pd.DataFrame()
    focals: list[dict[str, object]] = [{time: _time_value(week, time), "format": fmt}
              for week in weeks for fmt in ("group", "individual")]
    means = _means(fit, frame, focals, _averaged_over(model))
    rows = []
    for i, week in enumerate(weeks):
        group, individual = means[2 * i], means[2 * i + 1]
        row = _row(*_combine(fit, [(1.0, group), (-1.0, individual)]), model=model,
                   time_scale=time, time_point=float(week), contrast="group - individual")
        row["baseline_sd"] = baseline_sd
        for key in ("estimate", "ci_low", "ci_high"):
            target = "effect_size" if key == "estimate" else f"effect_size_{key}"
            value = row[key]
            assert isinstance(value, float)
            row[target] = value / baseline_sd if baseline_sd > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def phase_slopes(fit: MixedFit, frame: pd.DataFrame) -> pd.DataFrame:
    """Slope of each phase by format and group minus individual (phases model)."""
    rows = []
    for phase in PHASES:
        parts = _contrasts(fit, frame, {}, phase, ("condition",))
        rows += [_row(*_combine(fit, p), model="phases", phase=phase, format=f)
                 for f, p in parts.items()]
    return pd.DataFrame(rows)


def patient_fitted(fit: MixedFit, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-patient fitted trajectories (with random effects) at each observed score
    (condition and format kept categorical: at registry scale this table has a row per
    score, and text cells would cost a string object each)."""
    used = rows.loc[fit.fitted.index, ["patient_id", "condition", "format",
                                       "session_number", "weeks", "time", "score"]]
    table = pd.concat([used, fit.fitted], axis=1)
    for column in ("condition", "format"):
        if isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].cat.remove_unused_categories()
        else:
            table[column] = table[column].astype(str)
    return table.reset_index(drop=True)
