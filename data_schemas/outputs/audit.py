"""Output contracts of the audit stage: sites, therapists, outliers, benchmarks, funnels."""

from __future__ import annotations

from typing import Final

import pandera.pandas as pa

from data_schemas.outputs.columns import (
    CI_HIGH,
    CI_LOW,
    LEVEL,
    PATIENT_ID,
    SUPPRESSED,
    UNIT,
    count,
    flag,
    integer,
    number,
    ordered,
    p_value,
    rate,
    schema,
    shared_count,
    text,
)

# --------------------------------------------------------------------------------------
# audit/
# --------------------------------------------------------------------------------------

AUDIT_OUTCOMES: Final = {
    "recovery": "recovery (at caseness at the start, below caseness on PHQ-9 and GAD-7 at "
                "the end)",
    "reliable_improvement": "reliable improvement",
    "reliable_recovery": "reliable recovery",
    "reliable_deterioration": "reliable deterioration",
}
ES_PATTERN: Final = r"^[a-z][a-z0-9_]*_{suffix}$"


def _unit_columns() -> dict[str, pa.Column]:
    columns: dict[str, pa.Column] = {
        "level": text(LEVEL, isin=["site", "therapist"]), "unit": text(UNIT),
        "site_id": text("The unit's site (for a therapist: the site of most of their "
                        "patients); `all` for the whole service.", nullable=True),
        "referred": shared_count("Patients referred."),
        "started": shared_count("Patients who started treatment."),
        "finished_course": shared_count("Patients who finished a course (>= 2 attended "
                                        "treatment sessions)."),
    }
    for outcome, words in AUDIT_OUTCOMES.items():
        columns |= {
            f"{outcome}_n": shared_count(f"Finished courses with {words} known (its "
                                         "denominator)."),
            f"{outcome}_events": shared_count(f"Patients with {words}."),
            f"{outcome}_rate": rate(f"{outcome}_events / {outcome}_n."),
            f"{outcome}_ci_low": rate("Lower bound of the rate's 95% Wilson interval."),
            f"{outcome}_ci_high": rate("Upper bound of the rate's 95% Wilson interval."),
        }
    for suffix, column in {
        "es_n": shared_count("Finished courses with paired scores on the instrument "
                             "(`<instrument>_es_n`).", name=ES_PATTERN.format(
                                 suffix="es_n")),
        "effect_size": number("Pre-post effect size on the instrument: (mean baseline - "
                              "mean end score) / SD of baseline scores, positive = "
                              "improvement (Delgadillo et al.).",
                              name=ES_PATTERN.format(suffix="effect_size")),
        "es_ci_low": number("Lower bound of the effect size's 95% bootstrap interval.",
                            name=ES_PATTERN.format(suffix="es_ci_low")),
        "es_ci_high": number("Upper bound of the effect size's 95% bootstrap interval.",
                             name=ES_PATTERN.format(suffix="es_ci_high")),
    }.items():
        columns[ES_PATTERN.format(suffix=suffix)] = column
    columns |= {
        "attendance_rate": rate("Attended / scheduled treatment sessions of patients who "
                                "started."),
        "dna_rate": rate("Did-not-attend / scheduled treatment sessions."),
        "dropouts": shared_count("Patients who dropped out."),
        "dropout_rate": rate("dropouts / started."),
        "dropout_ci_low": rate("Lower bound of the dropout rate's 95% Wilson interval."),
        "dropout_ci_high": rate("Upper bound of the dropout rate's 95% Wilson interval."),
        "paired_n": shared_count("Finished courses with paired PHQ-9 and GAD-7 scores."),
        "completeness": rate("paired_n / finished_course."),
        "meets_completeness_standard": flag("completeness >= the standard (default 90%); "
                                            "blank when suppressed.", nullable=True),
        "expected": number("Recoveries expected from the case-mix model (sum of "
                           "predicted probabilities).", ge=0),
        "oe_ratio": number("Observed / expected recoveries.", ge=0),
        "oe_ci_low": number("Lower bound of the O/E ratio's 95% interval.", ge=0),
        "oe_ci_high": number("Upper bound of the O/E ratio's 95% interval.", ge=0),
        "adjusted_rate": number("Case-mix adjusted recovery rate (O/E x overall rate; may "
                                "exceed 1 for a small unit).", ge=0),
        "adjusted_ci_low": number("Lower bound of the adjusted rate's 95% interval.", ge=0),
        "adjusted_ci_high": number("Upper bound of the adjusted rate's 95% interval (may "
                                   "exceed 1).", ge=0),
        "suppressed": flag(SUPPRESSED),
    }
    return columns


