"""Outcome rates with confidence intervals, small-count suppression and adjusted comparisons.

Everything here starts from the per-patient ``patient_outcomes`` table
(``data_schemas.outcomes``) and returns tidy DataFrames or a small frozen dataclass.

Rates
    For a binary outcome the rate is ``events / n`` with a Wilson score interval. Two
    denominators are reported side by side:

    ``observed``
        patients in the population whose outcome is known (available-case analysis);
    ``itt``
        intention to treat: patients in the population who were *eligible at baseline*, a
        missing outcome counted as a non-event (a conservative, "missing = not improved"
        convention, as in NHS Talking Therapies reporting of unpaired cases).

    Neither is an unbiased estimate when outcomes are missing not at random (dropout in
    therapy often follows early non-response); the pair brackets the plausible range and a
    model-based sensitivity analysis belongs in the report.
Margins
    Every table grouped by ``condition`` x ``format`` also has the margins ``"all"`` (all
    conditions within a format, all formats within a condition, and everyone).
Adjusted comparison
    A population-averaged logistic model fitted by generalised estimating equations (GEE;
    Liang and Zeger 1986) with an exchangeable working correlation within clusters (therapy
    groups, or therapists for individual patients) and robust (sandwich) standard errors,
    followed by model-based standardisation (g-computation) of the response rate to
    "everyone treated individually" and "everyone treated in a group".

References
----------
Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
JASA 22:209-212.
Newcombe RG (1998). Two-sided confidence intervals for the single proportion: comparison
of seven methods. Statistics in Medicine 17:857-872.
Liang KY, Zeger SL (1986). Longitudinal data analysis using generalized linear models.
Biometrika 73:13-22.
Muller CJ, MacLehose RF (2014). Estimating predicted probabilities from logistic regression:
different methods correspond to different target populations. Int J Epidemiol 43:962-970.
NHS England (2024). NHS Talking Therapies for anxiety and depression manual, v7.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit
from statsmodels.stats.proportion import proportion_confint

from data_schemas.vocab import CONDITIONS, FORMATS
from pipeline.estimability import require
from pipeline.modelling import pooling

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

ALL: Final = "all"
PAIRED_INSTRUMENT: Final = "phq9+gad7"
INSTRUMENT_OUTCOMES: Final = ("response", "remission", "reliable_improvement")
PAIRED_OUTCOMES: Final = ("reliable_improvement", "recovery", "reliable_recovery")
DENOMINATORS: Final = ("observed", "itt")
POPULATIONS: Final = ("started", "finished_course", "completers")
RATE_COLUMNS: Final = (
    "population", "instrument", "outcome", "denominator", "condition", "format",
    "n", "events", "rate", "ci_low", "ci_high",
)
REFERENCE_LEVELS: Final = {
    "format": "individual",
    "condition": "major_depression",
    "problem_area": "role_disputes",
}
POOLED_LEVEL: Final = "other_pooled"


# --------------------------------------------------------------------------------------
# Wilson interval
# --------------------------------------------------------------------------------------


def wilson_interval(
    events: npt.ArrayLike, n: npt.ArrayLike, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    r"""Wilson score interval for binomial proportions, vectorised.

    .. math::

        \frac{\hat p + z^2/(2n)}{1 + z^2/n} \pm
        \frac{z}{1 + z^2/n}\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}},
        \qquad \hat p = x/n,\; z = \Phi^{-1}(1 - \alpha/2).

    Computed by ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.
    Unlike the Wald interval it stays inside [0, 1] and keeps close to nominal coverage for
    small ``n`` and proportions near 0 or 1 (Newcombe 1998).

    Parameters
    ----------
    events, n : array_like
        Numbers of events and of trials (broadcast against each other).
    alpha : float
        One minus the confidence level.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper limits, float arrays of the broadcast shape; NaN where ``n == 0``.

    References
    ----------
    Wilson EB (1927). JASA 22:209-212. Newcombe RG (1998). Stat Med 17:857-872.

    Examples
    --------
    >>> low, high = wilson_interval([8, 0, 3], [10, 10, 0])
    >>> np.round(low, 4).tolist(), np.round(high, 4).tolist()
    ([0.4902, 0.0, nan], [0.9433, 0.2775, nan])
    """
    x, trials = np.broadcast_arrays(
        np.asarray(events, dtype=float), np.asarray(n, dtype=float)
    )
    empty = ~(trials > 0)
    safe_trials = np.where(empty, 1.0, trials)
    safe_events = np.where(empty, 0.0, x)
    low, high = proportion_confint(safe_events, safe_trials, alpha=alpha, method="wilson")
    # exact at the edges: statsmodels' closed form leaves ~1e-16 beyond 0 and 1
    low_arr = np.where(safe_events <= 0, 0.0, np.clip(np.asarray(low, dtype=float), 0, 1))
    high_arr = np.where(safe_events >= safe_trials, 1.0,
                        np.clip(np.asarray(high, dtype=float), 0, 1))
    low_arr = np.where(empty, np.nan, low_arr)
    high_arr = np.where(empty, np.nan, high_arr)
    return low_arr.astype(np.float64), high_arr.astype(np.float64)


# --------------------------------------------------------------------------------------
# Grouping with margins and ordering
# --------------------------------------------------------------------------------------


def _with_margins(frame: pd.DataFrame) -> pd.DataFrame:
    """Stack ``frame`` with copies whose condition, format or both are set to ``"all"``."""
    base = frame.astype({"condition": str, "format": str})
    return pd.concat(
        [
            base,
            base.assign(condition=ALL),
            base.assign(format=ALL),
            base.assign(condition=ALL, format=ALL),
        ],
        ignore_index=True,
    )


def _rank(values: pd.Series, vocabulary: Sequence[str]) -> pd.Series:
    """Sort key: vocabulary order first, other values alphabetically, ``"all"`` last."""
    order = {level: i for i, level in enumerate(vocabulary)}
    extras = sorted(set(values) - set(order) - {ALL})
    order.update({level: len(vocabulary) + i for i, level in enumerate(extras)})
    order[ALL] = len(order) + 1
    return values.map(order)


def _sort_cells(table: pd.DataFrame, keys: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Sort rows by the given columns, each in its vocabulary order; reset the index."""
    ranks = pd.DataFrame({column: _rank(table[column], vocab) for column, vocab in keys.items()})
    order = ranks.sort_values(list(keys), kind="stable").index
    return table.loc[order].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Response rates
