"""Relapse: did the gains last? Survival after the acute course.

Modules
-------
``analysis``
    ``analyse(...)``: the relapse cohort, Kaplan--Meier, Cox, competing risks, RMST.
``interval``
    Interval-censored estimates: the Turnbull NPMLE and a Weibull AFT model.
"""
