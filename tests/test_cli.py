"""The command line: exit codes, outputs, and no traceback on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from tests.conftest import StudyWriter, base_sessions


def test_validate_valid_study_writes_report(write_study: StudyWriter, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["validate", str(write_study()), "--out", str(out)]) == 0
    summary = json.loads((out / "validation" / "summary.json").read_text())
    assert summary["tables"]["sessions"] == {
        "file": "sessions.csv", "rows_in": 9, "rows_valid": 9, "rows_quarantined": 0,
        "blank_lines_skipped": 0, "notes": []}
    assert set(summary["inputs"]) == {"patients.csv", "sessions.csv", "followups.csv"}
    assert (out / "validation" / "failure_cases.csv").exists()
    assert (out / "validation" / "quarantine" / "sessions.csv").exists()
    assert "validation OK" in capsys.readouterr().out


def test_validate_exit_codes_follow_quarantine_share(write_study: StudyWriter,
                                                     tmp_path: Path) -> None:
    sessions = base_sessions()
    sessions[1]["phq9"] = "99"  # 1 of 9 session rows = 11% quarantined
    folder = write_study(sessions=sessions)
    out = tmp_path / "o"
    assert main(["validate", str(folder), "--out", str(out)]) == 1
    assert main(["validate", str(folder), "--out", str(out), "--max-quarantine", "0.2"]) == 0
    assert main(["validate", str(folder), "--out", str(out), "--max-quarantine", "0.2",
                 "--strict"]) == 1
    failures = pd.read_csv(out / "validation" / "failure_cases.csv")
    assert failures[["table", "line", "column", "value", "check"]].values.tolist() == [
        ["sessions", 3, "phq9", 99, "less_than_or_equal_to"]]
    quarantine = pd.read_csv(out / "validation" / "quarantine" / "sessions.csv")
    assert quarantine["line"].tolist() == [3]


def test_unusable_input_exits_2_without_traceback(write_study: StudyWriter,
                                                  tmp_path: Path) -> None:
    folder = write_study()
    (folder / "patients.csv").write_bytes("patient_id\nP\xe9\n".encode("latin-1"))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", str(folder), "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "patients.csv" in done.stderr and "UTF-8" in done.stderr


def test_missing_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_every_option_has_help() -> None:
    from pipeline.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        for option in action._actions:
            assert option.help, f"{action.prog}: {option.dest} has no help"


def test_demo_with_faults_every_fault_is_caught(tmp_path: Path) -> None:
    data, out = tmp_path / "demo", tmp_path / "out"
    assert main(["demo", "--out", str(data), "--patients", "300", "--with-faults"]) == 0
    assert main(["validate", str(data), "--out", str(out), "--max-quarantine", "0.5"]) == 0
    injected = pd.read_csv(data / "injected_faults.csv")
    failures = pd.read_csv(out / "validation" / "failure_cases.csv")
    for table in ("patients", "sessions", "followups"):
        raw = pd.read_csv(data / f"{table}.csv", dtype=str)
        raw.index = raw.index + 2  # source lines
        failures_here = failures[failures["table"] == table]
        flagged_ids = set(raw.loc[failures_here["line"], "patient_id"])
        direct = failures_here[failures_here["check"] != "patient_quarantined"]
        assert len(direct) >= (injected["table"] == table).sum()
        for pid in injected.loc[injected["table"] == table, "patient_id"]:
            assert pid in flagged_ids, f"{table}: fault for {pid} not caught"


def test_demo_files_are_byte_identical_for_a_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["demo", "--out", str(tmp_path / name), "--patients", "200"]) == 0
    for file in ("patients.csv", "sessions.csv", "followups.csv", "truth.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


PATIENT_OUTCOME_COLUMNS = [
    "patient_id", "site_id", "therapist_id", "condition", "format", "problem_area",
    "sessions_scheduled", "sessions_attended", "attendance_rate", "dropout", "started",
    "finished_course", "completers", "phq9_baseline", "phq9_endpoint", "phq9_change",
    "phq9_pct_change", "phq9_response", "phq9_remission", "phq9_reliable_improvement",
    "phq9_reliable_deterioration", "phq9_jt_class", "caseness_at_start",
    "reliable_improvement", "reliable_deterioration", "recovery", "reliable_recovery",
]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo300")
    assert main(["demo", "--out", str(folder), "--patients", "300"]) == 0
    return folder


def test_outcomes_command_writes_the_tables(demo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["outcomes", str(demo_folder), "--out", str(out)]) == 0
    tables = out / "tables"
    patient_outcomes = pd.read_csv(tables / "patient_outcomes.csv")
    assert set(PATIENT_OUTCOME_COLUMNS) <= set(patient_outcomes.columns)
    assert len(patient_outcomes) == 300
    rates = pd.read_csv(tables / "response_rates.csv", dtype=str)
    assert list(rates.columns[:11]) == ["population", "instrument", "outcome", "denominator",
                                        "condition", "format", "n", "events", "rate",
                                        "ci_low", "ci_high"]
    assert set(rates["denominator"]) == {"observed", "itt"}
    numeric = pd.to_numeric(rates["events"], errors="coerce")
    assert not numeric.between(1, 4).any(), "small counts must be suppressed for sharing"
    assert (rates["events"] == "<5").any()
    models = pd.read_csv(tables / "response_models.csv")
    assert list(models.columns) == ["term", "odds_ratio", "ci_low", "ci_high", "p_value"]
    assert "format[group]" in set(models["term"])
    for name in ("response_standardised", "benchmark_comparison", "attendance"):
        assert (tables / f"{name}.csv").exists()


def test_no_suppress_shows_small_counts(demo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    assert main(["outcomes", str(demo_folder), "--out", str(out), "--no-suppress"]) == 0
    rates = pd.read_csv(out / "tables" / "response_rates.csv")
    assert rates["events"].between(1, 4).any()


def test_outcomes_are_byte_reproducible(demo_folder: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["outcomes", str(demo_folder), "--out", str(tmp_path / name)]) == 0
    for file in sorted((tmp_path / "a" / "tables").iterdir()):
        assert file.read_bytes() == (tmp_path / "b" / "tables" / file.name).read_bytes(), file


def test_bad_config_exits_2_naming_the_key(demo_folder: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "study.yaml"
    bad.write_text("instruments:\n  phq9:\n    casenes: 10\n")
    assert main(["outcomes", str(demo_folder), "--out", str(tmp_path),
                 "--config", str(bad)]) == 2
    assert "instruments.phq9: unknown key(s) casenes" in capsys.readouterr().err


def test_config_example_prints_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--example"]) == 0
    assert "caseness: 10" in capsys.readouterr().out


def _broken(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("simulated bug in the format comparison")


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_a_failing_analysis_is_isolated_and_exits_4(
        demo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], verbose: list[str]) -> None:
    from pipeline.outcomes import tables as outcome_tables

    monkeypatch.setattr(outcome_tables, "format_comparison", _broken)
    out = tmp_path / "out"
    assert main([*verbose, "outcomes", str(demo_folder), "--out", str(out)]) == 4
    analyses = pd.read_csv(out / "tables" / "analyses.csv", keep_default_na=False)
    status = dict(zip(analyses["analysis"], analyses["status"], strict=True))
    assert status["response_models"] == "failed"
    assert status["response_rates"] == status["attendance"] == "done"
    for name in ("response_rates", "attendance", "benchmark_comparison", "patient_outcomes"):
        assert (out / "tables" / f"{name}.csv").exists()
    assert not (out / "tables" / "response_models.csv").exists()
    run_log = (out / "run.log").read_text()
    assert "Traceback" in run_log and "simulated bug" in run_log
    err = capsys.readouterr().err
    assert "outcomes/response_models" in err
    if not verbose:  # the traceback goes to run.log, not the terminal
        assert "Traceback" not in err


def test_models_relapse_and_audit_do_not_fit_the_format_comparison(
        demo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.outcomes import comparison
    from pipeline.outcomes import tables as outcome_tables

    monkeypatch.setattr(outcome_tables, "format_comparison", _broken)
    monkeypatch.setattr(comparison, "adjusted_response", _broken)
    out = tmp_path / "out"
    assert main(["relapse", str(demo_folder), "--out", str(out)]) == 0
    analyses = pd.read_csv(out / "tables" / "analyses.csv", keep_default_na=False)
    assert set(analyses["stage"]) == {"derive", "relapse"}
    assert not (out / "figures" / "outcome_rates.png").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "2", "text", "1e309"])
def test_max_quarantine_outside_zero_to_one_is_a_usage_error(
        value: str, write_study: StudyWriter, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["validate", str(write_study()), "--out", str(tmp_path / "o"),
              f"--max-quarantine={value}"])
    assert stopped.value.code == 2
    assert "--max-quarantine" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("date_format", ["%Q", "%", "%%", "%Y" * 2000, "%Y-%m-%d%", "0"])
def test_unusable_date_format_is_a_usage_error_checked_up_front(
        date_format: str, write_study: StudyWriter, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["validate", str(write_study()), "--out", str(tmp_path / "o"),
              f"--date-format={date_format}"])
    assert stopped.value.code == 2
    assert "--date-format" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("out", ["", " ", "o\x00ut"])
def test_out_that_cannot_name_a_folder_is_a_usage_error(
        out: str, write_study: StudyWriter, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["validate", str(write_study()), "--out", out])
    assert stopped.value.code == 2 and "--out" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["under_a_file", "name_too_long", "dangling_symlink"])
def test_out_the_system_refuses_exits_2_naming_it(
        kind: str, write_study: StudyWriter, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    out = {"under_a_file": tmp_path / "file" / "out", "name_too_long": tmp_path / ("o" * 300),
           "dangling_symlink": tmp_path / "link"}[kind]
    if kind == "dangling_symlink":
        out.symlink_to(tmp_path / "nowhere" / "deeper")
    code = main(["validate", str(write_study()), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path) in err and "internal error" not in err


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_formula_injection_in_a_config_exits_2_and_runs_nothing(
        write_study: StudyWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each payload would run ``touch CANARY`` under formulaic; the config load refuses it."""
    import yaml

    from tests.test_formula_grammar import payloads

    folder = write_study()
    canary = tmp_path / "canary"
    for i, (fixed, quoted) in enumerate(payloads(canary)):
        config = tmp_path / f"study{i}.yaml"
        config.write_text(yaml.safe_dump({"trajectories": {"custom": [
            {"name": "evil", "formula": f"phq9 ~ {fixed} + (1 | patient_id)"}]}}))
        for engine in ("statsmodels", "mixedlm"):
            code = main(["models", str(folder), "--out", str(tmp_path / "out"),
                         "--config", str(config), "--engine", engine])
            err = capsys.readouterr().err
            assert code == 2, err
            assert "trajectories.custom[0].formula" in err and quoted in err, err
    assert not canary.exists()
    assert not (tmp_path / "out" / "validation").exists()  # refused before reading data
    assert not (tmp_path / "out" / "tables").exists()


