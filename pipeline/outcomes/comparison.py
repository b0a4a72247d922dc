"""Adjusted comparison of a binary outcome between formats (GEE) with standardisation.

A population-averaged logistic model fitted by generalised estimating equations (GEE;
Liang and Zeger 1986) with an exchangeable working correlation within clusters (therapy
groups, or therapists for individual patients) and robust (sandwich) standard errors,
followed by model-based standardisation (g-computation) of the response rate to
"everyone treated individually" and "everyone treated in a group" (Muller and MacLehose
2014). The design (pooling of sparse levels, reference levels) is built in
:mod:`pipeline.outcomes.rates`.

References
----------
Liang KY, Zeger SL (1986). Longitudinal data analysis using generalized linear models.
Biometrika 73:13-22.
Muller CJ, MacLehose RF (2014). Estimating predicted probabilities from logistic regression:
different methods correspond to different target populations. Int J Epidemiol 43:962-970.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit

from pipeline.estimability import require
from pipeline.modelling import convergence
from pipeline.outcomes.rates import _design, missing_group_note

# --------------------------------------------------------------------------------------
# Adjusted comparison (GEE) with standardisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AdjustedComparison:
    """Adjusted comparison of a binary outcome between formats.

    Attributes
    ----------
    table : DataFrame
        One row per model term: term, odds_ratio, ci_low, ci_high, p_value (robust SEs).
    standardised : DataFrame or None
        quantity (rate_individual, rate_group, risk_difference), estimate, ci_low, ci_high;
        None when the model has no individual-versus-group contrast (not estimable).
    notes : tuple of str
        Data handling (pooled levels, fallback references, dropped rows) and any warnings
        raised by statsmodels while fitting.
    n_patients, n_clusters : int
        Patients and clusters in the model.
    """

    table: pd.DataFrame
    standardised: pd.DataFrame | None
    notes: tuple[str, ...]
    n_patients: int
    n_clusters: int


def _cluster_ids(data: pd.DataFrame, cluster: str) -> tuple[pd.Series, list[str]]:
    """Cluster label per patient: therapy group, else therapist, else the patient."""
    patient = "patient:" + data["patient_id"].astype(str)
    if cluster != "auto":
        values = data[cluster]
        notes = []
        if values.isna().any():
            notes.append(f"{int(values.isna().sum())} patients without {cluster} are their "
                         "own clusters")
        if cluster == "group_id":
            notes += missing_group_note(data, "each as its own cluster")
        return (f"{cluster}:" + values.astype(str)).where(values.notna(), patient), notes
    group = "group:" + data["group_id"].astype(str)
    therapist = "therapist:" + data["therapist_id"].astype(str)
    in_group = (data["format"] == "group") & data["group_id"].notna()
    ids = group.where(in_group, therapist.where(data["therapist_id"].notna(), patient))
    return ids, missing_group_note(data)


#: Above this many patients the exchangeable GEE (a Python loop over clusters in
#: statsmodels, ~20 s at 300,000 patients) gives way to the independence working
#: correlation, fitted as a logistic GLM with cluster-robust standard errors (vectorised).
GEE_EXCHANGEABLE_MAX = 50_000
#: Iteration limits of the two fits (statsmodels' defaults, stated): a fit that reaches
#: its limit is not converged and not used (:func:`pipeline.modelling.convergence.unusable_fit`).
GEE_MAXITER = 60
GLM_MAXITER = 100


def _fit_gee(
    y: pd.Series, design: pd.DataFrame, clusters: pd.Series,
    exchangeable_max: int = GEE_EXCHANGEABLE_MAX,
) -> tuple[pd.Series, pd.DataFrame, list[str]]:
    """Fit the logistic GEE; return coefficients, robust covariance and warning texts.

    Up to ``exchangeable_max`` patients: exchangeable working correlation (statsmodels
    GEE). Beyond: independence working correlation, i.e. the logistic GLM with the
    cluster-robust sandwich covariance (``cov_type="cluster"``), which is the same GEE
    estimator with a working-independence structure: still consistent with valid robust
    standard errors, possibly a little less efficient (Liang and Zeger 1986; Pan and
    Connett 2002), and noted in the output.

    Raises
    ------
    NotEstimable
        When the fit is not to be used (:func:`pipeline.modelling.convergence.unusable_fit`):
        it did not converge within ``GEE_MAXITER`` / ``GLM_MAXITER`` iterations, the
        covariates separate the outcome, or statsmodels could not estimate it.
    """
    groups = pd.factorize(clusters)[0]
    independence = len(y) > exchangeable_max
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if independence:
            results = sm.GLM(y.astype(float), design, family=sm.families.Binomial()).fit(
                maxiter=GLM_MAXITER, cov_type="cluster", cov_kwds={"groups": groups})
        else:
            model = sm.GEE(y.astype(float), design, groups=groups,
                           family=sm.families.Binomial(),
                           cov_struct=sm.cov_struct.Exchangeable())
            results = model.fit(maxiter=GEE_MAXITER, cov_type="robust")
    name = "logistic GLM (cluster-robust SEs)" if independence else "logistic GEE"
    problem = convergence.unusable_fit(results, caught)
    require(problem is None,
            f"the {name} of the format comparison is not used: {problem}",
            "more patients or clusters, or fewer covariates (comparison.covariates)")
    if independence:
        caught.append(warnings.WarningMessage(
            f"{len(y):,} patients: independence working correlation (logistic GLM with "
            "cluster-robust SEs) instead of exchangeable, for speed", UserWarning, "", 0))
    texts = [f"statsmodels {w.category.__name__}: {w.message}" for w in caught]
    names = design.columns
    params = pd.Series(np.asarray(results.params, dtype=float), index=names)
    cov = pd.DataFrame(np.asarray(results.cov_params(), dtype=float), index=names, columns=names)
    return params, cov, list(dict.fromkeys(texts))


def _odds_ratio_table(params: pd.Series, cov: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Odds ratios with Wald intervals and p-values from the (robust) covariance."""
    se = np.sqrt(np.diag(cov.to_numpy()))
    beta = params.to_numpy()
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame({
        "term": list(params.index),
        "odds_ratio": np.exp(beta),
        "ci_low": np.exp(beta - z * se),
        "ci_high": np.exp(beta + z * se),
        "p_value": 2 * stats.norm.sf(np.abs(beta / se)),
    })


