"""Outcome rates with confidence intervals, small-count suppression and the model design.

Everything here starts from the per-patient ``patient_outcomes`` table
(``data_schemas.outcomes``) and returns tidy DataFrames. The Wilson interval is in
:mod:`pipeline.outcomes.intervals`, the margins in :mod:`pipeline.outcomes.cells`, the
adjusted comparison in :mod:`pipeline.outcomes.comparison`; ``benchmark_comparison`` and
``attendance_summary`` (their own modules) are re-exported here.

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
Model design
    The design matrix of the adjusted comparison (:mod:`pipeline.outcomes.comparison`):
    sparse levels pooled into ``other_pooled``, reference levels ``REFERENCE_LEVELS``.

References
----------
Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
JASA 22:209-212.
Newcombe RG (1998). Two-sided confidence intervals for the single proportion: comparison
of seven methods. Statistics in Medicine 17:857-872.
NHS England (2024). NHS Talking Therapies for anxiety and depression manual, v7.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from data_schemas.vocab import CONDITIONS, FORMATS
from pipeline.estimability import require
from pipeline.modelling import pooling
from pipeline.outcomes.attendance import attendance_summary
from pipeline.outcomes.benchmarks import benchmark_comparison
from pipeline.outcomes.cells import (
    ALL,
    DENOMINATORS,
    INSTRUMENT_OUTCOMES,
    PAIRED_INSTRUMENT,
    PAIRED_OUTCOMES,
    POPULATIONS,
    RATE_COLUMNS,
    sort_cells,
    with_margins,
)
from pipeline.outcomes.intervals import FloatArray, wilson_interval

__all__ = [
    "ALL",
    "DENOMINATORS",
    "INSTRUMENT_OUTCOMES",
    "PAIRED_INSTRUMENT",
    "PAIRED_OUTCOMES",
    "POOLED_LEVEL",
    "POPULATIONS",
    "RATE_COLUMNS",
    "REFERENCE_LEVELS",
    "BoolArray",
    "FloatArray",
    "attendance_summary",
    "benchmark_comparison",
    "missing_group_note",
    "outcome_column",
    "rate_specs",
    "rates_from_cells",
    "response_rates",
    "suppress_small_counts",
    "wilson_interval",
]


BoolArray = npt.NDArray[np.bool_]


REFERENCE_LEVELS: Final = {
    "format": "individual",
    "condition": "major_depression",
    "problem_area": "role_disputes",
}
POOLED_LEVEL: Final = "other_pooled"


# --------------------------------------------------------------------------------------
# Response rates
# --------------------------------------------------------------------------------------


def _has_baseline(outcomes: pd.DataFrame, instrument: str) -> bool:
    column = f"{instrument}_baseline"
    return column in outcomes and bool(outcomes[column].notna().any())


#: Eligibility at baseline of each rate's ITT denominator (see :func:`rate_specs`).
ELIGIBILITY: Final = ("positive_baseline", "baseline", "both_baselines", "caseness")


def rate_specs(
    instruments: Sequence[str], with_baseline: Collection[str],
    defined: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, str, str]]:
    """(instrument, outcome, eligibility) for every rate to report.

    ``with_baseline`` names the instruments with any baseline score in the data: the others
    are left out. Eligibility at baseline (one of ``ELIGIBILITY``): response needs a
    baseline score above 0 (a percentage change is undefined from 0); remission and
    reliable improvement need a baseline score; paired reliable improvement needs PHQ-9
    and GAD-7 at baseline; recovery and reliable recovery need caseness at the start (NHS
    Talking Therapies manual). With ``defined`` (instrument, or ``"phq9+gad7"`` for the
    paired measures -> outcomes its rules define) an outcome not listed is left out: it is
    not defined, so it has no rate, not 0%.
    """
    def wanted(instrument: str, outcome: str) -> bool:
        return defined is None or outcome in defined.get(instrument, ())

    specs: list[tuple[str, str, str]] = []
    for instrument in (i for i in instruments if i in with_baseline):
        for outcome in (o for o in INSTRUMENT_OUTCOMES if wanted(instrument, o)):
            eligible = "positive_baseline" if outcome == "response" else "baseline"
            specs.append((instrument, outcome, eligible))
    if "phq9" in with_baseline and "gad7" in with_baseline:
        for outcome in (o for o in PAIRED_OUTCOMES if wanted(PAIRED_INSTRUMENT, o)):
            eligible = "both_baselines" if outcome == "reliable_improvement" else "caseness"
            specs.append((PAIRED_INSTRUMENT, outcome, eligible))
    return specs


def outcome_column(instrument: str, outcome: str) -> str:
    """The ``patient_outcomes`` column of a rate's outcome."""
    return outcome if instrument == PAIRED_INSTRUMENT else f"{instrument}_{outcome}"


def _eligibility(outcomes: pd.DataFrame, instrument: str, eligible: str) -> BoolArray:
    if eligible == "both_baselines":
        both = outcomes["phq9_baseline"].notna() & outcomes["gad7_baseline"].notna()
        return both.to_numpy(dtype=bool)
    if eligible == "caseness":
        return (outcomes["caseness_at_start"] == True).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    baseline = outcomes[f"{instrument}_baseline"]
    if eligible == "positive_baseline":
        return (baseline.fillna(0) > 0).to_numpy(dtype=bool)
    return baseline.notna().to_numpy(dtype=bool)


def _outcome_specs(
    outcomes: pd.DataFrame, instruments: Sequence[str],
    defined: Mapping[str, Sequence[str]] | None = None,
) -> list[tuple[str, str, pd.Series, BoolArray]]:
    """(instrument, outcome, outcome column, baseline eligibility) of :func:`rate_specs`."""
    with_baseline = {i for i in [*instruments, "phq9", "gad7"] if _has_baseline(outcomes, i)}
    return [(instrument, outcome, outcomes[outcome_column(instrument, outcome)],
             _eligibility(outcomes, instrument, eligible))
            for instrument, outcome, eligible in rate_specs(instruments, with_baseline, defined)]


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
    cells = indicators.groupby(["condition", "format"], sort=False).sum().reset_index()
    return rates_from_cells(cells, keys, instruments, populations)


def rates_from_cells(
    cells: pd.DataFrame, keys: Sequence[tuple[str, str, str, str]],
    instruments: Sequence[str], populations: Sequence[str] = POPULATIONS,
) -> pd.DataFrame:
    """The rates table of :func:`response_rates` from its cell sums.

    ``cells`` has one row per condition x format with the columns ``condition``,
    ``format`` and, for every key (population, instrument, outcome, denominator) of
    ``keys``, ``"<key joined by />/n"`` and ``".../events"``: the counts of patients of
    the cell in the denominator and with the event. This is the seam of the columnar
    route (:mod:`pipeline.columnar.rates`), which sums the cells on its engine.
    """
    require(bool(keys), "no patient has a baseline score on any instrument that defines an "
            "outcome", "baseline and end-of-treatment scores on a catalogued instrument")
    sums = with_margins(cells).groupby(["condition", "format"], sort=False).sum()
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
    return sort_cells(
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
