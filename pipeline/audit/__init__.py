"""Audit: sites and therapists compared with each other and with benchmarks.

Modules
-------
``review``
    ``review(...)``: units, case-mix adjustment, not-on-track curve, outliers.
``funnels``
    Funnel-plot control limits with over-dispersion (Spiegelhalter 2005).
"""
