"""Trajectories: mixed-effects models of symptom scores over the weeks of treatment.

Stage code only: returns tables and records, never draws (the ``mixed_trajectories``
figure is drawn by :func:`pipeline.report.trajectory_plots.stage_figures`).

Modules
-------
``models``
    ``analyse(...)`` -> ``TrajectoryResult``: the configured models, each at its own
    boundary with one record; ``model_data`` (coded factors and centred covariates) and
    ``sample_patients`` (a fixed pseudo-random sample at registry scale).
``data``
    ``long_scores`` (one row per observed score) and ``add_phases`` (piecewise phase times).
``specs``
    ``model_spec`` (the built-in models, stated in its docstring) and ``random_structure``
    (the variance components the data support).
``fitting``
    ``fit_builtin``, ``fit_custom``: one model fitted through an engine, its rows and tables.
``estimates``
    ``trajectory_table``, ``slope_table``, ``format_difference``, ``phase_slopes``,
    ``patient_fitted``: quantities derived from a fit (linear combinations of the fixed
    effects, with Wald intervals).
``means``
    Observed means beside the model lines, and the comparison of models.
``formula``, ``formula_grammar``
    lme4-style formulas: the whitelist grammar (no code from a config) and the parser.
``engines``
    The fitting engines (statsmodels MixedLM and the faster lme4-style ``mixedlm``).
"""
