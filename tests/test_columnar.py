"""The columnar route (``pipeline.columnar``) gives the in-memory route's tables.

The reference is the in-memory pipeline itself (``outcomes.definitions.derive`` and
``outcomes.tables.rate_table``, tested against hand-computed fixtures elsewhere): every
column of ``patient_outcomes`` and every cell of ``response_rates`` must be equal, on the
demo under several configs, on generated study shapes (hypothesis), and on a local Spark
cluster (``local[2]``) as on embedded DuckDB.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from pipeline import config as config_module
from pipeline import io
from pipeline.cli import main
from pipeline.columnar import checks, engine, patient_outcomes, rates
from pipeline.columnar import run as columnar_run
from pipeline.config import StudyConfig
from pipeline.demo import generate as demo
from pipeline.ingest import validate
from pipeline.modelling.sampling import hash_sample
from pipeline.outcomes import definitions
from pipeline.outcomes.tables import rate_table
from pipeline.runner.run import resolve_primary
from tests.study_shapes import NAMED_SHAPES, study_shapes, write_study

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "first_treatment_baseline": {"baseline_rule": "first_treatment"},
    "trial_populations": {"populations": {"definition": "trial"}},
    "strict_dropout": {"populations": {"dropout_gap_weeks": 1, "final_phase_start": 8,
                                       "completer_min_sessions": 4}},
    "jt_cutoff_c": {"instruments": {"phq9": {"jt_cutoff": "c"}, "gad7": {"jt_cutoff": "a"}}},
    "rci_not_fixed_change": {"instruments": {"phq9": {"reliable_change": None}}},
}


@functools.cache
def _demo_folder() -> Path:
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=300, seed=7, expected_rates_n=0))
    folder = Path(tempfile.mkdtemp(prefix="columnar-demo-"))
    for name, frame in (("patients", cohort.patients), ("sessions", cohort.sessions)):
        frame.reset_index(drop=True).to_parquet(folder / f"{name}.parquet")
    return folder


def _config(change: dict[str, Any]) -> StudyConfig:
    return config_module.from_mapping(change)


def _in_memory(folder: Path, config: StudyConfig) -> tuple[pd.DataFrame, StudyConfig]:
    patients = pd.read_parquet(folder / "patients.parquet")
    sessions = pd.read_parquet(folder / "sessions.parquet")
    study, _notes = resolve_primary(config, sessions)
    return definitions.derive(patients, sessions, study), study


def assert_same_table(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    """Every column equal after ordering by patient id; the engine's types are cast to the
    in-memory ones (nullable booleans, object text)."""
    assert list(got.columns) == list(expected.columns)
    expected = expected.sort_values("patient_id").reset_index(drop=True)
    got = got.reset_index(drop=True)
    assert got["patient_id"].tolist() == expected["patient_id"].tolist()
    for column in expected.columns:
        cast = got[column].astype(expected[column].dtype)
        pd.testing.assert_series_equal(cast, expected[column], check_exact=True,
                                       obj=f"column {column}")


def _columnar(backend: Any, folder: Path, study: StudyConfig) -> Any:
    tables = engine.read_tables(backend, folder)
    return patient_outcomes.derive(tables.patients, tables.sessions, study)


@pytest.fixture(scope="module")
def duckdb() -> Any:
    return engine.connect("duckdb")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_duckdb_patient_outcomes_equal_the_in_memory_ones(name: str, duckdb: Any) -> None:
    expected, study = _in_memory(_demo_folder(), _config(CONFIGS[name]))
    got = _columnar(duckdb, _demo_folder(), study).to_pandas()
    assert_same_table(expected, got)


@pytest.mark.parametrize("name", ["default", "trial_populations", "rci_not_fixed_change"])
def test_duckdb_rates_equal_the_in_memory_ones(name: str, duckdb: Any) -> None:
    expected, study = _in_memory(_demo_folder(), _config(CONFIGS[name]))
    got = rates.response_rates(_columnar(duckdb, _demo_folder(), study), study)
    pd.testing.assert_frame_equal(got, rate_table(expected, study), check_exact=True)


def test_the_configs_change_the_table(duckdb: Any) -> None:
    """The variants above are not all the same table (each test could fail)."""
    tables = {name: _in_memory(_demo_folder(), _config(change))[0]
              for name, change in CONFIGS.items()}
    default = tables.pop("default")
    for name, table in tables.items():
        assert list(table.columns) != list(default.columns) or not table.equals(default), name


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(shape=study_shapes(future_valid=False, max_patients=40))
def test_generated_study_shapes_give_the_same_table(shape: Any, duckdb: Any) -> None:
    """Any valid study shape (instruments, schedules, scoring, formats ...): the validated
    tables give the same ``patient_outcomes`` on DuckDB as in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_study(shape, Path(tmp) / "study")
        result = validate.run(io.read_study(folder, validate.TABLE_ORDER,
                                            validate.REQUIRED_TABLES))
        tables = Path(tmp) / "validated"
        tables.mkdir()
        for name in ("patients", "sessions"):
            result.tables[name].reset_index(drop=True).to_parquet(tables / f"{name}.parquet")
        expected, study = _in_memory(tables, _config({}))
        got = _columnar(duckdb, tables, study).to_pandas()
        on_engine = engine.read_tables(duckdb, tables)
        assert checks.breaches(on_engine.patients, on_engine.sessions, study) == []
    assert_same_table(expected, got)


