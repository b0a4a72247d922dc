"""Every table the pipeline writes meets its output contract (``data_schemas.outputs``).

The pipeline is run in-process (``pipeline.cli.main``) once per module on three shapes:

- the demo (400 patients) with a custom mixed model and a lower events-per-parameter
  threshold, so that the Cox, proportional-hazards and Weibull AFT tables are written too;
- a real public study, ``tests/fixtures/real/beat_the_blues`` (one site, no therapists,
  BDI-II only, three custom models: see ``tests/test_real_datasets.py``);
- a generated study shape (``tests/study_shapes.py``, ``everyone_responds``: seven
  patients, one condition and format), whose benchmark rows have no data and whose phase
  model is a boundary fit (a correlation of -1);
- a faulty demo through ``validate`` only, so the failure cases and the quarantine files
  have rows.

Each CSV under ``OUT/tables``, ``OUT/audit`` and ``OUT/validation`` is read as a downstream
user would, ``pd.read_csv(path, keep_default_na=False, na_values=[""])`` (pandas' types;
only the empty cell is missing), and validated lazily against ``contract_for(name)``; the
schemas coerce what pandas inferred (see the module docstring of
``data_schemas.outputs``). A table without a contract fails, so a new table needs one.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from data_schemas import outputs
from data_schemas.outputs import OUTPUT_CONTRACTS, contract_for, is_shared_count
from pipeline import cli
from tests.study_shapes import NAMED_SHAPES, write_study

REAL = Path(__file__).parent / "fixtures" / "real"
FOLDERS = ("tables", "audit", "validation")
DEMO_CONFIG = """\
trajectories:
  custom:
    - name: by_age
      formula: "phq9 ~ weeks + age + (1 | patient_id)"
relapse:
  min_events_per_parameter: 2
