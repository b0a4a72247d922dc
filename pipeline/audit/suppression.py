r"""Small-number protection of the audit's per-unit tables (primary and secondary
suppression, with ``pipeline.sharing.suppression``).

Counts of 1-4 are shown as ``"<5"`` with their rates blanked (primary suppression, reusing
``pipeline.outcomes.rates.suppress_small_counts``). Complementary cells are protected by
secondary suppression (``"*"``, with the columns derived from the hidden count blanked): the
published relations are "the sites add up to the sites' total", "the therapists add up to
the therapists' total" and "the therapists of a site add up to that site's row" (each used
only when it holds exactly). A quick pass hides, within each relation, the next-smallest
non-zero cell until no hidden cell could be worked back from the total
(``pipeline.sharing.suppression.protect_cells``); then every hidden small count is checked
against all relations at once by linear programming, assuming a reader who knows that
``"<5"`` means 1-4 and ``"*"`` means 5 or more, and further cells are hidden until none can
be pinned to a single value (``pipeline.sharing.suppression.audit_column``; the idea of the
audits of tau-ARGUS, Hundepool et al. 2012). :func:`_shown` tells which rows keep their
counts, so outliers and figures show no more than the tables.

References
----------
Hundepool A, Domingo-Ferrer J, Franconi L, et al. (2012). Statistical Disclosure Control.
Wiley (chapter 4: secondary cell suppression and its audit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.audit.columns import ADJUSTED, ALL, OUTCOMES, BoolArray
from pipeline.outcomes import rates
from pipeline.sharing.suppression import SECONDARY, Relation, _secondary, audit_column


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

def _shown(shared: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Rows whose given count columns are all shown as numbers."""
    shown = pd.Series(True, index=shared.index)
    for column in columns:
        shown &= shared[column].map(lambda v: not isinstance(v, str))
    return shown

