"""Hostile input never crashes the command line (issue "Safe with hostile input").

Every bad option, config value and file gets a message, not exit 3: hypothesis mutates a
small valid study (files), writes random YAML into every config key (configs) and passes odd
option values (options), and for every example asserts

- the exit code is 0, 1 or 2 (never 3 or 4, never an exception escaping ``main``);
- with 1 or 2, the output names the file (or table), the config key or the option concerned;
- when validation ran, ``rows_in == rows_valid + rows_quarantined`` for every table;
- no ``Traceback`` in the output.

The runs are deterministic (``derandomize=True``, no example database) and small.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from tests.conftest import base_followups, base_patients, base_sessions, to_csv


def _fuzz(max_examples: int) -> settings:
    """Deterministic, small, no example database."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=max_examples,
                    suppress_health_check=list(HealthCheck))


TABLES = ("patients", "sessions", "followups")
HUGE = 131_072 + 10  # one more than the csv module's default field size limit
COLLECT = os.environ.get("IPT_FUZZ_COLLECT")  # a path: record failures instead of asserting


# --------------------------------------------------------------------------- harness


def _study(root: Path) -> Path:
    """Write the valid base study under ``root/study`` and return the folder."""
    folder = root / "study"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in zip(TABLES, (base_patients(), base_sessions(), base_followups()),
                          strict=True):
        (folder / f"{name}.csv").write_text(to_csv(rows))
    return folder


def _run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Call ``main`` in-process; an exception escaping it fails the example."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage errors exit 2 with a message
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException as exc:  # the point of the test
        raise AssertionError(f"{type(exc).__name__} escaped main for {argv}: {exc}") from exc
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _check(argv: Sequence[str], code: int, output: str, names: Sequence[str],
           out: Path | None) -> None:
    """The four promises for one run; ``names`` are the words one of which the message
    must contain when the run fails (a file, table, key or option)."""
    brief = output[-1500:]
    if COLLECT:  # building the work list: record every broken promise, assert nothing
        _collect(argv, code, output, names, out)
        return
    assert code in (0, 1, 2), f"exit {code} for {argv}:\n{brief}"
    assert "Traceback" not in output, f"traceback for {argv}:\n{brief}"
    if code in (1, 2):
        assert any(n.lower() in output.lower() for n in names), (
            f"exit {code} for {argv} names none of {list(names)}:\n{brief}")
    summary = out / "validation" / "summary.json" if out is not None else None
    if summary is not None and summary.exists():
        tables = json.loads(summary.read_text())["tables"]
        for name, counts in tables.items():
            assert counts["rows_in"] == counts["rows_valid"] + counts["rows_quarantined"], (
                f"{name}: rows_in != valid + quarantined for {argv}: {counts}")


