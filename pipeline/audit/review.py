r"""Clinic outcome audit: sites and therapists compared after case-mix adjustment, funnel
plots, benchmarks, patients not on track, and privacy by default.

Per unit (``audit_sites``, ``audit_therapists``; one row per unit and an ``"all"`` row)
    Patients referred (rows of ``patient_outcomes``), started (>= 1 attended treatment
    session) and finished a course (NHS Talking Therapies: ended, >= 2 attended treatment
    sessions). Among finished courses, NHS Talking Therapies rates with 95% Wilson
    intervals (``pipeline.outcomes.rates.wilson_interval``): recovery (denominator: at caseness at
    the start with paired PHQ-9 and GAD-7), reliable improvement and reliable deterioration
    (denominator: outcome known), reliable recovery (at caseness, paired). The pre-post
    effect size per paired instrument among finished courses with a baseline and an
    endpoint,

    .. math::

        d = \frac{\bar x_{pre} - \bar x_{post}}{s_{pre}}

    (positive = improvement; Delgadillo et al. 2014), with a percentile bootstrap interval
    (patients resampled within the unit, ``bootstrap_resamples`` resamples, fixed seed;
    Efron and Tibshirani 1993). Patients with the same (baseline, endpoint) pair are
    exchangeable, so each resample is drawn as multinomial counts over the distinct pairs
    (the same bootstrap distribution as resampling rows, at a cost that does not grow with
    the number of patients). Among started patients: attendance and did-not-attend
    rates (sessions attended or missed / treatment sessions scheduled) and the dropout rate
    (Wilson interval). Data completeness: the share of finished courses with paired scores
    on both paired instruments against the 90% standard (``meets_completeness_standard``).

Case-mix adjustment (indirect standardisation)
    A logistic regression (statsmodels GLM, binomial family, logit link) of recovery on the
    PHQ-9 and GAD-7 baselines, condition, format, problem area and age (when recorded; a
    missing age is set to the mean with an indicator), fitted on all patients in the
    recovery denominator of every unit. Levels with fewer than ``min_level_n`` patients are
    pooled into ``other_pooled`` (merged into the most frequent level if still too small).
    For unit :math:`u`: :math:`O_u` = recovered patients, :math:`E_u = \sum_{i \in u}
    \hat p_i`, the ratio :math:`O_u / E_u` with the exact Poisson interval (Garwood 1936;
    Ulm 1990)

    .. math::

        \left[\tfrac{1}{2}\chi^2_{\alpha/2}(2O),\; \tfrac{1}{2}\chi^2_{1-\alpha/2}(2O + 2)
        \right] / E,

    and the indirectly standardised rate :math:`(O_u / E_u) \times \bar p` with
    :math:`\bar p` the level's overall recovery rate (interval scaled likewise). Byar's
    approximation (Breslow and Day 1987) approaches this interval for large :math:`O`.

Funnel plots (``pipeline.audit.funnels``)
    The standardised rate against the recovery denominator with 95% and 99.8% limits around
    :math:`\bar p` (Spiegelhalter 2005a), widened for over-dispersion when the Winsorised
    :math:`\hat\phi > 1` and the chi-square test rejects (Spiegelhalter 2005b). Units with
    fewer than ``min_funnel_n`` patients are not placed; they are listed as ``too_small``
    in ``audit_outliers`` with every unit outside the 95% limits. Treating the standardised
    rate as a crude proportion slightly over-states its variance (by Jensen's inequality
    :math:`\sum_i \hat p_i(1 - \hat p_i) \le n\bar p(1 - \bar p)`), so the limits are
    conservative.

Benchmarks (``audit_benchmarks``)
    Recovery against ``recovery_target`` (verdict ``above``/``below`` when the Wilson
    interval excludes it, else ``around``); effect sizes against the bands of
    :class:`AuditOptions` by the same rule, the bootstrap interval (``high``,
    ``above_average``, ``around_average`` when the interval holds the average threshold,
    ``below_average``, ``poor``).

Patients not on track (``not_on_track``)
    An expected recovery curve (Finch, Lambert and Schaalje 2001; Lutz et al. 1999) from a
    linear mixed model fitted by REML (statsmodels MixedLM) on the finished courses'
    treatment-session scores of the primary instrument (a seeded random
    ``max_model_patients`` of them when there are more, stated in the messages; only their
    session rows and those of the patients in treatment are built),

    .. math::

        y_{ij} = \beta_0 + \beta_1 w_{ij} + \beta_2 (b_i - \bar b) + \beta_3 w_{ij}(b_i -
        \bar b) + u_{0i} + u_{1i} w_{ij} + \varepsilon_{ij},

    with :math:`w` weeks since the start date, :math:`b` the baseline score,
    :math:`(u_0, u_1) \sim N(0, G)` and :math:`\varepsilon \sim N(0, \sigma^2)`. For a
    patient still in treatment the latest score is compared with the 90% prediction band
    :math:`\hat y \pm z_{0.95}\sqrt{g_{00} + 2 w g_{01} + w^2 g_{11} + \sigma^2}`; the
    patient is flagged when the score lies above it.

Privacy by default
    Patient ids are replaced by keyed pseudonyms (``pipeline.sharing.pseudonyms``: HMAC-SHA-256),
    therapist ids too unless ``pseudonymise_therapists=False``; rows are ordered by the
    pseudonyms so the order of the raw ids does not show. Counts of 1-4 are shown as
    ``"<5"`` with their rates blanked (primary suppression, reusing
    ``pipeline.outcomes.rates.suppress_small_counts``). Complementary cells are protected by
    secondary suppression (``"*"``, with the columns derived from the hidden count blanked):
    the published relations are "the sites add up to the sites' total", "the therapists add
    up to the therapists' total" and "the therapists of a site add up to that site's row"
    (each used only when it holds exactly). A quick pass hides, within each relation, the
    next-smallest non-zero cell until no hidden cell could be worked back from the total
    (``pipeline.sharing.suppression.protect_cells``); then every hidden small count is
    checked against all relations at once by linear programming, assuming a reader who knows
    that ``"<5"`` means 1-4 and ``"*"`` means 5 or more, and further cells are hidden until
    none can be pinned to a single value (``pipeline.sharing.suppression.audit_column``; the
    idea of the audits of tau-ARGUS, Hundepool et al. 2012). Figures show only units whose
    counts are shown. Only the declared columns reach the outputs; no free text is copied
    from the input.

References
----------
Breslow NE, Day NE (1987). Statistical Methods in Cancer Research II. IARC.
Delgadillo J, McMillan D, Leach C, Lucock M, Gilbody S, Wood N (2014). Benchmarking routine
psychological services: a discussion of challenges and methods. Behavioural and Cognitive
Psychotherapy 42:16-30.
Efron B, Tibshirani RJ (1993). An Introduction to the Bootstrap. Chapman & Hall.
Finch AE, Lambert MJ, Schaalje BG (2001). Psychotherapy quality control: the statistical
generation of expected recovery curves for integration into an early warning system.
Clinical Psychology and Psychotherapy 8:231-242.
Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.
Hundepool A, Domingo-Ferrer J, Franconi L, et al. (2012). Statistical Disclosure Control.
Wiley (chapter 4: secondary cell suppression and its audit).
Lutz W, Martinovich Z, Howard KI (1999). Patient profiling: an application of random
coefficient regression models to depicting the response of a patient to outpatient
psychotherapy. J Consult Clin Psychol 67:571-577.
NHS England (2024). NHS Talking Therapies for anxiety and depression manual, v7.
Spiegelhalter DJ (2005a). Statistics in Medicine 24:1185-1202; (2005b) Quality and Safety
in Health Care 14:347-351.
Ulm K (1990). A simple method to calculate the confidence interval of a standardized
mortality ratio. American Journal of Epidemiology 131:373-375.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from matplotlib.figure import Figure
from scipy import stats

from pipeline.audit import funnels as funnel
from pipeline.config import Audit, StudyConfig
from pipeline.estimability import AnalysisRecord, NotEstimable, attempt, require
from pipeline.modelling import pooling, sampling
from pipeline.outcomes import completeness, rates
from pipeline.report import audit_plots
from pipeline.sharing import pseudonyms as privacy
from pipeline.sharing.suppression import SECONDARY, Relation, _secondary, audit_column
from pipeline.sharing.suppression import protect_cells as protect_cells

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

ALL: Final = "all"
POOLED: Final = "other_pooled"
LEVELS: Final = {"site": "site_id", "therapist": "therapist_id"}
STAGE: Final = "audit"
OUTCOMES: Final = ("recovery", "reliable_improvement", "reliable_recovery",
                   "reliable_deterioration")
ADJUSTED: Final = ("expected", "oe_ratio", "oe_ci_low", "oe_ci_high", "adjusted_rate",
                   "adjusted_ci_low", "adjusted_ci_high")
OUTLIER_COLUMNS: Final = ("level", "unit", "n", "adjusted_rate", "z_score", "limit_hit")
BENCHMARK_COLUMNS: Final = ("level", "unit", "measure", "n", "estimate", "ci_low", "ci_high",
                            "benchmark", "verdict", "source")
NOT_ON_TRACK_COLUMNS: Final = ("patient_id", "site_id", "therapist_id", "session_number",
                               "score", "expected", "upper_bound", "sessions_remaining",
                               "flagged")
FUNNEL_SUMMARY_COLUMNS: Final = ("level", "units_on_funnel", "overall_rate", "phi_hat",
                                 "chi_square", "df", "p_value", "overdispersion_applied",
                                 "phi")
#: Optimisers tried in turn for the recovery curve (L-BFGS first: it copes best with random
#: effects near the boundary of their space, e.g. intercepts and slopes almost collinear).
CURVE_OPTIMISERS: Final = ("lbfgs", "bfgs", "cg")
MIN_CURVE_PATIENTS: Final = 10
RECOVERY_TARGET_SOURCE: Final = "NHS Talking Therapies national recovery standard (50%)"
EFFECT_SIZE_SOURCE: Final = "Delgadillo et al. 2014 (Behav Cogn Psychother 42:16-30)"


# --------------------------------------------------------------------------------------
# Options and result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditOptions(Audit):
    """Options of the clinic audit: the analysis options of the study config's ``audit``
    section (``pipeline.config.Audit``) plus the privacy options of the run; every default
    carries its source.

    Parameters
    ----------
    key : bytes or None
        Pseudonym key (``pipeline.io.load_or_create_key``); required unless ``keep_ids``.
        Never shown in ``repr``.
    keep_ids : bool
        Keep raw patient and therapist ids (for the service's own use, not for sharing).
    pseudonymise_therapists : bool
        Replace therapist ids by keyed pseudonyms (``t_...``). Default True: privacy by
        default; the service can recompute a therapist's pseudonym with the key.
    no_suppress : bool
        Show small counts (for researchers on their own data, not for sharing).
    recovery_target : float
        0.50: NHS Talking Therapies national recovery standard (NHS England 2024).
    effect_size_bands : tuple of (instrument, high, average, poor)
        Pre-post effect size benchmarks: PHQ-9 0.91 / 0.73 / 0.46 and GAD-7 1.02 / 0.78 /
        0.52 (high-performing, average and poorly performing services; Delgadillo et al.
        2014, NHS benchmarking of IAPT services).
    completeness_standard : float
        0.90: NHS Talking Therapies paired-score data completeness standard.
    min_funnel_n : int
        5: units with fewer patients are not placed on the funnel (as small-number
        disclosure control: counts of 1-4 are not published).
    funnel_levels : tuple of float
        (0.95, 0.998): warning and alarm limits (Spiegelhalter 2005a).
    winsorise : float
        0.10: Winsorising fraction at each end for over-dispersion (Spiegelhalter 2005b).
    overdispersion_alpha : float
        0.05: level of the chi-square test for over-dispersion.
    adjust_overdispersion : bool
        Widen the limits when over-dispersion is found (Spiegelhalter 2005b).
    min_level_n : int
        20: covariate levels with fewer patients are pooled (as ``comparison.min_level_n``).
    case_mix_covariates : tuple of str
        Categorical covariates (when present) besides the paired baselines; ``age`` is
        used as a continuous covariate when present.
    bootstrap_resamples : int
        500 percentile-bootstrap resamples for effect-size intervals.
    seed : int
        Seed of every random draw (bootstrap, model subsample).
    planned_sessions : int
        16: the planned IPT course (12-16 weekly sessions) for ``sessions_remaining``.
    prediction_level : float
        0.90: two-sided prediction band of the expected recovery curve (z = 1.645).
    max_model_patients : int
        Finished courses used to fit the recovery curve (a seeded random subset when there
        are more: MixedLM slows down with many groups).
    instrument : str or None
        Instrument of the recovery curve (None: the study's primary instrument).
    """

    key: bytes | None = field(default=None, repr=False)
    keep_ids: bool = False
    pseudonymise_therapists: bool = True
    no_suppress: bool = False


@dataclass(frozen=True, eq=False)
class AuditResult:
    """What the audit produced.

    Attributes
    ----------
    tables : dict of str to DataFrame
        ``audit_sites``, ``audit_therapists``, ``audit_outliers``, ``audit_benchmarks``,
        ``audit_funnel_summary``, ``not_on_track`` (written as ``OUT/audit/<key>.csv``).
    figures : dict of str to Figure
        ``funnel_sites``, ``funnel_therapists``.
    messages : tuple of str
        Plain-language notes: model, over-dispersion, suppression, pseudonyms.
    records : tuple of AnalysisRecord
        What became of each part (unit tables, each funnel figure, not on track).
    """

    tables: dict[str, pd.DataFrame]
    figures: dict[str, Figure]
    messages: tuple[str, ...]
    records: tuple[AnalysisRecord, ...] = ()


def unit_columns(instruments: Sequence[str]) -> tuple[str, ...]:
    """The declared columns of ``audit_sites`` and ``audit_therapists``."""
    columns = ["level", "unit", "site_id", "referred", "started", "finished_course"]
    for outcome in OUTCOMES:
        columns += [f"{outcome}_{s}" for s in ("n", "events", "rate", "ci_low", "ci_high")]
    for instrument in instruments:
        columns += [f"{instrument}_es_n", f"{instrument}_effect_size",
                    f"{instrument}_es_ci_low", f"{instrument}_es_ci_high"]
    columns += ["attendance_rate", "dna_rate", "dropouts", "dropout_rate", "dropout_ci_low",
                "dropout_ci_high", "paired_n", "completeness", "meets_completeness_standard",
                *ADJUSTED, "suppressed"]
    return tuple(columns)


# --------------------------------------------------------------------------------------
# Case mix
# --------------------------------------------------------------------------------------


def _pool(values: pd.Series, name: str, min_n: int) -> tuple[pd.Series, list[str]]:
    """Pool levels rarer than ``min_n`` into ``other_pooled`` (merged into the commonest
    level if still too small): :func:`pipeline.modelling.pooling.pool_rare_levels`."""
    values = values.astype(object).where(values.notna(), "missing").astype(str)
    result = pooling.pool_rare_levels(values, min_n, name=f"case mix: {name}")
    return result.values, list(result.notes)


def _case_mix_design(data: pd.DataFrame, baselines: Sequence[str],
                     options: AuditOptions) -> tuple[pd.DataFrame, list[str]]:
    """Design matrix: intercept, baselines, age (mean-imputed + indicator), dummies."""
    columns: dict[str, pd.Series] = {"Intercept": pd.Series(1.0, index=data.index)}
    for name in baselines:
        columns[name] = data[name].astype(float)
    notes: list[str] = []
    if "age" in options.case_mix_covariates and "age" in data and data["age"].notna().any():
        age = data["age"].astype(float)
        columns["age"] = age.fillna(float(age.mean()))
        if age.isna().any():
            columns["age_missing"] = age.isna().astype(float)
    for name in options.case_mix_covariates:
        if name == "age" or name not in data:
            continue
        values, pooled_notes = _pool(data[name], name, options.min_level_n)
        notes += pooled_notes
        counts = values.value_counts()
        reference = str(counts.index[0]) if len(counts) else ""
        for level in sorted(str(v) for v in counts.index if str(v) != reference):
            columns[f"{name}[{level}]"] = (values == level).astype(float)
    return pd.DataFrame(columns), notes


def case_mix_expected(
    patient_outcomes: pd.DataFrame, config: StudyConfig, options: AuditOptions
) -> tuple[pd.Series, list[str]]:
    """Predicted probability of recovery for every patient in the recovery denominator.

    Returns a float Series aligned with ``patient_outcomes`` (NaN outside the model: not a
    finished course, not at caseness or unpaired) and notes (pooling, fit warnings).
    """
    baselines = [f"{name}_baseline" for name in config.paired_instruments]
    known = patient_outcomes["finished_course"].astype(bool) & patient_outcomes[
        "recovery"].notna()
    for name in baselines:
        known &= patient_outcomes[name].notna()
    data = patient_outcomes.loc[known]
    expected = pd.Series(np.nan, index=patient_outcomes.index, dtype=float)
    y = data["recovery"].astype(bool).astype(float)
    if len(data) == 0 or y.nunique() < 2:
        expected.loc[data.index] = float(y.mean()) if len(data) else np.nan
        return expected, ["case mix: too few outcomes to fit a model; crude rate used"]
    design, notes = _case_mix_design(data, baselines, options)
    design = design.loc[:, (design.std() > 0) | (design.columns == "Intercept")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = sm.GLM(y, design, family=sm.families.Binomial()).fit()
    notes += [f"case mix: statsmodels {w.category.__name__}: {w.message}" for w in caught]
    expected.loc[data.index] = np.asarray(fitted.fittedvalues, dtype=float)
    notes.append(f"case mix: logistic model of recovery on {len(data)} patients with "
                 f"{design.shape[1] - 1} terms ({', '.join(design.columns[1:])})")
    return expected, list(dict.fromkeys(notes))


def poisson_ratio_interval(
    observed: npt.ArrayLike, expected: npt.ArrayLike, alpha: float = 0.05
) -> tuple[FloatArray, FloatArray]:
    r"""Exact Poisson interval for O/E (Garwood 1936; Ulm 1990).

    :math:`[\chi^2_{\alpha/2}(2O)/2,\ \chi^2_{1-\alpha/2}(2O+2)/2] / E`; lower limit 0 when
    :math:`O = 0`; NaN when :math:`E \le 0`.

    Examples
    --------
    >>> low, high = poisson_ratio_interval([10], [10.0])
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.4795, 1.839)
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    safe_e = np.where(e > 0, e, np.nan)
    low = np.where(o > 0, stats.chi2.ppf(alpha / 2, 2 * np.maximum(o, 1)) / 2, 0.0)
    high = stats.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2
    return (low / safe_e).astype(np.float64), (high / safe_e).astype(np.float64)


# --------------------------------------------------------------------------------------
# Per-unit statistics
# --------------------------------------------------------------------------------------


def _indicators(data: pd.DataFrame, expected: pd.Series, config: StudyConfig) -> pd.DataFrame:
    """Per-patient counts that add up to the unit totals."""
    finished = data["finished_course"].astype(bool)
    started = data["started"].astype(bool)
    columns: dict[str, pd.Series] = {
        "referred": pd.Series(1, index=data.index),
        "started": started.astype(int),
        "finished_course": finished.astype(int),
    }
    for outcome in OUTCOMES:
        known = finished & data[outcome].notna()
        columns[f"{outcome}_n"] = known.astype(int)
        columns[f"{outcome}_events"] = (known & data[outcome].fillna(False).astype(bool)).astype(
            int)
    columns["dropouts"] = (started & data["dropout"].astype(bool)).astype(int)
    for name in ("sessions_scheduled", "sessions_attended", "sessions_did_not_attend"):
        columns[name] = data[name].where(started, 0).astype(int)
    paired = finished.copy()
    for instrument in config.paired_instruments:
        paired &= data[f"{instrument}_change"].notna()
    columns["paired_n"] = paired.astype(int)
    columns["expected"] = expected.reindex(data.index).fillna(0.0)
    return pd.DataFrame(columns)


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return numerator.astype(float) / denominator.astype(float).where(denominator > 0)


def _add_rates(table: pd.DataFrame, standard: float) -> pd.DataFrame:
    """Wilson-interval rates, attendance, completeness and O/E columns from the sums."""
    for outcome in OUTCOMES:
        n, events = table[f"{outcome}_n"], table[f"{outcome}_events"]
        table[f"{outcome}_rate"] = _ratio(events, n)
        low, high = rates.wilson_interval(events, n)
        table[f"{outcome}_ci_low"], table[f"{outcome}_ci_high"] = low, high
    table["attendance_rate"] = _ratio(table["sessions_attended"], table["sessions_scheduled"])
    table["dna_rate"] = _ratio(table["sessions_did_not_attend"], table["sessions_scheduled"])
    table["dropout_rate"] = _ratio(table["dropouts"], table["started"])
    low, high = rates.wilson_interval(table["dropouts"], table["started"])
    table["dropout_ci_low"], table["dropout_ci_high"] = low, high
    table["completeness"] = completeness.share_paired(table["paired_n"],
                                                      table["finished_course"])
    table["meets_completeness_standard"] = completeness.meets_standard(
        table["completeness"], standard)
    observed = table["recovery_events"]
    table["oe_ratio"] = _ratio(observed, table["expected"])
    low, high = poisson_ratio_interval(observed, table["expected"])
    table["oe_ci_low"], table["oe_ci_high"] = low, high
    overall = float(table["recovery_rate"].iloc[-1])  # the "all" row
    for column, source in (("adjusted_rate", "oe_ratio"), ("adjusted_ci_low", "oe_ci_low"),
                           ("adjusted_ci_high", "oe_ci_high")):
        table[column] = table[source] * overall
    return table


def _bootstrap_draws(pre: FloatArray, post: FloatArray, resamples: int,
                     rng: np.random.Generator) -> FloatArray:
    """Effect sizes of ``resamples`` bootstrap resamples of the (pre, post) pairs.

    Patients with the same (pre, post) pair are exchangeable, so resampling the ``n``
    patients with replacement is drawing multinomial counts over the ``K`` distinct pairs
    with probabilities equal to their shares: the bootstrap distribution is the one of
    resampling rows, at a cost of ``resamples x K`` instead of ``resamples x n`` (scores
    are whole numbers, so ``K`` is bounded by the score ranges whatever ``n``: at most
    28 x 28 pairs for the PHQ-9).
    """
    pre_levels, post_levels, frequency = _pair_frequencies(pre, post)
    n = int(frequency.sum())
    counts = rng.multinomial(n, frequency / n, size=resamples).astype(float)
    return _effect_size_of_counts(counts, pre_levels, post_levels)


def _pair_frequencies(pre: FloatArray, post: FloatArray) -> tuple[FloatArray, FloatArray,
                                                                    IntArray]:
    """The distinct (pre, post) pairs in lexicographic order and how often each occurs.

    Each column is factorised by hashing (linear time), and only the integer pair codes
    are sorted.
    """
    pre_codes, pre_values = pd.factorize(pre, sort=True)
    post_codes, post_values = pd.factorize(post, sort=True)
    codes = pre_codes.astype(np.int64) * len(post_values) + post_codes
    distinct, frequency = np.unique(codes, return_counts=True)
    return (np.asarray(pre_values, dtype=float)[distinct // len(post_values)],
            np.asarray(post_values, dtype=float)[distinct % len(post_values)],
            frequency.astype(np.intp))


def _effect_size_of_counts(counts: FloatArray, pre: FloatArray, post: FloatArray
                           ) -> FloatArray:
    """Effect size of each resample given by its row of ``counts`` (times each distinct
    (pre, post) pair is drawn): the statistic of the resample spelled out row by row."""
    n = counts.sum(axis=1)
    mean_pre = counts @ pre / n
    mean_post = counts @ post / n
    spread = (counts * (pre[np.newaxis, :] - mean_pre[:, np.newaxis]) ** 2).sum(axis=1)
    sd = np.sqrt(spread / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        draws: FloatArray = ((mean_pre - mean_post) / np.where(sd > 0, sd, np.nan)).astype(
            np.float64)
    return draws


def bootstrap_effect_size(
    baseline: npt.ArrayLike, endpoint: npt.ArrayLike, resamples: int,
    rng: np.random.Generator, alpha: float = 0.05,
) -> tuple[float, float, float]:
    r"""Pre-post effect size :math:`(\bar x_{pre} - \bar x_{post}) / s_{pre}` and its
    percentile bootstrap interval (patients resampled with replacement, drawn as
    multinomial counts over the distinct (pre, post) pairs: :func:`_bootstrap_draws`).

    Returns (estimate, lower, upper); NaN when fewer than 2 patients or :math:`s_{pre} = 0`.
    Memory and time do not grow with the number of patients beyond one pass over them.
    """
    pre = np.asarray(baseline, dtype=float)
    post = np.asarray(endpoint, dtype=float)
    n = len(pre)
    if n < 2 or np.std(pre) == 0:
        return float("nan"), float("nan"), float("nan")
    estimate = float((pre.mean() - post.mean()) / pre.std(ddof=1))
    draws = _bootstrap_draws(pre, post, resamples, rng)
    low, high = np.nanpercentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return estimate, float(low), float(high)


def _effect_sizes(
    data: pd.DataFrame, units: pd.Series, instrument: str, options: AuditOptions
) -> pd.DataFrame:
    """Effect size, bootstrap interval and n per unit (sorted) and for ``"all"`` (last).

    The units draw from one seeded generator in that order; ``"all"`` draws from a fresh
    generator with the same seed, so the whole service's interval is the same number in
    the site and the therapist tables (one bootstrap of one quantity, not two)."""
    rng = np.random.default_rng(options.seed)
    paired = data["finished_course"].astype(bool) & data[f"{instrument}_baseline"].notna() & (
        data[f"{instrument}_endpoint"].notna())
    pre = data[f"{instrument}_baseline"].to_numpy(dtype=float)
    post = data[f"{instrument}_endpoint"].to_numpy(dtype=float)
    keep = paired.to_numpy(dtype=bool)
    groups = units.reset_index(drop=True).groupby(units.to_numpy()).indices
    members: dict[str, IntArray] = {str(unit): np.asarray(where, dtype=np.intp)
                                    for unit, where in groups.items()}
    rows = []
    for unit in [*sorted(members), ALL]:
        where = members[unit] if unit != ALL else np.arange(len(data), dtype=np.intp)
        where = where[keep[where]]
        draw = rng if unit != ALL else np.random.default_rng(options.seed)
        estimate, low, high = bootstrap_effect_size(pre[where], post[where],
                                                    options.bootstrap_resamples, draw)
        rows.append({"unit": unit, f"{instrument}_es_n": len(where),
                     f"{instrument}_effect_size": estimate, f"{instrument}_es_ci_low": low,
                     f"{instrument}_es_ci_high": high})
    return pd.DataFrame(rows).set_index("unit")


def unit_table(
    patient_outcomes: pd.DataFrame, level: str, expected: pd.Series, config: StudyConfig,
    options: AuditOptions,
) -> pd.DataFrame:
    """Unsuppressed per-unit statistics of one level (``site`` or ``therapist``).

    One row per unit (sorted by raw id) and a last ``"all"`` row over the units; columns
    as :func:`unit_columns` plus the raw session counts. Patients without a unit id are
    left out of that level.
    """
    column = LEVELS[level]
    if column not in patient_outcomes:
        patient_outcomes = patient_outcomes.assign(**{column: None})
    data = patient_outcomes.loc[patient_outcomes[column].notna()]
    units = data[column].astype(str)
    counts = _indicators(data, expected, config)
    sums = counts.groupby(units).sum()
    sums.loc[ALL] = counts.sum()
    sums = sums.astype({name: "int64" for name in sums.columns if name != "expected"})
    home_site = data["site_id"].astype(str).groupby(units).agg(lambda s: s.mode().iloc[0])
    table = sums.reset_index(names="unit")
    table.insert(0, "level", level)
    table.insert(2, "site_id", table["unit"].map(home_site).fillna(ALL))
    table = _add_rates(table, options.completeness_standard)
    for instrument in config.paired_instruments:
        sizes = _effect_sizes(data, units, instrument, options)
        table = table.join(sizes, on="unit")
    table["suppressed"] = False
    return table


# --------------------------------------------------------------------------------------
# Small-number suppression: primary (rates.suppress_small_counts) and secondary
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """Counts suppressed together, the columns derived from them, and other counts whose
    hiding also hides the derived columns."""

    counts: tuple[str, ...]
    derived: tuple[str, ...]
    guards: tuple[str, ...] = ()


def _specs(instruments: Sequence[str]) -> list[_Spec]:
    specs = [
        _Spec(("referred",), ()),
        _Spec(("started", "dropouts"), ("dropout_rate", "dropout_ci_low", "dropout_ci_high")),
        _Spec((), ("attendance_rate", "dna_rate"), ("started",)),
        _Spec(("finished_course",), ()),
        _Spec(("paired_n",), ("completeness",), ("finished_course",)),
    ]
    for outcome in OUTCOMES:
        derived = tuple(f"{outcome}_{s}" for s in ("rate", "ci_low", "ci_high"))
        specs.append(_Spec((f"{outcome}_n", f"{outcome}_events"),
                           derived + (ADJUSTED if outcome == "recovery" else ())))
    for name in instruments:
        specs.append(_Spec((f"{name}_es_n",), (f"{name}_effect_size", f"{name}_es_ci_low",
                                               f"{name}_es_ci_high")))
    return specs


def _relations(therapists: pd.DataFrame, sites: pd.DataFrame) -> list[Relation]:
    """Relations between the stacked cells (therapist rows, then site rows): all therapists
    sum to the therapists' ``"all"`` row, all sites to the sites' ``"all"`` row, the
    therapists of a site to the site's row, and the two ``"all"`` rows to each other."""
    offset = len(therapists)
    t_units = np.flatnonzero((therapists["unit"] != ALL).to_numpy())
    t_all = int(np.flatnonzero((therapists["unit"] == ALL).to_numpy())[0])
    s_units = np.flatnonzero((sites["unit"] != ALL).to_numpy())
    s_all = offset + int(np.flatnonzero((sites["unit"] == ALL).to_numpy())[0])
    relations = [Relation(t_units, t_all), Relation(s_units + offset, s_all),
                 Relation(np.array([t_all]), s_all)]
    site_row = {str(unit): offset + i for i, unit in enumerate(sites["unit"])}
    for site, rows in therapists.iloc[t_units].groupby("site_id").indices.items():
        if str(site) in site_row:
            relations.append(Relation(t_units[rows], site_row[str(site)]))
    return relations


def _count_columns(specs: Sequence[_Spec]) -> list[str]:
    return list(dict.fromkeys(c for spec in specs for c in spec.counts))


def _apply_suppression(
    table: pd.DataFrame, specs: Sequence[_Spec], hidden: dict[str, BoolArray], high: int
) -> pd.DataFrame:
    """Labels ``"<N"`` (primary, via ``rates.suppress_small_counts``) and ``"*"``
    (secondary); derived columns blanked wherever one of their counts is hidden."""
    shared = table.copy()
    any_hidden = np.zeros(len(table), dtype=bool)
    for spec in specs:
        if spec.counts:
            primary = rates.suppress_small_counts(table, spec.counts, 1, high, spec.derived)
            for column in (*spec.counts, *spec.derived):
                shared[column] = primary[column]
            any_hidden |= primary["suppressed"].to_numpy(dtype=bool)
        rows = np.zeros(len(table), dtype=bool)
        for column in (*spec.counts, *spec.guards):
            rows |= hidden[column]
        for column in spec.counts:
            secondary = hidden[column] & ~shared[column].astype(str).str.startswith("<")
            shared[column] = shared[column].astype(object).where(~secondary, SECONDARY)
        for column in spec.derived:
            shared[column] = shared[column].astype(float).where(~rows, np.nan)
        any_hidden |= rows
    shared["meets_completeness_standard"] = shared["meets_completeness_standard"].mask(
        shared["completeness"].isna())
    shared["suppressed"] = any_hidden
    return shared


def suppress_levels(
    sites: pd.DataFrame, therapists: pd.DataFrame, instruments: Sequence[str], high: int
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Primary and secondary suppression of both per-unit tables, column by column.

    Counts of 1..high are hidden (primary). Then, on the cells of both tables stacked, with
    the relations of :func:`_relations` that hold exactly (one that does not hold, e.g. for
    a therapist working at two sites, cannot be used to subtract): first the quick group
    rule of :func:`protect_cells`, then the joint check of :func:`audit_column`.
    """
    specs = _specs(instruments)
    relations = _relations(therapists, sites)
    split = len(therapists)
    hidden_t: dict[str, BoolArray] = {}
    hidden_s: dict[str, BoolArray] = {}
    counts = {"primary": 0, "secondary": 0, "pinned": 0}
    for column in _count_columns(specs):
        values = np.concatenate([therapists[column].to_numpy(dtype=float),
                                 sites[column].to_numpy(dtype=float)])
        primary = (values >= 1) & (values <= high)
        exact = [r for r in relations if values[r.members].sum() == values[r.total]]
        hidden = _secondary(values, primary, exact, high)
        hidden, pinned = audit_column(values, hidden, primary, exact, high)
        hidden_t[column], hidden_s[column] = hidden[:split], hidden[split:]
        counts["primary"] += int(primary.sum())
        counts["secondary"] += int((hidden & ~primary).sum())
        counts["pinned"] += pinned
    messages = [f"suppression: {counts['primary']} counts of 1-{high} shown as <{high + 1}; "
                f"{counts['secondary']} more hidden ({SECONDARY}) so that no small count can "
                "be worked back from totals or from the other table"]
    if counts["pinned"]:
        messages.append(f"suppression: {counts['pinned']} small counts could not be fully "
                        "protected (nothing left to hide); check before sharing")
    return (_apply_suppression(sites, specs, hidden_s, high),
            _apply_suppression(therapists, specs, hidden_t, high), messages)


# --------------------------------------------------------------------------------------
# Funnels, outliers and benchmarks
# --------------------------------------------------------------------------------------


def _funnel(table: pd.DataFrame, options: AuditOptions) -> funnel.FunnelResult:
    units = table[table["unit"] != ALL]
    frame = pd.DataFrame({"unit": units["unit"], "n": units["recovery_n"].astype(float),
                          "rate": units["adjusted_rate"].astype(float)})
    overall = float(table.loc[table["unit"] == ALL, "recovery_rate"].iloc[0])
    return funnel.analyse(frame, overall, options.min_funnel_n, options.funnel_levels,
                          options.winsorise, options.overdispersion_alpha,
                          options.adjust_overdispersion)


def _shown(shared: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Rows whose given count columns are all shown as numbers."""
    shown = pd.Series(True, index=shared.index)
    for column in columns:
        shown &= shared[column].map(lambda v: not isinstance(v, str))
    return shown


def _outliers(level: str, result: funnel.FunnelResult, shared: pd.DataFrame) -> pd.DataFrame:
    """Units outside the 95% limits or too small for the funnel (shared labels)."""
    units = shared[shared["unit"] != ALL].reset_index(drop=True)
    hits = result.units.reset_index(drop=True)
    listed = (hits["limit_hit"] != funnel.WITHIN).to_numpy()
    visible = _shown(units, ["recovery_n", "recovery_events"]).to_numpy()
    frame = pd.DataFrame({
        "level": level,
        "unit": units["unit"],
        "n": units["recovery_n"],
        "adjusted_rate": units["adjusted_rate"].astype(float),
        "z_score": hits["z_adjusted"].where(visible),
        "limit_hit": hits["limit_hit"],
    })
    return frame.loc[listed, list(OUTLIER_COLUMNS)].reset_index(drop=True)


def _band(low: float, top: float, high: float, average: float, poor: float) -> str:
    """The band the whole interval [low, top] lies in, by the same rule as recovery's
    verdict (an interval, never the point estimate alone): ``high`` or ``above_average``
    when it lies above ``high`` or ``average``, ``poor`` or ``below_average`` when below
    ``poor`` or ``average``, else ``around_average`` (it holds the average threshold)."""
    if low >= high:
        return "high"
    if low >= average:
        return "above_average"
    if top < poor:
        return "poor"
    return "below_average" if top < average else "around_average"


def _verdict(estimate: float, low: float, high: float, n: object, target: float) -> str:
    if np.isnan(estimate):
        return "suppressed" if isinstance(n, str) else "no data"
    if low > target:
        return "above"
    return "below" if high < target else "around"


def benchmarks(shared: pd.DataFrame, instruments: Sequence[str],
               options: AuditOptions) -> pd.DataFrame:
    """Recovery against the target and effect sizes against their bands, per unit."""
    bands = {name: values for name, *values in options.effect_size_bands}
    rows = []
    for record in shared.to_dict("records"):
        rate, low, high = (float(record[f"recovery_{s}"]) for s in ("rate", "ci_low",
                                                                     "ci_high"))
        rows.append([record["level"], record["unit"], "recovery_rate", record["recovery_n"],
                     rate, low, high, options.recovery_target,
                     _verdict(rate, low, high, record["recovery_n"], options.recovery_target),
                     RECOVERY_TARGET_SOURCE])
        for name in (i for i in instruments if i in bands):
            es = float(record[f"{name}_effect_size"])
            low, top = (float(record[f"{name}_es_ci_{end}"]) for end in ("low", "high"))
            n = record[f"{name}_es_n"]
            label = (_band(low, top, *bands[name]) if not np.isnan(es)
                     else "suppressed" if isinstance(n, str) else "no data")
            rows.append([record["level"], record["unit"], f"{name}_effect_size", n, es,
                         low, top, bands[name][1], label, EFFECT_SIZE_SOURCE])
    return pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))


# --------------------------------------------------------------------------------------
# Patients not on track
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryCurve:
    """A fitted expected recovery curve (see the module docstring for the model).

    Attributes
    ----------
    fixed : tuple of 4 floats
        beta_0 (intercept), beta_1 (weeks), beta_2 (centred baseline), beta_3 (interaction).
    cov_re : tuple of 3 floats
        g_00 (intercept variance), g_01 (covariance), g_11 (slope variance).
    residual_variance : float
        sigma^2.
    baseline_centre : float
        Mean baseline of the patients in the model.
    """

    fixed: tuple[float, float, float, float]
    cov_re: tuple[float, float, float]
    residual_variance: float
    baseline_centre: float

    def expected(self, weeks: npt.ArrayLike, baseline: npt.ArrayLike) -> FloatArray:
        """Fixed-effect prediction at ``weeks`` for intake score ``baseline``."""
        w = np.asarray(weeks, dtype=float)
        b = np.asarray(baseline, dtype=float) - self.baseline_centre
        b0, b1, b2, b3 = self.fixed
        return (b0 + b1 * w + b2 * b + b3 * w * b).astype(np.float64)

    def upper(self, weeks: npt.ArrayLike, baseline: npt.ArrayLike,
              level: float = 0.90) -> FloatArray:
        """Upper limit of the two-sided prediction band at ``level``."""
        w = np.asarray(weeks, dtype=float)
        g00, g01, g11 = self.cov_re
        variance = g00 + 2 * w * g01 + w**2 * g11 + self.residual_variance
        z = funnel.z_value(level)
        return (self.expected(w, baseline) + z * np.sqrt(variance)).astype(np.float64)


def _scored_sessions(sessions: pd.DataFrame, instrument: str) -> pd.Series:
    """Mask of the attended treatment sessions with a score of ``instrument``."""
    return ((sessions["attendance"] == "attended") & (sessions["session_number"] >= 1)
            & sessions[instrument].notna())


def _curve_candidates(patients: pd.DataFrame, sessions: pd.DataFrame,
                      patient_outcomes: pd.DataFrame, instrument: str
                      ) -> npt.NDArray[np.object_]:
    """Finished courses with at least one row in :func:`_score_rows` (a dated scored
    session, a start date and a baseline), found without building the rows."""
    dated = _scored_sessions(sessions, instrument) & sessions["session_date"].notna()
    scored = pd.Index(sessions.loc[dated, "patient_id"].unique())
    started = patients.loc[patients["start_date"].notna(), "patient_id"]
    known = patient_outcomes["finished_course"].astype(bool) & patient_outcomes[
        f"{instrument}_baseline"].notna()
    keep = scored.isin(started) & scored.isin(patient_outcomes.loc[known, "patient_id"])
    candidates: npt.NDArray[np.object_] = scored[keep].to_numpy(dtype=object)
    return candidates


def _score_rows(patients: pd.DataFrame, sessions: pd.DataFrame,
                patient_outcomes: pd.DataFrame, instrument: str,
                among: npt.NDArray[np.object_] | None = None) -> pd.DataFrame:
    """Attended treatment-session scores with weeks since start and the baseline score
    (only of the patients ``among``, when given: the sessions table is not copied)."""
    keep = _scored_sessions(sessions, instrument)
    if among is not None:
        keep &= sessions["patient_id"].isin(among)
    scored = sessions.loc[keep, ["patient_id", "session_number", "session_date", instrument]]
    start = patients.set_index("patient_id")["start_date"]
    baseline = patient_outcomes.set_index("patient_id")[f"{instrument}_baseline"]
    rows = scored.assign(
        weeks=(scored["session_date"] - scored["patient_id"].map(start)).dt.days / 7,
        baseline=scored["patient_id"].map(baseline).astype(float),
        score=scored[instrument].astype(float),
    )
    return rows.loc[rows["baseline"].notna() & rows["weeks"].notna()]


def sample_patients(patient_ids: npt.ArrayLike, options: AuditOptions
                    ) -> tuple[npt.NDArray[np.object_], list[str]]:
    """The patients of the recovery curve: all, or ``max_model_patients`` of them chosen
    by a keyed hash of the id (:func:`pipeline.modelling.sampling.hash_sample`: the same
    whatever the row order, largely the same when patients are added), with a note."""
    patients = np.sort(pd.unique(np.asarray(patient_ids, dtype=object)))
    if len(patients) <= options.max_model_patients:
        return patients, []
    chosen = patients[sampling.hash_sample(pd.Series(patients), options.max_model_patients)]
    return chosen, [f"not on track: curve fitted on a pseudo-random {options.max_model_patients}"
                    f" of {len(patients)} finished courses (chosen by a fixed hash of the "
                    "patient id)"]


def fit_recovery_curve(rows: pd.DataFrame, options: AuditOptions) -> tuple[
        RecoveryCurve, list[str]]:
    """Fit the expected recovery curve by REML on rows (patient_id, weeks, baseline, score).

    At most ``max_model_patients`` patients (:func:`sample_patients`); warnings raised by
    statsmodels are returned as notes, not filtered.
    """
    chosen, notes = sample_patients(rows["patient_id"], options)
    if notes:
        rows = rows.loc[rows["patient_id"].isin(chosen)]
    require(rows["patient_id"].nunique() >= MIN_CURVE_PATIENTS,
            f"{rows['patient_id'].nunique()} finished courses with scores; the expected "
            f"recovery curve needs at least {MIN_CURVE_PATIENTS}",
            "more finished courses with session-by-session scores")
    n_patients = int(rows["patient_id"].nunique())
    require(len(rows) > 2 * n_patients,
            f"{len(rows):,} scores for {n_patients:,} patients: a random intercept and slope "
            "per patient need more scores than random effects (lme4 refuses this model)",
            "three or more scores per finished course")
    centre = float(rows.groupby("patient_id")["baseline"].first().mean())
    w = rows["weeks"].to_numpy(dtype=float)
    b = rows["baseline"].to_numpy(dtype=float) - centre
    exog = np.column_stack([np.ones_like(w), w, b, w * b])
    model = sm.MixedLM(rows["score"].to_numpy(dtype=float), exog,
                       groups=rows["patient_id"].to_numpy(), exog_re=exog[:, :2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fitted = model.fit(reml=True, method=list(CURVE_OPTIMISERS))
        except (np.linalg.LinAlgError, ValueError) as exc:
            raise NotEstimable(f"the expected recovery curve could not be fitted ({exc})",
                               "more finished courses with session-by-session scores"
                               ) from exc
    require(bool(fitted.converged),
            "the expected recovery curve (mixed model) did not converge, so it is not used",
            "more finished courses with session-by-session scores")
    notes += [f"not on track: statsmodels {w_.category.__name__}: {w_.message}"
              for w_ in caught]
    g = np.asarray(fitted.cov_re, dtype=float)
    fe = np.asarray(fitted.fe_params, dtype=float)
    curve = RecoveryCurve((float(fe[0]), float(fe[1]), float(fe[2]), float(fe[3])),
                          (float(g[0, 0]), float(g[0, 1]), float(g[1, 1])),
                          float(fitted.scale), centre)
    return curve, list(dict.fromkeys(notes))


def flag_not_on_track(latest: pd.DataFrame, curve: RecoveryCurve,
                      options: AuditOptions) -> pd.DataFrame:
    """Expected score, band and flag for each latest score (patient_id, site_id,
    therapist_id, session_number, weeks, baseline, score)."""
    expected = curve.expected(latest["weeks"], latest["baseline"])
    upper = curve.upper(latest["weeks"], latest["baseline"], options.prediction_level)
    remaining = (options.planned_sessions - latest["session_number"].astype(int)).clip(lower=0)
    out = latest.assign(expected=expected, upper_bound=upper, sessions_remaining=remaining,
                        flagged=latest["score"].to_numpy(dtype=float) > upper)
    return out[list(NOT_ON_TRACK_COLUMNS)].reset_index(drop=True)


def not_on_track(
    patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
    config: StudyConfig, options: AuditOptions,
) -> tuple[pd.DataFrame, list[str]]:
    """Patients still in treatment whose latest score lies above the expected band.

    In treatment: ``end_reason == "ongoing"`` or no ``end_date``. Returns the table (raw
    ids; :func:`review` pseudonymises) and notes.
    """
    instrument = options.instrument or config.primary_instrument
    require(instrument in sessions and bool(sessions[instrument].notna().any()),
            f"no {instrument} scores", f"session-by-session {instrument} scores")
    chosen, sampled = sample_patients(
        _curve_candidates(patients, sessions, patient_outcomes, instrument), options)
    ongoing_mask = patients["end_date"].isna() if "end_date" in patients else pd.Series(
        True, index=patients.index)
    if "end_reason" in patients:
        ongoing_mask |= patients["end_reason"] == "ongoing"
    ongoing_ids = patients.loc[ongoing_mask, "patient_id"]
    rows = _score_rows(patients, sessions, patient_outcomes, instrument,
                       np.concatenate([chosen, ongoing_ids.to_numpy(dtype=object)]))
    ongoing = rows[rows["patient_id"].isin(ongoing_ids)]
    latest = ongoing.sort_values(["patient_id", "session_number"]).groupby("patient_id").tail(1)
    units = patient_outcomes.set_index("patient_id").reindex(columns=["site_id",
                                                                      "therapist_id"])
    latest = latest.join(units, on="patient_id")
    require(not latest.empty, "no patient still in treatment has a score to check",
            "patients in treatment (no end_date, or end_reason ongoing) with scores")
    curve, notes = fit_recovery_curve(rows[rows["patient_id"].isin(chosen)], options)
    notes = [*sampled, *notes]
    table = flag_not_on_track(latest, curve, options)
    notes.append(f"not on track: {int(table['flagged'].sum())} of {len(table)} patients in "
                 f"treatment above the {options.prediction_level:.0%} band of the expected "
                 f"{instrument} curve")
    return table, notes


# --------------------------------------------------------------------------------------
# Pseudonyms and the review
# --------------------------------------------------------------------------------------


def _relabel(table: pd.DataFrame, key: bytes | None, options: AuditOptions) -> pd.DataFrame:
    """Therapist unit labels as pseudonyms where required, rows in the same (raw) order."""
    out = table.copy()
    if options.keep_ids or not options.pseudonymise_therapists or key is None:
        return out
    therapist = (out["level"] == "therapist") & (out["unit"] != ALL)
    out.loc[therapist, "unit"] = privacy.pseudonymise(out.loc[therapist, "unit"], key, "t")
    return out


def _by_label(table: pd.DataFrame, keys: Sequence[str] = ()) -> pd.DataFrame:
    """Rows ordered by their (possibly pseudonymised) labels, ``"all"`` last, so the order
    of the raw ids does not show."""
    order = table.assign(_last=table["unit"] == ALL).sort_values(
        [*keys, "_last", "unit"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _pseudonymise_patients(table: pd.DataFrame, key: bytes | None,
                           options: AuditOptions) -> pd.DataFrame:
    if options.keep_ids or key is None:
        return table.reset_index(drop=True)
    columns: list[tuple[str, str]] = [("patient_id", "p")]
    if options.pseudonymise_therapists:
        columns.append(("therapist_id", "t"))
    out = privacy.pseudonymise_columns(table, key, columns)
    return out.sort_values(["site_id", "therapist_id", "patient_id"],
                           na_position="last").reset_index(drop=True)


def _figure(level: str, result: funnel.FunnelResult, shared: pd.DataFrame,
            options: AuditOptions) -> Figure:
    units = shared[shared["unit"] != ALL].reset_index(drop=True)
    hits = result.units.reset_index(drop=True)
    keep = hits["on_funnel"].to_numpy()
    if not options.no_suppress:
        keep &= _shown(units, ["recovery_n", "recovery_events"]).to_numpy()
    points = pd.DataFrame({"label": units["unit"], "n": hits["n"], "rate": hits["rate"],
                           "limit_hit": hits["limit_hit"]})[keep]
    plural = {"site": "sites", "therapist": "therapists"}[level]
    return audit_plots.funnel_figure(
        points, result, f"Case-mix adjusted recovery by {level}",
        "patients in the recovery denominator", f"standardised recovery rate ({plural})")


def _funnel_summary(level: str, result: funnel.FunnelResult) -> dict[str, object]:
    d = result.dispersion
    return {"level": level, "units_on_funnel": int(result.units["on_funnel"].sum()),
            "overall_rate": result.p0, "phi_hat": d.phi_hat, "chi_square": d.statistic,
            "df": d.df, "p_value": d.p_value, "overdispersion_applied": d.applied,
            "phi": d.phi}


def _dispersion_message(level: str, result: funnel.FunnelResult) -> str:
    d = result.dispersion
    if not result.units["on_funnel"].any():
        return f"funnel ({level}s): no unit large enough to place on the funnel"
    action = ("limits widened by sqrt(phi)" if d.applied else "limits not widened")
    return (f"funnel ({level}s): overall recovery {result.p0:.1%}; over-dispersion "
            f"phi = {d.phi_hat:.2f} (chi-square {d.statistic:.1f} on {d.df} df, "
            f"p = {d.p_value:.3g}): {action}")


def _check_key(key: bytes | None, options: AuditOptions) -> bytes | None:
    key = key if key is not None else options.key
    if not key and not options.keep_ids:
        raise ValueError("a non-empty pseudonym key is needed (options.key or key=), or "
                         "keep_ids=True")
    return key


def review(
    patients: pd.DataFrame, sessions: pd.DataFrame, patient_outcomes: pd.DataFrame,
    config: StudyConfig, options: AuditOptions | None = None, *, key: bytes | None = None,
) -> AuditResult:
    """The clinic outcome audit (see the module docstring for every method).

    Parameters
    ----------
    patients, sessions : DataFrame
        Validated input tables (start and end dates, session scores).
    patient_outcomes : DataFrame
        ``pipeline.outcomes.definitions.derive`` output.
    config : StudyConfig
        Definitions in force (paired and primary instruments, ``suppress_below``).
    options : AuditOptions
        Audit options (defaults: :class:`AuditOptions`).
    key : bytes, optional
        Pseudonym key; overrides ``options.key``.

    Returns
    -------
    AuditResult

    Raises
    ------
    ValueError
        Without a key unless ``keep_ids``.
    """
    options = options or AuditOptions()
    key = _check_key(key, options)
    records: list[AnalysisRecord] = []
    units = attempt(STAGE, "units (sites, therapists, funnels, benchmarks)",
                    lambda: _unit_tables(patient_outcomes, config, options, key), records)
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, Figure] = {}
    messages: list[str] = []
    if units is not None:
        tables, messages = dict(units.tables), list(units.messages)
        for level in LEVELS:
            figure = attempt(STAGE, f"figure funnel_{level}s", functools.partial(
                _figure, level, units.funnels[level], units.labelled[level], options), records)
            if figure is not None:
                figures[f"funnel_{level}s"] = figure
    watch = attempt(STAGE, "not_on_track", lambda: not_on_track(
        patients, sessions, patient_outcomes, config, options), records)
    if watch is not None:
        tables["not_on_track"] = _pseudonymise_patients(watch[0], key, options)
        messages += watch[1]
    messages.append("ids kept: do not share these files" if options.keep_ids else
                    "patient ids pseudonymised (keyed HMAC-SHA-256)" + (
                        ", therapist ids too" if options.pseudonymise_therapists else ""))
    return AuditResult(tables=tables, figures=figures, messages=tuple(messages),
                       records=tuple(records))


@dataclass(frozen=True, eq=False)
class _Units:
    """The per-unit part of the audit: shared tables, funnels and labelled unit tables."""

    tables: dict[str, pd.DataFrame]
    funnels: dict[str, funnel.FunnelResult]
    labelled: dict[str, pd.DataFrame]
    messages: tuple[str, ...]


def _unit_tables(patient_outcomes: pd.DataFrame, config: StudyConfig, options: AuditOptions,
                 key: bytes | None) -> _Units:
    """Case-mix expected recovery, per-unit tables, funnels and suppression.

    Raises
    ------
    NotEstimable
        When the paired instruments are not both in the data (recovery is undefined).
    """
    instruments = list(config.paired_instruments)
    missing = [i for i in instruments if f"{i}_baseline" not in patient_outcomes.columns
               or not patient_outcomes[f"{i}_baseline"].notna().any()]
    require(not missing, f"no {' or '.join(missing)} scores: recovery, the audit's indicator, "
            f"needs both paired instruments ({' and '.join(instruments)})",
            f"{' and '.join(instruments)} scores at baseline and end of treatment")
    expected, messages = case_mix_expected(patient_outcomes, config, options)
    raw = {level: unit_table(patient_outcomes, level, expected, config, options)
           for level in LEVELS}
    funnels = {level: _funnel(table, options) for level, table in raw.items()}
    messages += [_dispersion_message(level, result) for level, result in funnels.items()]
    high = config.suppress_below - 1
    if options.no_suppress:
        shared = dict(raw)
        messages.append("no_suppress: small counts are shown; not for sharing")
    else:
        sites, therapists, notes = suppress_levels(raw["site"], raw["therapist"],
                                                   instruments, high)
        shared, messages = {"site": sites, "therapist": therapists}, messages + notes
    tables, labelled = _assemble(shared, funnels, instruments, key, options)
    log.info("audit: %d sites, %d therapists", len(raw["site"]) - 1, len(raw["therapist"]) - 1)
    return _Units(tables, funnels, labelled, tuple(messages))


def _assemble(shared: dict[str, pd.DataFrame], funnels: dict[str, funnel.FunnelResult],
              instruments: Sequence[str], key: bytes | None,
              options: AuditOptions) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The shared per-unit, outlier, benchmark and funnel-summary tables (declared columns),
    and the per-unit tables with their labels in the funnels' (raw) row order."""
    columns = list(unit_columns(instruments))
    in_order = {level: _relabel(table, key, options) for level, table in shared.items()}
    labelled = {level: _by_label(table) for level, table in in_order.items()}
    outliers = _by_label(pd.concat([_outliers(level, funnels[level], in_order[level])
                                    for level in LEVELS], ignore_index=True), ["level"])
    both = pd.concat([labelled["site"], labelled["therapist"]], ignore_index=True)
    tables = {
        "audit_sites": labelled["site"][columns],
        "audit_therapists": labelled["therapist"][columns],
        "audit_outliers": outliers[list(OUTLIER_COLUMNS)],
        "audit_benchmarks": benchmarks(both, instruments, options),
        "audit_funnel_summary": pd.DataFrame(
            [_funnel_summary(level, result) for level, result in funnels.items()],
            columns=list(FUNNEL_SUMMARY_COLUMNS)),
    }
    return tables, in_order
