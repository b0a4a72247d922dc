"""Table 5 for papers: relapse after the end of treatment (cumulative incidence, survival)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pipeline.report.findings import percent
from pipeline.report.html import format_cell
from pipeline.report.paper_cells import (
    DASH,
    PaperTable,
    count,
    is_blank,
    label,
    missing_table,
    number_ci,
    percent_ci,
    term_label,
)
from pipeline.sharing.suppression import ALL

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
    if is_blank(estimate):
        return DASH
    return (f"{percent(estimate)} "
            f"({percent_ci(row.get(f'ci_low_{when}', ''), row.get(f'ci_high_{when}', ''))})")