# --------------------------------------------------------------------------------------


def _has_baseline(outcomes: pd.DataFrame, instrument: str) -> bool:
    column = f"{instrument}_baseline"
    return column in outcomes and bool(outcomes[column].notna().any())


def _outcome_specs(
    outcomes: pd.DataFrame, instruments: Sequence[str],
    defined: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, str, pd.Series, BoolArray]]:
    """(instrument, outcome, outcome column, baseline eligibility) for every rate to report.

    Eligibility at baseline: response needs a baseline score above 0 (a percentage change
    is undefined from 0); remission and reliable improvement need a baseline score;
    paired reliable improvement needs PHQ-9 and GAD-7 at baseline; recovery and reliable
    recovery need caseness at the start (NHS Talking Therapies manual). With ``defined``
    (instrument, or ``"phq9+gad7"`` for the paired measures -> outcomes its rules define)
    an outcome not listed is left out: it is not defined, so it has no rate, not 0%.
    """
    def wanted(instrument: str, outcome: str) -> bool:
        return defined is None or outcome in defined.get(instrument, ())

    specs: list[tuple[str, str, pd.Series, BoolArray]] = []
    for instrument in instruments:
        if not _has_baseline(outcomes, instrument):
            continue
        baseline = outcomes[f"{instrument}_baseline"]
        measured = baseline.notna().to_numpy(dtype=bool)
        positive = (baseline.fillna(0) > 0).to_numpy(dtype=bool)
        for outcome in (o for o in INSTRUMENT_OUTCOMES if wanted(instrument, o)):
            eligible = positive if outcome == "response" else measured
            specs.append((instrument, outcome, outcomes[f"{instrument}_{outcome}"], eligible))
    if _has_baseline(outcomes, "phq9") and _has_baseline(outcomes, "gad7"):
        paired = (
            outcomes["phq9_baseline"].notna() & outcomes["gad7_baseline"].notna()
        ).to_numpy(dtype=bool)
        caseness = (outcomes["caseness_at_start"] == True).fillna(False)  # noqa: E712
        at_caseness = caseness.to_numpy(dtype=bool)
        for outcome in (o for o in PAIRED_OUTCOMES if wanted(PAIRED_INSTRUMENT, o)):
            eligible = paired if outcome == "reliable_improvement" else at_caseness
            specs.append((PAIRED_INSTRUMENT, outcome, outcomes[outcome], eligible))
    return specs


