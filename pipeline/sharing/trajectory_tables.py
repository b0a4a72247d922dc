"""Small-number suppression of the trajectory stage's shared tables.

``mixed_observed_means`` publishes, for each condition x format x time point, the number of
patients behind an observed mean: counts from 1 to ``high`` are shown as ``<high + 1`` and
their mean, SD and interval blanked (:func:`pipeline.outcomes.rates.suppress_small_counts`).
The table publishes no margins across time points or groups, so no complementary
suppression is needed. The model estimates are not counts and are shared as fitted.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pipeline.outcomes.rates import suppress_small_counts

#: The columns derived from a cell's count, blanked with it.
DERIVED: tuple[str, ...] = ("mean", "sd", "ci_low", "ci_high")


def share(tables: Mapping[str, pd.DataFrame], high: int) -> dict[str, pd.DataFrame]:
    """``tables`` with the small counts of ``mixed_observed_means`` (1..``high``) hidden."""
    shared = dict(tables)
    if "mixed_observed_means" in shared:
        observed = shared["mixed_observed_means"]
        protected = suppress_small_counts(observed.drop(columns="suppressed"), ("n",), low=1,
                                          high=high, rate_columns=DERIVED)
        shared["mixed_observed_means"] = protected[list(observed.columns)]
    return shared