def test_parquet_parts_are_read_as_one_table(tmp_path: Path, duckdb: Any) -> None:
    """A registry written in pieces (``sessions/*.parquet``) is one table."""
    sessions = pd.read_parquet(_demo_folder() / "sessions.parquet")
    (tmp_path / "sessions").mkdir()
    half = len(sessions) // 2
    sessions.iloc[:half].to_parquet(tmp_path / "sessions" / "part-0.parquet")
    sessions.iloc[half:].to_parquet(tmp_path / "sessions" / "part-1.parquet")
    pd.read_parquet(_demo_folder() / "patients.parquet").to_parquet(
        tmp_path / "patients.parquet")
    expected, study = _in_memory(_demo_folder(), _config({}))
    assert_same_table(expected, _columnar(duckdb, tmp_path, study).to_pandas())


def test_the_cli_writes_the_shared_rates_of_a_full_run(tmp_path: Path) -> None:
    """``ipt-outcomes columnar`` on a run's validated tables writes the same bytes as the
    run's shared ``response_rates.csv`` (small counts hidden by the sharing layer)."""
    run_out = tmp_path / "run"
    assert main(["outcomes", str(_demo_folder()), "--out", str(run_out)]) == 0
    assert main(["columnar", str(run_out / "validated"), "--out", str(tmp_path / "col")]) == 0
    shared = (tmp_path / "col" / "columnar" / "response_rates.csv").read_bytes()
    assert shared == (run_out / "tables" / "response_rates.csv").read_bytes()
    assert b"<5" in shared or b",," in shared  # some small count was hidden
    per_patient = pd.read_parquet(tmp_path / "col" / "columnar" / "patient_outcomes.parquet")
    assert len(per_patient) == 300


def test_the_model_sample_is_the_in_memory_hash_sample(tmp_path: Path) -> None:
    """``--model-sample`` writes the study of exactly the patients that the models' own
    rule (``modelling.sampling.hash_sample``) picks, with all their sessions."""
    assert main(["columnar", str(_demo_folder()), "--out", str(tmp_path),
                 "--model-sample", "120"]) == 0
    folder = tmp_path / "columnar" / "model_sample"
    patients = pd.read_parquet(_demo_folder() / "patients.parquet")
    sessions = pd.read_parquet(_demo_folder() / "sessions.parquet")
    chosen = set(patients["patient_id"].iloc[hash_sample(patients["patient_id"], 120)])
    sample = pd.read_parquet(folder / "patients.parquet")
    assert set(sample["patient_id"]) == chosen and len(sample) == 120
    kept = pd.read_parquet(folder / "sessions.parquet")
    assert len(kept) == int(sessions["patient_id"].isin(chosen).sum())
    assert list(kept.columns) == list(sessions.columns)


def _broken(tmp_path: Path) -> Path:
    """The demo with one row breaking each of four rules."""
    patients = pd.read_parquet(_demo_folder() / "patients.parquet")
    sessions = pd.read_parquet(_demo_folder() / "sessions.parquet")
    bad = sessions.iloc[:4].copy()
    bad["session_number"] = [50.0, -1.0, 51.0, 52.0]
    bad.loc[bad.index[0], "patient_id"] = "P-NOBODY"
    bad.loc[bad.index[2], "attendance"] = "maybe"
    bad.loc[bad.index[3], "phq9"] = 99.0
    folder = tmp_path / "broken"
    folder.mkdir()
    pd.concat([sessions, bad]).reset_index(drop=True).to_parquet(folder / "sessions.parquet")
    pd.concat([patients, patients.iloc[:1]]).to_parquet(folder / "patients.parquet")
    return folder


