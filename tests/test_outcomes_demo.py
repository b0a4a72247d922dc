"""Simulation with known truth: rates derived from the demo cohort's files must cover the
population values that the generator computed from its latent arrays (truth.json).

Expected rates in truth.json come from 200,000 patients simulated with another seed and
computed by the generator's own code, not by this pipeline: an independent answer.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from data_schemas.outcomes import per_instrument_schema
from pipeline import config, io
from pipeline.demo import generate as demo
from pipeline.ingest import validate
from pipeline.outcomes import comparison, rates
from pipeline.outcomes import definitions as outcomes

OUTCOME_KEYS = {
    "phq9_response_finished_course": ("phq9", "response"),
    "phq9_remission_finished_course": ("phq9", "remission"),
    "recovery_finished_course": ("phq9+gad7", "recovery"),
}


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict]:
    folder: Path = tmp_path_factory.mktemp("demo")
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=2000, seed=20261122))
    io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                    "followups": cohort.followups}, folder)
    result = validate.run(io.read_study(folder, ("patients", "sessions", "followups"), ()))
    assert result.failure_cases.empty
    table = outcomes.derive(result.tables["patients"], result.tables["sessions"],
                            config.from_mapping(None))
    return table, cohort.truth


def test_one_row_per_valid_patient_and_contract(demo_results: tuple[pd.DataFrame, dict]) -> None:
    table, truth = demo_results
    assert len(table) == truth["n_patients"] == table["patient_id"].nunique()
    per_instrument_schema().validate(table, lazy=True)


@pytest.mark.parametrize("key", sorted(OUTCOME_KEYS))
def test_rates_cover_true_population_values(demo_results: tuple[pd.DataFrame, dict],
                                            key: str) -> None:
    table, truth = demo_results
    instrument, outcome = OUTCOME_KEYS[key]
    rate_table = rates.response_rates(table, ["phq9", "gad7"], populations=("finished_course",))
    observed = rate_table[(rate_table["instrument"] == instrument)
                          & (rate_table["outcome"] == outcome)
                          & (rate_table["denominator"] == "observed")]
    expected = truth["expected_rates"][key]
    cells = [("all", "all", expected["all"])]
    cells += [("all", f, v) for f, v in expected["by_format"].items()]
    cells += [(c, "all", v) for c, v in expected["by_condition"].items()]
    # 10 cells per outcome: a Bonferroni-adjusted Wilson interval keeps the family at 95%
    alpha = 0.05 / len(cells)
    z = stats.norm.ppf(1 - alpha / 2)
    for condition, fmt, true_rate in cells:
        row = observed[(observed["condition"] == condition) & (observed["format"] == fmt)]
        assert len(row) == 1
        n, events = int(row["n"].iloc[0]), int(row["events"].iloc[0])
        low, high = rates.wilson_interval([events], [n], alpha=alpha)
        assert low[0] <= true_rate <= high[0], (
            f"{key} {condition}/{fmt}: truth {true_rate:.3f} outside "
            f"[{low[0]:.3f}, {high[0]:.3f}] (z={z:.2f}, {events}/{n})"
        )


def test_format_difference_has_the_true_sign(demo_results: tuple[pd.DataFrame, dict]) -> None:
    table, truth = demo_results
    finished = table[table["finished_course"]]
    adjusted = comparison.adjusted_response(finished)
    difference = adjusted.standardised.set_index("quantity").loc["risk_difference"]
    true_by_format = truth["expected_rates"]["phq9_response_finished_course"]["by_format"]
    true_difference = true_by_format["group"] - true_by_format["individual"]
    assert difference["ci_high"] < 0 and true_difference < 0
    # standardisation adjusts for case mix, so the crude truth is only a loose check
    assert difference["ci_low"] - 0.05 <= true_difference <= difference["ci_high"] + 0.05
