"""Outcomes: what happened to each patient, and how often, by condition and format.

Modules
-------
``definitions``
    ``derive(patients, sessions, config)``: the per-patient outcomes (response,
    remission, reliable change, recovery, finished course) from the instrument catalogue.
``rates``
    Rates with Wilson intervals, benchmarks, attendance, response models.
``completeness``
    Paired-score completeness (share of finished courses with paired scores) against
    ``audit.completeness_standard``: one computation for the outcomes stage and the audit.
``tables``
    The outcome stage's tables: rate tables, format comparison, standardised
    difference, patient flow counts.
"""
