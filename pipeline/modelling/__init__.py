"""Modelling: what the models of every stage share.

Modules
-------
``convergence``
    ``unusable_fit(results, caught)``: the one rule for when an iterative logistic fit
    (the response models, the audit's case mix) must not be used: not converged, or the
    covariates separate the outcome.
``pooling``
    ``pool_rare_levels(values, min_patients, ...)``: the one rule for pooling rare levels
    of a categorical covariate (used by the response models, the audit's case mix and the
    trajectory models).
``sampling``
    ``hash_sample(patient_ids, limit)``: a reproducible pseudo-random sample of patients
    by a keyed hash of their id (used by the trajectory models and the audit's recovery
    curve).
"""
