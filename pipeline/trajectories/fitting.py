"""Fitting one trajectory model at a time: the rows it uses, the fit, and its tables.

A built-in model (:mod:`pipeline.trajectories.specs`) is fitted through an engine
(:mod:`pipeline.trajectories.engines`) to the rows it uses (completers only for
``completers``; every format x dropout-pattern cell large enough for ``pattern_mixture``),
and its derived tables are computed (:mod:`pipeline.trajectories.estimates`). A custom
model is parsed from its lme4 formula (:mod:`pipeline.trajectories.formula`). Whatever the
data cannot support is raised as :class:`pipeline.estimability.NotEstimable`, for the
caller to record at the model's boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from pipeline.config import ModelSpec
from pipeline.estimability import NotEstimable, require
from pipeline.trajectories import engines
from pipeline.trajectories.engines import MixedFit, VarianceComponent
from pipeline.trajectories.estimates import (
    format_difference,
    patient_fitted,
    phase_slopes,
    slope_table,
    trajectory_table,
)
from pipeline.trajectories.formula import FormulaError, to_spec
from pipeline.trajectories.means import comparison_row
from pipeline.trajectories.specs import MIN_CLUSTERS, model_spec

__all__ = ["FitContext", "fit_builtin", "fit_custom", "merge_tables"]

MIN_PATTERN_PATIENTS: Final = 5


def _tables(name: str, fit: MixedFit, rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The per-model tables and the model's row of the comparison table."""
    diagnostics = fit.diagnostics.assign(model=name, formula=fit.spec.lme4())
    return {f"mixed_{name}_fixed": fit.fixed, f"mixed_{name}_variance": fit.variance,
            f"mixed_{name}_diagnostics": diagnostics,
            "mixed_model_comparison": comparison_row(name, fit, rows)}


def _subset(model: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a model uses.

    Raises
    ------
    NotEstimable
        Too few completers, or a format x dropout-pattern cell too small to estimate.
    """
    if model == "completers":
        rows = frame.loc[frame["completers"]] if "completers" in frame.columns else frame[:0]
        require(rows["patient_id"].nunique() >= MIN_CLUSTERS,
                f"{rows['patient_id'].nunique()} completers with scores; the completers "
                f"model needs at least {MIN_CLUSTERS}",
                "more patients who complete treatment")
        return rows
    if model == "pattern_mixture":
        cells = frame.groupby(["format", "pattern"], observed=False)["patient_id"].nunique()
        cells = cells[cells.index.get_level_values("format").isin(frame["format"].unique())]
        small = cells[cells < MIN_PATTERN_PATIENTS]
        require(small.empty,
                f"fewer than {MIN_PATTERN_PATIENTS} patients in format x dropout-pattern "
                f"cells {', '.join('/'.join(map(str, k)) for k in small.index)}",
                f"at least {MIN_PATTERN_PATIENTS} dropouts and {MIN_PATTERN_PATIENTS} "
                "retained patients in each format")
    return frame


@dataclass(frozen=True)
class FitContext:
    """What every model fit needs besides its name."""

    frame: pd.DataFrame
    covariates: list[str]
    components: tuple[VarianceComponent, ...]
    time: str
    engine: str
    weeks: tuple[float, ...]
    instrument: str


def _derived(model: str, fit: MixedFit, rows: pd.DataFrame, ctx: FitContext
             ) -> dict[str, pd.DataFrame]:
    """The tables derived from a fitted model: slopes, format difference, mean
    trajectories and (growth) per-patient fitted values; for ``phases`` the phase slopes."""
    if model == "phases":
        return {"mixed_phase_slopes": phase_slopes(fit, rows)}
    column = f"baseline_{ctx.instrument}"
    baseline_sd = float(rows.drop_duplicates("patient_id")[column].std()) \
        if column in rows.columns else np.nan
    out = {"mixed_slopes": slope_table(model, fit, rows, ctx.time)}
    difference = format_difference(model, fit, rows, ctx.time, ctx.weeks, baseline_sd)
    if not difference.empty:
        difference.insert(1, "instrument", ctx.instrument)
        out["mixed_format_difference"] = difference
    if model != "problem_area":
        out["mixed_trajectories"] = trajectory_table(model, fit, rows, ctx.time)
    if model == "growth":
        out["mixed_patient_fitted"] = patient_fitted(fit, rows)
    return out


def fit_builtin(model: str, ctx: FitContext, warm: engines.WarmStart | None
                 ) -> tuple[dict[str, pd.DataFrame], list[str], engines.WarmStart | None]:
    """Fit one built-in model (from ``warm``, at registry scale) and derive its tables;
    also returns the warm start it offers the next model.

    Raises
    ------
    NotEstimable
        When the data cannot support the model (see :func:`_subset` and
        :func:`pipeline.trajectories.engines.check_identifiable`) or no engine could fit it.
    """
    rows = _subset(model, ctx.frame)
    spec = model_spec(model, ctx.time, ctx.covariates, ctx.components)
    fit = _fit_or_refuse(spec, rows, ctx.engine, warm)
    tables = _tables(model, fit, rows)
    tables.update(_derived(model, fit, rows, ctx))
    return tables, [f"{model}: {m}" for m in fit.messages], fit.warm_start or warm


def _fit_or_refuse(spec: engines.MixedSpec, rows: pd.DataFrame, engine: str,
                   warm: engines.WarmStart | None = None) -> MixedFit:
    """``engines.fit``, with a fit that no engine could complete reported as not estimable."""
    try:
        return engines.fit(spec, rows, engine, warm_start=warm)
    except engines.EngineError as exc:
        raise NotEstimable(f"no engine could fit {spec.lme4()}: {exc}",
                           "a simpler model, or more data") from exc


def fit_custom(model: ModelSpec, long_for: Callable[[str], pd.DataFrame], engine: str
                ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Fit a researcher's own model.

    Raises
    ------
    NotEstimable
        For a formula that cannot be used with these data, or a model the data cannot
        support.
    """
    try:
        spec = to_spec(model.formula, model.reml)
        data = long_for(spec.outcome)
    except (FormulaError, KeyError) as exc:
        raise NotEstimable(f"formula {model.formula!r} cannot be used: {exc}",
                           "a formula naming columns of the data (see README)") from exc
    if model.exclude_baseline:
        data = data.loc[~data["is_baseline"] & (data["session_number"] > 0)]
    fit = _fit_or_refuse(spec, data, engine)
    return _tables(model.name, fit, data), [f"{model.name}: {m}" for m in fit.messages]


def merge_tables(tables: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> None:
    """Add tables; the shared ones (trajectories, slopes, ...) are stacked by model."""
    for key, table in new.items():
        tables[key] = pd.concat([tables[key], table], ignore_index=True) if key in tables \
            else table
