r"""Cox models of relapse: terms, design, fit and robust variance.

Cox model (:func:`fit_cox`; which model: :mod:`pipeline.relapse.cox_selection`)
    Cause-specific hazard of relapse (competing events censored), ``h(t | x) = h_0(t)
    exp(x' beta)``, Efron's method for ties (lifelines and R ``coxph`` default), Wald limits
    ``exp(beta +- z se)``, fitted to full convergence. With ``cluster`` the Lin & Wei (1989)
    sandwich variance clustered by therapist or therapy group (individual patients are
    their own cluster), computed here from Efron score residuals as R ``coxph(... +
    cluster(id))`` does; lifelines' ``cluster_col`` treats tied times as distinct and is up
    to 1% off on tied data. Several strata columns reach lifelines as one column of stratum
    numbers (the same strata and fit, several times faster). A fit whose coefficients run
    off to infinity (separation) counts as not converged. At least
    ``min_events_per_parameter`` events per parameter (Peduzzi et al. 1995): otherwise terms
    are dropped in the order ``cox_selection.DROP_ORDER`` until the model fits, or only the
    descriptive analyses are reported. Levels without relapses (whose hazard ratio would be 0: the
    partial likelihood has no finite maximum, Heinze & Schemper 2001) are merged into the
    reference level; constant covariates are dropped.

References
----------
Cox DR (1972). Regression models and life-tables. JRSS B 34:187-220.
Efron B (1977). The efficiency of Cox's likelihood function for censored data. JASA 72:557.
Heinze G, Schemper M (2001). A solution to the problem of monotone likelihood in Cox
regression. Biometrics 57:114-119.
Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model. JASA
84:1074-1078.
Peduzzi P et al. (1995). Importance of events per independent variable in proportional
hazards regression analysis. J Clin Epidemiol 48:1503-1510.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy import stats

from pipeline.relapse.cohort import RELAPSE
from pipeline.relapse.kaplan_meier import Z95
from pipeline.relapse.residuals import efron_score_residuals
from pipeline.relapse.strata import ordered_levels, stratum_labels

__all__ = ["COX_COLUMNS", "CoxFit", "CoxSpec", "cox_design", "fit_cox",
           "residuals_within_strata", "stratum_codes"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Preferred reference levels (used when present and with relapses).
REFERENCE_LEVELS: Final = {"format": "individual", "condition": "major_depression",
                           "problem_area": "role_disputes", "maintenance": "False",
                           "sex": "female"}
#: The one strata column given to lifelines (see :func:`_lifelines_frame`).
STRATUM_CODE: Final = "stratum_code"
#: Newton-Raphson to full convergence (lifelines stops at a relative change of the log
#: partial likelihood of 1e-9, as R does, which leaves coefficients a few 1e-6 apart).
FIT_OPTIONS: Final = {"precision": 1e-12, "r_precision": 1e-12}
#: lifelines' warning (``ConvergenceWarning``) when Newton-Raphson stops short
NOT_CONVERGED: Final = "failed to converge"
COX_COLUMNS: Final = ("term", "hazard_ratio", "ci_low", "ci_high", "p_value", "coef", "se",
                      "n", "events", "model")


@dataclass(frozen=True)
class CoxSpec:
    """Terms of a Cox model of relapse.

    Attributes
    ----------
    categorical : tuple of str
        Covariates coded as indicators ``var[level]`` against a reference level.
    numeric : tuple of str
        Covariates entered as they are (per unit).
    references : dict of str to str
        Reference level per categorical covariate (default: :data:`REFERENCE_LEVELS`,
        else the most frequent level).
    cluster : str or None
        Column of cluster ids for the robust (sandwich) variance.
    strata : tuple of str
        Columns whose levels get their own baseline hazard.
    """

    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    references: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None
    strata: tuple[str, ...] = ()

    @property
    def covariates(self) -> tuple[str, ...]:
        """Categorical then numeric covariates."""
        return self.categorical + self.numeric

    def without(self, variable: str) -> CoxSpec:
        """The same spec without one covariate."""
        return replace(self, categorical=tuple(v for v in self.categorical if v != variable),
                       numeric=tuple(v for v in self.numeric if v != variable))

    def describe(self) -> str:
        """Readable model description for the tables, e.g. ``Cox: format + age``."""
        text = "Cox (Efron ties): " + (" + ".join(self.covariates) or "no covariates")
        if self.strata:
            text += "; stratified by " + ", ".join(self.strata)
        if self.cluster:
            text += f"; robust SE clustered by {self.cluster}"
        return text


@dataclass(frozen=True, eq=False)
class CoxFit:
    """A fitted Cox model: the lifelines fitter, its design, spec, tidy table and warnings."""

    fitter: Any
    design: pd.DataFrame
    spec: CoxSpec
    table: pd.DataFrame
    warnings: tuple[str, ...]


def reference_level(labels: pd.Series, variable: str, spec: CoxSpec) -> str:
    """Reference level: the spec's, else the preferred one if present, else the commonest."""
    present = set(labels)
    for candidate in (spec.references.get(variable), REFERENCE_LEVELS.get(variable)):
        if candidate is not None and candidate in present:
            return candidate
    counts = labels.value_counts()
    return str(counts.index[counts.to_numpy() == counts.max()].sort_values()[0])


