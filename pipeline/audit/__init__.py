"""Audit: sites and therapists compared with each other and with benchmarks.

Modules
-------
``review``
    ``review(...)`` runs the audit: ``AuditOptions`` in, ``AuditResult`` (tables, messages,
    records and the funnel figures' data, ``funnel_data``) out. Draws nothing: the figures
    are drawn by ``pipeline.report.audit_plots.stage_figures``.
``units``
    ``unit_table``: per-unit counts, rates with Wilson intervals, effect sizes with a
    bootstrap interval (``bootstrap_effect_size``).
``case_mix``
    ``case_mix_expected`` (logistic model of recovery), ``poisson_ratio_interval`` (O/E).
``suppression``
    ``suppress_levels``: primary and secondary suppression of the per-unit tables.
``verdicts``
    Funnel placement and outliers, ``benchmarks`` (recovery target, effect-size bands).
``not_on_track``
    ``RecoveryCurve``, ``fit_recovery_curve`` (through ``pipeline.trajectories.engines``),
    ``flag_not_on_track``, ``not_on_track``.
``funnels``
    Funnel-plot control limits with over-dispersion (Spiegelhalter 2005).
``columns``
    Labels, levels and the declared columns of the audit's tables (``unit_columns``).
"""