def test_rows_that_break_the_contract_refuse_the_run_by_file_rule_and_row(
        tmp_path: Path, capsys: Any) -> None:
    """Hostile rows are never derived from silently: the run is refused, and the message
    names the file, each broken rule, the number of rows and the first of them."""
    folder = _broken(tmp_path)
    code = main(["columnar", str(folder), "--out", str(tmp_path / "out")])
    said = capsys.readouterr().err
    assert code == 1
    for rule in ("patient_exists", "greater_than_or_equal_to(0)", "isin(attendance)",
                 "in_range(phq9)", "unique(patient_id)"):
        assert f"break {rule}" in said, rule
    assert f"{folder}/sessions: 1 row(s) break patient_exists (first: patient_id=P-NOBODY" in said
    assert "Traceback" not in said
    assert not (tmp_path / "out" / "columnar" / "response_rates.csv").exists()


@pytest.mark.parametrize("name", ["bdi2_sparse_trial_no_therapists", "one_patient",
                                  "gad7_only_with_followups"])
def test_a_raw_csv_study_gives_the_rates_of_a_run(name: str, tmp_path: Path) -> None:
    """A study folder as a service writes it (CSV, types inferred by the engine, empty
    score columns): the same shared rates as ``ipt-outcomes outcomes``, byte for byte."""
    folder = write_study(NAMED_SHAPES[name], tmp_path / "study")
    assert main(["outcomes", str(folder), "--out", str(tmp_path / "run")]) == 0
    assert main(["columnar", str(folder), "--out", str(tmp_path / "col")]) == 0
    assert (tmp_path / "col" / "columnar" / "response_rates.csv").read_bytes() == (
        tmp_path / "run" / "tables" / "response_rates.csv").read_bytes()


def test_a_value_of_the_wrong_type_is_refused_not_dropped(tmp_path: Path,
                                                          capsys: Any) -> None:
    folder = write_study(NAMED_SHAPES["one_patient"], tmp_path / "study")
    lines = (folder / "sessions.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[1] = "abc"
    lines[2] = ",".join(cells)
    (folder / "sessions.csv").write_text("\n".join(lines) + "\n")
    assert main(["columnar", str(folder), "--out", str(tmp_path / "out")]) == 1
    said = capsys.readouterr().err
    assert "1 row(s) break dtype(session_number)" in said and "Traceback" not in said


def test_valid_tables_break_no_rule(duckdb: Any) -> None:
    tables = engine.read_tables(duckdb, _demo_folder())
    assert checks.breaches(tables.patients, tables.sessions, _config({})) == []


def test_a_rule_the_route_cannot_express_is_refused_by_name(tmp_path: Path,
                                                             capsys: Any) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("endpoint:\n  rule: week\n  week: 12\n")
    code = main(["columnar", str(_demo_folder()), "--out", str(tmp_path / "out"),
                 "--config", str(config)])
    assert code != 0
    said = capsys.readouterr().err
    assert "endpoint.rule" in said and "Traceback" not in said


# --------------------------------------------------------------------------- Spark


@pytest.fixture(scope="module")
def spark() -> Any:
    """A local Spark cluster (two worker threads), as the distributed route runs in CI."""
    backend = engine.connect("pyspark", master="local[2]")
    yield backend
    backend._session.stop()


def test_spark_local_cluster_gives_the_embedded_tables(spark: Any, duckdb: Any,
                                                       tmp_path: Path) -> None:
    """The same queries on Spark: ``patient_outcomes`` equal to DuckDB's and to the
    in-memory one, the rates equal, and the CLI's shared rates the same bytes."""
    expected, study = _in_memory(_demo_folder(), _config(CONFIGS["trial_populations"]))
    on_spark = _columnar(spark, _demo_folder(), study)
    assert_same_table(expected, on_spark.to_pandas())
    assert_same_table(_columnar(duckdb, _demo_folder(), study).to_pandas(),
                      on_spark.to_pandas())
    pd.testing.assert_frame_equal(rates.response_rates(on_spark, study),
                                  rate_table(expected, study), check_exact=True)
    runs = {name: columnar_run.run(_demo_folder(), tmp_path / name, _config({}), name)
            for name in ("duckdb", "pyspark")}
    # a warehouse's layout: a URL with a folder of Parquet parts per table
    parts = tmp_path / "warehouse"
    for name in ("patients", "sessions"):
        (parts / name).mkdir(parents=True)
        pd.read_parquet(_demo_folder() / f"{name}.parquet").to_parquet(
            parts / name / "part-0.parquet")
    runs["url"] = columnar_run.run(f"file://{parts}", tmp_path / "url", _config({}), "pyspark")
    files = {name: (tmp_path / name / "columnar" / "response_rates.csv").read_bytes()
             for name in runs}
    assert files["duckdb"] == files["pyspark"] == files["url"]
    assert runs["pyspark"].patients == runs["url"].patients == 300
