r"""Tables that let a reader check the trajectory models (:mod:`pipeline.trajectories.models`).

``observed_means``
    The observed mean score by condition x format at each time point of the model's time
    axis, to set beside the model-based means. On the week scales (``weeks``,
    ``log_weeks``) a score belongs to the nearest whole week, :math:`\lfloor w + 1/2
    \rfloor` with :math:`w` = (session date - start date) days / 7 (the assessment, a few
    days before the start, falls in week 0 or a negative week); on the session scale to its
    session number. A patient with two scores in one time point counts once, with the mean
    of the two, so :math:`n` is a number of patients and the patients are independent:
    :math:`\bar y = \frac1n\sum_i \bar y_i`, :math:`s` their SD and the 95% interval
    :math:`\bar y \pm t_{0.975,\,n-1}\, s/\sqrt n`. Under dropout the observed means of
    late weeks describe the patients still attending, which is why they can drift from the
    model-based means (valid under missing at random; Mallinckrodt et al. 2003). Counts
    below ``suppress_below`` are hidden by the sharing layer
    (:mod:`pipeline.sharing.trajectory_tables`), unless the run is not for sharing.
``model_comparison``
    One row per fitted model, in the order of fitting (the configured built-in models, then
    the custom ones): REML or ML, rows, patients, log-likelihood, AIC, BIC, convergence,
    and the formula in lme4 notation. AIC and BIC compare models only when the likelihoods
    are of the same data: ML fits of the same outcome values on the same rows, or REML fits
    that also have the same fixed effects (the REML likelihood is of residual contrasts
    that depend on the fixed-effects design; Pinheiro and Bates 2000, sec. 2.4.2).
    ``comparable_group`` labels the models whose AIC and BIC may be compared with each
    other; a model alone in its group has it empty, as has a model whose fit did not
    converge (its likelihood is not at a maximum; its estimates are not used either).

References
----------
Mallinckrodt CH et al. (2003). Assessing and interpreting treatment effects in
longitudinal clinical trials with missing data. Biological Psychiatry 53:754-760.
Pinheiro JC, Bates DM (2000). Mixed-Effects Models in S and S-PLUS. Springer.
"""

from __future__ import annotations

import hashlib
import string
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the report imports this module for its view: no model code at run time
    from pipeline.trajectories.engines import MixedFit

__all__ = ["comparison_row", "model_comparison", "observed_means", "observed_n_wide"]

OBSERVED_COLUMNS: Final = ("condition", "format", "time_scale", "time_point", "n", "mean",
                           "sd", "ci_low", "ci_high", "suppressed")
#: The formula last: a long text that a printed table would otherwise repeat in every block
COMPARISON_COLUMNS: Final = ("model", "method", "n_obs", "n_patients", "loglik", "aic", "bic",
                             "converged", "singular", "convergence_note", "comparable_group",
                             "comparable_with", "formula")


def time_bins(long: pd.DataFrame, time: str) -> pd.Series:
    """The time point of each score: nearest whole week, or the session number."""
    if time == "session_number":
        return long["session_number"].astype(float)
    return pd.Series(np.floor(long["weeks"].to_numpy(dtype=float) + 0.5), index=long.index)


def observed_means(long: pd.DataFrame, time: str) -> pd.DataFrame:
    """Observed mean score by condition x format x time point (see the module docstring).

    Parameters
    ----------
    long : DataFrame
        One row per observed score: ``patient_id``, ``condition``, ``format``, ``score``,
        ``weeks`` and ``session_number`` (e.g. :func:`pipeline.trajectories.models.model_data`).
    time : str
        The model's time scale: ``weeks``, ``log_weeks`` (both binned by week) or
        ``session_number``.

    Returns
    -------
    DataFrame
        Columns :data:`OBSERVED_COLUMNS`, sorted by condition, format and time point (in
        the order of the categories when those columns are categorical); every count
        shown (``suppressed`` false): small counts are hidden by the sharing layer
        (:func:`pipeline.sharing.trajectory_tables.share`).
    """
    from scipy import stats

    scored = long.loc[long["score"].notna()]
    per_patient = pd.DataFrame({
        "condition": scored["condition"], "format": scored["format"],
        "time_point": time_bins(scored, time), "patient_id": scored["patient_id"],
        "score": scored["score"].astype(float),
    }).groupby(["condition", "format", "time_point", "patient_id"], observed=True,
               sort=True)["score"].mean()
    cells = per_patient.groupby(level=["condition", "format", "time_point"], observed=True,
                                sort=True)
    table = cells.agg(n="size", mean="mean", sd="std").reset_index()
    half = stats.t.ppf(0.975, np.maximum(table["n"] - 1, 1)) * table["sd"] / np.sqrt(table["n"])
    half = half.where(table["n"] > 1)
    table = table.assign(time_scale=time, ci_low=table["mean"] - half,
                         ci_high=table["mean"] + half)
    table = table.astype({"condition": str, "format": str, "n": int})
    return table.assign(suppressed=False)[list(OBSERVED_COLUMNS)].reset_index(drop=True)


