"""Small-number suppression of the shared tables of the relapse stage.

The counts the relapse tables publish are, per stratum (``stratum_variable`` x
``stratum``: all, each condition, format, maintenance ...), the patients of the relapse
cohort ``n`` and their relapses ``events`` (``relapse_km``; repeated by ``relapse_rmst``,
``relapse_free_interval`` and, for the whole cohort, the model tables), and the patients
still at risk at each time (``relapse_km_at_risk``). Within each stratum variable the
strata add up to the whole cohort, so the counts are protected as tables with margins
(:func:`pipeline.sharing.suppression.protect_tables`): primary suppression of 1..high,
complementary suppression across strata and across tables that repeat a count (the
patients at risk at time 0 are ``n``).

In the shared versions a stratum with a hidden count (or a small complement ``n -
events``) has every estimate blanked in every relapse table, since a survival estimate
and its ``n`` give the events back; ``competing`` counts and the ``at_risk`` column of
``relapse_cif`` are left out (not protected here; the unsuppressed run keeps them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd

from pipeline.sharing.suppression import ALL, CountTable, SuppressionSummary, protect_tables

STRATUM: Final = ("stratum_variable", "stratum")
#: Tables holding a stratum's estimates, and the columns naming the stratum in each.
STRATUM_TABLES: Final = {"relapse_km": STRATUM, "relapse_free_interval": STRATUM,
                         "relapse_rmst": ("variable", "group"), "relapse_cif": STRATUM}
#: Tables of whole-cohort models with the cohort's ``n`` and ``events``.
MODEL_TABLES: Final = ("relapse_cox", "relapse_aft", "relapse_logrank")
LEFT_OUT: Final = {"relapse_km": ("competing",), "relapse_cif": ("at_risk",)}
COUNTS: Final = ("n", "events")
#: Numeric columns that are not estimates (never blanked).
TIMES: Final = ("time_weeks", "tau_weeks")


def _with_margins(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.DataFrame:
    """Each stratum variable's rows with the whole cohort's row as its ``"all"`` margin
    (and that row once more as a slice of its own, which ties the copies together)."""
    variable, stratum = STRATUM
    whole = frame[frame[variable] == ALL]
    parts = [whole]
    for name, rows in frame[frame[variable] != ALL].groupby(variable, sort=False):
        margin = whole.assign(**{variable: name})
        if keys:
            margin = margin[margin[list(keys)].apply(tuple, axis=1).isin(
                rows[list(keys)].apply(tuple, axis=1))]
        parts.extend([rows, margin])
    out = pd.concat(parts, ignore_index=True)
    return out.assign(**{stratum: out[stratum].astype(str)})


def _original_rows(expanded: pd.DataFrame, count: int) -> pd.DataFrame:
    """Drop the margin copies that :func:`_with_margins` added (they follow each
    variable's rows and carry ``stratum == "all"`` under a variable other than ``all``)."""
    variable, stratum = STRATUM
    copy = (expanded[variable] != ALL) & (expanded[stratum] == ALL)
    kept = expanded.loc[~copy]
    assert len(kept) == count
    return kept


def share(built: Mapping[str, pd.DataFrame],
          high: int) -> tuple[dict[str, pd.DataFrame], SuppressionSummary]:
    """The shared versions of the relapse stage's tables (others returned unchanged).

    Parameters
    ----------
    built : mapping of str to DataFrame
        The tables the relapse stage built, unsuppressed.
    high : int
        Counts of 1..high are hidden (``suppress_below - 1``).
    """
    km = built.get("relapse_km")
    if km is None or km.empty or not set(COUNTS) <= set(km.columns):
        return dict(built), SuppressionSummary()
    variable, stratum = STRATUM
    strata = km[[*STRATUM, *COUNTS]].assign(**{stratum: km[stratum].astype(str)})
    protected = {"strata": _with_margins(strata, ())}
    specs = {"strata": CountTable("n", "events", keys=(variable,), margins=(stratum,))}
    risk = built.get("relapse_km_at_risk")
    if risk is not None and not risk.empty:
        at_risk = risk[[*STRATUM, "time_weeks", "at_risk"]].assign(
            **{stratum: risk[stratum].astype(str)})
        protected["at_risk"] = _with_margins(at_risk, ("time_weeks",))
        specs["at_risk"] = CountTable("at_risk", keys=(variable, "time_weeks"),
                                      margins=(stratum,))
    shared, summary = protect_tables(protected, specs, high)
    labels = _original_rows(shared["strata"], len(strata))
    hidden = {(str(v), str(s)) for v, s, hid in
              labels[[variable, stratum, "suppressed"]].itertuples(index=False) if hid}
    out = dict(built)
    out["relapse_km"] = _relabel(km, labels, hidden, STRATUM)
    for name, columns in STRATUM_TABLES.items():
        if name != "relapse_km" and name in out:
            out[name] = _relabel(out[name], labels, hidden, columns)
    if risk is not None and "at_risk" in shared:
        rows = _original_rows(shared["at_risk"], len(risk))
        groups = [(str(v), str(g)) in hidden for v, g in
                  zip(risk[variable], risk[stratum], strict=True)]
        out["relapse_km_at_risk"] = risk.assign(
            at_risk=rows["at_risk"].to_numpy(), suppressed=rows["suppressed"].to_numpy(),
            suppressed_group=groups)
    whole = labels[labels[variable] == ALL].iloc[0]
    for name in MODEL_TABLES:
        if name in out and set(COUNTS) <= set(out[name].columns):
            out[name] = out[name].assign(n=whole["n"], events=whole["events"])
            if bool(whole["suppressed"]):
                out[name] = out[name].iloc[0:0]
    for name, dropped in LEFT_OUT.items():
        if name in out:
            out[name] = out[name].drop(columns=list(dropped), errors="ignore")
    return out, summary


def _relabel(table: pd.DataFrame, labels: pd.DataFrame, hidden: set[tuple[str, str]],
             columns: tuple[str, str]) -> pd.DataFrame:
    """``table`` with the strata's shared ``n`` and ``events`` (where it has them) and every
    other numeric column blanked in hidden strata."""
    variable, stratum = STRATUM
    key = list(zip(table[columns[0]].astype(str), table[columns[1]].astype(str), strict=True))
    shown = {(str(v), str(s)): (n, e) for v, s, n, e in
             labels[[variable, stratum, *COUNTS]].itertuples(index=False)}
    out = table.copy()
    rows = np.array([k in hidden for k in key], dtype=bool)
    for i, column in enumerate(COUNTS):
        if column in out.columns:
            out[column] = [shown[k][i] if k in shown else v
                           for k, v in zip(key, table[column], strict=True)]
    estimates = [c for c in out.columns if c not in (*columns, *COUNTS, *TIMES)
                 and pd.api.types.is_numeric_dtype(out[c])]
    for column in estimates:
        out[column] = out[column].where(~rows, np.nan)
    out["suppressed"] = rows
    return out