def _indicator_frame(
    outcomes: pd.DataFrame, instruments: Sequence[str], populations: Sequence[str],
    defined: Mapping[str, Sequence[str]] | None = None,
) -> tuple[pd.DataFrame, list[tuple[str, str, str, str]]]:
    """Per-patient 0/1 columns ``(key, "n")`` and ``(key, "events")`` for every rate cell."""
    columns: dict[tuple[str, ...], BoolArray] = {}
    keys: list[tuple[str, str, str, str]] = []
    specs = _outcome_specs(outcomes, instruments, defined)
    for population in populations:
        in_population = outcomes[population].to_numpy(dtype=bool)
        for instrument, outcome, values, eligible in specs:
            known = values.notna().to_numpy(dtype=bool)
            event = values.fillna(False).to_numpy(dtype=bool)
            members = {"observed": in_population & known, "itt": in_population & eligible}
            for denominator, member in members.items():
                key = (population, instrument, outcome, denominator)
                keys.append(key)
                columns[(*key, "n")] = member
                columns[(*key, "events")] = member & event
    indicators = pd.DataFrame(
        {"/".join(key): value for key, value in columns.items()},
        index=outcomes.index,
    )
    indicators["condition"] = outcomes["condition"].to_numpy()
    indicators["format"] = outcomes["format"].to_numpy()
    return indicators, keys


def _without_unobserved_itt(table: pd.DataFrame) -> pd.DataFrame:
    """Drop ITT cells in which nobody's outcome was observed.

    An ITT rate counts a missing outcome as no event; where no patient of the cell has the
    outcome observed, its "0%" would be imputation alone, not an estimate.
    """
    keys = ["population", "instrument", "outcome", "condition", "format"]
    observed = table.loc[table["denominator"] == "observed", [*keys, "n"]]
    merged = table[keys].merge(observed.rename(columns={"n": "n_observed"}), on=keys,
                               how="left")
    seen = merged["n_observed"].fillna(0).to_numpy() > 0
    keep = (table["denominator"] != "itt").to_numpy() | seen
    return table.loc[keep].reset_index(drop=True)


