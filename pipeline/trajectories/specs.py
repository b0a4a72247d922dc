r"""The built-in trajectory models: their formulas and the random effects the data support.

Notation and models
-------------------
:math:`y_{ij}` is the score of patient :math:`i` at occasion :math:`j`, :math:`t_{ij}` its
time (:mod:`pipeline.trajectories.data`). Categorical effects use treatment coding against
``individual`` (format), ``major_depression`` (condition), ``role_disputes`` (problem area)
and ``retained`` (dropout pattern); rare levels are pooled and baseline covariates centred
(:func:`pipeline.trajectories.models.model_data`).

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
    Piecewise-linear time (:func:`pipeline.trajectories.data.add_phases`): the initial
    phase covers sessions 1-3, the middle phase sessions 4 to :math:`F_i - 3` and the final
    phase the last three (Weissman, Markowitz and Klerman 2000). ``score ~ (phase_initial
    + phase_middle + phase_final) * format + condition + covariates`` with the random
    effects of ``growth``.
``problem_area``
    ``score ~ t * (problem_area + condition + format) + covariates``, random part as growth.
``completers``
    The growth model fitted to completers only (``patient_outcomes.completers``): a
    sensitivity analysis that is biased if dropout depends on outcome.
``pattern_mixture``
    ``score ~ t * format * pattern + t * condition + covariates`` with pattern = dropout or
    retained (``patient_outcomes.dropout``): each pattern has its own trajectory per
    format, and marginal quantities average the patterns with the observed pattern shares
    within each format (Hedeker and Gibbons 1997; :mod:`pipeline.trajectories.estimates`).
    If the two answers differ, MNAR dropout could move the conclusion.
custom
    Researchers' own lme4 formulas (``trajectories.custom``, :mod:`pipeline.trajectories.formula`),
    on the long data of :func:`pipeline.trajectories.data.long_scores` (text columns with
    R's alphabetical reference level); ``exclude_baseline`` removes the baseline rows (the
    assessment, or the first scored session) when the baseline score is a covariate.

References
----------
Hedeker D, Gibbons RD (1997). Application of random-effects pattern-mixture models for
missing data in longitudinal studies. Psychological Methods 2:64-78.
Weissman MM, Markowitz JC, Klerman GL (2000). Comprehensive Guide to Interpersonal
Psychotherapy. Basic Books.
"""

from __future__ import annotations

from typing import Final

import pandas as pd

from pipeline.trajectories.data import PHASES
from pipeline.trajectories.engines import MixedSpec, RandomEffect, VarianceComponent

__all__ = ["MIN_CLUSTERS", "model_spec", "random_structure"]

MIN_CLUSTERS: Final = 5


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
