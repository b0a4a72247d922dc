"""Fitting one trajectory model at a time: the rows it uses, the fit, and its tables.

A built-in model (:mod:`pipeline.trajectories.specs`) is fitted through an engine
(:mod:`pipeline.trajectories.engines`) to the rows it uses (completers only for
``completers``; every format x dropout-pattern cell large enough for ``pattern_mixture``),
and its derived tables are computed (:mod:`pipeline.trajectories.estimates`). A custom
model is parsed from its lme4 formula (:mod:`pipeline.trajectories.formula`). Whatever the
data cannot support is raised as :class:`pipeline.estimability.NotEstimable`, for the
caller to record at the model's boundary; so is a model whose final fit did not converge
(:class:`NotConverged`): none of its estimates (fixed effects, variances, slopes, means,
format difference) is written or used, only the diagnostics that show the failed fit.
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

__all__ = ["FitContext", "NotConverged", "fit_builtin", "fit_custom", "merge_tables"]

MIN_PATTERN_PATIENTS: Final = 5
#: The tables of a model whose final fit did not converge that are still written: they
#: describe the fit (``converged`` false, the optimiser, its warnings), they estimate nothing
DIAGNOSTIC_TABLES: Final = ("diagnostics", "model_comparison")


class NotConverged(NotEstimable):
    """A model whose final fit did not converge (every optimiser, and the ``auto`` engine's
    fallback, tried): not estimable, so no estimate of it is used. It carries the tables
    that say so (``mixed_<model>_diagnostics`` and its ``mixed_model_comparison`` row,
    ``converged`` false with the optimiser's note) and the engine's messages, for the
    caller to keep while recording the model as not estimable."""

    def __init__(self, reason: str, remedy: str, tables: dict[str, pd.DataFrame],
                 notes: list[str]) -> None:
        super().__init__(reason, remedy)
        self.tables = tables
        self.notes = notes


def _refuse_unconverged(name: str, fit: MixedFit, tables: dict[str, pd.DataFrame],
                        notes: list[str]) -> None:
    """Raise :class:`NotConverged` for a fit that did not converge, with its diagnostics."""
    if fit.converged:
        return
    diagnostics = fit.diagnostics.iloc[0]
    iterations = int(diagnostics["iterations"])
    kept = {key: table for key, table in tables.items() if key.endswith(DIAGNOSTIC_TABLES)}
    raise NotConverged(
        f"the final fit of {name} ({fit.engine}, optimiser {diagnostics['optimizer']}, "
        f"{iterations} iteration{'' if iterations == 1 else 's'}) did not converge, so none "
        "of its estimates "
        "is used (tables/mixed_model_comparison.csv and "
        f"tables/mixed_{name}_diagnostics.csv show the fit, converged = False)",
        "a simpler random structure, more patients, or another engine (trajectories.engine)",
        kept, notes)


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
    NotConverged
        When the final fit did not converge (with the tables that show it).
    """
    rows = _subset(model, ctx.frame)
    spec = model_spec(model, ctx.time, ctx.covariates, ctx.components)
    fit = _fit_or_refuse(spec, rows, ctx.engine, warm)
    tables = _tables(model, fit, rows)
    notes = [f"{model}: {m}" for m in fit.messages]
    _refuse_unconverged(model, fit, tables, notes)
    tables.update(_derived(model, fit, rows, ctx))
    return tables, notes, fit.warm_start or warm


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
    NotConverged
        When the final fit did not converge (with the tables that show it).
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
    tables = _tables(model.name, fit, data)
    notes = [f"{model.name}: {m}" for m in fit.messages]
    _refuse_unconverged(model.name, fit, tables, notes)
    return tables, notes


def merge_tables(tables: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> None:
    """Add tables; the shared ones (trajectories, slopes, ...) are stacked by model."""
    for key, table in new.items():
        tables[key] = pd.concat([tables[key], table], ignore_index=True) if key in tables \
            else table
