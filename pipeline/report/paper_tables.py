"""Tables for papers: the content of the five main tables, as text, from a run's outputs.

Each builder takes the tables a run wrote (read as text, exactly as on disk) and returns a
:class:`PaperTable`: a caption, a body of display strings and the notes under it. Writing
them as LaTeX or Word is :mod:`pipeline.report.paper_export`'s job; nothing here reads or writes
files.

Numbers read as they do in the HTML report, so a reader finds the same value everywhere:

* estimates, standard errors and intervals of models with three decimals, p-values below
  0.001 as ``<0.001`` (:func:`pipeline.report.html.format_cell`);
* rates and survival probabilities as percentages with one decimal (``58.1%``), their
  intervals as ``47.9%-67.6%`` (with an en dash);
* counts as written in the CSV, with thousands separators; a count hidden by the sharing
  layer keeps its label (``<5``: a small count of 1 to 4; ``*``: hidden so that a small
  count cannot be worked back), and the rate of a row with a hidden count reads
  ``suppressed``.

Table 1 (baseline characteristics by format) is the one table built from patient-level
data (``patient_outcomes.csv``); its counts go through the same small-number suppression
as the shared outcome tables (:func:`pipeline.sharing.suppression.protect_tables`, primary
and complementary across the format and level margins) unless the run was ``--no-suppress``.

A table whose analysis is missing from the run (not estimable, failed or not run) is not an
error: :func:`missing_table` gives a one-cell table that says so, with the reason recorded
in ``tables/analyses.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from pipeline.report.findings import percent
from pipeline.report.html import format_cell, main_population
from pipeline.sharing.suppression import ALL, CountTable, protect_tables

DASH: Final = "\u2013"  # an en dash: a value that does not exist (as in the report)
RANGE: Final = "\u2013"  # between the bounds of an interval
SUPPRESSED: Final = "suppressed"
NOT_ESTIMABLE: Final = "not estimable"

INSTRUMENT_LABELS: Final = {"phq9": "PHQ-9", "gad7": "GAD-7", "hamd17": "HAM-D-17",
                            "bdi2": "BDI-II", "phq9+gad7": "PHQ-9 and GAD-7"}
OUTCOME_LABELS: Final = {"response": "Response", "remission": "Remission",
                         "reliable_improvement": "Reliable improvement",
                         "recovery": "Recovery", "reliable_recovery": "Reliable recovery"}


@dataclass(frozen=True)
class PaperTable:
    """One table for a paper, as text.

    Attributes
    ----------
    name : str
        File stem of its outputs (``table2_outcomes``).
    caption : str
        ``Table N. ...``.
    body : DataFrame
        Display strings only, one column per printed column.
    notes : tuple of str
        Printed under the table (sources, abbreviations, suppression).
    sources : tuple of str
        The run's files the numbers come from (relative to OUT).
    """

    name: str
    caption: str
    body: pd.DataFrame
    notes: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- formatting


def percent_ci(low: Any, high: Any) -> str:
    """An interval of shares: ``47.9%-67.6%`` (with an en dash)."""
    return f"{percent(low)}{RANGE}{percent(high)}"


def number_ci(low: Any, high: Any) -> str:
    """An interval of estimates with the report's three decimals: ``1.793 to 4.006`` (``to``,
    not a dash, so that negative bounds read clearly)."""
    return f"{format_cell(low)} to {format_cell(high)}"


def count(value: Any) -> str:
    """A count as written in the CSV (suppression labels kept), with thousands separators."""
    return format_cell(value)


def label(text: str) -> str:
    """A level or variable name for reading: ``major_depression`` -> ``Major depression``."""
    words = str(text).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def term_label(term: str) -> str:
    """A model term for reading: ``format[group]`` -> ``format: group``,
    ``weeks:format[group]`` -> ``weeks x format: group`` (a multiplication sign)."""
    parts = []
    for part in str(term).split(":"):
        if part.endswith("]") and "[" in part:
            name, level = part[:-1].split("[", 1)
            part = f"{name.strip('`')}: {level}"
        parts.append(part)
    return " \u00d7 ".join(parts)


def _is_blank(value: Any) -> bool:
    return str(value) in ("", "nan", "NaN", "None", "<NA>")


def _suppressed(row: Mapping[Any, Any]) -> bool:
    return str(row.get("suppressed", "")) == "True"


def missing_table(name: str, caption: str, reason: str, sources: Sequence[str] = ()
                  ) -> PaperTable:
    """A table whose analysis is not in the run: one cell saying why (never a number).

    ``reason`` is a sentence from :func:`analysis_reason` (it starts with a capital: ``Not
    estimable: ...``, ``Failed: ...``, ``Not in this run: ...``) or a plain reason in lower
    case, which reads ``Not estimable: <reason>``.
    """
    text = reason if reason[:1].isupper() else f"{label(NOT_ESTIMABLE)}: {reason}"
    body = pd.DataFrame({"Status": [text]})
    return PaperTable(name, caption, body, ("No estimate is shown: the run holds none.",),
                      tuple(sources))


def analysis_reason(analyses: pd.DataFrame | None, stage: str, analysis: str) -> str:
    """Why an analysis has no table, as a sentence: its status and reason (and what would
    help) in ``tables/analyses.csv``, or that this run did not do it.

    Examples
    --------
    >>> analysis_reason(None, "models", "model growth")
    'Not in this run: the models stage did not run, or did not write this analysis'
    """
    if analyses is not None and {"stage", "analysis", "status"} <= set(analyses.columns):
        rows = analyses[(analyses["stage"] == stage) & (analyses["analysis"] == analysis)]
        if not rows.empty:
            row = rows.iloc[0]
            status = str(row["status"])
            if status == "done":
                return ("Not in this output folder: the analysis ran but its table is "
                        "missing (moved or deleted?)")
            reason = str(row.get("reason", "")) or "no reason recorded"
            remedy = str(row.get("remedy", ""))
            return f"{label(status)}: {reason}" + (f" (what would help: {remedy})"
                                                   if remedy else "")
    return f"Not in this run: the {stage} stage did not run, or did not write this analysis"


NO_SUPPRESSION_NOTE: Final = ("Small counts are shown (run with --no-suppress): not for "
                              "sharing outside the service.")


def suppression_note(suppress_below: int | None) -> str:
    """What the labels of hidden counts mean (or that none are hidden: ``--no-suppress``)."""
    if suppress_below is None:
        return NO_SUPPRESSION_NOTE
    return (f"Counts of 1 to {suppress_below - 1} are shown as <{suppress_below}; * marks a "
            "further count hidden so that a small count cannot be worked back from the totals "
            "(complementary suppression). Rates of a row with a hidden count are shown as "
            "'suppressed'.")


# --------------------------------------------------------------------------- table 1


@dataclass(frozen=True)
class BaselineSpec:
    """What Table 1 summarises.

    Attributes
    ----------
    categorical : tuple of (column, label)
        Summarised as n (%) of the column's patients, missing values as their own level.
    continuous : tuple of (column, label)
        Summarised as mean (SD) and median (IQR), with the number missing.
    by : str
        The column whose levels are the table's columns (with an overall column).
    """

    categorical: tuple[tuple[str, str], ...] = (("sex", "Sex"), ("condition", "Condition"),
                                                ("problem_area", "IPT problem area"))
    continuous: tuple[tuple[str, str], ...] = (("age", "Age (years)"),)
    by: str = "format"


def baseline_counts(patients: pd.DataFrame, spec: BaselineSpec) -> pd.DataFrame:
    """Counts of each level of each categorical characteristic by ``spec.by``, with the
    margins (level ``all`` = patients of the column, ``by`` level ``all`` = overall).

    Returns
    -------
    DataFrame
        variable, level, <by>, count (integers; missing values as level ``missing``).
    """
    rows = []
    groups = _group_levels(patients[spec.by])
    for column, _ in spec.categorical:
        if column not in patients:
            continue
        values = patients[column].astype("string").fillna("missing").replace("", "missing")
        levels = sorted(values.unique(), key=lambda v: (v == "missing", v))
        everyone = pd.Series(True, index=patients.index)
        for level in [*levels, ALL]:
            in_level = values == level if level != ALL else everyone
            for group in [*groups, ALL]:
                in_group = patients[spec.by] == group if group != ALL else everyone
                rows.append({"variable": column, "level": level, spec.by: group,
                             "count": int((in_group & in_level).sum())})
    return pd.DataFrame(rows, columns=["variable", "level", spec.by, "count"])


def baseline_statistics(patients: pd.DataFrame, spec: BaselineSpec) -> pd.DataFrame:
    """Mean, SD, median and quartiles of each continuous characteristic by ``spec.by`` and
    overall, with the patients of the column (``n``) and those missing the value.

    The SD has ``n - 1`` in the denominator; quartiles are pandas' linear interpolation
    (type 7 of Hyndman and Fan 1996, R's default).
    """
    rows = []
    groups = _group_levels(patients[spec.by])
    for column, _ in spec.continuous:
        if column not in patients:
            continue
        values = pd.to_numeric(patients[column], errors="coerce")
        for group in [*groups, ALL]:
            part = values[patients[spec.by] == group] if group != ALL else values
            known = part.dropna()
            rows.append({"variable": column, spec.by: group, "n": len(part),
                         "missing": int(part.isna().sum()),
                         "mean": known.mean(), "sd": known.std(ddof=1),
                         "median": known.median(), "q1": known.quantile(0.25),
                         "q3": known.quantile(0.75)})
    return pd.DataFrame(rows, columns=["variable", spec.by, "n", "missing", "mean", "sd",
                                       "median", "q1", "q3"])


def _group_levels(column: pd.Series) -> list[str]:
    """The levels of the grouping column: individual before group, then the rest sorted."""
    present = [str(v) for v in column.dropna().unique()]
    known = [v for v in ("individual", "group") if v in present]
    return known + sorted(v for v in present if v not in known)


def protect_baseline(counts: pd.DataFrame, statistics: pd.DataFrame, by: str,
                     suppress_below: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Small-number suppression of Table 1's counts, as in the shared outcome tables.

    Counts of 1 to ``suppress_below - 1`` read ``<N``; further counts read ``*`` where a
    small count could be worked back from the margins (over levels and over formats) or
    from the patients of a column minus those missing a continuous value. A continuous
    summary of 1 to ``suppress_below - 1`` known values is blanked.

    Returns
    -------
    (DataFrame, DataFrame)
        ``counts`` and ``statistics`` with count columns as text labels and a boolean
        ``suppressed`` column.
    """
    high = suppress_below - 1
    specs = {"counts": CountTable("count", keys=("variable",), margins=("level", by)),
             "statistics": CountTable("n", "missing", keys=("variable",), margins=(by,))}
    present = {name: frame for name, frame in (("counts", counts), ("statistics", statistics))
               if not frame.empty}
    shared, _summary = protect_tables(present, {name: specs[name] for name in present}, high)
    stats = shared.get("statistics", statistics.assign(suppressed=False))
    known = statistics["n"] - statistics["missing"]
    small = (known >= 1) & (known <= high)
    for column in ("mean", "sd", "median", "q1", "q3"):
        stats[column] = stats[column].where(~small.to_numpy(), np.nan)
    return shared.get("counts", counts.assign(suppressed=False)), stats


def shared_condition_counts(counts: pd.DataFrame, shared_rates: pd.DataFrame | None,
                            population: str, by: str) -> pd.DataFrame | None:
    """The condition x format counts as the shared ``response_rates`` publish them.

    Table 1's condition counts are the ``n`` of any rates slice of the same population
    that counts every patient of it (all x all ``n`` equal to the population). Publishing
    them differently in two places would undo the suppression of either (a count hidden
    in one and shown in the other), so Table 1 carries the rates' labels: the first such
    slice whose shown counts equal Table 1's. ``None`` when there is none (Table 1's own
    suppression then stands).

    Returns
    -------
    DataFrame or None
        condition, <by>, count (labels as in the CSV).
    """
    part = counts[counts["variable"] == "condition"]
    needed = {"population", "instrument", "outcome", "denominator", "condition", "format", "n"}
    if shared_rates is None or part.empty or by != "format" \
            or not needed <= set(shared_rates.columns):
        return None
    true = {(str(lv), str(g)): int(c) for lv, g, c in
            part[["level", by, "count"]].itertuples(index=False)}
    rates = shared_rates[shared_rates["population"] == population]
    for _, slice_ in rates.groupby(["instrument", "outcome", "denominator"], sort=False):
        labels = {(str(c), str(f)): str(n) for c, f, n in
                  slice_[["condition", "format", "n"]].itertuples(index=False)}
        if set(labels) != set(true):
            continue
        shown = {key: n for key, n in labels.items() if n != "*" and not n.startswith("<")}
        if (ALL, ALL) in shown and all(true[key] == int(n) for key, n in shown.items()):
            return pd.DataFrame([(lv, g, n) for (lv, g), n in labels.items()],
                                columns=["level", by, "count"])
    return None


def _small_column(counts: pd.DataFrame, statistics: pd.DataFrame, by: str,
                  suppress_below: int, shared: pd.DataFrame | None) -> bool:
    """Whether a format column has a hidden number of patients (1 to ``suppress_below - 1``
    in Table 1, or hidden in the shared rates). Its characteristics would then be protected
    against a total that another table may show, so Table 1 keeps the overall column only
    (suppression hides members of a sum, and a column total only when a format is small)."""
    totals = counts.loc[counts["level"] == ALL, [by, "count"]]
    if totals.empty:
        totals = statistics[[by, "n"]].rename(columns={"n": "count"})
    small = totals[(totals[by] != ALL) & totals["count"].astype(int).between(1, suppress_below - 1)]
    hidden_in_rates = shared is not None and bool(
        shared.loc[(shared["level"] == ALL) & (shared[by] != ALL), "count"].astype(str)
        .str.match(r"^(<|\*)").any())
    return not small.empty or hidden_in_rates


def _with_shared_conditions(counts: pd.DataFrame, shared: pd.DataFrame, by: str
                            ) -> pd.DataFrame:
    """``counts`` with the condition block's labels replaced by the shared rates' ones."""
    labels = shared.set_index(["level", by])["count"]
    out = counts.copy()
    out["count"] = out["count"].astype(object)
    rows = out["variable"] == "condition"
    out.loc[rows, "count"] = [labels.get((lv, g), c) for lv, g, c in
                              out.loc[rows, ["level", by, "count"]].itertuples(index=False)]
    return out


def _one(value: Any) -> str:
    """A Table 1 summary number: one decimal."""
    return DASH if _is_blank(value) or pd.isna(value) else f"{float(value):.1f}"


def _n_percent(value: Any, total: Any) -> str:
    """``n (x.x%)``; a hidden count (or a hidden total) keeps its label only."""
    text = count(value)
    try:
        n, whole = int(str(value)), int(str(total))
    except ValueError:
        return text
    return f"{text} ({100 * n / whole:.1f}%)" if whole else text


def baseline_body(counts: pd.DataFrame, statistics: pd.DataFrame, spec: BaselineSpec
                  ) -> pd.DataFrame:
    """Table 1 as text: one row per characteristic line, one column per format and overall
    (headed with the patients of each column, ``Individual (N = 93)``)."""
    groups = [g for g in _group_levels(counts[spec.by]) if g != ALL] if len(counts) else []
    if not groups and len(statistics):
        groups = [g for g in _group_levels(statistics[spec.by]) if g != ALL]
    columns = [*groups, ALL]
    totals = _column_totals(counts, statistics, spec.by, columns)
    headers = {g: f"{label(g) if g != ALL else 'Overall'} (N = {totals[g]})" for g in columns}
    lines: list[dict[str, str]] = []
    for column, name in spec.continuous:
        part = statistics[statistics["variable"] == column].set_index(spec.by)
        if part.empty:
            continue
        lines.append({"Characteristic": f"{name}, mean (SD)", **{
            headers[g]: f"{_one(part.at[g, 'mean'])} ({_one(part.at[g, 'sd'])})"
            for g in columns}})
        lines.append({"Characteristic": f"{name}, median (IQR)", **{
            headers[g]: f"{_one(part.at[g, 'median'])} ({_one(part.at[g, 'q1'])}{RANGE}"
                        f"{_one(part.at[g, 'q3'])})" for g in columns}})
        if (part["missing"].astype(str) != "0").any():
            lines.append({"Characteristic": f"{name}, missing, n", **{
                headers[g]: count(part.at[g, "missing"]) for g in columns}})
    for column, name in spec.categorical:
        part = counts[counts["variable"] == column]
        if part.empty:
            continue
        lines.append({"Characteristic": f"{name}, n (%)", **{headers[g]: "" for g in columns}})
        cells = part.set_index(["level", spec.by])["count"]
        for level in [lv for lv in dict.fromkeys(part["level"]) if lv != ALL]:
            lines.append({"Characteristic": f"   {label(level)}", **{
                headers[g]: _n_percent(cells[(level, g)], cells[(ALL, g)]) for g in columns}})
    return pd.DataFrame(lines, columns=["Characteristic", *headers.values()])


def _column_totals(counts: pd.DataFrame, statistics: pd.DataFrame, by: str,
                   columns: Sequence[str]) -> dict[str, str]:
    """Patients of each column as shown (a hidden total keeps its label)."""
    totals = {}
    for group in columns:
        rows = counts[(counts["level"] == ALL) & (counts[by] == group)]["count"]
        if rows.empty:
            rows = statistics[statistics[by] == group]["n"]
        totals[group] = count(rows.iloc[0]) if not rows.empty else DASH
    return totals


def table1_baseline(patients: pd.DataFrame, population: str, suppress_below: int | None,
                    spec: BaselineSpec | None = None,
                    shared_rates: pd.DataFrame | None = None) -> PaperTable:
    """Table 1: baseline characteristics of the main population by format and overall.

    Parameters
    ----------
    patients : DataFrame
        ``patient_outcomes.csv`` (one row per patient).
    population : str
        The main population (``finished_course``, ``randomised``); its column, when
        present, selects the patients (``True``).
    suppress_below : int or None
        Counts below it (from 1) are hidden; ``None`` when the run was ``--no-suppress``.
    spec : BaselineSpec, optional
        The characteristics (default: age, sex, condition, problem area).
    shared_rates : DataFrame, optional
        ``response_rates.csv`` as shared: the condition counts carry its labels
        (:func:`shared_condition_counts`), so that no count is hidden in one table and
        shown in the other.
    """
    spec = spec or BaselineSpec()
    caption = (f"Table 1. Baseline characteristics by format ({population.replace('_', ' ')} "
               "population)")
    if spec.by not in patients or patients.empty:
        return missing_table("table1_baseline", caption, f"no {spec.by} column or no patients",
                             ("tables/patient_outcomes.csv",))
    if population in patients:
        patients = patients[patients[population].astype(str) == "True"]
    counts, statistics = baseline_counts(patients, spec), baseline_statistics(patients, spec)
    if counts.empty and statistics.empty:
        return missing_table("table1_baseline", caption, "none of the characteristics ("
                             + ", ".join(c for c, _ in (*spec.continuous, *spec.categorical))
                             + ") is in patient_outcomes.csv", ("tables/patient_outcomes.csv",))
    notes = ["Mean (SD): standard deviation with n - 1; median (IQR): first to third "
             "quartile. Percentages are of the patients of the column (missing values "
             "included as their own level)."]
    if suppress_below is not None:
        shared = shared_condition_counts(counts, shared_rates, population, spec.by)
        if _small_column(counts, statistics, spec.by, suppress_below, shared):
            counts = counts[counts[spec.by] == ALL].reset_index(drop=True)
            statistics = statistics[statistics[spec.by] == ALL].reset_index(drop=True)
            shared = None if shared is None else shared[shared[spec.by] == ALL]
            notes.append(f"Formats are not shown apart: one has fewer than {suppress_below} "
                         "patients, whose characteristics the other columns would give away.")
        counts, statistics = protect_baseline(counts, statistics, spec.by, suppress_below)
        if shared is not None:
            counts = _with_shared_conditions(counts, shared, spec.by)
            notes.append("Condition counts as in tables/response_rates.csv (the same "
                         "counts are hidden in both).")
        notes.append(f"Counts of 1 to {suppress_below - 1} are shown as <{suppress_below}; * "
                     "marks a further count hidden so that a small count cannot be worked "
                     "back from the totals (complementary suppression); a hidden count has no "
                     "percentage, and a summary of fewer than "
                     f"{suppress_below} known values is not shown ({DASH}).")
    else:
        notes.append(NO_SUPPRESSION_NOTE)
    notes.append("Source: tables/patient_outcomes.csv.")
    return PaperTable("table1_baseline", caption, baseline_body(counts, statistics, spec),
                      tuple(notes), ("tables/patient_outcomes.csv",))


# --------------------------------------------------------------------------- table 2


def main_outcomes(primary: str) -> tuple[tuple[str, str], ...]:
    """The outcomes of Table 2 (those of the report's headline rates)."""
    return ((primary, "response"), (primary, "remission"),
            ("phq9+gad7", "reliable_improvement"), ("phq9+gad7", "recovery"))


def rate_cell(row: Mapping[Any, Any]) -> str:
    """``events/n, rate% (low%-high%)``; ``events/n, suppressed`` for a row with a hidden
    count; an en dash for a rate that does not exist (no patient)."""
    counts = f"{count(row['events'])}/{count(row['n'])}"
    if _is_blank(row.get("rate", "")):
        return f"{counts}, {SUPPRESSED if _suppressed(row) else DASH}"
    return f"{counts}, {percent(row['rate'])} ({percent_ci(row['ci_low'], row['ci_high'])})"


def outcome_label(instrument: str, outcome: str) -> str:
    """``Response (PHQ-9)``."""
    return (f"{OUTCOME_LABELS.get(outcome, label(outcome))} "
            f"({INSTRUMENT_LABELS.get(instrument, instrument)})")


def table2_outcomes(rates: pd.DataFrame, primary: str, denominator: str = "observed",
                    suppress_below: int | None = 5) -> PaperTable:
    """Table 2: outcomes by condition and format, from ``response_rates.csv``.

    The main population (``finished_course``, or ``randomised`` for a trial) and the
    ``observed`` denominator (patients whose outcome is known). One block of rows per
    outcome (a heading line, then one line per condition and the ``all`` margin), one
    column per format and ``all``; each cell ``events/n, rate (95% CI)`` exactly as in the
    CSV (rounded as in the report).
    """
    caption = "Table 2. Outcomes by condition and format"
    source = ("tables/response_rates.csv",)
    needed = {"population", "instrument", "outcome", "denominator", "condition", "format",
              "n", "events", "rate", "ci_low", "ci_high"}
    if rates.empty or not needed <= set(rates.columns):
        return missing_table("table2_outcomes", caption, "response_rates.csv is missing or "
                             "incomplete", source)
    population = main_population(rates)
    part = rates[(rates["population"] == population) & (rates["denominator"] == denominator)]
    wanted = [o for o in main_outcomes(primary)
              if ((part["instrument"] == o[0]) & (part["outcome"] == o[1])).any()]
    if not wanted:
        return missing_table("table2_outcomes", caption, f"no {primary} outcome rates in "
                             "response_rates.csv", source)
    formats = [*(f for f in _group_levels(part["format"]) if f != ALL), ALL]
    headers = {f: _margin_label(f) if f != ALL else "All formats" for f in formats}
    lines: list[dict[str, str]] = []
    for instrument, outcome in wanted:
        rows = part[(part["instrument"] == instrument) & (part["outcome"] == outcome)]
        lines.append({"Outcome and condition": outcome_label(instrument, outcome),
                      **{headers[f]: "" for f in formats}})
        cells = {(str(r["condition"]), str(r["format"])): rate_cell(r)
                 for r in rows.to_dict("records")}
        conditions = [c for c in dict.fromkeys(rows["condition"].astype(str)) if c != ALL]
        for condition in [*conditions, ALL]:
            lines.append({"Outcome and condition": "   " + (
                label(condition) if condition != ALL else "All conditions"),
                **{headers[f]: cells.get((condition, f), DASH) for f in formats}})
    body = pd.DataFrame(lines, columns=["Outcome and condition", *headers.values()])
    notes = (f"Population: {population.replace('_', ' ')}; denominator: {denominator} "
             "(patients whose outcome is known). Cells: events/n, rate (95% CI).",
             "Response: a fall of at least 50% from baseline; remission: below the "
             "instrument's remission cut-off at the end; reliable improvement and recovery "
             "as defined by NHS Talking Therapies (PHQ-9 and GAD-7).",
             suppression_note(suppress_below), "Source: tables/response_rates.csv.")
    return PaperTable("table2_outcomes", caption, body.reset_index(drop=True), notes, source)


def _margin_label(value: Any) -> str:
    return "All" if str(value) == ALL else label(str(value))


# --------------------------------------------------------------------------- table 3


def table3_comparison(standardised: pd.DataFrame | None, models: pd.DataFrame | None,
                      outcome: str = "response", reason: str = "") -> PaperTable:
    """Table 3: the adjusted comparison of formats, from ``response_standardised.csv``
    (rates standardised to the whole population's case mix, and their difference) and
    ``response_models.csv`` (odds ratios of the logistic model with robust SEs)."""
    caption = f"Table 3. Adjusted comparison of group and individual IPT ({outcome})"
    sources = ("tables/response_standardised.csv", "tables/response_models.csv")
    rows: list[dict[str, str]] = []
    if standardised is not None and not standardised.empty:
        names = {"rate_individual": "Standardised rate, individual",
                 "rate_group": "Standardised rate, group",
                 "risk_difference": "Risk difference, group - individual"}
        for r in standardised.to_dict("records"):
            interval = (f"{percent(r['ci_low'])} to {percent(r['ci_high'])}"
                        if r["quantity"] == "risk_difference"  # bounds may be negative
                        else percent_ci(r["ci_low"], r["ci_high"]))
            rows.append({"Quantity": names.get(str(r["quantity"]), label(r["quantity"])),
                         "Estimate": percent(r["estimate"]), "95% CI": interval, "p": ""})
    if models is not None and not models.empty:
        for r in models.to_dict("records"):
            rows.append({"Quantity": f"Odds ratio, {term_label(r['term'])}",
                         "Estimate": format_cell(r["odds_ratio"]),
                         "95% CI": number_ci(r["ci_low"], r["ci_high"]),
                         "p": format_cell(r.get("p_value", ""), "p_value")})
    if not rows:
        return missing_table("table3_comparison", caption, reason or "no adjusted comparison "
                             "in the run", sources)
    notes = ("Standardised rates: the logistic model's predictions averaged over every "
             "patient as if all had had each format (marginal standardisation); the "
             "difference is in percentage points.",
             "Odds ratios from a logistic model fitted by GEE with robust (sandwich) "
             "standard errors, patients clustered by therapy group, else therapist "
             "(comparison.cluster in the study config); each level against the reference "
             "level of its variable.",
             f"Sources: {', '.join(sources)}.")
    return PaperTable("table3_comparison", caption, pd.DataFrame(rows), notes, sources)


# --------------------------------------------------------------------------- table 4


def table4_growth(fixed: pd.DataFrame | None, variance: pd.DataFrame | None,
                  diagnostics: pd.DataFrame | None, difference: pd.DataFrame | None,
                  model: str = "growth", reason: str = "") -> PaperTable:
    """Table 4: the growth model (mixed-effects model of scores over weeks), from
    ``mixed_<model>_fixed.csv``, ``_variance.csv``, ``_diagnostics.csv`` and the format
    difference at the end of treatment (``mixed_format_difference.csv``)."""
    caption = "Table 4. Growth model of symptom scores (linear mixed-effects model)"
    sources = tuple(f"tables/mixed_{model}_{part}.csv"
                    for part in ("fixed", "variance", "diagnostics"))
    if fixed is None or fixed.empty:
        return missing_table("table4_growth", caption, reason or "no growth model in the run",
                             sources)
    rows = [{"Term": term_label(r["term"]), "Estimate": format_cell(r["estimate"]),
             "SE": format_cell(r.get("std_error", "")),
             "95% CI": number_ci(r["ci_low"], r["ci_high"]),
             "p": format_cell(r.get("p_value", ""), "p_value")}
            for r in fixed.to_dict("records")]
    rows += _variance_rows(variance)
    rows += _difference_rows(difference, model)
    notes = [*_diagnostic_notes(diagnostics),
             "Fixed effects with Wald 95% CIs; variance components as fitted (variance, and "
             "the correlation of random effects), ICC: share of the variance at that level.",
             f"Sources: {', '.join(sources)}"
             + (", tables/mixed_format_difference.csv." if difference is not None else ".")]
    return PaperTable("table4_growth", caption, pd.DataFrame(rows), tuple(notes),
                      (*sources, "tables/mixed_format_difference.csv"))


def _variance_rows(variance: pd.DataFrame | None) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    if variance is None or variance.empty:
        return rows
    for r in variance.to_dict("records"):
        level, term = str(r.get("level", "")), str(r.get("term", ""))
        if not _is_blank(r.get("icc", "")):
            name, value = f"ICC, {level}", r["icc"]
        elif not _is_blank(r.get("correlation", "")):
            name, value = f"Correlation, {level}: {term}", r["correlation"]
        else:
            name = f"Variance, {level}" + (f": {term}" if term not in ("", "nan") else "")
            value = r.get("variance", "")
        rows.append({"Term": name, "Estimate": format_cell(value), "SE": "", "95% CI": "",
                     "p": ""})
    return rows


def _difference_rows(difference: pd.DataFrame | None, model: str) -> list[dict[str, str]]:
    if difference is None or difference.empty or "model" not in difference:
        return []
    rows = []
    for r in difference[difference["model"] == model].to_dict("records"):
        rows.append({"Term": f"Difference {r['contrast']} at {r['time_scale']} "
                             f"{format_cell(r['time_point'])}",
                     "Estimate": format_cell(r["estimate"]),
                     "SE": format_cell(r.get("std_error", "")),
                     "95% CI": number_ci(r["ci_low"], r["ci_high"]),
                     "p": format_cell(r.get("p_value", ""), "p_value")})
        if not _is_blank(r.get("effect_size", "")):
            rows.append({"Term": "   as effect size (difference / baseline SD)",
                         "Estimate": format_cell(r["effect_size"]), "SE": "",
                         "95% CI": number_ci(r["effect_size_ci_low"],
                                             r["effect_size_ci_high"]), "p": ""})
    return rows


def _diagnostic_notes(diagnostics: pd.DataFrame | None) -> list[str]:
    if diagnostics is None or diagnostics.empty:
        return []
    r = diagnostics.iloc[0]
    formula = str(r.get("formula", "")).replace("`", "")  # formulaic's quoting of names
    notes = [f"Model: {formula} ({r.get('method', '')}, {r.get('engine', '')} "
             f"engine); {format_cell(r.get('n_obs', ''))} scores of "
             f"{format_cell(r.get('n_patients', ''))} patients."]
    if str(r.get("singular", "")) == "True":
        notes.append("Boundary (singular) fit: a variance component was estimated at zero.")
    if str(r.get("converged", "True")) != "True":
        notes.append("The model did not converge: interpret with caution.")
    return notes


# --------------------------------------------------------------------------- table 5


def table5_relapse(km: pd.DataFrame | None, logrank: pd.DataFrame | None,
                   cox: pd.DataFrame | None, reason: str = "", cox_reason: str = ""
                   ) -> PaperTable:
    """Table 5: relapse after treatment, from ``relapse_km.csv`` (Kaplan-Meier: relapse-free
    at 26 and 52 weeks, median time), ``relapse_logrank.csv`` (p of the log-rank test within
    each stratifying variable) and, when estimable, ``relapse_cox.csv`` (hazard ratios)."""
    caption = "Table 5. Relapse after the end of treatment"
    sources = ("tables/relapse_km.csv", "tables/relapse_logrank.csv", "tables/relapse_cox.csv")
    if km is None or km.empty:
        return missing_table("table5_relapse", caption, reason or "no relapse analysis in "
                             "the run", sources)
    p_values = ({str(r["variable"]): format_cell(r["p_value"], "p_value")
                 for r in logrank.to_dict("records")} if logrank is not None else {})
    rows, seen = [], set()
    for r in km.to_dict("records"):
        variable = str(r["stratum_variable"])
        rows.append({
            "Group": "All" if variable == ALL else f"{label(variable)}: {r['stratum']}",
            "n": count(r["n"]), "Relapses": count(r["events"]),
            "Relapse-free at 26 weeks (95% CI)": _survival(r, "26w"),
            "Relapse-free at 52 weeks (95% CI)": _survival(r, "52w"),
            "Median weeks": format_cell(r.get("median_weeks", "")),
            "Log-rank p": p_values.get(variable, "") if variable not in seen else ""})
        seen.add(variable)
    for r in (cox.to_dict("records") if cox is not None else []):
        rows.append({"Group": f"Hazard ratio, {term_label(r['term'])}", "n": "", "Relapses": "",
                     "Relapse-free at 26 weeks (95% CI)": f"{format_cell(r['hazard_ratio'])} "
                     f"({number_ci(r['ci_low'], r['ci_high'])})",
                     "Relapse-free at 52 weeks (95% CI)": "", "Median weeks": "",
                     "Log-rank p": format_cell(r.get("p_value", ""), "p_value")})
    notes = ["Kaplan-Meier estimates among patients followed up after treatment; relapse "
             "as defined in the study config; a median is blank where fewer than half "
             "relapsed. Log-rank p: within each stratifying variable."]
    if cox is not None and not cox.empty:
        notes.append("Hazard ratios (Cox model, 95% CI) are shown in the 26-week column, "
                     "their p in the last column.")
    elif cox_reason:
        notes.append(f"Cox model. {cox_reason}.")
    notes.append("Counts in this table are not suppressed: the relapse tables are outside "
                 "the small-number suppression of the shared outcome tables; check them "
                 "before sharing.")
    notes.append(f"Sources: {', '.join(s for s in sources if cox is not None or 'cox' not in s)}.")
    return PaperTable("table5_relapse", caption, pd.DataFrame(rows), tuple(notes), sources)


def _survival(row: Mapping[Any, Any], when: str) -> str:
    estimate = row.get(f"relapse_free_{when}", "")
    if _is_blank(estimate):
        return DASH
    return (f"{percent(estimate)} "
            f"({percent_ci(row.get(f'ci_low_{when}', ''), row.get(f'ci_high_{when}', ''))})")
