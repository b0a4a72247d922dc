"""The report's first screen: a few plain-language findings, written from the results.

Each finding answers one of the questions a reader brings (how many were treated; did
IPT work; for whom; in which format; did it last; how does the service compare with its
benchmarks), with its numbers and 95% CIs taken from one shared table, and names that
table so the sentence can link to it. A finding whose table is missing, or whose numbers
are suppressed or not estimable, is left out (never guessed); the tables themselves say
why.

Pure: tables (as the report reads them: strings) in, :class:`Finding` objects out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from data_schemas.instruments import CATALOGUE

EN_DASH: Final = "\u2013"
MINUS: Final = "\u2212"
#: Cells with fewer patients are not named as the best or worst (too uncertain to rank).
MIN_CELL_FOR_RANKING: Final = 20
#: Relapse strata that are maintenance treatment (``relapse_km``'s ``stratum``).
MAINTENANCE_YES: Final = ("True", "true", "1", "yes")


@dataclass(frozen=True)
class Finding:
    """One sentence of the first screen and the table (report anchor) it comes from."""

    question: str
    text: str
    table: str


def number(value: Any) -> float:
    """A table cell as a float (NaN when blank, suppressed or not a number)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


#: Cells that hold no value.
BLANK: Final = ("", "nan", "NaN", "None", "<NA>")


def percent(value: Any, digits: int = 1) -> str:
    """A proportion as a percentage (``0.4843`` -> ``48.4%``); a label (``<5``) as is;
    a blank cell as an en dash.

    Examples
    --------
    >>> percent("0.5806451612903226"), percent("<5"), percent("nan") == EN_DASH
    ('58.1%', '<5', True)
    """
    x = number(value)
    if math.isnan(x):
        return EN_DASH if value is None or str(value) in BLANK else str(value)
    return f"{100 * x:.{digits}f}%"


def interval(low: Any, high: Any) -> str:
    """``95% CI 44.0%-52.9%`` (with an en dash)."""
    return f"95% CI {percent(low)}{EN_DASH}{percent(high)}"


def human(label: str) -> str:
    """A code as words: ``major_depression`` -> ``major depression``."""
    return label.replace("_", " ")


#: How a population is named in a sentence.
POPULATION_WORDS: Final = {"finished_course": "patients who finished a course",
                           "started": "patients who started IPT",
                           "completers": "patients who completed IPT",
                           "randomised": "randomised patients",
                           "assessed": "assessed patients"}


def instrument_label(name: str) -> str:
    """``phq9`` -> ``PHQ-9`` (the catalogue's label); ``phq9+gad7`` -> ``PHQ-9 and GAD-7``."""
    return " and ".join(CATALOGUE[p].label if p in CATALOGUE else p.upper()
                        for p in name.split("+"))


def _count(value: Any) -> str:
    x = number(value)
    return f"{int(x):,}" if not math.isnan(x) else str(value)


def _rows(table: pd.DataFrame | None, **equal: str) -> pd.DataFrame:
    if table is None or table.empty:
        return pd.DataFrame()
    keep = pd.Series(True, index=table.index)
    for column, value in equal.items():
        if column not in table.columns:
            return pd.DataFrame()
        keep &= table[column].astype(str) == value
    return table.loc[keep]


def _shown(row: pd.Series, *columns: str) -> bool:
    return all(not math.isnan(number(row.get(c))) for c in columns)


def patients_treated(tables: Mapping[str, pd.DataFrame]) -> Finding | None:
    """How many were referred, started, finished and completed (``patient_flow``)."""
    flow = tables.get("patient_flow")
    if flow is None or flow.empty:
        return None
    n = dict(zip(flow["step"].astype(str), flow["patients"], strict=True))
    if not {"referred", "started", "finished_course"} <= set(n):
        return None
    text = (f"Of {_count(n['referred'])} patients referred, {_count(n['started'])} started "
            f"IPT and {_count(n['finished_course'])} finished a course of treatment")
    if "completed_course" in n:
        text += f"; {_count(n['completed_course'])} of them completed it"
    return Finding("How many were treated?", text + ".", "patient_flow")


