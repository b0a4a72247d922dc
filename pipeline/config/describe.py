"""What each config key means and where its default comes from.

``SOURCES`` maps a key to the source of its default (printed in the report's methods section);
``EXAMPLE`` is the commented example config that ``ipt-outcomes config --example`` prints.
"""

from __future__ import annotations

from data_schemas.instruments import CATALOGUE, THRESHOLDS


def _catalogue_sources() -> dict[str, str]:
    """``instruments.<name>.<value>`` -> source, for every value the catalogue sets."""
    sources: dict[str, str] = {}
    for name, instrument in CATALOGUE.items():
        for key in (*THRESHOLDS, "jt_cutoff"):
            value = getattr(instrument, key)
            if value is not None and not (key == "jt_cutoff" and value == "caseness"):
                sources[f"instruments.{name}.{key}"] = instrument.sources[key]
    return sources


SOURCES: dict[str, str] = {
    **_catalogue_sources(),
    "populations.finished_course_min_sessions": "2 sessions: NHS Talking Therapies",
    "relapse.at_risk": "relapse after remission or response: Frank et al. 1991; after the "
                       "completed acute course: maintenance IPT trials, Frank et al. 1990",
    "populations.final_phase_start": "IPT final phase from session 14 of 12-16",
    "populations.definition": "trial: intention to treat = all randomised, analysed as "
                              "allocated (CONSORT 2010 item 16; ICH E9 1998)",
    "trajectories.max_patients": "computational: 250,000 patients fit in about 4 GB "
                                 "(docs/SCALING.md); the sample is stated in the report",
    "baseline_rule": "first score (assessment): NHS Talking Therapies",
    "endpoint.rule": "last score in treatment: NHS Talking Therapies",
    "suppress_below": "counts 1-4 shown as <5: NHS small-number disclosure control",
    "audit.recovery_target": "50% recovery: NHS Talking Therapies national standard",
    "audit.effect_size_bands": "pre-post effect size bands PHQ-9 0.91/0.73/0.46, GAD-7 "
                               "1.02/0.78/0.52: Delgadillo et al. 2014",
    "audit.completeness_standard": "90% paired scores: NHS Talking Therapies data standard",
    "audit.funnel_levels": "95% and 99.8% control limits: Spiegelhalter 2005",
    "audit.winsorise": "10% Winsorised z-scores for over-dispersion: Spiegelhalter 2005",
    "audit.prediction_level": "90% prediction band for not-on-track: Lutz et al. 1999",
}


