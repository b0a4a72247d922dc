"""Output contracts of the relapse stage: cohort, cumulative incidence, RMST and models."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from data_schemas.outputs.columns import (
    CI_HIGH,
    CI_LOW,
    PATIENT_ID,
    STRATUM,
    STRATUM_VARIABLE,
    SUPPRESSED,
    count,
    flag,
    number,
    ordered,
    p_value,
    rate,
    schema,
    shared_count,
    text,
)
from data_schemas.vocab import FORMATS

# --------------------------------------------------------------------------------------
# tables/: relapse
# --------------------------------------------------------------------------------------

N_COHORT = "Patients in the stratum's relapse cohort."
EVENTS = "Relapses in the stratum."


def relapse_contracts() -> dict[str, pa.DataFrameSchema]:
    """The contracts of the relapse stage's tables, by table name."""
    tables = {
        "relapse_cohort": schema("relapse_cohort", (
            "The relapse cohort: one row per patient at risk after acute treatment, with "
            "time to relapse or censoring (patient-level, not suppressed; no dates)."), {
            "patient_id": text(PATIENT_ID, unique=True),
            "condition": text("Condition code."),
            "format": text("Treatment format.", isin=FORMATS),
            "problem_area": text("IPT problem area.", nullable=True),
            "age": number("Age in years.", ge=0, required=False),
            "sex": text("Sex as recorded.", nullable=True, required=False),
            "site_id": text("Site id."),
            "therapist_id": text("Therapist id (when the study records therapists).",
                                 nullable=True, required=False),
            "group_id": text("Therapy group id (when the study records groups).",
                             nullable=True, required=False),
            r"^residual_[a-z0-9_]+$": number(
                "End-of-treatment score of the instrument (`residual_<instrument>`): "
                "residual symptoms.", name=r"^residual_[a-z0-9_]+$"),
            "maintenance": flag("Offered maintenance IPT.", nullable=True, required=False),
            "time_weeks": number("Weeks from the origin (the last attended acute-phase "
                                 "session) to relapse, competing event or censoring.",
                                 ge=0, nullable=False),
            "event": count("1 = relapse, 2 = competing event (died, other treatment), "
                           "0 = censored at the last relapse-free follow-up."),
        }, strict=False),
        "relapse_km": schema("relapse_km", (
            "Kaplan-Meier estimates per stratum (competing events censored): median "
            "relapse-free time and the relapse-free proportion at the horizons "
            "(`relapse.horizon_weeks`)."), {
            "stratum_variable": text(STRATUM_VARIABLE), "stratum": text(STRATUM),
            "n": shared_count(N_COHORT), "events": shared_count(EVENTS),
            "median_weeks": number("Median relapse-free time in weeks (blank: not "
                                   "reached).", ge=0),
            "median_ci_low": number("Lower bound of the median's 95% interval "
                                    "(Brookmeyer-Crowley).", ge=0),
            "median_ci_high": number("Upper bound of the median's 95% interval (blank: "
                                     "not reached).", ge=0),
            r"^relapse_free_\d+w$": rate("Kaplan-Meier relapse-free proportion at the "
                                         "horizon (`relapse_free_<weeks>w`).",
                                         name=r"^relapse_free_\d+w$"),
            r"^ci_low_\d+w$": rate("Lower bound of the 95% log-log interval at the "
                                   "horizon.", name=r"^ci_low_\d+w$"),
            r"^ci_high_\d+w$": rate("Upper bound of the 95% log-log interval at the "
                                    "horizon.", name=r"^ci_high_\d+w$"),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("median_weeks", "median_ci_low", "median_ci_high"),
            ordered(r"relapse_free_(\d+w)", r"ci_low_(\d+w)", r"ci_high_(\d+w)")]),
        "relapse_km_at_risk": schema("relapse_km_at_risk", (
            "Patients at risk over time per stratum (printed under the Kaplan-Meier "
            "figure)."), {
            "stratum_variable": text(STRATUM_VARIABLE), "stratum": text(STRATUM),
            "time_weeks": number("Time in weeks.", ge=0, nullable=False),
            "at_risk": shared_count("Patients still at risk at that time."),
            "suppressed": flag("True when this cell is hidden."),
            "suppressed_group": flag("True when the stratum has a hidden count, so its "
                                     "curve is not drawn."),
        }),
        "relapse_logrank": schema("relapse_logrank", (
            "Log-rank test of equal relapse-free survival across the levels of each "
            "stratum variable."), {
            "variable": text("Stratum variable tested."),
            "groups": count("Levels compared."),
            "n": shared_count("Patients in the test."),
            "events": shared_count("Relapses in the test."),
            "test_statistic": number("Chi-square statistic.", ge=0),
            "df": count("Degrees of freedom (groups - 1)."),
            "p_value": p_value("p-value of the log-rank chi-square test."),
        }),
        "relapse_rmst": schema("relapse_rmst", (
            "Restricted mean survival time (relapse-free weeks up to tau) per group."), {
            "variable": text(STRATUM_VARIABLE),
            "group": text(STRATUM + " A row `<level> - <reference>` (e.g. `group - "
                          "individual`) holds the difference between two levels."),
            "n": shared_count(N_COHORT), "events": shared_count(EVENTS),
            "tau_weeks": number("Restriction time tau in weeks.", ge=0, nullable=False),
            "rmst": number("Restricted mean relapse-free time to tau, in weeks (>= 0), or "
                           "the difference of two groups' RMST on a difference row."),
            "se": number("Standard error of the RMST (of the difference: sqrt(Var_1 + "
                         "Var_0)).", ge=0),
            "ci_low": number(CI_LOW), "ci_high": number(CI_HIGH),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("rmst", "ci_low", "ci_high"),
            pa.Check(_rmst_nonnegative, name="rmst_nonnegative",
                     error="an RMST (not a difference) is >= 0")]),
        "relapse_cif": schema("relapse_cif", (
            "Cumulative incidence of relapse with other exits as competing events "
            "(Aalen-Johansen); the at-risk and competing counts are left out of the shared "
            "version."), {
            "stratum_variable": text(STRATUM_VARIABLE), "stratum": text(STRATUM),
            "time_weeks": number("Time in weeks.", ge=0, nullable=False),
            "cif": rate("Cumulative incidence of relapse by that time."),
            "ci_low": rate(CI_LOW), "ci_high": rate(CI_HIGH),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("cif", "ci_low", "ci_high")]),
        "relapse_free_interval": schema("relapse_free_interval", (
            "Turnbull (NPMLE) relapse-free curve for interval-censored relapse times "
            "(relapse known only between follow-ups)."), {
            "stratum_variable": text(STRATUM_VARIABLE), "stratum": text(STRATUM),
            "n": shared_count(N_COHORT), "events": shared_count(EVENTS),
            "time_weeks": number("Time in weeks.", ge=0, nullable=False),
            "relapse_free": rate("Relapse-free proportion (blank where the NPMLE is not "
                                 "unique)."),
            "relapse_free_low": rate("Lower end of the NPMLE's range (or interval) at that "
                                     "time."),
            "relapse_free_high": rate("Upper end of the NPMLE's range at that time."),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("relapse_free", "relapse_free_low", "relapse_free_high")]),
    }
    tables.update(_relapse_models())
    return tables


