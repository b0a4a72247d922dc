"""Whether an iterative statsmodels fit may be used: one rule for the logistic models.

The response models (:mod:`pipeline.outcomes.comparison`: GEE, or a GLM with cluster-robust
standard errors at registry scale) and the audit's case-mix model
(:mod:`pipeline.audit.case_mix`: a GLM) are fitted iteratively (Fisher scoring / IRLS).
statsmodels reports a fit that stopped short only as a warning and a ``converged``
attribute, and a likelihood without a finite maximum (the covariates separate the outcome:
Albert and Anderson 1984) only as a ``PerfectSeparationWarning``, while the estimates it
returns look like numbers (an odds ratio of :math:`10^{22}`). :func:`unusable_fit` turns
both into a reason, so the caller reports the model as not estimable (or falls back, saying
so) instead of using its estimates.

References
----------
Albert A, Anderson JA (1984). On the existence of maximum likelihood estimates in logistic
regression models. Biometrika 71:1-10.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["unusable_fit"]


def _iterations(results: Any) -> str:
    """The number of iterations a statsmodels result ran, as text (``""`` when unknown)."""
    history = getattr(results, "fit_history", None)
    if isinstance(history, dict):
        if "iteration" in history:  # GLM (IRLS)
            return str(history["iteration"])
        if history.get("params"):  # GEE
            return str(len(history["params"]))
    return ""


def unusable_fit(results: Any, caught: Sequence[warnings.WarningMessage]) -> str | None:
    """Why a fitted statsmodels GLM or GEE must not be used, or ``None`` when it may.

    Parameters
    ----------
    results : statsmodels results or None
        The fit (``None``: statsmodels could not estimate the model, as GEE returns when
        its covariance is singular).
    caught : sequence of warnings.WarningMessage
        The warnings recorded while fitting (``warnings.catch_warnings(record=True)``).

    Returns
    -------
    str or None
        A plain-language reason: no estimate, separation (``PerfectSeparationWarning``), or
        an optimiser that did not converge (``converged`` false); ``None`` otherwise.
    """
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    if results is None:
        failures = "; ".join(str(w.message) for w in caught) or "no estimate"
        return f"statsmodels could not estimate the model ({failures})"
    if any(issubclass(w.category, PerfectSeparationWarning) for w in caught):
        return ("the covariates separate the outcome (perfect prediction): the likelihood "
                "has no finite maximum")
    if not bool(getattr(results, "converged", True)):
        iterations = _iterations(results)
        return "the fit did not converge" + (
            f" in {iterations} iteration{'' if iterations == '1' else 's'}" if iterations
            else "")
    return None
