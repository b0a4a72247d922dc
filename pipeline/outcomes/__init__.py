"""Outcomes: what happened to each patient, and how often, by condition and format.

Modules
-------
``definitions``
    ``derive(patients, sessions, config)``: the per-patient outcomes (response,
    remission, reliable change, recovery, finished course) from the instrument catalogue.
``rates``
    ``response_rates`` (observed and ITT denominators), ``suppress_small_counts``, the
    design of the response models; re-exports ``wilson_interval``, ``benchmark_comparison``
    and ``attendance_summary``.
``intervals``
    ``wilson_interval`` (a proportion) and the t interval of a mean.
``cells``
    Outcome and denominator names, condition x format margins and their order.
``comparison``
    ``adjusted_response``: the response models (logistic GEE) and the standardised
    difference between formats (``AdjustedComparison``).
``benchmarks``
    ``benchmark_comparison``: observed rates against external benchmarks.
``attendance``
    ``attendance_summary``: sessions attended, did-not-attend and dropout rates.
``completeness``
    Paired-score completeness (share of finished courses with paired scores) against
    ``audit.completeness_standard``: one computation for the outcomes stage and the audit.
``tables``
    The outcome stage's tables: rate tables, format comparison, standardised
    difference, patient flow counts.
"""