def observed_n_wide(table: pd.DataFrame) -> pd.DataFrame:
    """The patients behind each observed mean: one row per condition x format, one column
    per time point (for the report; ``<5`` as in the table)."""
    if table.empty:
        return pd.DataFrame()
    points = pd.to_numeric(table["time_point"])
    labels = points.map(lambda p: f"{p:g}")
    order = labels.iloc[np.argsort(points.to_numpy(), kind="stable")].drop_duplicates()
    wide = table.assign(label=labels).pivot_table(
        index=["condition", "format"], columns="label", values="n", aggfunc="first",
        sort=False)
    return wide.reindex(columns=list(order)).fillna("").reset_index().rename_axis(columns=None)


def _rows_fingerprint(fit: MixedFit, rows: pd.DataFrame) -> str:
    """A digest of the outcome values of the rows a fit used, with their patient and
    session: equal digests mean the same data for the likelihood."""
    used = rows.loc[fit.fitted.index]
    key = pd.DataFrame({"patient_id": used["patient_id"].astype(str),
                        "session_number": used["session_number"].astype(float),
                        "y": used[fit.spec.outcome].astype(float)})
    key = key.sort_values(["patient_id", "session_number", "y"], kind="stable")
    hashes = pd.util.hash_pandas_object(key, index=False).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()


def _convergence_note(fit: MixedFit) -> str:
    diagnostics = fit.diagnostics.iloc[0]
    if bool(diagnostics["converged"]):
        return ""
    related = [m for m in fit.messages if "converg" in m.lower()]
    return "; ".join(related) or (f"optimiser {diagnostics['optimizer']} did not report "
                                  f"convergence after {diagnostics['iterations']} iterations")


def comparison_row(model: str, fit: MixedFit, rows: pd.DataFrame) -> pd.DataFrame:
    """One model's row of :func:`model_comparison`, with the keys that decide which models
    it may be compared with (``_rows``, ``_fixed``)."""
    diagnostics = fit.diagnostics.iloc[0]
    return pd.DataFrame([{
        "model": model, "formula": fit.spec.lme4(), "method": str(diagnostics["method"]),
        "n_obs": int(diagnostics["n_obs"]), "n_patients": int(diagnostics["n_patients"]),
        "loglik": float(diagnostics["loglik"]), "aic": float(diagnostics["aic"]),
        "bic": float(diagnostics["bic"]), "converged": bool(diagnostics["converged"]),
        "singular": bool(diagnostics["singular"]), "convergence_note": _convergence_note(fit),
        "_rows": _rows_fingerprint(fit, rows), "_fixed": "|".join(sorted(fit.coef.index)),
    }])


def model_comparison(rows: pd.DataFrame) -> pd.DataFrame:
    """Label the models whose AIC and BIC may be compared (module docstring), keeping the
    row order.

    Parameters
    ----------
    rows : DataFrame
        :func:`comparison_row` outputs stacked in the order the models were fitted.

    Returns
    -------
    DataFrame
        Columns :data:`COMPARISON_COLUMNS`; ``comparable_group`` is a letter shared by the
        models that may be compared (empty for a model alone), ``comparable_with`` names
        the others.
    """
    keys = [(m, r) if m == "ML" else (m, r, f)
            for m, r, f in zip(rows["method"], rows["_rows"], rows["_fixed"], strict=True)]
    # a fit that did not converge is not at its maximum: its AIC and BIC compare with none
    keys = [key if bool(converged) else ("not converged", str(model)) for key, converged, model
            in zip(keys, rows["converged"], rows["model"], strict=True)]
    members: dict[tuple[str, ...], list[str]] = {}
    for key, model in zip(keys, rows["model"], strict=True):
        members.setdefault(key, []).append(str(model))
    shared = [key for key in members if len(members[key]) > 1]
    letters = {key: _letter(i) for i, key in enumerate(shared)}
    out = rows.assign(
        comparable_group=[letters.get(key, "") for key in keys],
        comparable_with=[", ".join(m for m in members[key] if m != model) for key, model in
                         zip(keys, rows["model"], strict=True)])
    return out[list(COMPARISON_COLUMNS)].reset_index(drop=True)


def _letter(i: int) -> str:
    letters = string.ascii_uppercase
    return letters[i] if i < len(letters) else f"{letters[i % 26]}{i // 26}"