@pytest.mark.parametrize("name", ["x/../../../escaped", "..", "/tmp/ipt_escaped_model"])
def test_model_name_path_traversal_exits_2_and_writes_nothing_outside(
        write_study: StudyWriter, tmp_path: Path, name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    folder = write_study()
    out = tmp_path / "a" / "b" / "out"
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"trajectories": {"custom": [
        {"name": name, "formula": "phq9 ~ weeks + (1 | patient_id)"}]}}))
    before = _files(tmp_path)
    assert main(["models", str(folder), "--out", str(out), "--config", str(config)]) == 2
    assert "trajectories.custom[0].name" in capsys.readouterr().err
    outside = {p for p in _files(tmp_path) if out not in p.parents}
    assert outside == before  # OUT/.incomplete is all there is, inside OUT
    assert not (out / "tables").exists()
    assert not Path("/tmp/ipt_escaped_model_fixed.csv").exists()


def test_the_writing_edge_refuses_paths_outside_out(tmp_path: Path) -> None:
    """Defence in depth: names that bypassed the config check still cannot escape OUT."""

    from pipeline import io
    from pipeline.runner.run import emit
    from pipeline.runner.stages import StageOutput
    from pipeline.sharing.publish import SharingOptions

    out = tmp_path / "a" / "out"
    sharing = SharingOptions(keep_ids=True)
    table = pd.DataFrame({"x": [1]})
    for name in ("mixed_x/../../../escaped_fixed", "../../escaped", str(tmp_path / "abs")):
        with pytest.raises(io.InputError, match="outside the output folder"):
            emit(StageOutput({name: table}), out, sharing, b"", "models")
    with pytest.raises(io.InputError, match="outside the output folder"):
        emit(StageOutput({"rates": table}, folder="../.."), out, sharing, b"", "models")
    assert {p for p in _files(tmp_path) if out not in p.parents} == set()
    assert main(["report", "--out", str(out)]) == 2  # nothing written there either


RELAPSE_COHORT_COLUMNS = [  # README, "Relapse after treatment"
    "patient_id", "condition", "format", "problem_area", "age", "sex", "site_id",
    "therapist_id", "group_id", "residual_phq9", "maintenance", "time_weeks", "event",
]


def test_relapse_command_writes_the_pseudonymised_cohort(demo_folder: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "relapse"
    assert main(["relapse", str(demo_folder), "--out", str(out)]) == 0
    cohort = pd.read_csv(out / "tables" / "relapse_cohort.csv")
    assert list(cohort.columns) == RELAPSE_COHORT_COLUMNS
    assert len(cohort) > 20 and set(cohort["event"]) <= {0, 1, 2}
    assert cohort["patient_id"].str.fullmatch(r"p_[0-9a-f]{16}").all()
    real = set(pd.read_csv(demo_folder / "patients.csv")["patient_id"])
    assert not real & set(cohort["patient_id"])
    km = pd.read_csv(out / "tables" / "relapse_km.csv")
    assert int(km.loc[km["stratum_variable"] == "all", "n"].item()) == len(cohort)
