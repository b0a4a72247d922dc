r"""Mixed-effects models of symptom trajectories during IPT: ``analyse(...)``.

Every observed score of an attended session is an outcome row (the assessment, session 0,
included), so patients who drop out contribute the scores they have: the likelihood-based
analysis is valid when scores are missing at random given the observed ones (Laird and
Ware 1982; Mallinckrodt et al. 2003). Dropout that depends on the unobserved trajectory
(missing not at random) is explored by the completers-only and pattern-mixture models.

The analysis is split by what each part does: the long data and phase times
(:mod:`pipeline.trajectories.data`), the built-in models and their random effects
(:mod:`pipeline.trajectories.specs`, where the models are stated), fitting one model
(:mod:`pipeline.trajectories.fitting`) and the quantities derived from a fit
(:mod:`pipeline.trajectories.estimates`). This module codes the model data
(:func:`model_data`), samples patients at registry scale (:func:`sample_patients`) and runs
the configured models, each at its own boundary (:func:`analyse`). It returns data only:
the figure is drawn on the report side (:mod:`pipeline.report.trajectory_plots`).

Coding of the model data
------------------------
Categorical effects use treatment coding against ``individual`` (format),
``major_depression`` (condition), ``role_disputes`` (problem area) and ``retained``
(dropout pattern); levels held by fewer than ``MIN_LEVEL_PATIENTS`` patients are pooled
into ``other_pooled``, itself merged into the reference level when still that rare (the
one rule of ``pipeline.modelling.pooling``). Baseline covariates are age (``age_centred``)
and sex (``sex[...]`` indicators), each centred at its patient-level mean so that
model-based means refer to the average covariate profile; age is used when at least 90% of
patients have it.

References
----------
Laird NM, Ware JH (1982). Random-effects models for longitudinal data. Biometrics 38:963.
Mallinckrodt CH et al. (2003). Assessing and interpreting treatment effects in
longitudinal clinical trials with missing data. Biological Psychiatry 53:754-760.
Cochran WG (1977). Sampling Techniques, 3rd ed. Wiley.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from data_schemas.vocab import CONDITIONS, FORMATS
from pipeline.config import StudyConfig
from pipeline.estimability import NOT_ESTIMABLE, AnalysisRecord, attempt
from pipeline.modelling import pooling, sampling
from pipeline.trajectories import engines
from pipeline.trajectories.data import (
    MODEL_PATIENT_COLUMNS,
    MODEL_SESSION_COLUMNS,
    PHASES,
    TIME_SCALES,
    add_phases,
    long_scores,
)
from pipeline.trajectories.estimates import format_difference
from pipeline.trajectories.fitting import (
    FitContext,
    NotConverged,
    fit_builtin,
    fit_custom,
    merge_tables,
)
from pipeline.trajectories.means import model_comparison, observed_means
from pipeline.trajectories.specs import model_spec, random_structure

#: ``PHASES``, ``TIME_SCALES``, ``add_phases``, ``long_scores``, ``format_difference``,
#: ``model_spec`` and ``random_structure`` are re-exported from the modules that define
#: them, for the callers (tests, bench, notebooks) that import them from here.
__all__ = ["PHASES", "TIME_SCALES", "TrajectoryResult", "add_phases", "analyse",
           "format_difference", "long_scores", "model_data", "model_spec",
           "random_structure", "sample_patients"]

logger = logging.getLogger(__name__)

REFERENCES: Final = {"format": FORMATS, "condition": CONDITIONS,
                     "problem_area": ("role_disputes", "grief", "role_transitions",
                                      "interpersonal_deficits"),
                     "pattern": ("retained", "dropout")}
POOLED: Final = "other_pooled"
MIN_LEVEL_PATIENTS: Final = 10
SAMPLE_HASH_KEY: Final = sampling.SAMPLE_HASH_KEY
AGE_COMPLETE: Final = 0.9
STAGE: Final = "models"
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class TrajectoryResult:
    """Tables and messages of the trajectory analysis (data only: no figure).

    Attributes
    ----------
    tables : dict of str to DataFrame
        Written as ``OUT/tables/<key>.csv``: ``mixed_<model>_fixed``,
        ``mixed_<model>_variance``, ``mixed_<model>_diagnostics`` per model fitted, and
        ``mixed_trajectories``, ``mixed_slopes``, ``mixed_format_difference`` (one row
        per model and contrast week), ``mixed_phase_slopes`` (with ``phases``),
        ``mixed_patient_fitted``, ``mixed_observed_means`` and ``mixed_model_comparison``
        (:mod:`pipeline.trajectories.means`).
    messages : tuple of str
        Non-convergence, boundary fits, dropped rows or terms.
    records : tuple of AnalysisRecord
        One per model: done, not estimable (with the reason) or failed.
    instrument : str
        The instrument modelled (``trajectories.instrument``, else the primary one): the
        ``mixed_trajectories`` figure names it on its axis
        (:func:`pipeline.report.trajectory_plots.stage_figures`).
    """

    tables: dict[str, pd.DataFrame]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()
    instrument: str = ""


# --------------------------------------------------------------------------- sample


def sample_patients(patients: pd.DataFrame, limit: int | None
                    ) -> tuple[pd.DataFrame, str | None]:
    r"""At most ``limit`` patients: a pseudo-random sample when there are more.

    Registry-scale data (a national service's million patients a year) would need tens of
    gigabytes for five mixed models. The sample is the ``limit`` patients with the smallest
    keyed hash of their id (:func:`pipeline.modelling.sampling.hash_sample`): a simple
    random sample in effect, the same whatever the row order and largely the same when
    patients are added, so reruns and updates are comparable. The models then estimate the
    same quantities (consistently) with standard errors up to about :math:`\sqrt{N/m}`
    times those of a fit to all :math:`N` patients (less for effects driven by therapists
    or groups, which all stay in the sample; Cochran 1977, ch. 2).

    Returns
    -------
    (DataFrame, str or None)
        The patients to model (in their original order) and, when sampled, a note for the
        report stating the sample and its cost in precision.
    """
    total = len(patients)
    if limit is None or total <= limit:
        return patients, None
    chosen = sampling.hash_sample(patients["patient_id"], limit)
    note = (f"models fitted to a pseudo-random sample of {limit:,} of {total:,} patients "
            "(trajectories.max_patients; chosen by a fixed hash of the patient id): the same "
            f"quantities are estimated, with standard errors up to about "
            f"{np.sqrt(total / limit):.1f} times those of a fit to every patient")
    return patients.iloc[chosen], note


# --------------------------------------------------------------------------- model data


def _text_categories(values: pd.Series, missing: str | None = None) -> pd.Series:
    """``values`` as a categorical of text labels (missing values as ``missing``)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        out = values.cat.rename_categories([str(c) for c in values.cat.categories])
    else:
        out = values.astype("category")
        out = out.cat.rename_categories([str(c) for c in out.cat.categories])
    if missing is not None and out.isna().any():
        out = out.cat.add_categories([missing]).fillna(missing)
    return out


def _categorical(values: pd.Series, first: npt.NDArray[np.bool_], name: str,
                 missing: str | None = None, pool: bool = True) -> tuple[pd.Series, list[str]]:
    """Treatment-coded categorical (reference first); rare levels pooled
    (:func:`pipeline.modelling.pooling.pool_rare_levels`, ``MIN_LEVEL_PATIENTS``) unless
    ``pool`` is false (the format: the comparison the models are for, never pooled).

    ``first`` marks each patient's first row (patient-level attributes are counted once).
    """
    text = _text_categories(values, missing)
    notes: list[str] = []
    observed = text.notna().to_numpy()
    if pool and observed.any():
        labels = text[observed].astype(str)
        preferred = [*REFERENCES.get(name, ()), *sorted(set(labels))]
        result = pooling.pool_rare_levels(labels, MIN_LEVEL_PATIENTS, first=first[observed],
                                          preferred=preferred, name=name)
        if result.pooled:
            recoded = pd.Series(pd.NA, index=text.index, dtype=object)
            recoded[observed] = result.values
            text = _text_categories(recoded)
            notes += result.notes
    present = set(text.cat.categories[np.unique(text.cat.codes[text.cat.codes >= 0])])
    known = [v for v in REFERENCES.get(name, ()) if v in present]
    levels = known + sorted(present - set(known))
    return text.cat.set_categories(levels), notes


def _covariates(frame: pd.DataFrame, first: npt.NDArray[np.bool_]
                ) -> tuple[list[str], list[str]]:
    """Add centred age and sex indicators to ``frame``; return formula terms and notes."""
    terms: list[str] = []
    notes: list[str] = []
    if "age" in frame.columns and frame["age"][first].notna().mean() >= AGE_COMPLETE:
        frame["age_centred"] = frame["age"] - frame["age"][first].mean()
        terms.append("age_centred")
    elif "age" in frame.columns:
        notes.append(f"age left out: recorded for fewer than {AGE_COMPLETE:.0%} of patients")
    if "sex" in frame.columns:
        sex, sex_notes = _categorical(frame["sex"], first, "sex", missing="not_recorded")
        notes += sex_notes
        for level in list(sex.cat.categories)[1:]:
            column = f"sex[{level}]"
            indicator = (sex == level).to_numpy(dtype=float)
            frame[column] = indicator - indicator[first].mean()
            terms.append(f"`{column}`")
    return terms, notes


def model_data(long: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The long data with coded factors and covariates for the built-in models.

    Returns
    -------
    (DataFrame, list of str, list of str)
        The frame (categorical ``format``, ``condition``, ``problem_area``, ``pattern``;
        ``is_group``; centred covariates), the covariate formula terms, and notes.
    """
    frame = long.copy()
    first = (~frame["patient_id"].duplicated()).to_numpy()
    notes: list[str] = []
    for name in ("format", "condition", "problem_area"):
        frame[name], pooled = _categorical(frame[name], first, name, pool=name != "format")
        notes += pooled
    dropout = frame["dropout"].to_numpy(dtype=bool) if "dropout" in frame.columns else \
        np.zeros(len(frame), dtype=bool)
    frame["pattern"] = pd.Categorical.from_codes(
        dropout.astype(np.int8), categories=pd.Index(REFERENCES["pattern"]))
    frame["is_group"] = (frame["format"] == "group").to_numpy()
    terms, cov_notes = _covariates(frame, first)
    return frame, terms, notes + cov_notes


# --------------------------------------------------------------------------- analysis


def _present(table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The ``columns`` of ``table`` that it has (a narrow view for the model data)."""
    return table[[c for c in dict.fromkeys(columns) if c in table.columns]]


def _builtin_models(patients: pd.DataFrame, sessions: pd.DataFrame,
                    patient_outcomes: pd.DataFrame, config: StudyConfig, engine: str,
                    instrument: str, records: list[AnalysisRecord]
                    ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Fit the configured built-in models, each at its own boundary, and derive their
    tables; every model leaves a record (done, not estimable, failed) in ``records``."""
    settings = config.trajectories
    long = long_scores(_present(patients, MODEL_PATIENT_COLUMNS),
                       _present(sessions, (*MODEL_SESSION_COLUMNS, instrument)),
                       patient_outcomes, instrument, settings.time)
    if long.empty:
        for model in settings.models:
            records.append(AnalysisRecord(
                STAGE, f"model {model}", NOT_ESTIMABLE,
                f"no {instrument} scores at attended sessions",
                f"{instrument} scores, or trajectories.instrument naming a scored measure"))
        return {}, []
    frame, covariates, messages = model_data(long)
    del long  # the model frame is a copy; at registry scale every copy counts
    components, notes = random_structure(frame, settings.time)
    messages += notes
    ctx = FitContext(frame, covariates, components, settings.time, engine,
                   settings.contrast_weeks, instrument)
    tables: dict[str, pd.DataFrame] = {}
    observed = attempt(STAGE, "observed means", lambda: observed_means(
        frame, settings.time), records)
    if observed is not None:
        tables["mixed_observed_means"] = observed
    warm: engines.WarmStart | None = None
    for model in settings.models:
        def one(model: str = model, warm: engines.WarmStart | None = warm
                ) -> tuple[dict[str, pd.DataFrame], list[str], engines.WarmStart | None]:
            rows = add_phases(frame, sessions, patients, patient_outcomes, config) \
                if model == "phases" else frame
            return fit_builtin(model, replace(ctx, frame=rows), warm)
        done = _attempt_model(f"model {model}", one, records, tables, messages)
        if done is not None:
            new, notes, warm = done
            merge_tables(tables, new)
            messages += notes
    return tables, messages


def _attempt_model(analysis: str, fit: Callable[[], T], records: list[AnalysisRecord],
                   tables: dict[str, pd.DataFrame], messages: list[str]) -> T | None:
    """:func:`pipeline.estimability.attempt` for one model; a model whose final fit did not
    converge is recorded as not estimable, and the diagnostics that show it (and the
    engine's messages) are kept in ``tables`` and ``messages``."""
    def keeping_diagnostics() -> T:
        try:
            return fit()
        except NotConverged as stopped:
            merge_tables(tables, stopped.tables)
            messages.extend(stopped.notes)
            raise
    return attempt(STAGE, analysis, keeping_diagnostics, records)


def analyse(patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
            config: StudyConfig, engine: str | None = None) -> TrajectoryResult:
    """Fit the configured trajectory models and derive the report's tables.

    Each model is one analysis: when the data cannot support it (too few patients or
    levels, random effects lme4 would refuse) it is recorded as not estimable with the
    reason, and the other models still run (``TrajectoryResult.records``).

    Parameters
    ----------
    patients, sessions : DataFrame
        Validated input tables.
    patient_outcomes : DataFrame
        From :func:`pipeline.outcomes.definitions.derive`.
    config : StudyConfig
        ``config.trajectories`` picks the instrument, time scale, models, engine, contrast
        weeks and custom models; ``config.suppress_below`` the small counts of the observed
        means; ``config.populations.final_phase_start`` the phases.
    engine : str or None
        Overrides ``config.trajectories.engine`` (``auto``, ``statsmodels``, ``mixedlm``).

    Returns
    -------
    TrajectoryResult

    Raises
    ------
    ValueError
        For an unknown engine.
    """
    settings = config.trajectories
    instrument = settings.instrument or config.primary_instrument
    chosen = engine or settings.engine
    if chosen not in engines.ENGINES:
        raise ValueError(f"unknown engine {chosen!r}; use one of {', '.join(engines.ENGINES)}")
    records: list[AnalysisRecord] = []
    patients, sample_note = sample_patients(patients, settings.max_patients)
    if sample_note:
        sessions = sessions.loc[sessions["patient_id"].isin(patients["patient_id"])]
    tables, messages = _builtin_models(patients, sessions, patient_outcomes, config, chosen,
                                       instrument, records) if settings.models else ({}, [])
    if sample_note:
        messages = [sample_note, *messages]

    def long_for(outcome: str) -> pd.DataFrame:
        target = instrument if outcome in ("score", instrument) else outcome
        return long_scores(patients, sessions, patient_outcomes, target, settings.time)

    for custom in settings.custom:
        done = _attempt_model(f"model {custom.name}",
                              functools.partial(fit_custom, custom, long_for, chosen),
                              records, tables, messages)
        if done is not None:
            merge_tables(tables, done[0])
            messages += done[1]
    if "mixed_model_comparison" in tables:
        tables["mixed_model_comparison"] = model_comparison(tables["mixed_model_comparison"])
    logger.info("trajectories: %d tables, %d messages", len(tables), len(messages))
    return TrajectoryResult(tables, tuple(messages), tuple(records), instrument)
