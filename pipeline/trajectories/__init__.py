"""Trajectories: mixed-effects models of symptom scores over the weeks of treatment.

Modules
-------
``models``
    ``analyse(...)``: the configured models, fitted through an engine, one record each.
``means``
    Observed means beside the model lines, and the comparison of models.
``formula``, ``formula_grammar``
    lme4-style formulas: the whitelist grammar (no code from a config) and the parser.
``engines``
    The fitting engines (statsmodels MixedLM and the faster lme4-style ``mixedlm``).
"""