def response_rates(
    outcomes: pd.DataFrame,
    instruments: Sequence[str],
    populations: Sequence[str] = POPULATIONS,
    defined: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Response, remission, reliable improvement and recovery rates with Wilson intervals.

    For each population, each instrument in ``instruments`` (outcomes ``response``,
    ``remission``, ``reliable_improvement`` from the ``{instrument}_...`` columns) and the
    paired PHQ-9 + GAD-7 measures (instrument ``"phq9+gad7"``: ``reliable_improvement``,
    ``recovery``, ``reliable_recovery``), two denominators:

    * ``observed``: ``n`` = patients in the population with the outcome known;
    * ``itt``: ``n`` = patients in the population eligible at baseline (response: baseline
      > 0; remission, reliable improvement: baseline present; paired reliable improvement:
      both baselines present; recovery, reliable recovery: caseness at the start), a
      missing outcome counting as a non-event.

    ``rate = events / n`` (NaN when ``n == 0``) with a 95% Wilson interval, by condition x
    format with ``"all"`` margins. Instruments without any baseline score in the data are
    left out rather than reported as zeros, and so is every outcome an instrument does not
    define (``defined``) and every ITT cell where nobody's outcome was observed (its rate
    would be imputation alone). Rates keep full precision.

    Parameters
    ----------
    outcomes : DataFrame
        ``patient_outcomes`` (one row per patient).
    instruments : sequence of str
        Instruments to report, e.g. ``("phq9", "gad7", "hamd17", "bdi2")``.
    populations : sequence of str
        Boolean population columns, reported in this order.
    defined : mapping of str to sequence of str, optional
        The outcomes each instrument's rules define (``"phq9+gad7"``: the paired ones;
        ``StudyConfig.defined_outcomes``); ``None`` reports every outcome.

    Returns
    -------
    DataFrame
        Columns population, instrument, outcome, denominator, condition, format, n, events,
        rate, ci_low, ci_high; sorted by population, instrument, outcome, denominator (in
        the order above) and then condition and format (vocabulary order, ``"all"`` last).
    """
    indicators, keys = _indicator_frame(outcomes, instruments, populations, defined)
    require(bool(keys), "no patient has a baseline score on any instrument that defines an "
            "outcome", "baseline and end-of-treatment scores on a catalogued instrument")
    cells = indicators.groupby(["condition", "format"], sort=False).sum().reset_index()
    sums = _with_margins(cells).groupby(["condition", "format"], sort=False).sum()
    pieces = []
    for key in keys:
        name = "/".join(key)
        piece = pd.DataFrame(
            {"n": sums[f"{name}/n"], "events": sums[f"{name}/events"]}
        ).reset_index()
        pieces.append(piece.assign(**dict(zip(RATE_COLUMNS[:4], key, strict=True))))
    table = pd.concat(pieces, ignore_index=True)
    n = table["n"].to_numpy(dtype=float)
    events = table["events"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["rate"] = np.where(n > 0, events / np.where(n > 0, n, 1.0), np.nan)
    table["ci_low"], table["ci_high"] = wilson_interval(events, n)
    table = table[list(RATE_COLUMNS)].astype({"n": np.int64, "events": np.int64})
    table = _without_unobserved_itt(table)
    instrument_order = [*dict.fromkeys(instruments), PAIRED_INSTRUMENT]
    return _sort_cells(
        table,
        {
            "population": list(populations),
            "instrument": instrument_order,
            "outcome": [*INSTRUMENT_OUTCOMES, *PAIRED_OUTCOMES[1:]],
            "denominator": DENOMINATORS,
            "condition": CONDITIONS,
            "format": FORMATS,
        },
    )


# --------------------------------------------------------------------------------------
# Small-count suppression
# --------------------------------------------------------------------------------------


def suppress_small_counts(
    table: pd.DataFrame,
    count_columns: Sequence[str] = ("n", "events"),
    low: int = 1,
    high: int = 4,
    rate_columns: Sequence[str] = ("rate", "ci_low", "ci_high"),
) -> pd.DataFrame:
    """Hide small counts in a table meant for sharing outside the service.

    Counts with ``low <= count <= high`` become the string ``"<{high + 1}"`` (``"<5"`` by
    default); zero is not suppressed. The first count column is taken as the denominator
    and the others as numerators: when any count or any complement ``denominator -
    numerator`` lies in ``[low, high]`` the rate columns become missing as well, so the
    hidden count cannot be worked back from the rate, its interval or the complement.
    This follows the usual disclosure-control rule of NHS statistical publications (counts
    of 1-4 hidden, with derived values hidden too).

    Only cells are protected one row at a time: a hidden cell can still be recovered by
    subtracting the other cells from an ``"all"`` margin. Shared tables with margins go
    through ``pipeline.sharing`` (complementary suppression across margins and tables).

    Parameters
    ----------
    table : DataFrame
        E.g. the output of :func:`response_rates`. Not modified.
    count_columns : sequence of str
        Denominator first, then numerators.
    low, high : int
        Inclusive range of counts to hide.
    rate_columns : sequence of str
        Columns derived from the counts, blanked on suppression (those present are used).

    Returns
    -------
    DataFrame
        A copy with the count columns as object dtype, the rate columns blanked where
        needed and a boolean column ``suppressed``.
    """
    result = table.copy()
    counts = table[list(count_columns)].apply(pd.to_numeric).astype(float)
    small = ((counts >= low) & (counts <= high)).fillna(False)  # a missing count is not small
    if len(count_columns) > 1:
        denominator = counts[count_columns[0]]
        complements = counts[list(count_columns[1:])].rsub(denominator, axis=0)
        small_complement = ((complements >= low) & (complements <= high)).any(axis=1)
    else:
        small_complement = pd.Series(False, index=table.index)
    hide_rates = small.any(axis=1) | small_complement
    label = f"<{high + 1}"
    for column in count_columns:
        result[column] = result[column].astype(object).where(~small[column], label)
    for column in (c for c in rate_columns if c in result):
        result[column] = result[column].astype(float).where(~hide_rates, np.nan)
    result["suppressed"] = hide_rates.astype(bool)
    return result


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


def missing_group_note(data: pd.DataFrame,
                       fallback: str = "by therapist (or as their own cluster)") -> list[str]:
    """The caveat when group-format patients have no group_id (the schema allows it).

    Patients treated in the same therapy group share the group: their outcomes are
    correlated (intraclass correlation rho), and a model that ignores it understates the
    variance of a comparison by the design effect ``1 + (m - 1) rho`` for groups of size
    ``m`` (Kish 1965; for group psychotherapy, Baldwin et al. 2005, J Consult Clin Psychol
    73:924). ``fallback`` says how such patients were clustered instead.
    """
    if "group_id" not in data or "format" not in data:
        return []
    missing = int(((data["format"] == "group") & data["group_id"].isna()).sum())
    if not missing:
        return []
    return [f"{missing} group-format patient{'s' if missing != 1 else ''} without a group_id "
            f"clustered {fallback}: the standard errors ignore "
            "clustering within therapy groups and are likely too small (patients treated in "
            "one group have correlated outcomes, and the design effect is lost)"]


def _pool_levels(
    values: pd.Series, y: pd.Series, name: str, min_level_n: int
) -> tuple[pd.Series, str | None, list[str]]:
    """Pool sparse levels of one covariate (:func:`pipeline.modelling.pooling.pool_rare_levels`
    with the outcome: fewer than ``min_level_n`` patients, or no events or no non-events);
    choose its reference level. Returns the recoded values, the reference (None when only
    one level is left: the covariate is then dropped) and notes.
    """
    preferred = REFERENCE_LEVELS.get(name)
    result = pooling.pool_rare_levels(values, min_level_n, outcome=y, name=name,
                                      preferred=() if preferred is None else (preferred,))
    notes = list(result.notes)
    if result.reference is None:
        return result.values, None, [*notes, f"{name}: a single level left; covariate dropped"]
    if preferred is not None and result.reference != preferred:
        notes.insert(1, f"{name}: reference level {preferred} absent or sparse; "
                     f"using {result.reference}")
    return result.values, result.reference, notes


def _design(
    data: pd.DataFrame, y: pd.Series, covariates: Sequence[str], baseline: str,
    min_level_n: int,
) -> tuple[pd.DataFrame, list[str]]:
    """Design matrix with readable column names ``Intercept``, ``cov[level]``, baseline."""
    columns: dict[str, pd.Series] = {"Intercept": pd.Series(1.0, index=data.index)}
    notes: list[str] = []
    for name in covariates:
        values, reference, level_notes = _pool_levels(data[name], y, name, min_level_n)
        notes.extend(level_notes)
        if reference is None:
            continue
        for level in sorted(set(values) - {reference}, key=lambda lv: (lv == POOLED_LEVEL, lv)):
            columns[f"{name}[{level}]"] = (values == level).astype(float)
    columns[baseline] = data[baseline].astype(float)
    return pd.DataFrame(columns), notes


#: Above this many patients the exchangeable GEE (a Python loop over clusters in
#: statsmodels, ~20 s at 300,000 patients) gives way to the independence working
#: correlation, fitted as a logistic GLM with cluster-robust standard errors (vectorised).
GEE_EXCHANGEABLE_MAX = 50_000


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
    """
    groups = pd.factorize(clusters)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if len(y) > exchangeable_max:
            results = sm.GLM(y.astype(float), design, family=sm.families.Binomial()).fit(
                cov_type="cluster", cov_kwds={"groups": groups})
            caught.append(warnings.WarningMessage(
                f"{len(y):,} patients: independence working correlation (logistic GLM with "
                "cluster-robust SEs) instead of exchangeable, for speed", UserWarning, "", 0))
        else:
            model = sm.GEE(y.astype(float), design, groups=groups,
                           family=sm.families.Binomial(),
                           cov_struct=sm.cov_struct.Exchangeable())
            results = model.fit(cov_type="robust")
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
    recorded in ``notes``, as are warnings raised by statsmodels (e.g. non-convergence).

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
        See ``_comparable``; too few clusters; a covariance that is not finite.
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


