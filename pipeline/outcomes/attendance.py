"""Attendance per condition x format cell: sessions attended, did-not-attend and dropout rates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_schemas.vocab import CONDITIONS, FORMATS
from pipeline.outcomes.cells import sort_cells, with_margins
from pipeline.outcomes.intervals import FloatArray, t_interval, wilson_interval


def _ratio(numerator: pd.Series, denominator: pd.Series) -> FloatArray:
    num = numerator.to_numpy(dtype=float)
    den = denominator.to_numpy(dtype=float)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan).astype(np.float64)


def attendance_summary(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Attendance, did-not-attend and dropout among started patients, by condition x format.

    * ``sessions_attended_mean`` with the t interval
      ``mean +/- t_{0.975, k-1} s / sqrt(k)`` over the ``k`` started patients;
    * ``dna_rate = sum(sessions_did_not_attend) / sum(sessions_scheduled)`` (treatment
      sessions) with a Wilson interval. Sessions are clustered within patients (some
      patients miss many), so this binomial interval is too narrow; read it as a lower
      bound on the uncertainty;
    * ``dropout_rate`` = share of started patients with ``dropout`` True, Wilson interval.

    Margins ``"all"`` as in :func:`response_rates`.

    Returns
    -------
    DataFrame
        condition, format, patients, sessions_attended_mean, sessions_attended_ci_low,
        sessions_attended_ci_high, dna_sessions, scheduled_sessions, dna_rate, dna_ci_low,
        dna_ci_high, dropouts, dropout_rate, dropout_ci_low, dropout_ci_high.
    """
    started = outcomes.loc[outcomes["started"].astype(bool)]
    frame = started[["condition", "format", "sessions_attended", "sessions_did_not_attend",
                     "sessions_scheduled"]].assign(dropout=started["dropout"].astype(np.int64))
    cells = with_margins(frame).groupby(["condition", "format"], sort=False).agg(
        patients=("sessions_attended", "size"),
        sessions_attended_mean=("sessions_attended", "mean"),
        sessions_attended_sd=("sessions_attended", "std"),
        dna_sessions=("sessions_did_not_attend", "sum"),
        scheduled_sessions=("sessions_scheduled", "sum"),
        dropouts=("dropout", "sum"),
    ).reset_index()
    low, high = t_interval(cells["sessions_attended_mean"], cells["sessions_attended_sd"],
                            cells["patients"])
    cells["sessions_attended_ci_low"], cells["sessions_attended_ci_high"] = low, high
    cells["dna_rate"] = _ratio(cells["dna_sessions"], cells["scheduled_sessions"])
    cells["dna_ci_low"], cells["dna_ci_high"] = wilson_interval(
        cells["dna_sessions"], cells["scheduled_sessions"])
    cells["dropout_rate"] = _ratio(cells["dropouts"], cells["patients"])
    cells["dropout_ci_low"], cells["dropout_ci_high"] = wilson_interval(
        cells["dropouts"], cells["patients"])
    columns = [
        "condition", "format", "patients", "sessions_attended_mean", "sessions_attended_ci_low",
        "sessions_attended_ci_high", "dna_sessions", "scheduled_sessions", "dna_rate",
        "dna_ci_low", "dna_ci_high", "dropouts", "dropout_rate", "dropout_ci_low",
        "dropout_ci_high",
    ]
    return sort_cells(cells[columns], {"condition": CONDITIONS, "format": FORMATS})