def cox_design(data: pd.DataFrame, spec: CoxSpec) -> pd.DataFrame:
    """Design frame: time_weeks, event (relapse = 1, else 0), indicator and numeric terms,
    the cluster and strata columns."""
    columns: dict[str, pd.Series] = {
        "time_weeks": data["time_weeks"].astype(float),
        "event": (data["event"] == RELAPSE).astype(np.int64),
    }
    for variable in spec.categorical:
        labels = stratum_labels(data[variable])
        reference = reference_level(labels, variable, spec)
        for level in ordered_levels(labels, variable):
            if level != reference:
                columns[f"{variable}[{level}]"] = (labels == level).astype(float)
    for variable in spec.numeric:
        columns[variable] = data[variable].astype(float)
    for extra in (*([spec.cluster] if spec.cluster else []), *spec.strata):
        columns[extra] = stratum_labels(data[extra])
    return pd.DataFrame(columns, index=data.index)


def _warning_text(caught: Sequence[warnings.WarningMessage]) -> tuple[str, ...]:
    """First lines of captured warnings, without repeats."""
    lines = (str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip())
    return tuple(dict.fromkeys(lines))


def stratum_codes(design: pd.DataFrame, spec: CoxSpec) -> npt.NDArray[np.int64]:
    """Stratum of each row (a combination of the spec's strata columns) as an integer,
    numbered in the sorted order of the combinations; all 0 without strata."""
    if not spec.strata:
        return np.zeros(len(design), dtype=np.int64)
    codes = design.groupby(list(spec.strata), sort=True).ngroup()
    return np.asarray(codes, dtype=np.int64)


def _lifelines_frame(design: pd.DataFrame, spec: CoxSpec) -> pd.DataFrame:
    """The design as given to ``CoxPHFitter.fit``: without the cluster column, and with the
    strata columns replaced by one column of stratum numbers (:func:`stratum_codes`).

    The strata are the same, and in the same order, as with the columns themselves, so the
    fit is the same; but lifelines selects each stratum's rows by index label at every
    Newton step, which on the multi-level index of several strata columns (built from
    tuples) takes several times longer than on one integer level.
    """
    frame = design.drop(columns=[spec.cluster] if spec.cluster else [])
    if not spec.strata:
        return frame
    return frame.drop(columns=list(spec.strata)).assign(
        **{STRATUM_CODE: stratum_codes(design, spec)})


def residuals_within_strata(
    design: pd.DataFrame, spec: CoxSpec, fitter: Any,
    residuals: Callable[[FloatArray, FloatArray, BoolArray, FloatArray], FloatArray],
) -> FloatArray:
    """Per-subject residuals (rows of ``design``) computed within each stratum of the spec."""
    terms = list(fitter.params_.index)
    beta = fitter.params_.to_numpy(dtype=float)
    result = np.zeros((len(design), len(terms)))
    codes = stratum_codes(design, spec)
    for rows in pd.Series(codes).groupby(codes).indices.values():
        part = design.iloc[rows]
        result[rows] = residuals(
            part[terms].to_numpy(dtype=float), part["time_weeks"].to_numpy(dtype=float),
            part["event"].to_numpy(dtype=bool), beta)
    return result