def _standardise(
    design: pd.DataFrame, params: pd.Series, cov: pd.DataFrame, alpha: float
) -> pd.DataFrame:
    r"""Marginal standardisation to everyone individual and everyone in a group.

    For each format ``f`` the design is copied with the format dummies set to ``f`` and
    :math:`\hat r_f = n^{-1}\sum_i \operatorname{expit}(x_{i,f}^\top\hat\beta)`. By the delta
    method :math:`\operatorname{Var}(\hat r_f) \approx g_f^\top V g_f` with
    :math:`g_f = n^{-1}\sum_i \hat p_{i,f}(1-\hat p_{i,f}) x_{i,f}` and ``V`` the robust
    covariance; the difference uses :math:`g_{group} - g_{individual}`.
    """
    beta = params.to_numpy()
    v = cov.to_numpy()
    rates, grads = [], []
    for set_group in (0.0, 1.0):
        x = design.assign(**{"format[group]": set_group}).to_numpy()
        p = expit(x @ beta)
        rates.append(float(p.mean()))
        grads.append((p * (1 - p)) @ x / len(p))
    estimates = [rates[0], rates[1], rates[1] - rates[0]]
    gradients = [grads[0], grads[1], grads[1] - grads[0]]
    se = np.array([np.sqrt(g @ v @ g) for g in gradients])
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame({
        "quantity": ["rate_individual", "rate_group", "risk_difference"],
        "estimate": estimates,
        "ci_low": np.array(estimates) - z * se,
        "ci_high": np.array(estimates) + z * se,
    })


def _comparable(outcomes: pd.DataFrame, outcome: str, baseline: str
                ) -> tuple[pd.DataFrame, pd.Series]:
    """Patients with the outcome and baseline known, and the outcome as 0/1.

    Raises
    ------
    NotEstimable
        When the outcome is not defined, nobody has it, it does not vary, or the patients
        are all in one format (nothing to compare).
    """
    instrument = baseline.removesuffix("_baseline")
    require(outcome in outcomes.columns and baseline in outcomes.columns
            and bool(outcomes[outcome].notna().any()),
            f"no patient in the population has {outcome} (not defined by {instrument}, or no "
            "paired scores)",
            f"an instrument that defines {outcome.removeprefix(instrument + '_')}, with "
            "baseline and end-of-treatment scores")
    known = outcomes[outcome].notna() & outcomes[baseline].notna()
    data = outcomes.loc[known]
    require(len(data) > 0, f"no patient has both {outcome} and {baseline}",
            "patients with baseline and end-of-treatment scores")
    formats = sorted(data["format"].astype(str).unique())
    require(len(formats) >= 2,
            f"only one format ({', '.join(formats)}) among patients with {outcome}: "
            "no format comparison", "patients treated individually and in groups")
    y = data[outcome].astype(bool).astype(np.int64)
    require(0 < int(y.sum()) < len(y),
            f"{outcome} is {'true' if y.all() else 'false'} for all {len(y)} patients: "
            "no contrast can be estimated", "more patients")
    return data, y