"""


@dataclass(frozen=True)
class Written:
    """An output folder and the exit code of the command that wrote it."""

    name: str
    out: Path
    code: int

    def files(self) -> dict[str, Path]:
        """Table name (``contract_for``'s key) -> CSV path, for every CSV written."""
        found = {}
        for folder in FOLDERS:
            for path in sorted((self.out / folder).rglob("*.csv")):
                relative = path.relative_to(self.out / folder).with_suffix("")
                found[relative.as_posix()] = path
        return found


def _main(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return cli.main(argv)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Written:
    root = tmp_path_factory.mktemp("contracts_demo")
    assert _main(["demo", "--out", str(root / "data"), "--patients", "400"]) == 0
    (root / "study.yaml").write_text(DEMO_CONFIG)
    code = _main(["run", str(root / "data"), "--out", str(root / "out"),
                  "--config", str(root / "study.yaml")])
    return Written("demo", root / "out", code)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Written:
    folder = REAL / "beat_the_blues"
    out = tmp_path_factory.mktemp("contracts_real") / "out"
    code = _main(["run", str(folder), "--out", str(out), "--config",
                  str(folder / "study.yaml")])
    return Written("beat_the_blues", out, code)


@pytest.fixture(scope="module")
def shape_run(tmp_path_factory: pytest.TempPathFactory) -> Written:
    root = tmp_path_factory.mktemp("contracts_shape")
    folder = write_study(NAMED_SHAPES["everyone_responds"], root / "study")
    code = _main(["run", str(folder), "--out", str(root / "out")])
    return Written("everyone_responds", root / "out", code)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> Written:
    root = tmp_path_factory.mktemp("contracts_faulty")
    assert _main(["demo", "--out", str(root / "data"), "--patients", "60",
                  "--with-faults"]) == 0
    code = _main(["validate", str(root / "data"), "--out", str(root / "out")])
    return Written("faulty", root / "out", code)


@pytest.fixture(params=["demo_run", "real_run", "shape_run", "faulty_run"])
def written(request: pytest.FixtureRequest) -> Written:
    run: Written = request.getfixturevalue(request.param)
    return run


def read_output(path: Path) -> pd.DataFrame:
    """A written table as a downstream user reads it (see the module docstring)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


# --------------------------------------------------------------------------- the runs


def test_run_succeeded(written: Written) -> None:
    log = written.out / "run.log"
    tail = log.read_text()[-2000:] if log.is_file() else "(no run.log)"
    assert written.code == 0, f"{written.name}: exit {written.code}\n{tail}"
    assert written.files(), f"{written.name}: nothing written under {FOLDERS}"


def test_every_written_table_has_a_contract(written: Written) -> None:
    missing = [name for name in written.files() if contract_for(name) is None]
    assert not missing, (f"{written.name}: tables without an output contract in "
                         f"data_schemas/outputs/: {missing}")


def test_every_written_table_meets_its_contract(written: Written) -> None:
    problems = []
    for name, path in written.files().items():
        contract = contract_for(name)
        if contract is None:
            continue
        try:
            contract.validate(read_output(path), lazy=True)
        except pa.errors.SchemaErrors as error:
            cases = error.failure_cases[["column", "check", "failure_case", "index"]]
            problems.append(f"{name}:\n{cases.head(10).to_string()}")
    assert not problems, f"{written.name}:\n" + "\n".join(problems)


def test_every_contract_is_exercised(demo_run: Written, real_run: Written,
                                         faulty_run: Written) -> None:
    """Every contract is exercised by at least one of the runs above, so none is stale."""
    used = {key for run in (demo_run, real_run, faulty_run) for name in run.files()
            for key, schema in OUTPUT_CONTRACTS.items() if contract_for(name) is schema}
    assert set(OUTPUT_CONTRACTS) - used == set()


def test_custom_model_tables_match_their_patterns(real_run: Written) -> None:
    names = real_run.files()
    for kind in ("fixed", "variance", "diagnostics"):
        name = f"mixed_btheb_slope_{kind}"
        assert name in names
        assert contract_for(name) is OUTPUT_CONTRACTS[outputs.MIXED_PATTERN.format(kind=kind)]


# --------------------------------------------------------------------------- the contracts


def test_every_contract_column_is_documented() -> None:
    assert outputs.undocumented_columns() == []
    for name, schema in OUTPUT_CONTRACTS.items():
        assert schema.description, name
        for column in schema.columns.values():
            assert column.metadata and column.metadata.get("kind") in outputs.KINDS, \
                f"{name}.{column.name}"


def test_contract_for_prefers_names_to_patterns() -> None:
    assert contract_for("mixed_patient_fitted") is OUTPUT_CONTRACTS["mixed_patient_fitted"]
    assert contract_for("mixed_growth_fixed") is not None
    assert contract_for("quarantine/sessions") is not None
    assert contract_for("quarantine/nhs_numbers") is None
    assert contract_for("response_rates_extra") is None


@pytest.mark.parametrize(("value", "ok"), [
    (0, True), (12, True), (np.int64(3), True), (7.0, True), ("139", True), ("<5", True),
    ("*", True), (-1, False), (2.5, False), ("five", False), (True, False),
    (float("inf"), False), ("<", False),
])
def test_shared_count(value: object, ok: bool) -> None:
    assert is_shared_count(value) is ok


def _rates(**changes: object) -> pd.DataFrame:
    row: dict[str, object] = {
        "population": "finished_course", "instrument": "phq9", "outcome": "response",
        "denominator": "observed", "condition": "all", "format": "all", "n": 20,
        "events": 10, "rate": 0.5, "ci_low": 0.3, "ci_high": 0.7, "suppressed": False}
    row.update(changes)
    return pd.DataFrame([row])


def test_a_valid_rate_row_passes() -> None:
    contract = OUTPUT_CONTRACTS["response_rates"]
    contract.validate(_rates())
    contract.validate(_rates(n="<5", events="*", rate=np.nan, ci_low=np.nan,
                             ci_high=np.nan, suppressed=True))


@pytest.mark.parametrize("changes", [
    {"rate": 1.2}, {"ci_low": 0.6}, {"ci_high": 0.4}, {"n": "n/a"}, {"events": -3},
    {"denominator": "all"}, {"extra_column": 1},
], ids=["rate>1", "low>estimate", "high<estimate", "bad count", "negative count",
        "unknown denominator", "undeclared column"])
def test_a_broken_rate_row_fails(changes: dict[str, object]) -> None:
    with pytest.raises(pa.errors.SchemaErrors):
        OUTPUT_CONTRACTS["response_rates"].validate(_rates(**changes), lazy=True)


def test_interval_order_has_a_tolerance() -> None:
    OUTPUT_CONTRACTS["response_rates"].validate(_rates(rate=0.3 - 1e-12, ci_low=0.3))


def test_horizon_intervals_are_paired_by_pattern() -> None:
    row = {"stratum_variable": "all", "stratum": "all", "n": 50, "events": 8,
           "median_weeks": np.nan, "median_ci_low": 40.0, "median_ci_high": np.nan,
           "relapse_free_26w": 0.9, "ci_low_26w": 0.8, "ci_high_26w": 0.95,
           "suppressed": False}
    contract = OUTPUT_CONTRACTS["relapse_km"]
    contract.validate(pd.DataFrame([row]))
    with pytest.raises(pa.errors.SchemaErrors):
        contract.validate(pd.DataFrame([{**row, "ci_high_26w": 0.85}]), lazy=True)