def _validate_case(files: dict[str, bytes | None], capsys: pytest.CaptureFixture[str],
                   options: Sequence[str] = (), command: str = "validate",
                   note: str = "") -> None:
    """Write the base study, replace (or, with None, delete) some of its files, run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = _study(Path(tmp))
        for filename, data in files.items():
            if data is None:
                (folder / filename).unlink(missing_ok=True)
            else:
                (folder / filename).write_bytes(data)
        out = Path(tmp) / "out"
        argv = [command, str(folder), "--out", str(out), *options]
        code, output = _run(argv, capsys)
        names = [*files, *(f.rsplit(".", 1)[0] for f in files), *TABLES, "study"]
        _check([*argv, note] if note else argv, code, output, names, out)


def _collect(argv: Sequence[str], code: int, output: str, names: Sequence[str],
             out: Path | None) -> None:
    problems = []
    if code not in (0, 1, 2):
        problems.append(f"exit {code}")
    if "Traceback" in output:
        problems.append("traceback")
    if code in (1, 2) and not any(n.lower() in output.lower() for n in names):
        problems.append(f"names none of {list(names)[:4]}")
    summary = out / "validation" / "summary.json" if out is not None else None
    if summary is not None and summary.exists():
        for name, c in json.loads(summary.read_text())["tables"].items():
            if c["rows_in"] != c["rows_valid"] + c["rows_quarantined"]:
                problems.append(f"{name} rows do not add up")
    if problems:
        short = [a if len(a) < 120 else a[:100] + f"...({len(a)} chars)" for a in argv]
        with open(COLLECT, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"problems": problems, "argv": short,
                                     "output": output[-600:]}) + "\n")


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Mutated:
    """A mutated table file; its repr stays short however large the file."""

    filename: str
    kind: str
    data: bytes

    def __repr__(self) -> str:
        head = self.data[:60]
        return f"Mutated({self.filename!r}, {self.kind!r}, {len(self.data)} bytes: {head!r})"


def _base_text(table: str) -> str:
    rows = {"patients": base_patients, "sessions": base_sessions,
            "followups": base_followups}[table]()
    return to_csv(rows)


def _set_cell(text: str, row: int, column: str, value: str) -> str:
    lines = text.split("\n")
    header = lines[0].split(",")
    index = header.index(column)
    cells = lines[row].split(",")
    cells[index] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines)


def _rename_header(text: str, column: str, new: str) -> str:
    lines = text.split("\n")
    lines[0] = ",".join(new if c == column else c for c in lines[0].split(","))
    return "\n".join(lines)


def _add_column(text: str, header: str, value: str) -> str:
    lines = text.rstrip("\n").split("\n")
    lines[0] += "," + header
    lines[1:] = [line + "," + value for line in lines[1:]]
    return "\n".join(lines) + "\n"


def _drop_column(text: str, column: str) -> str:
    lines = text.rstrip("\n").split("\n")
    index = lines[0].split(",").index(column)
    kept = [",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in lines]
    return "\n".join(kept) + "\n"


def _every_row(text: str, column: str, value: str) -> str:
    n = len(text.rstrip("\n").split("\n"))
    for row in range(1, n):
        text = _set_cell(text, row, column, value)
    return text


CELL_VALUES = ["1e309", "-1e309", "nan", "NaN", "inf", "-inf", "-0", "0x10", "1_0", " 7 ",
               "2024-02-30", "0000-01-01", "9999-12-31", "2024-13-01", "24-01-05",
               "=HYPERLINK(\"x\")", "\x00", "'", "\"", "\u202e", "\ufeff", "🙂", "",
               "-", "+1", "1e-400", "999999999999999999999999", "True", "NULL", "None"]
DATE_COLUMNS = {"patients": ["referral_date", "start_date", "end_date"],
                "sessions": ["session_date"], "followups": ["followup_date"]}
NUMBER_COLUMNS = {"patients": ["age"], "sessions": ["session_number", "phq9", "gad7"],
                  "followups": ["phq9", "gad7"]}


@st.composite
def mutated_table(draw: st.DrawFn) -> Mutated:
    """One table of the base study, mutated in one of many hostile ways."""
    table = draw(st.sampled_from(TABLES))
    text = _base_text(table)
    columns = text.split("\n", 1)[0].split(",")
    n_rows = len(text.rstrip("\n").split("\n")) - 1
    kind = draw(st.sampled_from([
        "cell", "every_row", "bytes", "encoding", "bom", "delimiter", "truncate",
        "extra_column", "missing_column", "duplicate_header", "formula_header",
        "huge_field", "empty", "header_only", "nul", "long_line", "random_text",
        "ragged_row", "unclosed_quote", "crlf_cr",
    ]))
    row = draw(st.integers(1, n_rows))
    column = draw(st.sampled_from(columns))
    if kind == "cell":
        value = draw(st.sampled_from(CELL_VALUES) | st.text(max_size=12).filter(
            lambda s: not any(c in s for c in ",\"\r\n")))
        target = draw(st.sampled_from(DATE_COLUMNS[table] + NUMBER_COLUMNS[table] + [column]))
        cell = _set_cell(text, row, target, value)
        return Mutated(f"{table}.csv", kind, cell.encode())
    if kind == "every_row":
        value = draw(st.sampled_from(["nan", "1e309", "2024-02-30", "x", "", "-1"]))
        return Mutated(f"{table}.csv", kind, _every_row(text, column, value).encode())
    if kind == "bytes":
        data = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 5))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return Mutated(f"{table}.csv", kind, bytes(data))
    if kind == "encoding":
        encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]))
        zoe = _set_cell(text, row, column, "Zoë")
        return Mutated(f"{table}.csv", kind, zoe.encode(encoding))
    if kind == "bom":
        return Mutated(f"{table}.csv", kind, draw(st.sampled_from(
            [b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe"])) + text.encode())
    if kind == "delimiter":
        sep = draw(st.sampled_from([";", "\t", "|", " "]))
        return Mutated(f"{table}.csv", kind, text.replace(",", sep).encode())
    if kind == "truncate":
        cut = draw(st.integers(0, len(text) - 1))
        return Mutated(f"{table}.csv", kind, text[:cut].encode())
    if kind == "extra_column":
        header = draw(st.sampled_from(["extra", "", "1abc", "phq9_1", "Patient_ID", "a,b"]))
        return Mutated(f"{table}.csv", kind, _add_column(text, header, "v").encode())
    if kind == "missing_column":
        return Mutated(f"{table}.csv", kind, _drop_column(text, column).encode())
    if kind == "duplicate_header":
        twin = draw(st.sampled_from([column, column.upper(), f" {column} ",
                                     f" {column.upper()} "]))
        return Mutated(f"{table}.csv", kind, _add_column(text, twin, "1").encode())
    if kind == "formula_header":
        return Mutated(f"{table}.csv", kind, _add_column(text, draw(st.sampled_from(
            ['"=HYPERLINK(""x"")"', "@SUM(A1)", "+1", "-2", "\tx"])), "1").encode())
    if kind == "huge_field":
        body = draw(st.sampled_from(["x", "1", "\n"])) * HUGE
        huge = _set_cell(text, row, column, f'"{body}"')
        return Mutated(f"{table}.csv", kind, huge.encode())
    if kind == "empty":
        return Mutated(f"{table}.csv", kind,
                       draw(st.sampled_from([b"", b"\n", b"  \n\n", b"\xef\xbb\xbf"])))
    if kind == "header_only":
        return Mutated(f"{table}.csv", kind, text.split("\n", 1)[0].encode() + draw(
            st.sampled_from([b"", b"\n", b"\n\n"])))
    if kind == "nul":
        at = draw(st.integers(0, len(text)))
        return Mutated(f"{table}.csv", kind, (text[:at] + "\x00" + text[at:]).encode())
    if kind == "long_line":
        return Mutated(f"{table}.csv", kind, (text + "," * 200_000 + "\n").encode())
    if kind == "random_text":
        return Mutated(f"{table}.csv", kind, draw(st.binary(max_size=200)))
    if kind == "ragged_row":
        extra = draw(st.sampled_from([",x", ",,,,", ""]))
        lines = text.split("\n")
        lines[row] = lines[row] + extra if extra else lines[row].rsplit(",", 2)[0]
        return Mutated(f"{table}.csv", kind, "\n".join(lines).encode())
    if kind == "unclosed_quote":
        return Mutated(f"{table}.csv", kind, _set_cell(text, row, column, '"oops').encode())
    line_end = draw(st.sampled_from(["\r\n", "\r"]))
    return Mutated(f"{table}.csv", kind, text.replace("\n", line_end).encode())


def _named(table: str, text: str | bytes) -> Mutated:
    """An example the issue names, as a mutated table file."""
    data = text.encode() if isinstance(text, str) else text
    return Mutated(f"{table}.csv", "named", data)


SESSIONS, PATIENTS = _base_text("sessions"), _base_text("patients")


@_fuzz(30)
@given(mutated_table())
@example(_named("sessions", _add_column(SESSIONS, " PHQ9 ", "1")))  # a twin by case and space
@example(_named("sessions", _add_column(SESSIONS, "PHQ9", "1")))
@example(_named("sessions", _add_column(SESSIONS, "phq9", "1")))  # an exact repeat
@example(_named("patients", _add_column(PATIENTS, '"=HYPERLINK(""x"")"', "1")))
@example(_named("sessions", _set_cell(SESSIONS, 2, "attendance", f'"{"x" * HUGE}"')))
@example(_named("sessions", b""))
@example(_named("sessions", SESSIONS.split("\n", 1)[0] + "\n"))  # header only
@example(_named("sessions", SESSIONS.replace("attended", "at\x00tended")))
@example(_named("sessions", SESSIONS + "x" * 300_000 + "\n"))  # a very long line
@example(_named("sessions", _set_cell(SESSIONS, 1, "phq9", "1e309")))
@example(_named("sessions", _set_cell(SESSIONS, 1, "phq9", "nan")))
@example(_named("sessions", _set_cell(SESSIONS, 1, "phq9", "inf")))
@example(_named("sessions", _set_cell(SESSIONS, 1, "phq9", "-0")))
@example(_named("sessions", _set_cell(SESSIONS, 1, "session_date", "2024-02-30")))
@example(_named("patients", _set_cell(PATIENTS, 1, "referral_date", "0000-01-01")))
@example(_named("sessions", _every_row(SESSIONS, "phq9", "x")))  # every row faulty
@example(_named("patients", _every_row(PATIENTS, "start_date", "x")))
@example(_named("sessions", b"\xef\xbb\xbf" + SESSIONS.encode()))
@example(_named("sessions", SESSIONS.encode("utf-16")))
@example(_named("sessions", SESSIONS.replace(",", ";")))
def test_hostile_files_get_a_message(capsys: pytest.CaptureFixture[str],
                                     case: Mutated) -> None:
    _validate_case({case.filename: case.data}, capsys, note=repr(case))


@_fuzz(8)
@given(st.sampled_from(["patients.csv", "sessions.csv", "followups.csv"]),
       st.sampled_from(["missing", "directory", "parquet_garbage", "both_formats"]))
def test_missing_or_odd_table_files(
        capsys: pytest.CaptureFixture[str], filename: str, kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = _study(Path(tmp))
        path = folder / filename
        if kind == "missing":
            path.unlink()
        elif kind == "directory":
            path.unlink()
            path.mkdir()
        elif kind == "parquet_garbage":
            path.unlink()
            path.with_suffix(".parquet").write_bytes(b"PAR1 not really")
        else:
            path.with_suffix(".parquet").write_bytes(b"PAR1")
        out = Path(tmp) / "out"
        argv = ["validate", str(folder), "--out", str(out)]
        code, output = _run(argv, capsys)
        _check(argv, code, output, [filename, filename.split(".")[0], "study"], out)


# --------------------------------------------------------------------------- configs


def _billion_laughs(depth: int = 9, width: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


CONFIG_KEYS: list[tuple[str, ...]] = [
    ("primary_instrument",), ("baseline_rule",), ("endpoint", "rule"), ("endpoint", "week"),
    ("endpoint", "window_weeks"), ("populations", "final_phase_start"),
    ("populations", "completer_min_sessions"), ("populations", "finished_course_min_sessions"),
    ("populations", "dropout_gap_weeks"), ("paired_instruments",),
    ("instruments",), ("instruments", "phq9"), ("instruments", "phq9", "caseness"),
    ("instruments", "phq9", "response_reduction"), ("instruments", "bdi2", "reliability"),
    ("instruments", "bdi2", "jt_cutoff"), ("instruments", "gad7", "remission_below"),
    ("comparison", "outcome"), ("comparison", "cluster"), ("comparison", "covariates"),
    ("comparison", "min_level_n"), ("benchmarks",), ("suppress_below",),
    ("trajectories", "instrument"), ("trajectories", "time"), ("trajectories", "models"),
    ("trajectories", "engine"), ("trajectories", "contrast_week"),
    ("trajectories", "contrast_weeks"), ("trajectories", "custom"),
    ("trajectories", "max_patients"), ("relapse", "at_risk"), ("relapse", "instrument"),
    ("relapse", "threshold"), ("relapse", "cluster"), ("relapse", "horizon_weeks"),
    ("relapse", "rmst_weeks"), ("relapse", "min_events_per_parameter"),
    ("relapse", "min_at_risk"), ("relapse", "clinician_relapse_exact"),
    ("audit", "recovery_target"), ("audit", "effect_size_bands"),
    ("audit", "completeness_standard"), ("audit", "min_funnel_n"), ("audit", "funnel_levels"),
    ("audit", "winsorise"), ("audit", "overdispersion_alpha"),
    ("audit", "adjust_overdispersion"), ("audit", "min_level_n"),
    ("audit", "case_mix_covariates"), ("audit", "bootstrap_resamples"), ("audit", "seed"),
    ("audit", "planned_sessions"), ("audit", "prediction_level"),
    ("audit", "max_model_patients"), ("audit", "instrument"),
]

SCALARS = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(["", "phq9", "x", "weeks", "a ~ b", "nan", ".inf", "1e309"])
           | st.text(max_size=8))
YAML_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)
RAW_YAML = st.sampled_from([
    "!!python/object:os.system {}", "!!python/object/apply:os.system ['true']",
    "!!binary aGVsbG8=", "!!set {a, b}", "!!timestamp 2024-01-01", "&anchor 3",
    "[&x 1, *x]", ".nan", "-.inf", "1e309", "0x1F", "0o17", "1_000", "~", "2024-01-01",
    "{a: 1, a: 2}", "[[[[[[[[[[[]]]]]]]]]]]", "!!str 3", "!!int '3'", "? [a]\n: b",
    "|\n  text", "*undefined",
])


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line if line else line for line in text.split("\n"))


def _config_with_raw(path: tuple[str, ...], raw: str) -> str:
    """A YAML document setting ``path`` to the literal YAML ``raw``."""
    lines = [f"{'  ' * i}{key}:" for i, key in enumerate(path)]
    if "\n" in raw:
        return "\n".join(lines) + "\n" + _indent(raw, 2 * len(path)) + "\n"
    return "\n".join([*lines[:-1], f"{lines[-1]} {raw}"]) + "\n"


def _config_case(document: str, key: str, capsys: pytest.CaptureFixture[str],
                 command: str = "config") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "study.yaml"
        config.write_text(document)
        if command == "config":
            argv, out = ["config", "--config", str(config)], None
        else:
            out = Path(tmp) / "out"
            argv = [command, str(_study(Path(tmp))), "--out", str(out), "--config", str(config)]
        code, output = _run(argv, capsys)
        # a YAML-level fault names the file; a value fault names the key
        _check(argv, code, output, [key] if code == 2 and "YAML" not in output
               else ["study.yaml"], out)


@_fuzz(120)
@given(st.sampled_from(CONFIG_KEYS), YAML_VALUES)
@example(("audit", "funnel_levels"), [0.95, "x"])
@example(("audit", "effect_size_bands"), [["phq9", "a", 1, 2]])
@example(("audit", "effect_size_bands"), [["phq9", 0.9, 0.7]])
@example(("comparison", "covariates"), [1, 2])
@example(("relapse", "horizon_weeks"), [float("nan")])
@example(("relapse", "horizon_weeks"), [float("inf")])
@example(("trajectories", "custom"), [{"name": "m", "formula": 3}])
@example(("trajectories", "custom"), ["growth"])
@example(("trajectories", "models"), [["growth"]])
@example(("paired_instruments",), ["phq9", ["gad7"]])
@example(("suppress_below",), float("nan"))
@example(("suppress_below",), 10**30)
@example(("audit", "bootstrap_resamples"), -1)
@example(("audit", "seed"), -1)
@example(("audit", "seed"), 2**70)
@example(("populations", "final_phase_start"), float("nan"))
@example(("instruments", "phq9", "caseness"), float("nan"))
@example(("instruments", "phq9"), [1])
@example(("instruments",), {"phq9": {"caseness": {"a": 1}}})
@example(("benchmarks",), 3)
@example(("benchmarks",), "/nonexistent/benchmarks.csv")
def test_random_config_values_get_a_message(
        capsys: pytest.CaptureFixture[str], path: tuple[str, ...], value: Any) -> None:
    document = yaml.safe_dump(_nest(path, value), allow_unicode=True)
    _config_case(document, path[-1], capsys)


@_fuzz(30)
@given(st.sampled_from(CONFIG_KEYS), RAW_YAML)
@example(("audit", "funnel_levels"), "!!python/object:os.system {}")
def test_raw_yaml_in_config_values_gets_a_message(
        capsys: pytest.CaptureFixture[str], path: tuple[str, ...], raw: str) -> None:
    _config_case(_config_with_raw(path, raw), path[-1], capsys)


@pytest.mark.parametrize("document", [
    _billion_laughs(),
    "audit:\n  funnel_levels:\n" + _indent(_billion_laughs(), 4),
    "audit:\n  funnel_levels: &a [0.95, 0.998]\nrelapse:\n  horizon_weeks: *a\n",
    "- 1\n- 2\n", "just text\n", "", "---\n---\n", "\x00", "\t: x\n", "a: [\n",
    "{" * 5000 + "}" * 5000,
])
def test_hostile_yaml_documents_get_a_message(document: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _config_case(document, "study.yaml", capsys)


# configs that load: do the analyses cope? (a whole run takes seconds: a few chosen values,
# each through every analysis, so an exit 4 names the value that broke one)
@pytest.mark.parametrize("document", [
    "populations: {completer_min_sessions: 0}\n"
    "audit: {recovery_target: 5, planned_sessions: 0, max_model_patients: 0}\n",
    # once exit 4 (audit/units: zero bootstrap resamples); now refused at loading, exit 2
    "populations: {finished_course_min_sessions: -5}\naudit: {bootstrap_resamples: 0}\n",
    "relapse: {horizon_weeks: [1.0e9], rmst_weeks: 1.0e-9, min_events_per_parameter: 0}\n"
    "trajectories: {contrast_weeks: [0, 1.0e6]}\nsuppress_below: 1000000000\n",
])
def test_loadable_odd_configs_do_not_break_the_analyses(
        document: str, capsys: pytest.CaptureFixture[str]) -> None:
    _config_case(document, "study.yaml", capsys, command="run")


# --------------------------------------------------------------------------- options


DATE_FORMATS = st.sampled_from(["%Q", "%", "%%", "%d/%m/%Y", "%Y-%m-%d", "%Y" * 2000,
                                "%-d", "%E", "%Oz", "", " ", "%Y-%m-%d%", "\x00",
                                "%s", "%f", "%z", "%G-W%V-%u"]) | st.text(max_size=10)
MAX_QUARANTINE = st.sampled_from(["nan", "inf", "-inf", "-1", "2", "text", "", "1e309",
                                  "0", "1", "0.5", "-0", "NaN", " 0.1 "])


@_fuzz(25)
@given(DATE_FORMATS)
@example("%Q")
@example("%")
@example("%%")
@example("%Y" * 2000)
def test_date_format_option_gets_a_message(
        capsys: pytest.CaptureFixture[str], date_format: str) -> None:
    _validate_options([f"--date-format={date_format}"], ["--date-format", *TABLES], capsys)


@_fuzz(14)
@given(MAX_QUARANTINE, st.booleans())
@example("nan", False)
@example("nan", True)
@example("inf", False)
@example("-1", False)
@example("2", False)
@example("text", False)
def test_max_quarantine_option_gets_a_message(
        capsys: pytest.CaptureFixture[str], value: str, every_row_faulty: bool) -> None:
    files: dict[str, bytes | None] = {}
    if every_row_faulty:
        files["sessions.csv"] = _every_row(_base_text("sessions"), "phq9", "x").encode()
    _validate_options([f"--max-quarantine={value}"], ["--max-quarantine", *TABLES], capsys,
                      files)


def _validate_options(options: list[str], names: list[str],
                      capsys: pytest.CaptureFixture[str],
                      files: dict[str, bytes | None] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = _study(Path(tmp))
        for filename, data in (files or {}).items():
            if data is not None:
                (folder / filename).write_bytes(data)
        out = Path(tmp) / "out"
        argv = ["validate", str(folder), "--out", str(out), *options]
        code, output = _run(argv, capsys)
        _check(argv, code, output, names, out)


OUT_KINDS = ["existing_file", "under_a_file", "read_only_dir", "under_read_only", "empty_name",
             "data_dir_itself", "inside_data_dir", "dangling_symlink", "nul_in_name",
             "very_long_name"]
DATA_KINDS = ["ok", "a_file", "missing", "empty_dir", "nul_in_name"]


def _prepare_out(kind: str, tmp: Path, data: Path) -> str:
    if kind == "existing_file":
        (tmp / "out").write_text("x")
        return str(tmp / "out")
    if kind == "under_a_file":
        (tmp / "file").write_text("x")
        return str(tmp / "file" / "out")
    if kind in ("read_only_dir", "under_read_only"):
        locked = tmp / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return str(locked if kind == "read_only_dir" else locked / "out")
    if kind == "empty_name":
        return ""
    if kind == "data_dir_itself":
        return str(data)
    if kind == "inside_data_dir":
        return str(data / "out")
    if kind == "dangling_symlink":
        (tmp / "link").symlink_to(tmp / "nowhere" / "deeper")
        return str(tmp / "link")
    if kind == "nul_in_name":
        return str(tmp / "o\x00ut")
    return str(tmp / ("o" * 300))


def _prepare_data(kind: str, tmp: Path) -> Path:
    if kind == "ok":
        return _study(tmp)
    if kind == "a_file":
        (tmp / "data.csv").write_text(_base_text("patients"))
        return tmp / "data.csv"
    if kind == "missing":
        return tmp / "missing"
    if kind == "empty_dir":
        (tmp / "empty").mkdir()
        return tmp / "empty"
    return tmp / "st\x00udy"


@_fuzz(30)
@given(st.sampled_from(OUT_KINDS), st.sampled_from(DATA_KINDS))
@example("existing_file", "ok")
@example("under_a_file", "ok")
@example("read_only_dir", "ok")
@example("under_read_only", "ok")
@example("existing_file", "missing")
@example("empty_name", "ok")
def test_out_and_data_dir_get_a_message(
        capsys: pytest.CaptureFixture[str], out_kind: str, data_kind: str) -> None:
    if os.geteuid() == 0 and "read_only" in out_kind:
        return  # root writes anywhere
    tmp = Path(tempfile.mkdtemp())
    try:
        data = _prepare_data(data_kind, tmp)
        out = _prepare_out(out_kind, tmp, data)
        argv = ["validate", str(data), "--out", out]
        code, output = _run(argv, capsys)
        names = [out, str(data), "--out", "OUT", "data_dir", "DATA_DIR"]
        names = [n for n in names if n] or ["--out"]
        _check(argv, code, output, names, None)
        if data_kind == "ok" and out_kind in ("existing_file", "under_a_file"):
            assert code == 2, f"exit {code} for an OUT that cannot be a folder: {out_kind}"
    finally:
        for folder in tmp.rglob("*"):
            if folder.is_dir() and not folder.is_symlink():
                folder.chmod(stat.S_IRWXU)
        shutil.rmtree(tmp, ignore_errors=True)


def test_interrupt_gets_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.ingest import validate

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "run", interrupted)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["validate", str(_study(Path(tmp))), "--out", str(Path(tmp) / "out")]
        code, output = _run(argv, capsys)
    assert code == 130 and "interrupted" in output and "Traceback" not in output

