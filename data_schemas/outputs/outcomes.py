"""Output contracts of the outcomes stage: rates, comparisons, benchmarks, patient outcomes."""

from __future__ import annotations

from typing import Final

import pandera.pandas as pa

from data_schemas.outcomes import JT_CLASSES, POPULATIONS, PatientOutcomes
from data_schemas.outputs.columns import (
    CI_HIGH,
    CI_LOW,
    CONDITION,
    FORMAT,
    PATIENT_ID,
    SUPPRESSED,
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
# tables/: outcomes
# --------------------------------------------------------------------------------------


def _rate_columns() -> dict[str, pa.Column]:
    return {
        "population": text(
            "Population of the denominator: `started` (at least one attended treatment "
            "session), `finished_course` (ended with >= 2 attended treatment sessions), "
            "`completers` (attended the planned course), or for trials `randomised` / "
            "`assessed`.", isin=[*POPULATIONS, "randomised", "assessed"]),
        "instrument": text("Instrument whose scores define the outcome (catalogue name, "
                           "e.g. `phq9`), or `phq9+gad7` for the paired outcomes over "
                           "PHQ-9 and GAD-7 together (recovery, reliable improvement, "
                           "reliable recovery)."),
        "outcome": text("Outcome: `response`, `remission`, `reliable_improvement`, "
                        "`recovery`, `reliable_recovery` (definitions in the study config "
                        "and `patient_outcomes`)."),
        "denominator": text("`observed`: patients with the outcome known (paired scores); "
                            "`itt`: every patient of the population, unknown counted as "
                            "not achieved.", isin=["observed", "itt"]),
        "condition": text(CONDITION),
        "format": text(FORMAT, isin=[*FORMATS, "all"]),
        "n": shared_count("Patients in the denominator."),
        "events": shared_count("Patients in the denominator with the outcome."),
        "rate": rate("events / n."),
        "ci_low": rate("Lower bound of the 95% Wilson score interval of the rate."),
        "ci_high": rate("Upper bound of the 95% Wilson score interval of the rate."),
        "suppressed": flag(SUPPRESSED),
    }


RESPONSE_RATES_DOC = ("Outcome rates with 95% Wilson intervals by population, instrument, "
                      "outcome, denominator, condition and format (margins `all`).")


def outcome_contracts() -> dict[str, pa.DataFrameSchema]:
    """The contracts of the outcomes stage's tables, by table name."""
    rate_checks = [ordered("rate", "ci_low", "ci_high")]
    return {
        "response_rates": schema("response_rates", RESPONSE_RATES_DOC, _rate_columns(),
                                 rate_checks),
        "response_rates_main": schema(
            "response_rates_main",
            RESPONSE_RATES_DOC + " Only the main population (default `finished_course`) "
            "and the rows the report shows.", _rate_columns(), rate_checks),
        "benchmark_comparison": schema("benchmark_comparison", (
            "Each configured benchmark rate against the service's rate and its 95% "
            "interval."), {
            "condition": text(CONDITION),
            "outcome": text("Outcome compared (as in `response_rates`)."),
            "benchmark_rate": rate("The benchmark proportion (from `benchmarks` in the "
                                   "study config).", nullable=False),
            "source": text("Where the benchmark comes from (citation or note)."),
            "n": shared_count("Patients in the denominator (main population, observed "
                              "denominator, format `all`); blank when no rate matches "
                              "(verdict `no data`).", nullable=True),
            "events": shared_count("Patients with the outcome (blank: no data).",
                                   nullable=True),
            "rate": rate("events / n."),
            "ci_low": rate("Lower bound of the 95% Wilson interval of the rate."),
            "ci_high": rate("Upper bound of the 95% Wilson interval of the rate."),
            "verdict": text("`above` / `below`: the interval lies wholly above / below the "
                            "benchmark; `around`: it contains it; `no data`: no matching "
                            "rate; `suppressed`: the rate is hidden.",
                            isin=["above", "around", "below", "no data", "suppressed"]),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("rate", "ci_low", "ci_high")]),
        "attendance": schema("attendance", (
            "Attendance by condition and format (margins `all`): sessions attended, "
            "did-not-attend rate and dropout, among patients who started."), {
            "condition": text(CONDITION),
            "format": text(FORMAT, isin=[*FORMATS, "all"]),
            "patients": shared_count("Patients who started treatment."),
            "sessions_attended_mean": number("Mean attended treatment sessions per "
                                             "patient.", ge=0),
            "sessions_attended_ci_low": number("Lower bound of the 95% t interval of the "
                                               "mean (mean -/+ t(0.975, k-1) s / "
                                               "sqrt(k) over k patients)."),
            "sessions_attended_ci_high": number("Upper bound of the 95% t interval of the "
                                                "mean."),
            "dna_rate": rate("sum(sessions_did_not_attend) / sum(sessions_scheduled) over "
                             "the patients (treatment sessions)."),
            "dna_ci_low": rate("Lower bound of the 95% Wilson interval of the DNA rate "
                               "(sessions are clustered within patients, so it is too "
                               "narrow: a lower bound on the uncertainty)."),
            "dna_ci_high": rate("Upper bound of the 95% Wilson interval of the DNA rate."),
            "dropouts": shared_count("Patients who dropped out (`dropout` in "
                                     "`patient_outcomes`)."),
            "dropout_rate": rate("dropouts / patients."),
            "dropout_ci_low": rate("Lower bound of the 95% Wilson interval of the "
                                   "dropout rate."),
            "dropout_ci_high": rate("Upper bound of the 95% Wilson interval of the "
                                    "dropout rate."),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("sessions_attended_mean", "sessions_attended_ci_low",
                    "sessions_attended_ci_high"),
            ordered("dna_rate", "dna_ci_low", "dna_ci_high"),
            ordered("dropout_rate", "dropout_ci_low", "dropout_ci_high")]),
        "completeness": schema("completeness", (
            "Paired-score completeness: finished courses with a first and last score on "
            "the paired instruments, against the 90% standard."), {
            "finished_courses": shared_count("Patients who finished a course of "
                                             "treatment."),
            "paired": shared_count("Finished courses with paired (first and last) scores."),
            "share_paired": rate("paired / finished_courses."),
            "standard": rate("The completeness standard (default 0.9, NHS Talking "
                             "Therapies).", nullable=False),
            "meets_standard": flag("share_paired >= standard (blank when suppressed).",
                                   nullable=True),
            "suppressed": flag(SUPPRESSED),
        }),
        "patient_flow": schema("patient_flow", (
            "Patients at each step from referral to follow-up (the flow figure)."), {
            "step": text("Step: `referred`, `started`, `finished_course`, "
                         "`completed_course`, `followed_up` (or trial steps)."),
            "patients": shared_count("Patients reaching the step."),
            "suppressed": flag(SUPPRESSED),
        }),
        "response_models": schema("response_models", (
            "Population-averaged logistic model (GEE, Liang and Zeger 1986; exchangeable "
            "working correlation within therapy groups, or therapists for individual "
            "patients; robust standard errors) of response in the main population on "
            "condition, format and covariates: odds ratios."), {
            "term": text("Model term (`Intercept`, `condition[adjustment]`, ...)."),
            "odds_ratio": number("exp(coefficient): the odds ratio of the term.", ge=0),
            "ci_low": number("Lower bound of the 95% interval of the odds ratio.", ge=0),
            "ci_high": number("Upper bound of the 95% interval of the odds ratio.", ge=0),
            "p_value": p_value(),
        }, [ordered("odds_ratio", "ci_low", "ci_high")]),
        "response_standardised": schema("response_standardised", (
            "Response rates by format standardised to the case mix of all patients "
            "(g-computation from the `response_models` GEE: everyone individual, everyone "
            "in a group) and their difference; intervals by the delta method with the "
            "robust covariance."), {
            "quantity": text("`rate_<format>` (standardised rate) or `risk_difference` "
                             "(group minus individual)."),
            "estimate": number("The standardised rate, or the risk difference.",
                               ge=-1, le=1),
            "ci_low": number(CI_LOW, ge=-1, le=1),
            "ci_high": number(CI_HIGH, ge=-1, le=1),
        }, [ordered("estimate", "ci_low", "ci_high")]),
    }


def patient_outcomes_contract() -> pa.DataFrameSchema:
    """``PatientOutcomes`` (per-patient outcomes) as written, every column described."""
    fixed = PatientOutcomes.to_schema()
    described = {
        "patient_id": PATIENT_ID,
        "site_id": "Site id from the patients table.",
        "therapist_id": "Therapist id (pseudonymised with `--pseudonymise-therapists`).",
        "group_id": "Therapy group id (group format), blank otherwise.",
        "condition": "Condition code from the patients table (built-in or declared by "
                     "the study config).",
        "format": "Treatment format (`individual`, `group`).",
        "problem_area": "IPT problem area (grief, role disputes, role transitions, "
                        "interpersonal deficits).",
        "sessions_scheduled": "Treatment sessions (session number >= 1) scheduled.",
        "sessions_attended": "Treatment sessions attended.",
        "sessions_did_not_attend": "Treatment sessions not attended (DNA).",
        "attendance_rate": "sessions_attended / sessions_scheduled.",
        "ended": "Treatment has ended: an end date and an end reason other than "
                 "`ongoing`.",
        "dropout": "Started, ended before the final phase without completing, and either "
                   "the end reason is `dropped_out` or a gap of more than "
                   "`populations.dropout_gap_weeks` (default 4) weeks between attended "
                   "sessions or before the end date.",
        "started": "At least one attended treatment session.",
        "finished_course": "Ended after at least `populations."
                           "finished_course_min_sessions` (default 2) attended treatment "
                           "sessions (NHS Talking Therapies).",
        "completers": "Started and reached the final phase (`populations."
                      "final_phase_start`) or attended at least `populations."
                      "completer_min_sessions` (default 12) treatment sessions.",
        "randomised": "Trial only: every patient (intention to treat).",
        "assessed": "Trial only: a post-baseline assessment of the primary instrument.",
        "caseness_at_start": "PHQ-9 >= 10 and/or GAD-7 >= 8 at baseline (blank: not "
                             "known).",
        "reliable_improvement": "Reliable improvement on PHQ-9 or GAD-7 and no reliable "
                                "deterioration on the other (blank: not known).",
        "reliable_deterioration": "Reliable deterioration on PHQ-9 or GAD-7 (blank: not "
                                  "known).",
        "recovery": "At caseness at the start and below caseness on both measures at the "
                    "end; blank for patients not at caseness at the start.",
        "reliable_recovery": "Recovery and reliable improvement.",
    }
    kinds = {"str": "text", "int64": "count", "float64": "rate", "bool": "flag",
             "boolean": "flag"}
    columns: dict[str, pa.Column] = {}
    for name, column in fixed.columns.items():
        # read back from CSV a yes/no column with gaps is object: coerce to nullable boolean
        dtype = "boolean" if str(column.dtype) == "bool" else column.dtype
        # a study may declare its own conditions (the input contract is extended per study)
        checks = [] if name == "condition" else column.checks
        columns[name] = pa.Column(
            dtype, checks, nullable=column.nullable, required=column.required,
            unique=column.unique, description=described[name],
            metadata={"kind": kinds.get(str(column.dtype), "text")})
    columns.update(_patient_covariates())
    columns.update(_per_instrument())
    return schema("patient_outcomes", (
        "One row per patient: attendance, populations and outcomes. Not suppressed "
        "(patient-level, for the service). Outcome columns are yes/no with blank = not "
        "known, never False. Besides the columns below it carries the study's own "
        "patient covariates under their (formula-safe) names."),
        columns, fixed.checks, strict=False)


def _patient_covariates() -> dict[str, pa.Column]:
    return {
        "secondary_problem_area": text("Second IPT problem area, if recorded.",
                                       nullable=True, required=False),
        "end_reason": text("Why treatment ended (from the patients table).", nullable=True,
                           required=False),
        "age": number("Age in years at referral.", nullable=True, required=False, ge=0),
        "sex": text("Sex as recorded (normalised codes).", nullable=True, required=False),
        "maintenance": flag("Offered maintenance IPT after the acute phase.",
                            nullable=True, required=False),
    }


OUTCOME_MEANINGS: Final = {
    "baseline": ("number", "Score at session 0 if scored, else the first scored treatment "
                           "session (instrument's units)."),
    "endpoint": ("number", "Last score at a treatment session after the baseline (or at "
                           "a given week)."),
    "change": ("number", "endpoint - baseline (points)."),
    "pct_change": ("number", "100 * change / baseline, percent (blank when the baseline is "
                             "0)."),
    "response": ("flag", "Fall of at least the configured share (default 50%) from "
                         "baseline (blank: not known or not defined)."),
    "remission": ("flag", "Endpoint below (PHQ-9 < 5) or at most (HAM-D-17 <= 7) the "
                          "instrument's threshold."),
    "reliable_improvement": ("flag", "Fall of at least the reliable change (points, or "
                                     "Jacobson-Truax RCI < -1.96)."),
    "reliable_deterioration": ("flag", "Rise of at least the reliable change."),
    "jt_class": ("text", "Jacobson-Truax class: recovered, improved, unchanged or "
                         "deteriorated."),
}


def _per_instrument() -> dict[str, pa.Column]:
    """``<instrument>_<outcome>`` for every instrument present, as regex columns."""
    columns: dict[str, pa.Column] = {}
    for outcome, (kind, meaning) in OUTCOME_MEANINGS.items():
        pattern = rf"^[a-z][a-z0-9_]*(?<!_pct)(?<!^reliable)_{outcome}$"
        description = f"Per instrument (`<instrument>_{outcome}`): {meaning}"
        if kind == "flag":
            columns[pattern] = flag(description, nullable=True, name=pattern)
        elif kind == "text":
            columns[pattern] = text(description, nullable=True, isin=JT_CLASSES,
                                    name=pattern)
        else:
            columns[pattern] = number(description, name=pattern)
    return columns
