"""Table 4 for papers: the growth model of the primary instrument (fixed effects, variances)."""

from __future__ import annotations

import pandas as pd

from pipeline.report.html import format_cell
from pipeline.report.paper_cells import PaperTable, is_blank, missing_table, number_ci, term_label

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
        if not is_blank(r.get("icc", "")):
            name, value = f"ICC, {level}", r["icc"]
        elif not is_blank(r.get("correlation", "")):
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
        if not is_blank(r.get("effect_size", "")):
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