def did_it_work(tables: Mapping[str, pd.DataFrame], population: str,
                primary: str) -> Finding | None:
    """Response on the primary instrument and recovery overall (``response_rates``)."""
    rates = tables.get("response_rates")
    parts = []
    for instrument, outcome, verb in ((primary, "response", "responded"),
                                      ("phq9+gad7", "recovery", "recovered")):
        row = _rows(rates, population=population, denominator="observed",
                    instrument=instrument, outcome=outcome, condition="all", format="all")
        if row.empty or not _shown(row.iloc[0], "rate"):
            continue
        r = row.iloc[0]
        parts.append(f"{percent(r['rate'])} of {_count(r['n'])} with paired "
                     f"{instrument_label(instrument)} scores {verb} "
                     f"({interval(r['ci_low'], r['ci_high'])})")
    if not parts:
        return None
    who = f"Among {POPULATION_WORDS.get(population, human(population))}"
    return Finding("Did IPT work?", f"{who}, " + " and ".join(parts) + ".", "rates_observed")


def for_whom(tables: Mapping[str, pd.DataFrame], population: str,
             primary: str) -> Finding | None:
    """The condition x format cells with the highest and lowest response."""
    rates = _rows(tables.get("response_rates"), population=population,
                  denominator="observed", instrument=primary, outcome="response")
    if rates.empty:
        return None
    cells = rates[(rates["condition"] != "all") & (rates["format"] != "all")].copy()
    cells["_rate"] = cells["rate"].map(number)
    cells["_n"] = cells["n"].map(number)
    cells = cells[cells["_rate"].notna() & (cells["_n"] >= MIN_CELL_FOR_RANKING)]
    if len(cells) < 2:
        return None
    ordered = cells.sort_values(["_rate", "condition", "format"], kind="stable")
    low, high = ordered.iloc[0], ordered.iloc[-1]

    def cell(r: pd.Series) -> str:
        return (f"{human(str(r['condition']))} in {r['format']} IPT ({percent(r['rate'])}, "
                f"{interval(r['ci_low'], r['ci_high'])}, n = {_count(r['n'])})")

    return Finding("For whom?", f"Response was highest for {cell(high)} and lowest for "
                   f"{cell(low)}, among the {len(cells)} condition and format groups with at "
                   f"least {MIN_CELL_FOR_RANKING} patients.", "rates_observed")


def which_format(tables: Mapping[str, pd.DataFrame]) -> Finding | None:
    """The case-mix-standardised group minus individual difference, in percentage points,
    with its direction named (``response_standardised``)."""
    row = _rows(tables.get("response_standardised"), quantity="risk_difference")
    if row.empty or not _shown(row.iloc[0], "estimate", "ci_low", "ci_high"):
        return None
    r = row.iloc[0]
    estimate, low, high = (100 * number(r[c]) for c in ("estimate", "ci_low", "ci_high"))
    direction = "higher" if estimate > 0 else "lower"
    text = (f"Adjusted for case mix, group IPT's response rate was "
            f"{abs(estimate):.1f} percentage points {direction} than individual IPT's "
            f"(95% CI {_points(low)} to {_points(high)} points)")
    if low <= 0 <= high:
        text += "; the interval includes no difference"
    else:
        better = "individual" if estimate < 0 else "group"
        text += f": {better} IPT did better"
    return Finding("Which format?", text + ".", "response_standardised")


def _points(x: float) -> str:
    return f"{MINUS}{abs(x):.1f}" if x < 0 else f"{x:.1f}"


def _turnbull_at(table: pd.DataFrame | None, weeks: float, **stratum: str) -> str | None:
    """The Turnbull estimate at ``weeks`` (``relapse_free_interval``), or its bounds where it
    is not unique; None when the table has no such row."""
    rows = _rows(table, **stratum)
    if rows.empty:
        return None
    at = rows[rows["time_weeks"].map(number) == weeks]
    if at.empty or not _shown(at.iloc[0], "relapse_free"):
        return None
    r = at.iloc[0]
    low, high = number(r.get("relapse_free_low")), number(r.get("relapse_free_high"))
    if not math.isnan(low) and not math.isnan(high) and abs(high - low) >= 5e-4:
        return f"between {percent(low)} and {percent(high)}"
    return percent(r["relapse_free"])