def _robust_variance(fitter: Any, design: pd.DataFrame, spec: CoxSpec) -> FloatArray:
    """Lin-Wei sandwich ``(sum_c D_c)' (sum_c D_c)``, ``D = score residuals x V`` summed
    within clusters (R ``coxph(... + cluster(id))``), residuals within strata."""
    residuals = residuals_within_strata(design, spec, fitter, efron_score_residuals)
    dfbeta = residuals @ fitter.variance_matrix_.to_numpy(dtype=float)
    assert spec.cluster is not None
    summed = pd.DataFrame(dfbeta).groupby(design[spec.cluster].to_numpy()).sum().to_numpy()
    return np.asarray(summed.T @ summed, dtype=np.float64)


def _coefficient_table(coef: FloatArray, se: FloatArray, terms: list[str]) -> pd.DataFrame:
    """Hazard ratios with 95% Wald limits ``exp(beta +- z se)`` and two-sided p-values.

    Overflow under separation gives infinite limits, caught by :func:`_checked_fit`.
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return pd.DataFrame({
            "term": terms,
            "hazard_ratio": np.exp(coef),
            "ci_low": np.exp(coef - Z95 * se),
            "ci_high": np.exp(coef + Z95 * se),
            "p_value": 2.0 * stats.norm.sf(np.abs(coef / se)),
            "coef": coef,
            "se": se,
        })


def fit_cox(data: pd.DataFrame, spec: CoxSpec) -> CoxFit:
    """Fit a Cox model of relapse (lifelines ``CoxPHFitter``, Efron ties).

    With ``spec.cluster`` the variance is the Lin-Wei sandwich computed here from Efron
    score residuals, which matches R ``coxph(... + cluster(id))``; lifelines' own
    ``cluster_col`` builds its score residuals as if there were no tied times, which put its
    robust standard errors up to 1% away from R's on the (heavily tied) demo follow-up.

    Parameters
    ----------
    data : DataFrame
        time_weeks, event (1 = relapse, other codes censored: the cause-specific hazard) and
        the spec's columns, without missing covariates.
    spec : CoxSpec
        Terms, reference levels, cluster and strata.

    Returns
    -------
    CoxFit
        ``table``: term, hazard_ratio, ci_low, ci_high (95% Wald), p_value, coef, se, n,
        events, model. Warnings of the fitter are captured in ``warnings``; ``fitter`` has
        the model-based variance.

    Raises
    ------
    lifelines.exceptions.ConvergenceError
        When the partial likelihood cannot be maximised: lifelines raises it, or warns
        that Newton-Raphson failed to converge (its estimates are then not used).
    """
    design = cox_design(data, spec)
    fitter = CoxPHFitter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitter.fit(_lifelines_frame(design, spec), duration_col="time_weeks",
                   event_col="event", strata=[STRATUM_CODE] if spec.strata else None,
                   fit_options=FIT_OPTIONS)
    if any(issubclass(w.category, ConvergenceWarning) and NOT_CONVERGED in str(w.message)
           for w in caught):  # lifelines only warns, and returns the last step's estimates
        raise ConvergenceError("Newton-Raphson stopped before the partial likelihood was "
                               "maximised")
    coef = fitter.params_.to_numpy(dtype=float)
    if spec.cluster:
        se = np.sqrt(np.diag(_robust_variance(fitter, design, spec)))
    else:
        se = fitter.standard_errors_.to_numpy(dtype=float)
    table = _coefficient_table(coef, se, [str(t) for t in fitter.params_.index])
    table["n"] = len(design)
    table["events"] = int(design["event"].sum())
    table["model"] = spec.describe()
    return CoxFit(fitter, design, spec, table, _warning_text(caught))
