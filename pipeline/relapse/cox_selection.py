"""Which Cox model of relapse is reported, and why (:func:`cox_analysis`).

The full IPT model (format + condition + maintenance + problem_area (+ sex) + residual score
(+ age)) on complete cases; levels without relapses merged into the reference level and
constant covariates dropped; terms dropped in the order :data:`DROP_ORDER` until there are
``relapse.min_events_per_parameter`` events per parameter (Peduzzi et al. 1995) and until the
model converges (a fit whose coefficients run off to infinity, separation, counts as not
converged: Heinze & Schemper 2001); then the proportional-hazards tests
(:mod:`pipeline.relapse.ph_test`) and, for a term with ``p < 0.05``, a refit stratified on
its covariate. Each step says what it did in a message. The fitting itself is
:func:`pipeline.relapse.cox.fit_cox`; the interval-censored Weibull model
(:mod:`pipeline.relapse.interval`) shares the terms (:func:`cox_terms`).

References
----------
Heinze G, Schemper M (2001). A solution to the problem of monotone likelihood in Cox
regression. Biometrics 57:114-119.
Peduzzi P et al. (1995). Importance of events per independent variable in proportional
hazards regression analysis. J Clin Epidemiol 48:1503-1510.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import numpy as np
import pandas as pd
from lifelines.exceptions import ConvergenceError

from pipeline.config import StudyConfig
from pipeline.estimability import NotEstimable, require
from pipeline.outcomes import rates
from pipeline.relapse.cohort import RELAPSE, plural
from pipeline.relapse.cox import CoxFit, CoxSpec, fit_cox, reference_level
from pipeline.relapse.ph_test import PH_ALPHA, ph_test_table
from pipeline.relapse.strata import stratum_labels

__all__ = ["DROP_ORDER", "cox_analysis", "cox_terms"]

#: Cox terms dropped first when there are too few events ("residual" = residual score).
DROP_ORDER: Final = ("sex", "age", "problem_area", "condition", "residual", "format",
                     "maintenance")
MAX_ABS_COEF: Final = 10.0


def _cluster_ids(data: pd.DataFrame, cluster: str) -> tuple[pd.DataFrame, str | None, list[str]]:
    """Add the cluster column for ``config.relapse.cluster`` (therapist or therapy group)."""
    if cluster == "none":
        return data, None, []
    source = "therapist_id" if cluster == "therapist" else "group_id"
    ids = data[source] if source in data else pd.Series(np.nan, index=data.index)
    own = "patient " + data["patient_id"].astype(str)
    data = data.assign(**{source: ids.astype(object).where(ids.notna(), own)})
    count = int(data[source].nunique())
    note = (f"Cox standard errors are robust (sandwich), clustered by {source}; "
            f"{plural(int(ids.isna().sum()), 'patient')} without one form their own cluster; "
            f"{count} clusters")
    if count < 30:
        note += " (fewer than 30: the robust standard errors may be too small)"
    notes = [note]
    if cluster == "group":
        notes += rates.missing_group_note(data.assign(group_id=ids), "each as its own cluster")
    return data, source, notes


def _candidate_model(
    cohort: pd.DataFrame, instrument: str, cluster: str
) -> tuple[pd.DataFrame, CoxSpec, list[str]]:
    """The full IPT model's spec and its complete cases."""
    categorical = tuple(v for v in ("format", "condition", "maintenance", "problem_area", "sex")
                        if v in cohort and cohort[v].notna().any())
    numeric = tuple(v for v in (f"residual_{instrument}", "age")
                    if v in cohort and cohort[v].notna().any())
    complete = cohort[list(categorical + numeric)].notna().all(axis=1)
    notes = []
    if not complete.all():
        notes.append(f"{plural(int((~complete).sum()), 'patient')} with a missing covariate left "
                     "out of the Cox model")
    data, column, more = _cluster_ids(cohort.loc[complete], cluster)
    return data, CoxSpec(categorical, numeric, cluster=column), notes + more