EXAMPLE = """\
# IPT outcomes: study configuration. Every key is optional; the values shown are the
# defaults, each with its source. Unknown keys are errors.

primary_instrument: phq9            # any instrument of the catalogue or declared below
baseline_rule: assessment_else_first  # session 0 if scored, else the first treatment session
                                    # (first_treatment: ignore session 0)
endpoint:
  rule: last                        # last score during treatment (NHS Talking Therapies)
  week: null                        # with rule: week, the score nearest this week...
  window_weeks: 2.0                 # ...within this many weeks
populations:
  definition: service               # service: main population finished_course (NHS TT);
                                    # trial: every patient is randomised; main population
                                    # randomised (ITT, CONSORT 2010), also assessed (a
                                    # post-baseline score on the primary instrument)
  finished_course_min_sessions: 2   # ended and >= 2 attended treatment sessions (NHS TT)
  final_phase_start: 14             # IPT final phase (sessions 14-16 of a 12-16 course)
  completer_min_sessions: 12        # completer: attended the final phase or >= 12 sessions
  dropout_gap_weeks: 4.0            # dropout: ended before the final phase, dropped_out or a
                                    # gap of more than this many weeks before the end
paired_instruments: [phq9, gad7]    # recovery and reliable improvement (NHS TT)
conditions: []                      # condition codes beyond the built-in ones, e.g.
                                    # [social_anxiety, ptsd] (lower case, underscores)
instruments:                        # the catalogue (data_schemas/instruments.csv: phq9, gad7,
                                    # hamd17, bdi2, madrs, qids_sr16, hama, epds, wsas, core10,
                                    # pdss, spin, pcl5, ocir, hai, iesr, mi) with its published
                                    # values; give a key to override it. An empty threshold
                                    # means the outcome is not defined (no rate is reported).
  phq9:
    caseness: 10                    # >= 10 (Kroenke et al. 2001; NHS TT)
    response_reduction: 0.5         # >= 50% fall from baseline (Frank et al. 1991)
    remission_below: 5              # < 5 (Kroenke et al. 2001)
    reliable_change: 6              # >= 6 points (NHS TT)
  gad7:
    caseness: 8                     # >= 8 (NHS TT)
    reliable_change: 4              # >= 4 points (NHS TT)
  hamd17:
    response_reduction: 0.5         # >= 50% fall (Frank et al. 1991)
    remission_at_most: 7            # <= 7 (Frank et al. 1991)
  bdi2:
    caseness: 14                    # >= 14, mild or worse (Beck, Steer & Brown 1996)
    response_reduction: 0.5         # >= 50% fall (Frank et al. 1991; Riedel et al. 2010)
    remission_at_most: 13           # <= 13, minimal range (Beck et al. 1996; Riedel 2010)
    reliability: 0.92               # Jacobson-Truax RCI: r (Beck et al. 1996, outpatients)
    sd_pre: 12.75                   # SD of pre-treatment scores (Beck et al. 1996)
    clinical_mean: 22.45            # outpatients (Beck et al. 1996)
    clinical_sd: 12.75
    functional_mean: 12.56          # college students (Beck et al. 1996)
    functional_sd: 9.93
    jt_cutoff: c                    # a: 2 SD (clinical) beyond the clinical mean;
                                    # b: 2 SD (functional) within the functional mean;
                                    # c: SD-weighted midpoint; caseness: below caseness
  # madrs: {response_reduction: 0.5, remission_below: 10}   # Hawley et al. 2002
  # core10: {caseness: 11, reliable_change: 6}              # Barkham et al. 2013
  # A study's own scale (a column `wellbeing` in sessions), declared here:
  # wellbeing:
  #   label: Wellbeing scale
  #   min: 14                       # required
  #   max: 70                       # required
  #   direction: higher_is_better   # required: lower_is_better | higher_is_better
  #   whole: true                   # optional (default true)
  #   caseness: 40                  # optional; at or below this is caseness here
  #   reliable_change: 8            # points, or reliability + sd_pre for the JT RCI
comparison:
  outcome: response                 # of the primary instrument, logistic GEE
  cluster: auto                     # auto: therapy group for group IPT, else therapist
  covariates: [condition, format, problem_area]
  min_level_n: 20                   # rarer levels are pooled to avoid separation
benchmarks: null                    # CSV of condition,outcome,rate,source (null: the example)
suppress_below: 5                   # counts 1-4 shown as <5 in shared files
paper_size: A4                      # the printed report: A4 or letter
trajectories:                       # mixed-effects models of every observed score (MAR)
  instrument: null                  # null: the primary instrument
  time: weeks                       # weeks since start_date | session_number | log_weeks
  models: [growth, phases, problem_area, completers, pattern_mixture]
  engine: auto                      # auto | statsmodels | mixedlm
  contrast_weeks: [16.0]            # format difference (group - individual) reported at
                                    # these weeks (session numbers on the session scale),
                                    # e.g. [8, 16]: one row per model and week
  max_patients: 250000              # more patients: models fit a sample of this many
                                    # (null: all; ~12 GB per million patients, docs/SCALING.md)
  custom: []                        # your own lme4-style models, e.g.
  # - name: trial                   # a-z, 0-9 and _ (it names the output tables)
  #   formula: "bdi2 ~ baseline_bdi2 + weeks + arm + (1 | patient_id)"
  #                                 # column names, numbers, ~ + - * : / ^ ( ) | ||,
  #                                 # I(), log(), exp() (+ - * / ** inside), poly(x, 2), C(x)
  #   exclude_baseline: true        # the baseline score is a covariate, not an outcome row
  #   reml: true
relapse:
  at_risk: remission                # remission | response at the end of acute treatment
                                    # (Frank et al. 1991) | completed: completers ending
                                    # below the threshold (Frank et al. 1990)
  instrument: null                  # null: the primary instrument
  threshold: null                   # relapse score; null: the instrument's caseness
  cluster: none                     # none | therapist | group: cluster-robust Cox SEs
  horizon_weeks: [26.0, 52.0]       # relapse-free proportions reported at these weeks
  rmst_weeks: 52.0                  # restricted mean survival time horizon
  min_events_per_parameter: 10      # fewer events: a smaller Cox model
  min_at_risk: 10                   # KM curves in the figure stop where fewer are at risk
  clinician_relapse_exact: false    # true: a clinician-recorded relapse is dated at onset
                                    # (exact); false: found at that follow-up visit, so
                                    # interval-censored like score relapses (Turnbull, AFT)
audit:                              # clinic audit (privacy: --keep-ids, --no-suppress flags)
  recovery_target: 0.5              # NHS Talking Therapies national recovery standard
  effect_size_bands:                # instrument, high, average, poor (Delgadillo et al. 2014)
    - [phq9, 0.91, 0.73, 0.46]
    - [gad7, 1.02, 0.78, 0.52]
  completeness_standard: 0.9        # paired-score completeness standard (NHS TT)
  min_funnel_n: 5                   # smaller units are not placed on a funnel
  funnel_levels: [0.95, 0.998]      # control limits (Spiegelhalter 2005)
  winsorise: 0.1                    # over-dispersion from Winsorised z-scores
  overdispersion_alpha: 0.05
  adjust_overdispersion: true
  min_level_n: 20                   # rarer case-mix levels are pooled
  case_mix_covariates: [condition, format, problem_area, age]
  bootstrap_resamples: 500          # effect-size CIs (percentile bootstrap)
  seed: 20261122                    # every random draw of the audit
  planned_sessions: 16              # for sessions_remaining of not-on-track patients
  prediction_level: 0.9             # expected recovery band (Lutz et al. 1999)
  max_model_patients: 1500          # recovery-curve model fitted on a seeded subset
  instrument: null                  # null: the primary instrument
"""
