r"""Where each unit of the audit stands: funnel placement, outliers and benchmarks.

Funnel plots (``pipeline.audit.funnels``)
    The standardised rate against the recovery denominator with 95% and 99.8% limits around
    :math:`\bar p` (Spiegelhalter 2005a), widened for over-dispersion when the Winsorised
    :math:`\hat\phi > 1` and the chi-square test rejects (Spiegelhalter 2005b). Units with
    fewer than ``min_funnel_n`` patients are not placed; they are listed as ``too_small``
    in ``audit_outliers`` with every unit outside the 95% limits. Treating the standardised
    rate as a crude proportion slightly over-states its variance (by Jensen's inequality
    :math:`\sum_i \hat p_i(1 - \hat p_i) \le n\bar p(1 - \bar p)`), so the limits are
    conservative.

Benchmarks (``audit_benchmarks``)
    Recovery against ``recovery_target`` (verdict ``above``/``below`` when the Wilson
    interval excludes it, else ``around``); effect sizes against the bands of
    :class:`AuditOptions` by the same rule, the bootstrap interval (``high``,
    ``above_average``, ``around_average`` when the interval holds the average threshold,
    ``below_average``, ``poor``).


References
----------
Delgadillo J, McMillan D, Leach C, Lucock M, Gilbody S, Wood N (2014). Benchmarking routine
psychological services: a discussion of challenges and methods. Behavioural and Cognitive
Psychotherapy 42:16-30.
NHS England (2024). NHS Talking Therapies for anxiety and depression manual, v7.
Spiegelhalter DJ (2005a). Statistics in Medicine 24:1185-1202; (2005b) Quality and Safety
in Health Care 14:347-351.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from pipeline.audit import funnels as funnel
from pipeline.audit.columns import ALL, BENCHMARK_COLUMNS, OUTLIER_COLUMNS
from pipeline.audit.suppression import _shown

if TYPE_CHECKING:
    from pipeline.audit.review import AuditOptions

RECOVERY_TARGET_SOURCE: Final = "NHS Talking Therapies national recovery standard (50%)"
EFFECT_SIZE_SOURCE: Final = "Delgadillo et al. 2014 (Behav Cogn Psychother 42:16-30)"


def _funnel(table: pd.DataFrame, options: AuditOptions) -> funnel.FunnelResult:
    units = table[table["unit"] != ALL]
    frame = pd.DataFrame({"unit": units["unit"], "n": units["recovery_n"].astype(float),
                          "rate": units["adjusted_rate"].astype(float)})
    overall = float(table.loc[table["unit"] == ALL, "recovery_rate"].iloc[0])
    return funnel.analyse(frame, overall, options.min_funnel_n, options.funnel_levels,
                          options.winsorise, options.overdispersion_alpha,
                          options.adjust_overdispersion)



def _outliers(level: str, result: funnel.FunnelResult, shared: pd.DataFrame) -> pd.DataFrame:
    """Units outside the 95% limits or too small for the funnel (shared labels)."""
    units = shared[shared["unit"] != ALL].reset_index(drop=True)
    hits = result.units.reset_index(drop=True)
    listed = (hits["limit_hit"] != funnel.WITHIN).to_numpy()
    visible = _shown(units, ["recovery_n", "recovery_events"]).to_numpy()
    frame = pd.DataFrame({
        "level": level,
        "unit": units["unit"],
        "n": units["recovery_n"],
        "adjusted_rate": units["adjusted_rate"].astype(float),
        "z_score": hits["z_adjusted"].where(visible),
        "limit_hit": hits["limit_hit"],
    })
    return frame.loc[listed, list(OUTLIER_COLUMNS)].reset_index(drop=True)


def _band(low: float, top: float, high: float, average: float, poor: float) -> str:
    """The band the whole interval [low, top] lies in, by the same rule as recovery's
    verdict (an interval, never the point estimate alone): ``high`` or ``above_average``
    when it lies above ``high`` or ``average``, ``poor`` or ``below_average`` when below
    ``poor`` or ``average``, else ``around_average`` (it holds the average threshold)."""
    if low >= high:
        return "high"
    if low >= average:
        return "above_average"
    if top < poor:
        return "poor"
    return "below_average" if top < average else "around_average"


def _verdict(estimate: float, low: float, high: float, n: object, target: float) -> str:
    if np.isnan(estimate):
        return "suppressed" if isinstance(n, str) else "no data"
    if low > target:
        return "above"
    return "below" if high < target else "around"


def benchmarks(shared: pd.DataFrame, instruments: Sequence[str],
               options: AuditOptions) -> pd.DataFrame:
    """Recovery against the target and effect sizes against their bands, per unit."""
    bands = {name: values for name, *values in options.effect_size_bands}
    rows = []
    for record in shared.to_dict("records"):
        rate, low, high = (float(record[f"recovery_{s}"]) for s in ("rate", "ci_low",
                                                                     "ci_high"))
        rows.append([record["level"], record["unit"], "recovery_rate", record["recovery_n"],
                     rate, low, high, options.recovery_target,
                     _verdict(rate, low, high, record["recovery_n"], options.recovery_target),
                     RECOVERY_TARGET_SOURCE])
        for name in (i for i in instruments if i in bands):
            es = float(record[f"{name}_effect_size"])
            low, top = (float(record[f"{name}_es_ci_{end}"]) for end in ("low", "high"))
            n = record[f"{name}_es_n"]
            label = (_band(low, top, *bands[name]) if not np.isnan(es)
                     else "suppressed" if isinstance(n, str) else "no data")
            rows.append([record["level"], record["unit"], f"{name}_effect_size", n, es,
                         low, top, bands[name][1], label, EFFECT_SIZE_SOURCE])
    return pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))


def _funnel_summary(level: str, result: funnel.FunnelResult) -> dict[str, object]:
    d = result.dispersion
    return {"level": level, "units_on_funnel": int(result.units["on_funnel"].sum()),
            "overall_rate": result.p0, "phi_hat": d.phi_hat, "chi_square": d.statistic,
            "df": d.df, "p_value": d.p_value, "overdispersion_applied": d.applied,
            "phi": d.phi}


def _dispersion_message(level: str, result: funnel.FunnelResult) -> str:
    d = result.dispersion
    if not result.units["on_funnel"].any():
        return f"funnel ({level}s): no unit large enough to place on the funnel"
    action = ("limits widened by sqrt(phi)" if d.applied else "limits not widened")
    return (f"funnel ({level}s): overall recovery {result.p0:.1%}; over-dispersion "
            f"phi = {d.phi_hat:.2f} (chi-square {d.statistic:.1f} on {d.df} df, "
            f"p = {d.p_value:.3g}): {action}")