def _tidy_levels(data: pd.DataFrame, spec: CoxSpec) -> tuple[pd.DataFrame, CoxSpec, list[str]]:
    """Merge levels without relapses into the reference; drop constant covariates."""
    notes: list[str] = []
    relapsed = data["event"] == RELAPSE
    references = dict(spec.references)
    for variable in spec.categorical:
        labels = stratum_labels(data[variable])
        events = relapsed.groupby(labels).sum()
        with_events = labels.loc[labels.isin(events.index[events > 0])]
        if labels.nunique() < 2:
            notes.append(f"{variable} dropped from the Cox model: the same for everyone")
            spec = spec.without(variable)
            continue
        if with_events.nunique() < 2:
            notes.append(f"{variable} dropped from the Cox model: relapses in one level only")
            spec = spec.without(variable)
            continue
        reference = reference_level(with_events, variable, spec)
        references[variable] = reference
        empty = sorted(set(labels) - set(with_events))
        if empty:
            notes.append(f"{variable}: level(s) {', '.join(empty)} without relapses merged "
                         f"into the reference level {reference} for the Cox model")
            data = data.assign(**{variable: labels.where(labels.isin(with_events), reference)})
    for variable in spec.numeric:
        if data[variable].astype(float).nunique() < 2:
            notes.append(f"{variable} dropped from the Cox model: the same for everyone")
            spec = spec.without(variable)
    return data, replace(spec, references=references), notes


def _n_parameters(data: pd.DataFrame, spec: CoxSpec) -> int:
    """Number of coefficients: levels - 1 per categorical covariate, 1 per numeric one."""
    levels = sum(stratum_labels(data[v]).nunique() - 1 for v in spec.categorical)
    return int(levels) + len(spec.numeric)


def _next_to_drop(spec: CoxSpec) -> str | None:
    """The first covariate of the spec in :data:`DROP_ORDER` (None when none is left)."""
    for name in DROP_ORDER:
        for variable in spec.covariates:
            if variable == name or (name == "residual" and variable.startswith("residual_")):
                return variable
    return spec.covariates[0] if spec.covariates else None


def _reduce_for_events(
    data: pd.DataFrame, spec: CoxSpec, per_parameter: int
) -> tuple[CoxSpec, list[str]]:
    """Drop terms in :data:`DROP_ORDER` until there are enough events per parameter
    (:class:`NotEstimable` when no term is left)."""
    events = int((data["event"] == RELAPSE).sum())
    wanted = _n_parameters(data, spec)
    dropped = []
    while spec.covariates and events < per_parameter * _n_parameters(data, spec):
        variable = _next_to_drop(spec)
        assert variable is not None
        dropped.append(variable)
        spec = spec.without(variable)
    notes = []
    if dropped:
        notes.append(f"only {events} relapses for {wanted} Cox parameters (at least "
                     f"{per_parameter} per parameter wanted): dropped {', '.join(dropped)}")
    if not spec.covariates:
        raise NotEstimable(
            f"too few relapses for a Cox model: {events} relapses, fewer than "
            f"{per_parameter} per parameter for even the smallest model (Peduzzi et al. "
            "1995); the descriptive analyses (Kaplan-Meier, log-rank, RMST, cumulative "
            "incidence) stand",
            f"at least {per_parameter} relapses per model parameter (longer or larger "
            "follow-up), or a lower relapse.min_events_per_parameter with its justification")
    if dropped:
        notes.append(f"the smaller Cox model has {', '.join(spec.covariates)}")
    return spec, notes


def _checked_fit(data: pd.DataFrame, spec: CoxSpec) -> CoxFit:
    """:func:`fit_cox`, raising ``ConvergenceError`` for a fit without a finite maximum.

    Infinite or missing limits, or ``|beta| > MAX_ABS_COEF`` (a hazard ratio beyond
    ``e^10``), mean separation (monotone likelihood, Heinze & Schemper 2001), which lifelines
    reports only as a warning.
    """
    fit = fit_cox(data, spec)
    numbers = fit.table[["hazard_ratio", "ci_low", "ci_high", "p_value", "se"]]
    finite = np.isfinite(numbers.to_numpy(dtype=float)).all()
    if not finite or (fit.table["coef"].abs() > MAX_ABS_COEF).any():
        raise ConvergenceError("no finite maximum of the partial likelihood (separation)")
    return fit


def _fit_reducing(data: pd.DataFrame, spec: CoxSpec) -> tuple[CoxFit, list[str]]:
    """Fit the model; when it does not converge, drop terms in :data:`DROP_ORDER` and retry
    (:class:`NotEstimable` when no term is left)."""
    notes: list[str] = []
    while spec.covariates:
        try:
            return _checked_fit(data, spec), notes
        except (ConvergenceError, np.linalg.LinAlgError) as error:
            variable = _next_to_drop(spec)
            assert variable is not None
            reason = (str(error).strip() or "error").splitlines()[0].split(". ")[0]
            notes.append(f"Cox model did not converge ({reason}): dropped {variable}")
            spec = spec.without(variable)
    raise NotEstimable("no Cox model could be fitted: " + "; ".join(notes),
                       "more relapses, or fewer sparse covariate levels")


