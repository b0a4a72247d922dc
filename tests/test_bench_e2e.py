"""The end-to-end benchmark's pure summaries (bench/e2e_summary.py): medians over seeds,
cost exponents, targets and the convergence count read from a run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import e2e_summary as summary


def _run(seed: int, seconds: float, stages: dict[str, tuple[float, float]]) -> dict[str, object]:
    return {"seed": seed, "seconds": seconds,
            "stages": {name: {"seconds": s, "peak_rss_mb": mb} for name, (s, mb) in
                       stages.items()}}


def test_summarise_takes_medians_over_seeds_and_the_largest_stage_peak() -> None:
    runs = [_run(1, 10.0, {"validate": (2.0, 100.0), "models": (5.0, 900.0)}),
            _run(2, 14.0, {"validate": (3.0, 120.0), "models": (9.0, 800.0)}),
            _run(3, 11.0, {"validate": (1.0, 950.0), "models": (6.0, 700.0)})]
    result = summary.summarise(runs)
    assert result["total_seconds_median"] == 11.0
    assert result["seeds"] == [1, 2, 3]
    assert result["stages"]["validate"]["seconds_median"] == 2.0
    assert result["stages"]["models"]["seconds_median"] == 6.0
    assert result["stages"]["models"]["peak_rss_mb_max"] == 900.0
    assert result["process_peak_rss_mb"] == 950.0
    # wall time outside the logged stages: 3, 2, 4 -> median 3
    assert result["stages"][summary.OTHER]["seconds_median"] == 3.0


def test_exponents_recover_a_power_law() -> None:
    points = {10_000: 2.0, 100_000: 2.0 * 10**1.5, 1_000_000: 2.0 * 10**2.5}
    result = summary.exponents(points)
    assert result["pairs"]["10000-100000"] == pytest.approx(1.5)
    assert result["pairs"]["100000-1000000"] == pytest.approx(1.0)
    # least squares over log10 n = 4, 5, 6 and log10 t - log10 2 = 0, 1.5, 2.5
    assert result["all"] == pytest.approx(1.25)


def test_exponents_need_two_positive_sizes() -> None:
    assert summary.exponents({1000: 3.0}) == {"pairs": {}, "all": None}
    assert summary.exponents({1000: 0.0, 10_000: 3.0}) == {"pairs": {}, "all": None}


def test_stage_exponents_cover_every_stage_and_the_total() -> None:
    results = [{"patients": n, "total_seconds_median": n / 100,
                "stages": {"models": {"seconds_median": (n / 1000) ** 2},
                           "validate": {"seconds_median": n / 1000}}}
               for n in (1000, 10_000)]
    table = summary.stage_exponents(results)
    assert list(table) == ["validate", "models", summary.TOTAL]
    assert table["models"]["all"] == pytest.approx(2.0)
    assert table[summary.TOTAL]["pairs"]["1000-10000"] == pytest.approx(1.0)
    assert "least squares" in summary.exponents_table(table)


@pytest.mark.parametrize(("patients", "seconds", "peak_mb", "met"), [
    (100_000, 14.9, 50_000.0, True),
    (100_000, 15.0, 100.0, False),
    (1_000_000, 80.0, 8 * 1024 - 1, True),
    (1_000_000, 80.0, 8 * 1024 + 1, False),
    (10_000, 1e6, 1e9, None),
])
def test_targets(patients: int, seconds: float, peak_mb: float, met: bool | None) -> None:
    assert summary.check_targets(patients, seconds, peak_mb)["meets_targets"] is met


def test_convergence_reads_models_analyses_and_messages(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "messages").mkdir()
    (tmp_path / "tables" / "mixed_model_comparison.csv").write_text(
        "model,converged,convergence_note\ngrowth,True,\nphases,False,gradient 0.3\n")
    (tmp_path / "tables" / "analyses.csv").write_text(
        "stage,analysis,status,reason,remedy\n"
        "models,model growth,done,,\nmodels,model phases,done,,\n"
        "relapse,cox,done,,\n"
        "relapse,aft_interval,not estimable,did not converge,more relapses\n"
        "relapse,km,not estimable,no relapses,\n"
        "audit,figure funnel_sites,done,,\n")
    (tmp_path / "messages" / "relapse.json").write_text(json.dumps(
        ["Cox model did not converge (separation): dropped sex", "relapse cohort: 9"]))
    result = summary.convergence(tmp_path)
    assert (result["fitted"], result["converged"]) == (4, 2)
    assert result["not_converged"] == ["model phases: gradient 0.3",
                                       "relapse aft_interval: not estimable (did not "
                                       "converge)"]
    assert result["not_done"] == ["relapse km: not estimable (no relapses)"]
    assert result["notes"] == ["Cox model did not converge (separation): dropped sex"]
    runs = [{"seed": 1, "convergence": result}, {"seed": 2, "convergence": result}]
    total = summary.convergence_over_runs(runs)
    assert (total["fitted"], total["converged"]) == (8, 4)
    assert total["not_converged"][0].startswith("seed 1: model phases")


def test_medians_table_lists_every_stage() -> None:
    result = {"mode": "default", "patients": 100_000,
              **summary.check_targets(100_000, 12.0, 2048.0),
              **summary.summarise([_run(1, 12.0, {"models": (8.0, 2048.0)})]),
              "convergence": {"fitted": 11, "converged": 11}}
    text = summary.medians_table([result])
    assert "met (<15 s)" in text and "11/11" in text and "2.00" in text
    assert not math.isnan(result["total_seconds_median"])


def test_a_killed_run_is_a_lower_bound_and_misses_its_target() -> None:
    killed = {**_run(1, 1500.0, {"validate": (60.0, 5000.0)}), "outcome": "killed after 1500 s",
              "sampled_peak_rss_mb": 12_000.0}
    result = summary.summarise([killed])
    assert result["incomplete"] == ["seed 1: killed after 1500 s"]
    assert result["stages"]["validate"]["seconds_median"] == 60.0
    assert result["stages"][summary.OTHER]["seconds_median"] is None
    assert result["process_peak_rss_mb"] == 12_000.0  # the sampled peak of the killed stage
    assert summary.check_targets(1_000_000, 10.0, 1.0, complete=False)["meets_targets"] is False
    row = {"mode": "every-patient", "patients": 1_000_000, **result,
           **summary.check_targets(1_000_000, 1500.0, 12_000.0, complete=False)}
    assert ">1500.0" in summary.medians_table([row])
    assert summary.stage_exponents([row])[summary.TOTAL]["all"] is None