def did_it_last(tables: Mapping[str, pd.DataFrame]) -> Finding | None:
    """Relapse-free at 52 weeks overall and with/without maintenance IPT: the Turnbull
    estimate (``relapse_free_interval``, primary: relapses are found at visits) where it
    exists, beside Kaplan-Meier with its CI (``relapse_km``)."""
    km = tables.get("relapse_km")
    overall = _rows(km, stratum_variable="all")
    if overall.empty or not _shown(overall.iloc[0], "relapse_free_52w"):
        return None
    r = overall.iloc[0]
    turnbull = tables.get("relapse_free_interval")
    primary = _turnbull_at(turnbull, 52.0, stratum_variable="all")
    km_rate, km_ci = percent(r["relapse_free_52w"]), interval(r["ci_low_52w"], r["ci_high_52w"])
    text = f"Of the {_count(r['n'])} patients followed up after treatment (the relapse cohort), "
    if primary is not None:
        text += (f"{primary} were relapse-free at 52 weeks by the interval-censored (Turnbull) "
                 f"estimate, the primary one for relapses found at visits (Kaplan-Meier "
                 f"{km_rate}, {km_ci})")
        table = "relapse_free_interval"
    else:
        text += f"{km_rate} were relapse-free at 52 weeks ({km_ci})"
        table = "relapse_km"
    parts = []
    for label, values in (("with", MAINTENANCE_YES), ("without", ("False", "false", "0", "no"))):
        shown = next((t for t in (_turnbull_at(turnbull, 52.0, stratum_variable="maintenance",
                                               stratum=v) for v in values) if t), None)
        if shown is None:
            row = _rows(km, stratum_variable="maintenance")
            row = row[row["stratum"].isin(values)] if not row.empty else row
            if row.empty or not _shown(row.iloc[0], "relapse_free_52w"):
                continue
            shown = (f"{percent(row.iloc[0]['relapse_free_52w'])} (Kaplan-Meier, "
                     f"{interval(row.iloc[0]['ci_low_52w'], row.iloc[0]['ci_high_52w'])})")
        parts.append(f"{shown} {label} maintenance IPT")
    if parts:
        text += ": " + " and ".join(parts)
    return Finding("Did it last?", text + ".", table)


def against_benchmarks(tables: Mapping[str, pd.DataFrame]) -> Finding | None:
    """How many benchmarks the service was above, around and below
    (``benchmark_comparison``), naming those below."""
    bench = tables.get("benchmark_comparison")
    if bench is None or bench.empty:
        return None
    verdicts = bench["verdict"].astype(str)
    counted = {v: int((verdicts == v).sum()) for v in ("above", "around", "below")}
    judged = sum(counted.values())
    if judged == 0:
        return None
    text = (f"Against {judged} benchmark{'s' if judged > 1 else ''}, the service was above "
            f"{counted['above']}, around {counted['around']} (the benchmark inside its 95% "
            f"CI) and below {counted['below']}")
    below = bench[verdicts == "below"]
    if not below.empty:
        named = [f"{human(str(r['outcome']))} in {human(str(r['condition']))} "
                 f"{percent(r['rate'])} against {percent(r['benchmark_rate'])}"
                 for _, r in below.iterrows()]
        text += " (" + "; ".join(named) + ")"
    return Finding("Against benchmarks?", text + ".", "benchmark_comparison")


def first_screen(tables: Mapping[str, pd.DataFrame], population: str,
                 primary: str) -> list[Finding]:
    """The findings the data support, in the order a reader asks them."""
    steps: tuple[Callable[[], Finding | None], ...] = (
        lambda: patients_treated(tables),
        lambda: did_it_work(tables, population, primary),
        lambda: for_whom(tables, population, primary),
        lambda: which_format(tables),
        lambda: did_it_last(tables),
        lambda: against_benchmarks(tables),
    )
    return [f for f in (step() for step in steps) if f is not None]
