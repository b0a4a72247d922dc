"""Output contracts of the trajectories stage: mixed-model estimates, fitted values, means."""

from __future__ import annotations

from typing import Final

import pandera.pandas as pa

from data_schemas.outputs.columns import (
    CI_HIGH,
    CI_LOW,
    MODEL,
    PATIENT_ID,
    SLOPE_FORMAT,
    SUPPRESSED,
    TIME_SCALE,
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
from data_schemas.vocab import FORMATS

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


def mixed_contracts() -> dict[str, pa.DataFrameSchema]:
    """The contracts of the mixed-model tables with fixed names, by table name."""
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
                                     "when comparable with none, or when the fit did not "
                                     "converge.", nullable=True),
            "comparable_with": text("The other models of the same comparable group.",
                                    nullable=True),
            "formula": text("The model in lme4 notation, as fitted."),
        }),
    }


MIXED_PATTERN: Final = r"mixed_(?P<model>[a-z0-9_]+)_{kind}"


def mixed_model_contracts() -> dict[str, pa.DataFrameSchema]:
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
