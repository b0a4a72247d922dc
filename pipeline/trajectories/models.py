r"""Mixed-effects models of symptom trajectories during IPT.

Every observed score of an attended session is an outcome row (the assessment, session 0,
included), so patients who drop out contribute the scores they have: the likelihood-based
analysis is valid when scores are missing at random given the observed ones (Laird and
Ware 1982; Mallinckrodt et al. 2003). Dropout that depends on the unobserved trajectory
(missing not at random) is explored by the completers-only and pattern-mixture models.

Notation and models
-------------------
:math:`y_{ij}` is the score of patient :math:`i` at occasion :math:`j`, :math:`t_{ij}` its
time: weeks since ``start_date`` (days / 7; the assessment is slightly negative), the
session number, or :math:`\log(1 + \max(\text{weeks}, 0))` (``trajectories.time``).
Categorical effects use treatment coding against ``individual`` (format),
``major_depression`` (condition), ``role_disputes`` (problem area) and ``retained``
(dropout pattern); levels held by fewer than ``MIN_LEVEL_PATIENTS`` patients are pooled
into ``other_pooled``. Baseline covariates are age (``age_centred``) and sex (``sex[...]``
indicators), each centred at its patient-level mean so that model-based means refer to the
average covariate profile; age is used when at least 90% of patients have it.

``growth``
    :math:`y_{ij} = x_i^\top\beta + t_{ij}(\gamma_0 + \gamma_{c(i)} + \gamma_{f(i)}) +
    b_{0i} + b_{1i} t_{ij} + g_{k(i)} + a_{h(i)} + a'_{h(i)} t_{ij} + \varepsilon_{ij}`,
    i.e. ``score ~ t * (condition + format) + covariates + (1 + t | patient_id)
    + (0 + is_group | group_id) + (1 | therapist_id) + (0 + t | therapist_id)``: correlated
    patient intercept and slope, a therapy-group intercept for group-format patients and a
    therapist intercept and slope. The group component is used when there are at least
    ``MIN_CLUSTERS`` groups of two or more patients, the therapist components when every
    patient has a therapist and there are at least ``MIN_CLUSTERS`` therapists.
``phases``
    Piecewise-linear time with knots at session 3 and at session :math:`F_i - 3`:
    :math:`t^{(1)} = \min(t, T_{1i})`, :math:`t^{(2)} = \min(\max(t - T_{1i}, 0),
    T_{2i} - T_{1i})`, :math:`t^{(3)} = \max(t - T_{2i}, 0)`, where :math:`T_{1i}` and
    :math:`T_{2i}` are patient :math:`i`'s times of those sessions (scheduled dates, or one
    week per session after the last scheduled one), so the initial phase covers sessions
    1-3, the middle phase sessions 4 to :math:`F_i - 3` and the final phase the last three
    (Weissman, Markowitz and Klerman 2000). ``score ~ (phase_initial + phase_middle +
    phase_final) * format + condition + covariates`` with the random effects of ``growth``.
    *Final session* :math:`F_i`: a completer's last scheduled treatment session; for anyone
    else (dropouts, transfers, ongoing) the planned end of a standard course,
    ``max(last scheduled session, populations.final_phase_start + 2)`` (session 16 by
    default), because a patient who leaves early never reaches the ending phase: their
    scores after session 3 describe the middle phase.
``problem_area``
    ``score ~ t * (problem_area + condition + format) + covariates``, random part as growth.
``completers``
    The growth model fitted to completers only (``patient_outcomes.completers``): a
    sensitivity analysis that is biased if dropout depends on outcome.
``pattern_mixture``
    ``score ~ t * format * pattern + t * condition + covariates`` with pattern = dropout or
    retained (``patient_outcomes.dropout``): each pattern has its own trajectory per
    format, and marginal quantities average the patterns with the observed pattern shares
    within each format, :math:`\hat\mu_f = \sum_p \hat\pi_{p|f}\hat\mu_{fp}`, with delta-
    method variance :math:`\ell^\top V\ell + \hat m^\top \Sigma_\pi \hat m`,
    :math:`\Sigma_\pi = (\mathrm{diag}\,\hat\pi - \hat\pi\hat\pi^\top)/n_f` (Hedeker and
    Gibbons 1997). If the two answers differ, MNAR dropout could move the conclusion.
custom
    Researchers' own lme4 formulas (``trajectories.custom``, :mod:`pipeline.trajectories.formula`),
    on the long data of :func:`long_scores` (text columns with R's alphabetical reference
    level); ``exclude_baseline`` removes the baseline rows (the assessment, or the first
    scored session) when the baseline score is a covariate.

Derived quantities (linear combinations :math:`L\hat\beta`, Wald 95% intervals)
-------------------------------------------------------------------------------
Model-based means by condition x format over time points 0..16 (weeks; session numbers
when ``time`` is ``session_number``; weeks, entered as log(1 + weeks), for ``log_weeks``),
with baseline covariates at their means (growth, completers, pattern mixture); slopes per
time unit by format, averaged over the condition (and problem-area or pattern) distribution
of the patients in the model; the format difference (group minus individual) at each of
``contrast_weeks`` (session numbers on the session scale), also divided by the SD of the
baseline scores of the patients in the model (a standardised mean difference treating that
SD as known; Feingold 2009); and for ``phases`` the slope of each phase by format.

References
----------
Laird NM, Ware JH (1982). Random-effects models for longitudinal data. Biometrics 38:963.
Hedeker D, Gibbons RD (1997). Application of random-effects pattern-mixture models for
missing data in longitudinal studies. Psychological Methods 2:64-78.
Mallinckrodt CH et al. (2003). Assessing and interpreting treatment effects in
longitudinal clinical trials with missing data. Biological Psychiatry 53:754-760.
Feingold A (2009). Effect sizes for growth-modeling analysis for controlled clinical trials
in the same metric as for classical analysis. Psychological Methods 14:43-53.
Cochran WG (1977). Sampling Techniques, 3rd ed. Wiley.
Weissman MM, Markowitz JC, Klerman GL (2000). Comprehensive Guide to Interpersonal
Psychotherapy. Basic Books.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from data_schemas.outcomes import outcome_instruments
from data_schemas.vocab import CONDITIONS, FORMATS
from pipeline.config import ModelSpec, StudyConfig
from pipeline.estimability import (
    NOT_ESTIMABLE,
    AnalysisRecord,
    NotEstimable,
    attempt,
    require,
)
from pipeline.modelling import pooling, sampling
from pipeline.trajectories import engines
from pipeline.trajectories.engines import MixedFit, MixedSpec, RandomEffect, VarianceComponent
from pipeline.trajectories.formula import FormulaError, to_spec
from pipeline.trajectories.means import comparison_row, model_comparison, observed_means

__all__ = ["TrajectoryResult", "analyse", "long_scores", "model_data", "model_spec",
           "sample_patients"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
TIME_SCALES: Final = ("weeks", "session_number", "log_weeks")
FLAGS: Final = ("dropout", "completers", "finished_course", "started", "ended")
REFERENCES: Final = {"format": FORMATS, "condition": CONDITIONS,
                     "problem_area": ("role_disputes", "grief", "role_transitions",
                                      "interpersonal_deficits"),
                     "pattern": ("retained", "dropout")}
POOLED: Final = "other_pooled"
MIN_LEVEL_PATIENTS: Final = 10
MIN_CLUSTERS: Final = 5
SAMPLE_HASH_KEY: Final = sampling.SAMPLE_HASH_KEY
#: The columns the built-in models use (custom models get every column).
MODEL_PATIENT_COLUMNS: Final = ("patient_id", "start_date", "format", "condition",
                                "problem_area", "age", "sex", "therapist_id", "group_id")
MODEL_SESSION_COLUMNS: Final = ("patient_id", "session_number", "session_date", "attendance")
MIN_PATTERN_PATIENTS: Final = 5
AGE_COMPLETE: Final = 0.9
TIME_POINTS: Final = tuple(float(t) for t in range(17))
INITIAL_PHASE_END: Final = 3
PHASES: Final = ("phase_initial", "phase_middle", "phase_final")
STAGE: Final = "models"


@dataclass(frozen=True, eq=False)
class TrajectoryResult:
    """Tables, figures and messages of the trajectory analysis.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Written as ``OUT/tables/<key>.csv``: ``mixed_<model>_fixed``,
        ``mixed_<model>_variance``, ``mixed_<model>_diagnostics`` per model fitted, and
        ``mixed_trajectories``, ``mixed_slopes``, ``mixed_format_difference`` (one row
        per model and contrast week), ``mixed_phase_slopes`` (with ``phases``),
        ``mixed_patient_fitted``, ``mixed_observed_means`` and ``mixed_model_comparison``
        (:mod:`pipeline.trajectories.means`).
    figures : dict of str to Figure
        ``mixed_trajectories``: model-based mean curves with 95% bands, and the observed
        means with their 95% intervals.
    messages : tuple of str
        Non-convergence, boundary fits, dropped rows or terms.
    records : tuple of AnalysisRecord
        One per model and figure: done, not estimable (with the reason) or failed.
    """

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()


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


# --------------------------------------------------------------------------- long data


def long_scores(patients: pd.DataFrame, sessions: pd.DataFrame,
                patient_outcomes: pd.DataFrame, instrument: str,
                time: str = "weeks") -> pd.DataFrame:
    """One row per observed score of ``instrument`` at an attended session.

    Parameters
    ----------
    patients, sessions : DataFrame
        Validated input tables.
    patient_outcomes : DataFrame
        From :func:`pipeline.outcomes.definitions.derive` (baselines and population flags).
    instrument : str
        Score column, e.g. ``"phq9"``.
    time : str
        ``weeks``, ``session_number`` or ``log_weeks``: copied into column ``time``.

    Returns
    -------
    DataFrame
        Sorted by patient and session: ``patient_id``, ``session_number``,
        ``session_date``, every score column of the sessions table, ``score`` (the
        instrument's), ``weeks`` ((session_date - start_date) days / 7),
        ``log_weeks`` (log(1 + max(weeks, 0))), ``time``, ``is_baseline`` (the patient's
        first scored session), ``baseline_<instrument>`` for every instrument, the flags
        dropout, completers, finished_course, started, ended, and every patients column.

    Raises
    ------
    ValueError
        For an unknown time scale (an instrument missing from ``sessions`` has no scores).
    """
    if time not in TIME_SCALES:
        raise ValueError(f"time must be one of {', '.join(TIME_SCALES)}; got {time!r}")
    if instrument not in sessions.columns:  # the contract adds only the score columns a
        sessions = sessions.assign(**{instrument: np.nan})  # file has: none scored
    scored = sessions.loc[(sessions["attendance"] == "attended") & sessions[instrument].notna()]
    long = scored.drop(columns=["attendance"]).merge(patients, on="patient_id", how="inner")
    long["session_number"] = long["session_number"].astype(float)
    long["score"] = long[instrument].astype(float)
    long["weeks"] = (long["session_date"] - long["start_date"]).dt.days / 7.0
    long["log_weeks"] = np.log1p(long["weeks"].clip(lower=0.0))
    long["time"] = long[time]
    long = long.sort_values(["patient_id", "session_number"], kind="stable")
    long["is_baseline"] = ~long["patient_id"].duplicated()
    outcomes = patient_outcomes.set_index("patient_id")
    for name in outcome_instruments(outcomes):  # the instruments in force and in the data
        column = f"{name}_baseline"
        long[f"baseline_{name}"] = long["patient_id"].map(outcomes[column]).astype(float)
    for flag in FLAGS:
        if flag in outcomes.columns:
            long[flag] = long["patient_id"].map(outcomes[flag]).fillna(False).astype(bool)
    return long.reset_index(drop=True)


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
                 missing: str | None = None) -> tuple[pd.Series, list[str]]:
    """Treatment-coded categorical (reference first); rare levels pooled
    (:func:`pipeline.modelling.pooling.pool_rare_levels`, ``MIN_LEVEL_PATIENTS``).

    ``first`` marks each patient's first row (patient-level attributes are counted once).
    """
    text = _text_categories(values, missing)
    notes: list[str] = []
    observed = text.notna().to_numpy()
    if observed.any():
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
        frame[name], pooled = _categorical(frame[name], first, name)
        notes += pooled
    dropout = frame["dropout"].to_numpy(dtype=bool) if "dropout" in frame.columns else \
        np.zeros(len(frame), dtype=bool)
    frame["pattern"] = pd.Categorical.from_codes(
        dropout.astype(np.int8), categories=pd.Index(REFERENCES["pattern"]))
    frame["is_group"] = (frame["format"] == "group").to_numpy()
    terms, cov_notes = _covariates(frame, first)
    return frame, terms, notes + cov_notes


def _clusters(frame: pd.DataFrame, column: str, mask: pd.Series | None = None) -> int:
    """Clusters of ``column`` with at least two patients (within ``mask``)."""
    if column not in frame.columns:
        return 0
    rows = frame if mask is None else frame.loc[mask]
    sizes = rows.groupby(column)["patient_id"].nunique()
    return int((sizes >= 2).sum())


def random_structure(frame: pd.DataFrame, time: str
                     ) -> tuple[tuple[VarianceComponent, ...], list[str]]:
    """Variance components the data support (therapy group, therapist), with notes."""
    components: list[VarianceComponent] = []
    notes: list[str] = []
    if frame["is_group"].any():
        if _clusters(frame, "group_id", frame["is_group"]) >= MIN_CLUSTERS:
            components.append(VarianceComponent("group_id", "1", where="is_group"))
        else:
            notes.append(f"therapy-group variance left out: fewer than {MIN_CLUSTERS} groups "
                         "with two or more patients")
        no_group = frame.loc[frame["is_group"] & frame["group_id"].isna(), "patient_id"] \
            if "group_id" in frame.columns else frame.loc[frame["is_group"], "patient_id"]
        missing = no_group.nunique()
        if missing:
            notes.append(f"{missing} group-format patient{'s' if missing != 1 else ''} without "
                         "a group_id: no therapy-group random effect; the correlation of "
                         "outcomes within "
                         "their groups is not modelled, so standard errors of format "
                         "contrasts are likely too small")
    if "therapist_id" in frame.columns and frame["therapist_id"].notna().all() and \
            _clusters(frame, "therapist_id") >= MIN_CLUSTERS:
        components += [VarianceComponent("therapist_id"), VarianceComponent("therapist_id", time)]
    else:
        notes.append(f"therapist variance left out: therapist_id missing for some patients "
                     f"or fewer than {MIN_CLUSTERS} therapists with two or more patients")
    return tuple(components), notes


def model_spec(model: str, time: str, covariates: list[str],
               components: tuple[VarianceComponent, ...]) -> MixedSpec:
    """The :class:`MixedSpec` of a built-in model (see the module docstring)."""
    extra = "".join(f" + {c}" for c in covariates)
    fixed = {
        "growth": f"{time} * (condition + format){extra}",
        "completers": f"{time} * (condition + format){extra}",
        "problem_area": f"{time} * (problem_area + condition + format){extra}",
        "phases": f"({' + '.join(PHASES)}) * format + condition{extra}",
        "pattern_mixture": f"{time} * format * pattern + {time} * condition{extra}",
    }[model]
    return MixedSpec("score", fixed, (RandomEffect("patient_id", ("1", time)),), components)


# --------------------------------------------------------------------------- phases


def _final_session(sessions: pd.DataFrame, outcomes: pd.DataFrame,
                   final_phase_start: int) -> pd.Series:
    """Per patient the final session F (see the module docstring)."""
    last = sessions.loc[sessions["session_number"] >= 1].groupby("patient_id")[
        "session_number"].max()
    completer = outcomes.set_index("patient_id")["completers"].reindex(last.index)
    standard = np.maximum(last, final_phase_start + 2)
    return last.where(completer.fillna(False).astype(bool), standard).astype(float)


def _knot_times(sessions: pd.DataFrame, patients: pd.DataFrame, knots: pd.DataFrame,
                time: str) -> pd.Series:
    """Time of each (patient, session) in ``knots``: scheduled, else extrapolated weekly."""
    start = sessions["patient_id"].map(patients.set_index("patient_id")["start_date"])
    weeks = (sessions["session_date"] - start).dt.days / 7.0
    table = pd.DataFrame({"patient_id": sessions["patient_id"],
                          "session": sessions["session_number"].astype(float), "weeks": weeks})
    exact = knots.merge(table, on=["patient_id", "session"], how="left")["weeks"]
    last = table.sort_values("session").groupby("patient_id").last()
    anchor = knots["patient_id"].map(last["weeks"]) + (
        knots["session"] - knots["patient_id"].map(last["session"]))
    weeks_at = exact.fillna(pd.Series(anchor.to_numpy(), index=exact.index))
    if time == "session_number":
        return pd.Series(knots["session"].to_numpy(), index=knots.index)
    if time == "log_weeks":
        return pd.Series(np.log1p(weeks_at.clip(lower=0.0)).to_numpy(), index=knots.index)
    return pd.Series(weeks_at.to_numpy(), index=knots.index)


def add_phases(frame: pd.DataFrame, sessions: pd.DataFrame, patients: pd.DataFrame,
               outcomes: pd.DataFrame, config: StudyConfig) -> pd.DataFrame:
    """Add the piecewise time columns ``phase_initial``, ``phase_middle``, ``phase_final``."""
    time = config.trajectories.time
    final = _final_session(sessions, outcomes, config.populations.final_phase_start)
    ids = frame["patient_id"].drop_duplicates().reset_index(drop=True)
    second = np.maximum(ids.map(final).fillna(INITIAL_PHASE_END).to_numpy(dtype=float) - 3,
                        INITIAL_PHASE_END)
    knots = pd.DataFrame({"patient_id": pd.concat([ids, ids], ignore_index=True),
                          "session": np.concatenate([np.full(ids.size, INITIAL_PHASE_END),
                                                     second])})
    times = _knot_times(sessions, patients, knots, time).to_numpy()
    first_knot = pd.Series(times[: ids.size], index=ids)
    second_knot = pd.Series(np.maximum(times[ids.size:], times[: ids.size]), index=ids)
    t = frame[time].to_numpy(dtype=float)
    t1 = frame["patient_id"].map(first_knot).to_numpy(dtype=float)
    t2 = frame["patient_id"].map(second_knot).to_numpy(dtype=float)
    out = frame.copy()
    out["phase_initial"] = np.minimum(t, t1)
    out["phase_middle"] = np.clip(t - t1, 0.0, t2 - t1)
    out["phase_final"] = np.maximum(t - t2, 0.0)
    return out


# --------------------------------------------------------------------------- derived


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


# --------------------------------------------------------------------------- fitting


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
class _Context:
    """What every model fit needs besides its name."""

    frame: pd.DataFrame
    covariates: list[str]
    components: tuple[VarianceComponent, ...]
    time: str
    engine: str
    weeks: tuple[float, ...]
    instrument: str


def _derived(model: str, fit: MixedFit, rows: pd.DataFrame, ctx: _Context
             ) -> dict[str, pd.DataFrame]:
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


def patient_fitted(fit: MixedFit, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-patient fitted trajectories (with random effects) at each observed score."""
    used = rows.loc[fit.fitted.index, ["patient_id", "condition", "format",
                                       "session_number", "weeks", "time", "score"]]
    table = pd.concat([used.astype({"condition": str, "format": str}), fit.fitted], axis=1)
    return table.reset_index(drop=True)


def _fit_builtin(model: str, ctx: _Context, warm: engines.WarmStart | None
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


def _fit_custom(model: ModelSpec, long_for: Callable[[str], pd.DataFrame], engine: str
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


def _merge(tables: dict[str, pd.DataFrame], new: dict[str, pd.DataFrame]) -> None:
    """Add tables; the shared ones (trajectories, slopes, ...) are stacked by model."""
    for key, table in new.items():
        tables[key] = pd.concat([tables[key], table], ignore_index=True) if key in tables \
            else table


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
    ctx = _Context(frame, covariates, components, settings.time, engine,
                   settings.contrast_weeks, instrument)
    tables: dict[str, pd.DataFrame] = {}
    observed = attempt(STAGE, "observed means", lambda: observed_means(
        frame, settings.time, config.suppress_below), records)
    if observed is not None:
        tables["mixed_observed_means"] = observed
    warm: engines.WarmStart | None = None
    for model in settings.models:
        def one(model: str = model, warm: engines.WarmStart | None = warm
                ) -> tuple[dict[str, pd.DataFrame], list[str], engines.WarmStart | None]:
            rows = add_phases(frame, sessions, patients, patient_outcomes, config) \
                if model == "phases" else frame
            return _fit_builtin(model, replace(ctx, frame=rows), warm)
        done = attempt(STAGE, f"model {model}", one, records)
        if done is not None:
            new, notes, warm = done
            _merge(tables, new)
            messages += notes
    return tables, messages


def analyse(patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
            config: StudyConfig, engine: str | None = None) -> TrajectoryResult:
    """Fit the configured trajectory models and derive the report's tables and figure.

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
    from pipeline.report.trajectory_plots import trajectories_figure

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
        done = attempt(STAGE, f"model {custom.name}",
                       functools.partial(_fit_custom, custom, long_for, chosen), records)
        if done is not None:
            _merge(tables, done[0])
            messages += done[1]
    if "mixed_model_comparison" in tables:
        tables["mixed_model_comparison"] = model_comparison(tables["mixed_model_comparison"])
    figures = {}
    if "mixed_trajectories" in tables:
        figure = attempt(STAGE, "figure mixed_trajectories",
                         lambda: trajectories_figure(tables["mixed_trajectories"], instrument,
                                                     tables.get("mixed_observed_means")),
                         records)
        if figure is not None:
            figures["mixed_trajectories"] = figure
    logger.info("trajectories: %d tables, %d messages", len(tables), len(messages))
    return TrajectoryResult(tables, figures, tuple(messages), tuple(records))
