"""The audit's names: unit labels, levels, the stage name and the declared columns of its
tables (``audit_sites``, ``audit_therapists``, ``audit_outliers``, ``audit_benchmarks``,
``audit_funnel_summary``, ``not_on_track``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

ALL: Final = "all"
POOLED: Final = "other_pooled"
LEVELS: Final = {"site": "site_id", "therapist": "therapist_id"}
STAGE: Final = "audit"
OUTCOMES: Final = ("recovery", "reliable_improvement", "reliable_recovery",
                   "reliable_deterioration")
ADJUSTED: Final = ("expected", "oe_ratio", "oe_ci_low", "oe_ci_high", "adjusted_rate",
                   "adjusted_ci_low", "adjusted_ci_high")
OUTLIER_COLUMNS: Final = ("level", "unit", "n", "adjusted_rate", "z_score", "limit_hit")
BENCHMARK_COLUMNS: Final = ("level", "unit", "measure", "n", "estimate", "ci_low", "ci_high",
                            "benchmark", "verdict", "source")
NOT_ON_TRACK_COLUMNS: Final = ("patient_id", "site_id", "therapist_id", "session_number",
                               "score", "expected", "upper_bound", "sessions_remaining",
                               "flagged")
FUNNEL_SUMMARY_COLUMNS: Final = ("level", "units_on_funnel", "overall_rate", "phi_hat",
                                 "chi_square", "df", "p_value", "overdispersion_applied",
                                 "phi")


def unit_columns(instruments: Sequence[str]) -> tuple[str, ...]:
    """The declared columns of ``audit_sites`` and ``audit_therapists``."""
    columns = ["level", "unit", "site_id", "referred", "started", "finished_course"]
    for outcome in OUTCOMES:
        columns += [f"{outcome}_{s}" for s in ("n", "events", "rate", "ci_low", "ci_high")]
    for instrument in instruments:
        columns += [f"{instrument}_es_n", f"{instrument}_effect_size",
                    f"{instrument}_es_ci_low", f"{instrument}_es_ci_high"]
    columns += ["attendance_rate", "dna_rate", "dropouts", "dropout_rate", "dropout_ci_low",
                "dropout_ci_high", "paired_n", "completeness", "meets_completeness_standard",
                *ADJUSTED, "suppressed"]
    return tuple(columns)
