"""Table 1 for papers: baseline characteristics by format, from ``patient_outcomes.csv``.

The one paper table built from patient-level data; its counts go through the same
small-number suppression as the shared outcome tables
(:func:`pipeline.sharing.suppression.protect_tables`, primary and complementary across the
format and level margins) unless the run was ``--no-suppress``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.report.paper_cells import (
    DASH,
    NO_SUPPRESSION_NOTE,
    RANGE,
    PaperTable,
    count,
    is_blank,
    label,
    missing_table,
)
from pipeline.sharing.suppression import ALL, CountTable, protect_tables

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
    groups = group_levels(patients[spec.by])
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
    groups = group_levels(patients[spec.by])
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


def group_levels(column: pd.Series) -> list[str]:
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
    return DASH if is_blank(value) or pd.isna(value) else f"{float(value):.1f}"


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
    groups = [g for g in group_levels(counts[spec.by]) if g != ALL] if len(counts) else []
    if not groups and len(statistics):
        groups = [g for g in group_levels(statistics[spec.by]) if g != ALL]
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
