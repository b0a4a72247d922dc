r"""Per-unit statistics of the clinic audit, before small-number suppression.

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


References
----------
Delgadillo J, McMillan D, Leach C, Lucock M, Gilbody S, Wood N (2014). Benchmarking routine
psychological services: a discussion of challenges and methods. Behavioural and Cognitive
Psychotherapy 42:16-30.
Efron B, Tibshirani RJ (1993). An Introduction to the Bootstrap. Chapman & Hall.
NHS England (2024). NHS Talking Therapies for anxiety and depression manual, v7.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.audit.case_mix import poisson_ratio_interval
from pipeline.audit.columns import ALL, LEVELS, OUTCOMES, FloatArray, IntArray
from pipeline.config import StudyConfig
from pipeline.outcomes import completeness, rates

if TYPE_CHECKING:
    from pipeline.audit.review import AuditOptions


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
    paired = completeness.paired_scores(data, config.paired_instruments)
    columns["paired_n"] = paired.astype(int)
    columns["expected"] = expected.reindex(data.index).fillna(0.0)
    return pd.DataFrame(columns)


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return numerator.astype(float) / denominator.astype(float).where(denominator > 0)



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
