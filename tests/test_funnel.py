"""Funnel limits and over-dispersion against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.audit import funnels as funnel

Z95, Z998 = 1.959964, 3.090232  # normal quantiles 0.975 and 0.999 (tables)


def test_z_values_are_the_two_sided_quantiles() -> None:
    assert funnel.z_value(0.95) == pytest.approx(Z95, abs=1e-6)
    assert funnel.z_value(0.998) == pytest.approx(Z998, abs=1e-6)
    assert funnel.z_value(0.90) == pytest.approx(1.644854, abs=1e-6)


@pytest.mark.parametrize(("p0", "n", "level", "z"), [
    (0.4, 50, 0.95, Z95), (0.4, 50, 0.998, Z998), (0.5, 200, 0.95, Z95), (0.7, 12, 0.998, Z998),
])
def test_limits_are_p0_plus_minus_z_binomial_se(p0: float, n: int, level: float,
                                                z: float) -> None:
    # by hand: p0 +- z * sqrt(p0 (1 - p0) / n), e.g. 0.4 +- 1.959964 * 0.069282 at n = 50
    half = z * math.sqrt(p0 * (1 - p0) / n)
    low, high = funnel.control_limits(p0, [n], level)
    assert low[0] == pytest.approx(max(p0 - half, 0.0), abs=1e-6)
    assert high[0] == pytest.approx(min(p0 + half, 1.0), abs=1e-6)


def test_limits_at_n_50_written_out() -> None:
    low, high = funnel.control_limits(0.4, [50], 0.95)
    assert (round(float(low[0]), 5), round(float(high[0]), 5)) == (0.26421, 0.53579)


def test_limits_clipped_and_widened_by_sqrt_phi() -> None:
    low, high = funnel.control_limits(0.5, [2], 0.998)
    assert low[0] == 0.0 and high[0] == 1.0
    low, high = funnel.control_limits(0.3, [100], 0.95, phi=2.25)
    half = Z95 * 1.5 * math.sqrt(0.3 * 0.7 / 100)  # sqrt(2.25) = 1.5
    assert (low[0], high[0]) == pytest.approx((0.3 - half, 0.3 + half), abs=1e-6)


def test_winsorise_uses_type_7_quantiles() -> None:
    # six values: the 10% quantile lies half-way between -2 and -1, the 90% between 1 and 4
    assert funnel.winsorise([-2, -1, 0, 0.5, 1, 4]).tolist() == [-1.5, -1, 0, 0.5, 1, 2.5]


def test_overdispersion_small_example_not_significant() -> None:
    # Winsorised z: -1.5, -1, 0, 0.5, 1, 2.5; squares sum to 2.25 + 1 + 0 + 0.25 + 1 + 6.25
    result = funnel.overdispersion([-2, -1, 0, 0.5, 1, 4])
    assert result.phi_hat == pytest.approx(10.75 / 6)
    assert result.statistic == pytest.approx(10.75)
    assert result.df == 5
    assert result.p_value == pytest.approx(stats.chi2.sf(10.75, 5))
    assert result.p_value > 0.05  # about 0.057
    assert not result.applied and result.phi == 1.0


def test_overdispersion_applied_when_phi_above_one_and_test_rejects() -> None:
    # eleven z-scores: the 10% and 90% quantiles are the 2nd and 10th values (-3 and 3), so
    # -5 and 5 become -3 and 3; squares: 6 * 9 + 2 * 4 + 2 * 1 + 0 = 64
    z = [-5, -3, -3, -2, -1, 0, 1, 2, 3, 3, 5]
    result = funnel.overdispersion(z)
    assert result.phi_hat == pytest.approx(64 / 11)
    assert result.df == 10 and result.p_value < 1e-6
    assert result.applied and result.phi == pytest.approx(64 / 11)


def test_no_overdispersion_below_one() -> None:
    result = funnel.overdispersion([-0.5, 0.2, 0.1, -0.3, 0.4])
    assert result.phi_hat < 1 and not result.applied


def test_classify_by_widest_limit_crossed() -> None:
    labels = funnel.classify([0.0, 2.0, -2.5, 3.2, -3.5, np.nan])
    assert labels == ["within", "above_95", "below_95", "above_99.8", "below_99.8", "within"]


def test_analyse_places_units_and_marks_small_ones() -> None:
    units = pd.DataFrame({"unit": ["a", "b", "c", "d"], "n": [100, 4, 50, 80],
                          "rate": [0.5, 0.9, 0.2, 0.42]})
    result = funnel.analyse(units, p0=0.4, adjust=False)
    table = result.units.set_index("unit")
    assert table.loc["b", "limit_hit"] == funnel.TOO_SMALL and not table.loc["b", "on_funnel"]
    # a: (0.5 - 0.4) / sqrt(0.24 / 100) = 2.0412 -> above 95%; c: -0.2 / 0.069282 = -2.8868
    assert table.loc["a", "z_score"] == pytest.approx(0.1 / math.sqrt(0.0024))
    assert table.loc["a", "limit_hit"] == "above_95"
    assert table.loc["c", "limit_hit"] == "below_95"
    assert table.loc["d", "limit_hit"] == "within"
    assert result.dispersion.phi == 1.0