def _stratum_column(data: pd.DataFrame, variable: str, spec: CoxSpec) -> tuple[pd.DataFrame, str]:
    """A categorical covariate stratifies as it is; a numeric one by its tertiles."""
    if variable in spec.categorical:
        return data, variable
    column = f"{variable}_tertile"
    tertile = pd.qcut(data[variable].astype(float).rank(method="first"), 3, labels=False)
    return data.assign(**{column: tertile.astype(str)}), column


def _stratify_on_violations(
    data: pd.DataFrame, fit: CoxFit, ph: pd.DataFrame
) -> tuple[CoxFit, list[str]]:
    """Refit stratified on the covariates whose PH test has p < 0.05 (module docstring)."""
    terms = ph.loc[ph["p_value"] < PH_ALPHA, "term"]
    variables = list(dict.fromkeys(t.split("[")[0] for t in terms))
    if not variables:
        return fit, []
    spec = fit.spec
    for variable in variables:
        data, column = _stratum_column(data, variable, spec)
        spec = replace(spec.without(variable), strata=(*spec.strata, column))
    listed = ", ".join(variables)
    if not spec.covariates:
        return fit, [f"proportional hazards doubtful for {listed} (p < {PH_ALPHA}), but "
                     "stratifying on it would leave no covariate: the unstratified model is "
                     "reported"]
    try:
        stratified = _checked_fit(data, spec)
    except (ConvergenceError, np.linalg.LinAlgError):
        return fit, [f"proportional hazards doubtful for {listed}; the stratified model did "
                     "not converge: the unstratified model is reported"]
    return stratified, [f"proportional hazards doubtful for {listed} (Schoenfeld residual "
                        f"test p < {PH_ALPHA}): the Cox model is stratified on "
                        f"{', '.join(spec.strata)} and reports no hazard ratio for it (the "
                        "Kaplan-Meier curves compare its groups without assuming "
                        "proportional hazards)"]


def cox_terms(
    cohort: pd.DataFrame, instrument: str, config: StudyConfig, model: str = "Cox model"
) -> tuple[pd.DataFrame, CoxSpec, list[str]]:
    """The data and terms of the relapse regression model before fitting.

    Complete cases of the full IPT model (:func:`cox_analysis`), levels without relapses
    merged into the reference, constant covariates dropped and terms dropped in
    :data:`DROP_ORDER` for too few events per parameter. The Cox model and the
    interval-censored Weibull model (:mod:`pipeline.relapse.interval`) share them.

    Raises
    ------
    NotEstimable
        No relapses, or too few relapses per parameter for even one term.
    """
    require(len(cohort) > 0 and bool((cohort["event"] == RELAPSE).any()),
            f"no relapses in the relapse cohort: no {model}",
            "longer follow-up of the patients at risk")
    data, spec, notes = _candidate_model(cohort, instrument, config.relapse.cluster)
    data, spec, more = _tidy_levels(data, spec)
    reduced, more2 = _reduce_for_events(data, spec, config.relapse.min_events_per_parameter)
    return data, reduced, notes + more + more2


def cox_analysis(
    cohort: pd.DataFrame, instrument: str, config: StudyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The relapse Cox model with PH tests, smaller models and stratification as needed.

    Model: format + condition + maintenance + problem_area (+ sex) + residual score (+ age),
    reference levels ``cox.REFERENCE_LEVELS``; then (module docstring) complete cases,
    levels without relapses merged, events per parameter, convergence, PH tests and a
    stratified refit, robust SEs by ``config.relapse.cluster``.

    Returns
    -------
    (DataFrame, DataFrame, list of str)
        The ``relapse_cox`` table (columns of :func:`fit_cox`), the ``relapse_ph_test``
        table (term, test_statistic, p_value, violates_ph, tested_model: the unstratified
        model tested, reported_model: the model whose hazard ratios are in
        ``relapse_cox``) and the messages.

    Raises
    ------
    NotEstimable
        No relapses, too few relapses per parameter for even one term, or no model that
        converges.
    """
    data, reduced, notes = cox_terms(cohort, instrument, config)
    fit, more = _fit_reducing(data, reduced)
    notes += more
    ph = ph_test_table(fit)
    final, more = _stratify_on_violations(data, fit, ph)
    notes += more + [f"Cox model warning: {w}" for w in final.warnings]
    if ph["p_value"].isna().any():
        notes.append("proportional-hazards test not computable for "
                     f"{', '.join(ph.loc[ph['p_value'].isna(), 'term'])} (no spread of relapse "
                     "times)")
    ph = ph.assign(violates_ph=ph["p_value"] < PH_ALPHA, tested_model=fit.spec.describe(),
                   reported_model=final.spec.describe())
    return final.table, ph, notes
