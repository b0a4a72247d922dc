"""Output contracts: a pandera schema for every table the pipeline writes.

Each CSV under ``OUT/tables``, ``OUT/audit`` and ``OUT/validation`` has one schema here,
for the *shared* version as written (pseudonymised ids, small counts suppressed). Tables
whose file names vary (``mixed_<model>_fixed``, a study's custom models, the quarantine of
each input table) have one schema per kind, matched by a name pattern
(:data:`OUTPUT_PATTERNS`); :func:`contract_for` finds the schema of a file name.

How a table is read before it is validated
    With pandas' defaults and only the empty cell as missing::

        pd.read_csv(path, keep_default_na=False, na_values=[""])

    (what a downstream user is most likely to do; ``NA`` stays a code, not a gap). The
    schemas coerce (``coerce=True``): ``1`` read into a text column becomes ``"1"``, a
    whole-number column read as float because of a gap becomes ``Int64``, a yes/no column
    with gaps becomes the nullable ``boolean``.

Suppressed counts
    In the tables protected by ``pipeline.sharing`` a count of 1-4 is written ``<5`` and a
    count hidden to protect another is written ``*``. Such columns hold whole numbers *or*
    those labels, so they carry no dtype (a column with no hidden cell reads as integers,
    one with a hidden cell as text) and an element check instead
    (:func:`is_shared_count`): a non-negative whole number, ``<N`` or ``*``. Rates,
    intervals and means of a row with a hidden count are blank.

Intervals
    Where an estimate and its interval bounds are all present, ``low <= estimate <= high``
    up to a relative tolerance of 1e-9 (:func:`ordered`); where only the bounds are
    present (a Kaplan-Meier median not reached, a Turnbull estimate not unique),
    ``low <= high``.

Columns are described once, in the schema (``description``); the data dictionary's
"Output tables" section is generated from these schemas (``data_schemas.dictionary``).
The pipeline does not validate its outputs at write time (too slow at scale): the tests
(``tests/test_output_contracts.py``) run the pipeline and check every file it writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
import pandera.pandas as pa

from data_schemas import CONTRACTS
from data_schemas.outcomes import JT_CLASSES, POPULATIONS, PatientOutcomes
from data_schemas.vocab import FORMATS

#: A hidden count: ``<5`` (a count of 1-4; the threshold is configurable) or ``*``
#: (complementary suppression: 5 or more, hidden so that another cannot be worked back).
SUPPRESSION_LABEL: Final = re.compile(r"<\d+|\*")
#: Relative tolerance of the interval-order checks.
TOLERANCE: Final = 1e-9
#: What the dictionary prints as a column's type, by the ``kind`` in its metadata.
KINDS: Final = {
    "text": "text",
    "count": "whole number >= 0",
    "shared_count": "whole number >= 0, or `<5` / `*` when suppressed",
    "integer": "whole number",
    "rate": "proportion in [0, 1]",
    "number": "number",
    "flag": "True / False",
    "p_value": "p-value in [0, 1]",
}


# --------------------------------------------------------------------------------------
# Column helpers
# --------------------------------------------------------------------------------------


def is_shared_count(value: Any) -> bool:
    """A non-negative whole number, or a suppression label (``<5``, ``*``)."""
    if isinstance(value, str):
        text = value.strip()
        return text.isdigit() or SUPPRESSION_LABEL.fullmatch(text) is not None
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | np.integer):
        return int(value) >= 0
    if isinstance(value, float | np.floating):
        return bool(np.isfinite(value)) and float(value) >= 0 and float(value).is_integer()
    return False


def _column(dtype: Any, kind: str, description: str, *, nullable: bool, required: bool,
            checks: Sequence[pa.Check] = (), unique: bool = False,
            name: str | None = None) -> pa.Column:
    regex = name is not None
    return pa.Column(dtype, list(checks), nullable=nullable, required=required and not regex,
                     unique=unique, description=description, metadata={"kind": kind},
                     regex=regex, name=name)


def text(description: str, *, nullable: bool = False, required: bool = True,
         isin: Sequence[str] | None = None, unique: bool = False,
         name: str | None = None) -> pa.Column:
    """A text column (codes, labels, ids); ``isin`` restricts it to a vocabulary."""
    checks = [pa.Check.isin(list(isin))] if isin is not None else []
    return _column(str, "text", description, nullable=nullable, required=required,
                   checks=checks, unique=unique, name=name)


def count(description: str, *, nullable: bool = False, required: bool = True,
          name: str | None = None) -> pa.Column:
    """A whole number >= 0 that is never suppressed."""
    return _column("Int64", "count", description, nullable=nullable, required=required,
                   checks=[pa.Check.ge(0)], name=name)


def integer(description: str, *, nullable: bool = False, required: bool = True) -> pa.Column:
    """A whole number of either sign (a session number, a week)."""
    return _column("Int64", "integer", description, nullable=nullable, required=required)


def shared_count(description: str, *, nullable: bool = False, required: bool = True,
                 name: str | None = None) -> pa.Column:
    """A count of a protected table: a whole number >= 0, or ``<5`` / ``*`` when hidden."""
    check = pa.Check(is_shared_count, element_wise=True, name="count_or_suppressed",
                     error="a whole number >= 0, or <5 / * when suppressed")
    return _column(None, "shared_count", description, nullable=nullable, required=required,
                   checks=[check], name=name)


def rate(description: str, *, nullable: bool = True, required: bool = True,
         name: str | None = None) -> pa.Column:
    """A proportion in [0, 1]; blank where undefined or suppressed."""
    return _column(float, "rate", description, nullable=nullable, required=required,
                   checks=[pa.Check.in_range(0.0, 1.0)], name=name)


def number(description: str, *, nullable: bool = True, required: bool = True,
           ge: float | None = None, le: float | None = None,
           name: str | None = None) -> pa.Column:
    """A real number, optionally bounded; blank where not estimable or suppressed."""
    checks = ([pa.Check.ge(ge)] if ge is not None else []) + (
        [pa.Check.le(le)] if le is not None else [])
    return _column(float, "number", description, nullable=nullable, required=required,
                   checks=checks, name=name)


def flag(description: str, *, nullable: bool = False, required: bool = True,
         name: str | None = None) -> pa.Column:
    """A yes/no column written as ``True`` / ``False`` (blank = not known, if nullable)."""
    return _column("boolean", "flag", description, nullable=nullable, required=required,
                   name=name)


def p_value(description: str = "Two-sided p-value of the Wald test of the row's estimate "
                               "(blank when not estimable).") -> pa.Column:
    """A p-value in [0, 1]."""
    return _column(float, "p_value", description, nullable=True, required=True,
                   checks=[pa.Check.in_range(0.0, 1.0)])


def ordered(estimate: str | None, low: str, high: str) -> pa.Check:
    """``low <= estimate <= high`` where present (tolerance :data:`TOLERANCE`).

    Column names may be regular expressions with one group (``ci_low_(\\d+w)``): each
    matching column is paired with the columns of the same group value.
    """
    def check(frame: pd.DataFrame) -> pd.Series:
        ok = pd.Series(True, index=frame.index)
        for est, lo, hi in _triples(frame, estimate, low, high):
            ok &= _within(frame, est, lo, hi)
        return ok

    label = f"{low} <= {estimate} <= {high}" if estimate else f"{low} <= {high}"
    return pa.Check(check, name=f"ordered({label})", error=f"interval out of order: {label}")


def _triples(frame: pd.DataFrame, estimate: str | None, low: str, high: str
             ) -> list[tuple[str | None, str, str]]:
    if re.escape(low) == low:
        present = low in frame.columns and high in frame.columns
        return [(estimate, low, high)] if present else []
    found = []
    for column in frame.columns:
        match = re.fullmatch(low, str(column))
        if match is None:
            continue
        key = match.group(1)
        hi = high.replace("(\\d+w)", key)
        est = estimate.replace("(\\d+w)", key) if estimate else None
        if hi in frame.columns:
            found.append((est, str(column), hi))
    return found


def _numbers(frame: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None or column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _within(frame: pd.DataFrame, estimate: str | None, low: str, high: str) -> pd.Series:
    est, lo, hi = _numbers(frame, estimate), _numbers(frame, low), _numbers(frame, high)
    def le(a: pd.Series, b: pd.Series) -> pd.Series:
        slack = TOLERANCE * np.maximum(1.0, np.maximum(a.abs(), b.abs()))
        return a.isna() | b.isna() | (a <= b + slack)
    return le(lo, est) & le(est, hi) & le(lo, hi)


def schema(name: str, doc: str, columns: dict[str, pa.Column],
           checks: Sequence[pa.Check] = (), *, strict: bool = True) -> pa.DataFrameSchema:
    """An output schema: coerced as described in the module docstring; ``strict`` means
    no column outside the contract (regex columns included)."""
    return pa.DataFrameSchema(columns, checks=list(checks), name=name, description=doc,
                              coerce=True, strict=strict)


# --------------------------------------------------------------------------------------
# Shared column descriptions
# --------------------------------------------------------------------------------------

CONDITION = "Condition code (`data_schemas.vocab.CONDITIONS` or the study's own), or `all` " \
            "for the margin over conditions."
FORMAT = "Treatment format (`individual`, `group`), or `all` for the margin over formats."
SUPPRESSED = "True when a count of this row is hidden (`<5` or `*`) and its rates, " \
             "intervals and means are blanked (`pipeline.sharing`)."
CI_LOW = "Lower bound of the 95% confidence interval of the estimate."
CI_HIGH = "Upper bound of the 95% confidence interval of the estimate."
MODEL = "Name of the mixed model (`growth`, `phases`, `problem_area`, `completers`, " \
        "`pattern_mixture`, or a custom model's `name` from the study config)."
TIME_SCALE = "Time variable of the model: `weeks` since the first treatment session or " \
             "`sessions` (session number), from `trajectories.time_scale`."
STRATUM_VARIABLE = "Variable defining the stratum (`all`, `condition`, `format`, " \
                   "`maintenance`, ...; from `relapse.strata`)."
STRATUM = "Level of the stratum variable (`all` for the whole cohort; `missing` for " \
          "patients with no value)."
UNIT = "The site or therapist id (pseudonymised with `--pseudonymise-therapists`), or " \
       "`all` for the whole service."
LEVEL = "Unit level: `site` or `therapist`."
SLOPE_FORMAT = "Treatment format (`individual`, `group`), or `group - individual` for the " \
               "difference between the formats' slopes."
PATIENT_ID = "Keyed pseudonym of the patient id (HMAC-SHA-256, `p_` + 16 hex digits), or " \
             "the real id with `--keep-ids`."


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


def _outcome_tables() -> dict[str, pa.DataFrameSchema]:
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


def _patient_outcomes() -> pa.DataFrameSchema:
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


# --------------------------------------------------------------------------------------
# tables/: trajectories (mixed models)
# --------------------------------------------------------------------------------------


def _model_estimates(what: str) -> dict[str, pa.Column]:
    return {
        "estimate": number(f"{what}, in the instrument's points."),
        "std_error": number("Standard error of the estimate.", ge=0),
        "ci_low": number(CI_LOW + " (Wald)."),
        "ci_high": number(CI_HIGH + " (Wald)."),
    }


def _mixed_tables() -> dict[str, pa.DataFrameSchema]:
    wald = [ordered("estimate", "ci_low", "ci_high")]
    return {
        "mixed_patient_fitted": schema("mixed_patient_fitted", (
            "Each scored session of the growth model's data with its fitted values "
            "(patient-level, not suppressed)."), {
            "patient_id": text(PATIENT_ID),
            "condition": text("Condition code."),
            "format": text("Treatment format.", isin=FORMATS),
            "session_number": integer("Session number (0 = assessment/baseline)."),
            "weeks": number("Weeks since the first treatment session."),
            "time": number("The model's time variable (weeks or sessions)."),
            "score": number("Observed score of the primary instrument."),
            "fitted": number("Fitted value including the patient's random effects."),
            "fitted_fixed": number("Fitted value from the fixed effects only."),
            "residual": number("score - fitted."),
        }),
        "mixed_trajectories": schema("mixed_trajectories", (
            "Model-predicted mean score by condition and format at each time point."), {
            "model": text(MODEL), "condition": text("Condition code."),
            "format": text("Treatment format.", isin=FORMATS),
            "time_scale": text(TIME_SCALE),
            "time_point": number("Time point on the time scale (week or session)."),
            "time": number("Value of the model's time variable at this point."),
            **_model_estimates("Predicted mean score (fixed effects)"),
        }, wald),
        "mixed_slopes": schema("mixed_slopes", (
            "Rate of change of the score per unit of time, by format."), {
            "model": text(MODEL), "time_scale": text(TIME_SCALE),
            "format": text(SLOPE_FORMAT),
            **_model_estimates("Slope (score change per week or per session)"),
            "p_value": p_value(),
        }, wald),
        "mixed_phase_slopes": schema("mixed_phase_slopes", (
            "Slopes per IPT phase (initial, middle, final sessions) by format, from the "
            "piecewise `phases` model."), {
            "model": text(MODEL), "phase": text("Phase term (`phase_initial`, "
                                                "`phase_middle`, `phase_final`)."),
            "format": text(SLOPE_FORMAT),
            **_model_estimates("Slope within the phase (score change per week)"),
            "p_value": p_value(),
        }, wald),
        "mixed_format_difference": schema("mixed_format_difference", (
            "Difference between formats in predicted score at the end of treatment, with "
            "a standardised effect size."), {
            "model": text(MODEL), "instrument": text("Instrument modelled."),
            "time_scale": text(TIME_SCALE),
            "time_point": number("Time point of the comparison (end of treatment)."),
            "contrast": text("The contrast, e.g. `group - individual`."),
            **_model_estimates("Difference in predicted mean score"),
            "p_value": p_value(),
            "baseline_sd": number("Standard deviation of baseline scores (the effect "
                                  "size's denominator).", ge=0),
            "effect_size": number("estimate / baseline_sd (Cohen's d-type effect size)."),
            "effect_size_ci_low": number("Lower bound of the effect size's 95% interval."),
            "effect_size_ci_high": number("Upper bound of the effect size's 95% interval."),
        }, [*wald, ordered("effect_size", "effect_size_ci_low", "effect_size_ci_high")]),
        "mixed_observed_means": schema("mixed_observed_means", (
            "Observed mean score of the primary instrument by condition, format and time "
            "point (each patient counted once per time point), drawn beside the model "
            "lines; a count below `suppress_below` is hidden with its statistics."), {
            "condition": text("Condition code."),
            "format": text("Treatment format.", isin=FORMATS),
            "time_scale": text(TIME_SCALE),
            "time_point": number("Time point: whole weeks since the first treatment session "
                                 "(negative: assessment before it), or the session number."),
            "n": shared_count("Patients with a score at this time point (`<5` when small)."),
            "mean": number("Mean score (blank when suppressed)."),
            "sd": number("Standard deviation of the scores (blank for one patient or when "
                         "suppressed).", ge=0),
            "ci_low": number("Lower bound of the mean's 95% t interval."),
            "ci_high": number("Upper bound of the mean's 95% t interval."),
            "suppressed": flag(SUPPRESSED),
        }, [ordered("mean", "ci_low", "ci_high")]),
        "mixed_model_comparison": schema("mixed_model_comparison", (
            "One row per fitted mixed model, in the config's order, with its fit "
            "statistics; AIC and BIC compare only models with the same "
            "`comparable_group`."), {
            "model": text(MODEL, unique=True),
            "method": text("Estimation method.", isin=("REML", "ML")),
            "n_obs": count("Scores (observations) in the fit."),
            "n_patients": count("Patients in the fit."),
            "loglik": number("Log-likelihood (restricted for REML) at the estimates."),
            "aic": number("Akaike information criterion: -2 loglik + 2 parameters."),
            "bic": number("Bayesian information criterion: -2 loglik + log(n_obs) "
                          "parameters."),
            "converged": flag("The optimiser converged (and a second optimiser agreed)."),
            "singular": flag("The fit is on the boundary (a variance at 0 or a correlation "
                             "at +-1), as lme4's isSingular.", nullable=True),
            "convergence_note": text("The engine's message when it did not converge, else "
                                     "the optimiser and its iterations.", nullable=True),
            "comparable_group": text("A letter shared by the models whose AIC and BIC are "
                                     "comparable (ML fits of the same rows, or REML fits "
                                     "with the same fixed effects on the same rows); blank "
                                     "when comparable with none.", nullable=True),
            "comparable_with": text("The other models of the same comparable group.",
                                    nullable=True),
            "formula": text("The model in lme4 notation, as fitted."),
        }),
    }


MIXED_PATTERN: Final = r"mixed_(?P<model>[a-z0-9_]+)_{kind}"


def _mixed_model_tables() -> dict[str, pa.DataFrameSchema]:
    """One schema per kind of per-model table, keyed by a name pattern."""
    return {
        MIXED_PATTERN.format(kind="fixed"): schema("mixed_<model>_fixed", (
            "Fixed effects of one mixed model (built-in or custom)."), {
            "term": text("Fixed-effect term as in the formula (`(Intercept)`, `weeks`, "
                         "`weeks:format[T.group]`, ...)."),
            **_model_estimates("Coefficient"),
            "p_value": p_value(),
        }, [ordered("estimate", "ci_low", "ci_high")]),
        MIXED_PATTERN.format(kind="variance"): schema("mixed_<model>_variance", (
            "Variance components of one mixed model: a row per random term, covariance, "
            "the residual, and the intraclass correlation per grouping level."), {
            "level": text("Grouping factor (`patient_id`, `therapist_id`, ...) or "
                          "`Residual`."),
            "term": text("Random term (`(Intercept)`, `weeks`), `cor(a, b)` for a "
                         "covariance, `ICC`, or blank for the residual.", nullable=True),
            "variance": number("Variance of the term (covariance for `cor(...)` rows)."),
            "sd": number("Standard deviation of the term.", ge=0),
            "correlation": number("Correlation of the two terms (`cor(...)` rows); "
                                  "+-1 (to rounding, 1e-9) at a boundary fit.",
                                  ge=-1 - 1e-9, le=1 + 1e-9),
            "icc": rate("Intraclass correlation of the level (`ICC` rows): its intercept "
                        "variance / total."),
        }),
        MIXED_PATTERN.format(kind="diagnostics"): schema("mixed_<model>_diagnostics", (
            "Fit diagnostics of one mixed model: engine, convergence, boundary fit, "
            "likelihood and sizes."), {
            "engine": text("Engine that fitted the model (`mixedlm`, `statsmodels`, ...)."),
            "method": text("`REML` or `ML`."),
            "converged": flag("The optimiser converged."),
            "singular": flag("Boundary (singular) fit: a variance at zero or a "
                             "correlation at +-1, as lme4 reports."),
            "optimizer": text("Optimiser used.", nullable=True),
            "iterations": count("Optimiser iterations.", nullable=True),
            "loglik": number("Log-likelihood (REML or ML) at the optimum."),
            "aic": number("Akaike information criterion."),
            "bic": number("Bayesian information criterion."),
            "n_obs": count("Scores used."),
            "n_patients": count("Patients with scores used."),
            "n_groups": text("Levels per grouping factor, `factor=levels; ...`."),
            "warnings": text("Convergence and boundary warnings, `|`-separated.",
                             nullable=True),
            "model": text(MODEL),
            "formula": text("The model formula (lme4 syntax)."),
        }),
    }


# --------------------------------------------------------------------------------------
# tables/: relapse
# --------------------------------------------------------------------------------------

N_COHORT = "Patients in the stratum's relapse cohort."
EVENTS = "Relapses in the stratum."


def _relapse_tables() -> dict[str, pa.DataFrameSchema]:
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


def _audit_tables() -> dict[str, pa.DataFrameSchema]:
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


# --------------------------------------------------------------------------------------
# tables/analyses.csv and validation/
# --------------------------------------------------------------------------------------


def _run_tables() -> dict[str, pa.DataFrameSchema]:
    return {
        "analyses": schema("analyses", (
            "Every analysis of the run and what became of it."), {
            "stage": text("Stage (`derive`, `outcomes`, `models`, `relapse`, `audit`, "
                          "`report`)."),
            "analysis": text("Analysis name."),
            "status": text("`done`, `not estimable` or `failed`.",
                           isin=["done", "not estimable", "failed"]),
            "reason": text("Why it is not estimable or failed (blank when done).",
                           nullable=True),
            "remedy": text("What would make it estimable (blank when done).",
                           nullable=True),
        }),
        "failure_cases": schema("failure_cases", (
            "Every value that failed the input contract (pandera, lazy)."), {
            "table": text("Input table (`patients`, `sessions`, `followups`)."),
            "line": count("Source line in the file (header = 1); blank for a whole-table "
                          "failure.", nullable=True),
            "column": text("Column of the failing value (blank for a row rule).",
                           nullable=True),
            "value": text("The failing value (ids pseudonymised).", nullable=True),
            "check": text("Name of the failed check or rule."),
            "message": text("The failure in words (never holds an id)."),
        }),
        r"quarantine/(?P<table>patients|sessions|followups)": schema("quarantine/<table>", (
            "Rows set aside by validation, in the input contract's columns (patient ids "
            "pseudonymised), with the source line and the reason."), {
            **_quarantine_columns(),
            "line": count("Source line in the file (header = 1)."),
            "reason": text("Why the row was quarantined."),
        }, strict=False),
    }


def _quarantine_columns() -> dict[str, pa.Column]:
    """Every input-contract column of any input table, as optional text."""
    columns: dict[str, pa.Column] = {}
    for contract in CONTRACTS.values():
        for name, column in contract.schema().columns.items():
            if name not in columns:
                description = column.description or f"As in the input contract " \
                                                    f"(`{contract.name}.{name}`)."
                columns[name] = text(f"Input value as read: {description}", nullable=True,
                                     required=False)
    return columns


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def _registry() -> dict[str, pa.DataFrameSchema]:
    return {
        **_run_tables(), "patient_outcomes": _patient_outcomes(), **_outcome_tables(),
        **_mixed_tables(), **_mixed_model_tables(), **_relapse_tables(), **_audit_tables(),
    }


#: Table name (file stem; ``quarantine/<table>`` under ``validation``) or name pattern
#: (a regular expression, matched in full) -> its contract.
OUTPUT_CONTRACTS: Final[dict[str, pa.DataFrameSchema]] = _registry()
#: The keys of :data:`OUTPUT_CONTRACTS` that are patterns rather than names.
OUTPUT_PATTERNS: Final = tuple(k for k in OUTPUT_CONTRACTS if "(" in k)
AUDIT_TABLES: Final = ("audit_sites", "audit_therapists", "audit_outliers", "audit_benchmarks",
                       "audit_funnel_summary", "not_on_track")


def folder_of(key: str) -> str:
    """The folder under ``--out`` where the table of a registry key is written."""
    if key in AUDIT_TABLES:
        return "audit"
    return "validation" if key == "failure_cases" or key.startswith("quarantine") \
        else "tables"


def contract_for(name: str) -> pa.DataFrameSchema | None:
    """The contract of an output table, by file stem (``response_rates``,
    ``mixed_btheb_slope_fixed``, ``quarantine/sessions``); ``None`` when it has none.

    Literal names win over patterns, so ``mixed_patient_fitted`` is never read as the
    table of a model called ``patient``.
    """
    if name in OUTPUT_CONTRACTS and name not in OUTPUT_PATTERNS:
        return OUTPUT_CONTRACTS[name]
    for pattern in OUTPUT_PATTERNS:
        if re.fullmatch(pattern, name):
            return OUTPUT_CONTRACTS[pattern]
    return None


def undocumented_columns() -> list[str]:
    """``table.column`` of every contract column without a description (should be none)."""
    return [f"{table}.{column}" for table, contract in OUTPUT_CONTRACTS.items()
            for column, spec in contract.columns.items() if not spec.description]


#: How a regular-expression column name is shown to a reader, fragment by fragment.
_SHOWN: Final = (
    (r"[a-z][a-z0-9_]*(?<!_pct)(?<!^reliable)_", "<instrument>_"),
    (r"[a-z][a-z0-9_]*_", "<instrument>_"), (r"residual_[a-z0-9_]+", "residual_<instrument>"),
    (r"\d+w", "<weeks>w"), ("^", ""), ("$", ""),
)


def display_name(name: str, column: pa.Column) -> str:
    """A column's name as a reader sees it: ``<instrument>_baseline`` for a pattern."""
    if not column.regex:
        return name
    for pattern, shown in _SHOWN:
        name = name.replace(pattern, shown)
    return name
