"""Relapse: did the gains last? Survival after the acute course.

Stage functions only: tables, messages and analysis records, no files and no figures (the
figures are drawn from the returned tables by ``pipeline.report.relapse_plots``).

Modules
-------
``analysis``
    ``analyse(...)`` -> ``RelapseResult``: every relapse analysis at its own boundary.
``cohort``
    Who is at risk, from when, what counts as relapse: ``relapse_cohort``,
    ``relapse_visits``, ``shared_cohort``, ``instrument_and_threshold``.
``strata``
    The groups reported on: ``strata``, ``stratum_labels``, ``ordered_levels``.
``kaplan_meier``
    Relapse-free survival: ``kaplan_meier_table``, ``at_risk_table``, ``logrank_table``,
    ``rmst_table`` and their analyses ``km_analysis``, ``logrank_analysis``,
    ``rmst_analysis``.
``competing``
    Aalen-Johansen cumulative incidence: ``cumulative_incidence_table``, ``cif_analysis``.
``cox``
    Cox model terms, design and fit with robust variance: ``CoxSpec``, ``CoxFit``,
    ``cox_design``, ``fit_cox``.
``residuals``
    Efron score and Schoenfeld residuals in ``O(n log n)``: ``efron_score_residuals``,
    ``efron_schoenfeld_residuals``.
``ph_test``
    Grambsch-Therneau proportional-hazards test: ``ph_test_table``.
``cox_selection``
    Which Cox model is reported: ``cox_terms``, ``cox_analysis``.
``interval``
    Interval-censored estimates: the Turnbull NPMLE and a Weibull AFT model.
"""
