"""Every configuration value an output depends on changes that output.

For each value described in ``pipeline.config`` (``SOURCES`` and the dataclass comments),
the stage that uses it is run on a small generated cohort (``pipeline.demo``, 300
patients) with the default and with a changed value: the dependent output must change, and
(where cheap to check) an unrelated output must not. Stage functions of
``pipeline.runner.stages`` are used, or, for the slow adjusted comparison, the outcome
table function the stage calls. Runs are cached per config, so each is made once.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pandas as pd
import pytest

from pipeline import config as config_module
from pipeline.config import StudyConfig
from pipeline.demo import generate as demo
from pipeline.outcomes import tables as outcome_tables
from pipeline.relapse import analysis as relapse
from pipeline.runner import stages
from pipeline.sharing.publish import SharingOptions

KEY = bytes(range(32))
#: A fast base: fewer bootstrap resamples in the audit, one trajectory model.
BASE: dict[str, Any] = {"audit": {"bootstrap_resamples": 40},
                        "trajectories": {"models": ["growth"]}}


@functools.lru_cache(maxsize=1)
def _tables() -> dict[str, pd.DataFrame]:
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=300, seed=7, expected_rates_n=0))
    return {"patients": cohort.patients, "sessions": cohort.sessions,
            "followups": cohort.followups}


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


@functools.cache
def _config(change: str) -> StudyConfig:
    return config_module.from_mapping(_merge(BASE, json.loads(change)))


def _key(change: dict[str, Any] | None) -> str:
    return json.dumps(change or {}, sort_keys=True)


@functools.cache
def _outcomes(change: str) -> pd.DataFrame:
    """Derived outcomes, with the GAD-7 change blanked for every 8th finished course (the
    demo pairs every finished course; the completeness standard needs a share below 1)."""
    po = stages.derive_outcomes(_tables(), _config(change)).copy()
    finished = po.index[po["finished_course"].astype(bool)]
    po.loc[finished[::8], "gad7_change"] = float("nan")
    return po


def derive(change: dict[str, Any] | None = None) -> pd.DataFrame:
    return _outcomes(_key(change))


@functools.cache
def _stage(stage: str, change: str) -> stages.StageOutput:
    config = _config(change)
    po = _outcomes(change)
    if stage == "audit":
        return stages.run_audit(_tables(), po, config, SharingOptions(), KEY)
    if stage == "relapse":
        return stages.run_relapse(_tables(), po, config)
    return stages.run_models(_tables(), po, config, None)


def run(stage: str, change: dict[str, Any] | None = None) -> stages.StageOutput:
    return _stage(stage, _key(change))


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.shape == b.shape and bool(a.reset_index(drop=True).equals(b.reset_index(drop=True)))


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize(("change", "column"), [
    ({"populations": {"finished_course_min_sessions": 6}}, "finished_course"),
    ({"populations": {"completer_min_sessions": 8}}, "completers"),
    ({"populations": {"dropout_gap_weeks": 1.0}}, "dropout"),
    ({"endpoint": {"rule": "week", "week": 6.0}}, "phq9_endpoint"),
    ({"baseline_rule": "first_treatment"}, "phq9_baseline"),
    ({"instruments": {"phq9": {"response_reduction": 0.3}}}, "phq9_response"),
    ({"instruments": {"phq9": {"remission_below": 8}}}, "phq9_remission"),
    ({"instruments": {"phq9": {"reliable_change": 3}}}, "phq9_reliable_improvement"),
    ({"instruments": {"phq9": {"caseness": 15}}}, "caseness_at_start"),
])
def test_patient_outcome_definitions(change: dict[str, Any], column: str) -> None:
    default, changed = derive(), derive(change)
    assert not default[column].equals(changed[column])
    assert default["patient_id"].equals(changed["patient_id"])
    assert default["gad7_baseline"].equals(changed["gad7_baseline"]) or column.endswith(
        "baseline")


def test_completeness_standard_and_finished_course() -> None:
    default = stages.completeness(derive(), _config(_key(None)))
    assert 0.8 < default["share_paired"].iloc[0] < 0.9  # 7 of 8 finished courses paired
    change = {"audit": {"completeness_standard": 0.8}}
    lower = stages.completeness(derive(), _config(_key(change)))
    assert lower["standard"].iloc[0] != default["standard"].iloc[0]
    assert not bool(default["meets_standard"].iloc[0]) and bool(lower["meets_standard"].iloc[0])
    assert lower["share_paired"].equals(default["share_paired"])
    fewer = {"populations": {"finished_course_min_sessions": 6}}
    assert stages.completeness(derive(fewer), _config(_key(fewer)))[
        "finished_courses"].iloc[0] < default["finished_courses"].iloc[0]


def test_suppress_below_hides_more_counts() -> None:
    """``suppress_below`` (the audit's unit tables: the cheapest shared tables to build)."""
    default, stricter = run("audit"), run("audit", {"suppress_below": 12})
    therapists_a, therapists_b = (o.tables["audit_therapists"] for o in (default, stricter))
    assert list(therapists_a.columns) == list(therapists_b.columns)
    assert not same(therapists_a, therapists_b)
    hidden = [int(t["recovery_rate"].isna().sum()) for t in (therapists_a, therapists_b)]
    assert hidden[1] > hidden[0]


def test_primary_instrument_chooses_the_main_rates() -> None:
    change = {"primary_instrument": "gad7"}
    default = outcome_tables.main_rates(outcome_tables.rate_table(derive(), _config(_key(None))),
                                        _config(_key(None)))
    changed = outcome_tables.main_rates(
        outcome_tables.rate_table(derive(change), _config(_key(change))), _config(_key(change)))
    assert not same(default, changed)


def test_comparison_min_level_n_pools_levels() -> None:
    """``comparison.min_level_n``: the pooling rule of the adjusted comparison."""
    change = {"comparison": {"min_level_n": 5, "covariates": ["condition", "format"]}}
    base = {"comparison": {"covariates": ["condition", "format"]}}
    default = outcome_tables.format_comparison(derive(), _config(_key(base)))
    changed = outcome_tables.format_comparison(derive(), _config(_key(change)))
    assert set(default.table["term"]) != set(changed.table["term"])
    assert default.notes != changed.notes


# --------------------------------------------------------------------------- audit


def test_audit_targets_standards_and_planned_sessions() -> None:
    """Values with disjoint outputs, changed together in one run."""
    change = {"audit": {"recovery_target": 0.9, "completeness_standard": 0.5,
                        "planned_sessions": 20,
                        "effect_size_bands": [["phq9", 3.0, 2.5, 2.0],
                                              ["gad7", 3.0, 2.5, 2.0]]}}
    default, changed = run("audit"), run("audit", change)
    bench_a, bench_b = (o.tables["audit_benchmarks"] for o in (default, changed))
    recovery = bench_a["measure"] == "recovery_rate"
    assert recovery.any()
    assert not same(bench_a.loc[recovery, ["benchmark"]], bench_b.loc[recovery, ["benchmark"]])
    assert not same(bench_a.loc[~recovery, ["benchmark", "verdict"]],
                    bench_b.loc[~recovery, ["benchmark", "verdict"]])
    sites_a, sites_b = (o.tables["audit_sites"] for o in (default, changed))
    assert not sites_a["meets_completeness_standard"].equals(
        sites_b["meets_completeness_standard"])
    assert sites_a["recovery_rate"].equals(sites_b["recovery_rate"])  # unrelated
    nott_a, nott_b = (o.tables["not_on_track"] for o in (default, changed))
    assert (nott_b["sessions_remaining"].to_numpy() >= nott_a["sessions_remaining"].to_numpy()
            ).all() and not nott_a["sessions_remaining"].equals(nott_b["sessions_remaining"])
    assert nott_a["expected"].equals(nott_b["expected"])  # unrelated


def test_audit_curve_sample_band_and_case_mix() -> None:
    change = {"audit": {"max_model_patients": 100, "prediction_level": 0.5,
                        "min_level_n": 80, "min_funnel_n": 30}}
    default, changed = run("audit"), run("audit", change)
    assert any("pseudo-random 100" in m for m in changed.messages)
    assert not any("pseudo-random" in m for m in default.messages)
    nott_a, nott_b = (o.tables["not_on_track"] for o in (default, changed))
    assert not nott_a["upper_bound"].equals(nott_b["upper_bound"])
    sites_a, sites_b = (o.tables["audit_sites"] for o in (default, changed))
    assert not sites_a["expected"].equals(sites_b["expected"])  # case mix pooled more
    assert sites_a["paired_n"].equals(sites_b["paired_n"])  # unrelated
    funnel_a, funnel_b = (o.tables["audit_funnel_summary"] for o in (default, changed))
    assert not same(funnel_a, funnel_b)


# --------------------------------------------------------------------------- relapse


def test_relapse_horizons() -> None:
    change = {"relapse": {"rmst_weeks": 26.0, "horizon_weeks": [13.0]}}
    default, changed = run("relapse"), run("relapse", change)
    assert not same(default.tables["relapse_rmst"], changed.tables["relapse_rmst"])
    assert same(default.tables["relapse_cohort"], changed.tables["relapse_cohort"])


@pytest.mark.parametrize("change", [{"relapse": {"at_risk": "response"}},
                                    {"relapse": {"threshold": 5.0}}])
def test_relapse_cohort_definition(change: dict[str, Any]) -> None:
    """``relapse.at_risk`` and ``relapse.threshold``: who is at risk (the cohort builder
    the relapse stage calls; the whole stage is run in :func:`test_relapse_horizons`)."""
    tables = _tables()

    def cohort(change: dict[str, Any] | None) -> pd.DataFrame:
        return relapse.relapse_cohort(tables["patients"], tables["sessions"],
                                      tables["followups"], derive(change),
                                      _config(_key(change)))[0]

    assert not same(cohort(None), cohort(change))


# --------------------------------------------------------------------------- trajectories


def test_trajectory_contrast_weeks() -> None:
    change = {"trajectories": {"contrast_weeks": [8.0]}}
    default, changed = run("models"), run("models", change)
    assert not same(default.tables["mixed_format_difference"],
                    changed.tables["mixed_format_difference"])
    assert same(default.tables["mixed_growth_fixed"], changed.tables["mixed_growth_fixed"])


def test_trajectory_max_patients_samples() -> None:
    change = {"trajectories": {"max_patients": 150}}
    default, changed = run("models"), run("models", change)
    assert any("pseudo-random sample of 150" in m for m in changed.messages)
    assert not same(default.tables["mixed_growth_fixed"], changed.tables["mixed_growth_fixed"])