def adjusted_response(
    outcomes: pd.DataFrame,
    outcome: str = "phq9_response",
    baseline: str = "phq9_baseline",
    covariates: Sequence[str] = ("condition", "format", "problem_area"),
    cluster: str = "auto",
    min_level_n: int = 20,
) -> AdjustedComparison:
    r"""Case-mix adjusted odds ratios and standardised rates of a binary outcome by format.

    Model (population-averaged logistic regression, GEE; Liang and Zeger 1986):

    .. math::

        \operatorname{logit} P(Y_{ij} = 1) = \beta_0 + \sum_k \beta_k\,[\text{cov}_{ij}
        = k] + \gamma\,\text{baseline}_{ij}, \quad
        \operatorname{Corr}(Y_{ij}, Y_{ij'}) = \rho \;(j \ne j'),

    for patient ``j`` in cluster ``i`` (exchangeable working correlation), with robust
    (sandwich) standard errors, which stay valid if the working correlation is wrong.
    Clusters (``cluster="auto"``): the therapy group for group-format patients, the
    therapist otherwise, the patient when both are missing; or any column name.

    Covariates are treatment coded against format ``individual``, condition
    ``major_depression`` and problem area ``role_disputes`` (the most frequent level when
    these are absent). Levels with fewer than ``min_level_n`` patients or without events or
    non-events are pooled into ``other_pooled`` to avoid separation; every such step is
    recorded in ``notes``, as are warnings raised by statsmodels. A fit that did not
    converge, or whose covariates separate the outcome (no finite maximum), is not used:
    it is reported as not estimable with the reason.

    ``standardised`` gives the model-standardised (g-computation) rates had everyone been
    treated individually or in a group, averaged over the observed case mix, and their
    difference, with delta-method 95% intervals from the robust covariance (covariate
    distribution treated as fixed; Muller and MacLehose 2014). Because GEE coefficients
    are population-averaged, averaging the fitted probabilities is the natural marginal
    estimand.

    Parameters
    ----------
    outcomes : DataFrame
        ``patient_outcomes`` restricted by the caller to the population of interest
        (normally ``finished_course``); rows with the outcome or baseline missing are left
        out here (noted).
    outcome, baseline : str
        Binary outcome column (nullable boolean) and baseline-severity column.
    covariates : sequence of str
        Categorical covariates.
    cluster : str
        ``"auto"`` or the name of a cluster column.
    min_level_n : int
        Smallest level size kept as its own category.

    Returns
    -------
    AdjustedComparison

    Raises
    ------
    pipeline.estimability.NotEstimable
        See ``_comparable``; too few clusters; a fit that did not converge or has no
        finite maximum (separation); a covariance that is not finite.
    """
    data, y = _comparable(outcomes, outcome, baseline)
    notes: list[str] = []
    if len(data) < len(outcomes):
        notes.append(f"{len(outcomes) - len(data)} patients without {outcome} or {baseline} "
                     "left out")
    design, design_notes = _design(data, y, covariates, baseline, min_level_n)
    clusters, cluster_notes = _cluster_ids(data, cluster)
    require(clusters.nunique() > design.shape[1],
            f"{clusters.nunique()} clusters for {design.shape[1]} coefficients: the robust "
            "(sandwich) covariance needs more clusters than coefficients",
            "more therapists or therapy groups, or fewer covariates (comparison.covariates)")
    params, cov, fit_notes = _fit_gee(y, design, clusters)
    require(bool(np.isfinite(np.diag(cov.to_numpy())).all()),
            "the model's robust covariance is not finite (the data separate the outcome)",
            "more patients, or fewer covariates")
    notes += design_notes + cluster_notes + fit_notes
    with np.errstate(over="ignore"):  # infinite odds ratios under separation (noted above)
        table = _odds_ratio_table(params, cov, 0.05)
    if "format[group]" in design and set(design.filter(like="format[")) == {"format[group]"}:
        standardised = _standardise(design, params, cov, 0.05)
    else:
        standardised = None
    return AdjustedComparison(
        table=table,
        standardised=standardised,
        notes=tuple(notes),
        n_patients=len(data),
        n_clusters=int(clusters.nunique()),
    )