def _rmst_nonnegative(frame: pd.DataFrame) -> pd.Series:
    """An RMST is >= 0; only a difference row (``a - b``) may be negative."""
    difference = frame["group"].astype(str).str.contains(" - ", regex=False)
    return difference | frame["rmst"].isna() | (frame["rmst"] >= 0)


def _relapse_models() -> dict[str, pa.DataFrameSchema]:
    regression = {
        "ci_low": number(CI_LOW, ge=0), "ci_high": number(CI_HIGH, ge=0),
        "p_value": p_value(), "coef": number("Coefficient on the log scale."),
        "se": number("Standard error of the coefficient.", ge=0),
        "n": shared_count("Patients in the model."),
        "events": shared_count("Relapses in the model."),
        "model": text("Which model was reported (full, or a smaller one when events are "
                      "few)."),
    }
    return {
        "relapse_cox": schema("relapse_cox", (
            "Cox proportional-hazards model of time to relapse: hazard ratios."), {
            "term": text("Model term."),
            "hazard_ratio": number("exp(coef): the hazard ratio of the term.", ge=0),
            **regression,
        }, [ordered("hazard_ratio", "ci_low", "ci_high")]),
        "relapse_ph_test": schema("relapse_ph_test", (
            "Test of the proportional-hazards assumption per term (scaled Schoenfeld "
            "residuals, as R's cox.zph)."), {
            "term": text("Model term, or `GLOBAL`."),
            "test_statistic": number("Chi-square statistic.", ge=0),
            "p_value": p_value("p-value of the test."),
            "violates_ph": flag("p_value < 0.05."),
            "tested_model": text("Model tested."),
            "reported_model": text("Model reported in `relapse_cox`."),
        }),
        "relapse_aft": schema("relapse_aft", (
            "Interval-censored Weibull accelerated-failure-time model of time to relapse: "
            "time ratios."), {
            "term": text("Model term."),
            "time_ratio": number("exp(coef): the factor on relapse-free time.", ge=0),
            **regression,
        }, [ordered("time_ratio", "ci_low", "ci_high")]),
    }