# --------------------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------------------


def benchmark_comparison(
    rates: pd.DataFrame,
    benchmarks: pd.DataFrame,
    population: str = "finished_course",
    denominator: str = "observed",
    primary: str = "phq9",
    defined: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Compare observed rates with external benchmarks.

    Each benchmark row (condition or ``"all"``, outcome, rate, source) is matched to the
    :func:`response_rates` row with format ``"all"``, the same condition and outcome, the
    given population and denominator, and instrument ``"phq9+gad7"`` for the paired
    outcomes (recovery, reliable_improvement, reliable_recovery) or ``primary`` otherwise.
    The verdict compares the benchmark with the 95% Wilson interval: ``"above"`` when
    ``ci_low > benchmark``, ``"below"`` when ``ci_high < benchmark``, ``"around"`` when the
    interval contains it and ``"no data"`` when there is no matching rate. A benchmark for
    an outcome the instrument does not define (``defined``, as in :func:`response_rates`)
    is left out.

    Returns
    -------
    DataFrame
        condition, outcome, benchmark_rate, source, n, events, rate, ci_low, ci_high,
        verdict; one row per benchmark, in the benchmarks' order.
    """
    paired = set(PAIRED_OUTCOMES)
    wanted = benchmarks.rename(columns={"rate": "benchmark_rate"})[
        ["condition", "outcome", "benchmark_rate", "source"]
    ].reset_index(drop=True)
    wanted["instrument"] = [PAIRED_INSTRUMENT if o in paired else primary
                            for o in wanted["outcome"]]
    if defined is not None:
        keep = [o in defined.get(i, ()) for i, o in zip(wanted["instrument"],
                                                         wanted["outcome"], strict=True)]
        wanted = wanted.loc[keep].reset_index(drop=True)
    chosen = rates.loc[
        (rates["population"] == population)
        & (rates["denominator"] == denominator)
        & (rates["format"] == ALL),
        ["condition", "outcome", "instrument", "n", "events", "rate", "ci_low", "ci_high"],
    ]
    merged = wanted.merge(chosen, on=["condition", "outcome", "instrument"], how="left")
    benchmark = merged["benchmark_rate"].astype(float)
    verdict = np.select(
        [merged["rate"].isna(), merged["ci_low"] > benchmark, merged["ci_high"] < benchmark],
        ["no data", "above", "below"],
        default="around",
    )
    merged["verdict"] = verdict
    merged["benchmark_rate"] = benchmark
    merged = merged.astype({"n": "Int64", "events": "Int64"})
    return merged.drop(columns="instrument")


# --------------------------------------------------------------------------------------
# Attendance
# --------------------------------------------------------------------------------------


def _t_interval(
    mean: pd.Series, sd: pd.Series, n: pd.Series, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    """``mean -/+ t_{1-alpha/2, n-1} * sd / sqrt(n)``; NaN when ``n < 2``."""
    count = n.to_numpy(dtype=float)
    dof = np.where(count >= 2, count - 1, np.nan)
    half = stats.t.ppf(1 - alpha / 2, dof) * sd.to_numpy(dtype=float) / np.sqrt(count)
    centre = mean.to_numpy(dtype=float)
    return (centre - half).astype(np.float64), (centre + half).astype(np.float64)


def _ratio(numerator: pd.Series, denominator: pd.Series) -> FloatArray:
    num = numerator.to_numpy(dtype=float)
    den = denominator.to_numpy(dtype=float)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan).astype(np.float64)


def attendance_summary(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Attendance, did-not-attend and dropout among started patients, by condition x format.

    * ``sessions_attended_mean`` with the t interval
      ``mean +/- t_{0.975, k-1} s / sqrt(k)`` over the ``k`` started patients;
    * ``dna_rate = sum(sessions_did_not_attend) / sum(sessions_scheduled)`` (treatment
      sessions) with a Wilson interval. Sessions are clustered within patients (some
      patients miss many), so this binomial interval is too narrow; read it as a lower
      bound on the uncertainty;
    * ``dropout_rate`` = share of started patients with ``dropout`` True, Wilson interval.

    Margins ``"all"`` as in :func:`response_rates`.

    Returns
    -------
    DataFrame
        condition, format, patients, sessions_attended_mean, sessions_attended_ci_low,
        sessions_attended_ci_high, dna_sessions, scheduled_sessions, dna_rate, dna_ci_low,
        dna_ci_high, dropouts, dropout_rate, dropout_ci_low, dropout_ci_high.
    """
    started = outcomes.loc[outcomes["started"].astype(bool)]
    frame = started[["condition", "format", "sessions_attended", "sessions_did_not_attend",
                     "sessions_scheduled"]].assign(dropout=started["dropout"].astype(np.int64))
    cells = _with_margins(frame).groupby(["condition", "format"], sort=False).agg(
        patients=("sessions_attended", "size"),
        sessions_attended_mean=("sessions_attended", "mean"),
        sessions_attended_sd=("sessions_attended", "std"),
        dna_sessions=("sessions_did_not_attend", "sum"),
        scheduled_sessions=("sessions_scheduled", "sum"),
        dropouts=("dropout", "sum"),
    ).reset_index()
    low, high = _t_interval(cells["sessions_attended_mean"], cells["sessions_attended_sd"],
                            cells["patients"])
    cells["sessions_attended_ci_low"], cells["sessions_attended_ci_high"] = low, high
    cells["dna_rate"] = _ratio(cells["dna_sessions"], cells["scheduled_sessions"])
    cells["dna_ci_low"], cells["dna_ci_high"] = wilson_interval(
        cells["dna_sessions"], cells["scheduled_sessions"])
    cells["dropout_rate"] = _ratio(cells["dropouts"], cells["patients"])
    cells["dropout_ci_low"], cells["dropout_ci_high"] = wilson_interval(
        cells["dropouts"], cells["patients"])
    columns = [
        "condition", "format", "patients", "sessions_attended_mean", "sessions_attended_ci_low",
        "sessions_attended_ci_high", "dna_sessions", "scheduled_sessions", "dna_rate",
        "dna_ci_low", "dna_ci_high", "dropouts", "dropout_rate", "dropout_ci_low",
        "dropout_ci_high",
    ]
    return _sort_cells(cells[columns], {"condition": CONDITIONS, "format": FORMATS})