def _unit_checks() -> list[pa.Check]:
    checks = [ordered(f"{o}_rate", f"{o}_ci_low", f"{o}_ci_high") for o in AUDIT_OUTCOMES]
    return [*checks, ordered("dropout_rate", "dropout_ci_low", "dropout_ci_high"),
            ordered("oe_ratio", "oe_ci_low", "oe_ci_high"),
            ordered("adjusted_rate", "adjusted_ci_low", "adjusted_ci_high"),
            ordered(None, r"([a-z][a-z0-9_]*)_es_ci_low", r"([a-z][a-z0-9_]*)_es_ci_high")]


def audit_contracts() -> dict[str, pa.DataFrameSchema]:
    """The contracts of the audit stage's tables, by table name."""
    units_doc = ("Clinic audit per {level}: activity, outcome rates, effect sizes, "
                 "attendance, completeness and case-mix adjusted recovery; last row `all`. "
                 "Counts protected by small-number suppression.")
    return {
        "audit_sites": schema("audit_sites", units_doc.format(level="site"),
                              _unit_columns(), _unit_checks()),
        "audit_therapists": schema("audit_therapists", units_doc.format(level="therapist"),
                                   _unit_columns(), _unit_checks()),
        "audit_outliers": schema("audit_outliers", (
            "Units outside the funnel plot's control limits for adjusted recovery, or too "
            "small to place on it."), {
            "level": text(LEVEL, isin=["site", "therapist"]), "unit": text(UNIT),
            "n": shared_count("The unit's recovery denominator."),
            "adjusted_rate": number("Case-mix adjusted recovery rate (O/E x overall rate).",
                                    ge=0),
            "z_score": number("Standardised distance from the overall rate (over-dispersion "
                              "adjusted where applied)."),
            "limit_hit": text("Widest control limit crossed: `above_95`, `below_95`, "
                              "`above_99.8`, `below_99.8` (Spiegelhalter 2005), or "
                              "`too_small` (not placed on the funnel); the levels are "
                              "`audit.funnel_levels`."),
        }, [pa.Check(lambda frame: frame["limit_hit"].astype(str).str.fullmatch(
                r"(above|below)_\d+(\.\d+)?|too_small"), name="limit_label",
                     error="limit_hit is above_<percent>, below_<percent> or too_small")]),
        "audit_benchmarks": schema("audit_benchmarks", (
            "Each unit's recovery rate against the national standard and its effect sizes "
            "against the Delgadillo et al. bands."), {
            "level": text(LEVEL, isin=["site", "therapist"]), "unit": text(UNIT),
            "measure": text("`recovery_rate` or `<instrument>_effect_size`."),
            "n": shared_count("Denominator of the measure."),
            "estimate": number("The unit's rate or effect size."),
            "ci_low": number(CI_LOW), "ci_high": number(CI_HIGH),
            "benchmark": number("The target (rate) or the average band (effect size).",
                                nullable=True),
            "verdict": text("`above` / `around` / `below` the target (rate); `high`, "
                            "`above_average`, `around_average`, `below` ... (effect size "
                            "band); `suppressed` or `no data`."),
            "source": text("Source of the benchmark."),
        }, [ordered("estimate", "ci_low", "ci_high")]),
        "audit_funnel_summary": schema("audit_funnel_summary", (
            "Funnel plot of adjusted recovery per level: over-dispersion test and the "
            "factor applied."), {
            "level": text(LEVEL, isin=["site", "therapist"]),
            "units_on_funnel": count("Units placed on the funnel."),
            "overall_rate": rate("Overall recovery rate (the funnel's centre)."),
            "phi_hat": number("Estimated over-dispersion factor (chi-square / df).", ge=0),
            "chi_square": number("Sum of squared z-scores.", ge=0),
            "df": count("Degrees of freedom (units - 1)."),
            "p_value": p_value("p-value of the over-dispersion test."),
            "overdispersion_applied": flag("Limits widened for over-dispersion."),
            "phi": number("Factor applied to the limits (1 when not applied).", ge=0),
        }),
        "not_on_track": schema("not_on_track", (
            "Patients in treatment whose latest score lies above the expected-recovery "
            "band (patient-level, for the service; not suppressed)."), {
            "patient_id": text(PATIENT_ID), "site_id": text("Site id."),
            "therapist_id": text("Therapist id.", nullable=True),
            "session_number": integer("Session of the latest score."),
            "score": number("Latest score of the primary instrument."),
            "expected": number("Expected score at that week given the baseline, from the "
                               "service's expected recovery curve (mixed model; Finch, "
                               "Lambert and Schaalje 2001)."),
            "upper_bound": number("Upper bound of the curve's two-sided prediction band "
                                  "(default 90%, `audit.prediction_level`)."),
            "sessions_remaining": count("Planned sessions (`audit.planned_sessions`) minus "
                                        "session_number, at least 0."),
            "flagged": flag("score > upper_bound: not on track."),
        }),
    }
