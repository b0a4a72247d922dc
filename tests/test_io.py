"""Reading real-world files: BOM, delimiters, CRLF, quoting, encodings, Parquet."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import io
from pipeline.ingest import validate
from tests.conftest import StudyWriter, base_sessions, to_csv


def test_bom_semicolon_crlf_quoted_newline_keep_line_numbers(tmp_path: Path) -> None:
    text = 'a;b\r\n1;"two\r\nlines"\r\n\r\n3;x\r\n'
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    table = io.read_table(path, "t")
    assert list(table.frame.columns) == ["a", "b"]
    # record 1 starts on line 2 and spans line 3; line 4 is blank; record 2 is on line 5
    assert list(table.frame.index) == [2, 5]
    assert table.frame.loc[5, "b"] == "x"
    assert table.blank_lines == 1


def test_tab_delimiter_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\tb\n1\t2\n")
    assert io.read_table(path, "t").frame.loc[2, "b"] == "2"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"a,b\n", "no data rows"),
        ("a,b\n1,caf\u00e9\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unusable_files_raise_input_error(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(io.InputError, match=problem):
        io.read_table(path, "t")


def test_missing_required_table(write_study: StudyWriter) -> None:
    folder = write_study()
    (folder / "sessions.csv").unlink()
    with pytest.raises(io.InputError, match="required table 'sessions'"):
        io.read_study(folder, ("patients", "sessions"), ("patients", "sessions"))


def test_both_csv_and_parquet_is_an_error(write_study: StudyWriter) -> None:
    folder = write_study()
    pd.DataFrame({"a": [1]}).to_parquet(folder / "sessions.parquet")
    with pytest.raises(io.InputError, match="keep one"):
        io.find_table(folder, "sessions")


def test_missing_required_column_names_it(write_study: StudyWriter) -> None:
    sessions = [{k: v for k, v in r.items() if k != "attendance"} for r in base_sessions()]
    folder = write_study(sessions=sessions)
    raw = io.read_study(folder, ("patients", "sessions"), ("patients", "sessions"))
    with pytest.raises(io.InputError, match="required column\\(s\\) missing: attendance"):
        validate.run(raw)


def test_parquet_study_validates_like_csv(write_study: StudyWriter, tmp_path: Path) -> None:
    folder = write_study()
    as_csv = validate.run(io.read_study(folder, ("patients", "sessions", "followups"), ()))
    pq = tmp_path / "pq"
    pq.mkdir()
    for name, typed in as_csv.tables.items():
        typed.to_parquet(pq / f"{name}.parquet", index=False)
    as_pq = validate.run(io.read_study(pq, ("patients", "sessions", "followups"), ()))
    assert as_pq.failure_cases.empty
    for name in as_csv.tables:
        pd.testing.assert_frame_equal(
            as_csv.tables[name].reset_index(drop=True), as_pq.tables[name].reset_index(drop=True),
            check_dtype=False,
        )


def test_write_csv_is_byte_reproducible(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, None, 3.0], "d": pd.to_datetime(["2024-01-01", None, None]),
                          "y": [0.5, 1.25, None]})
    first = io.write_csv(frame, tmp_path / "a.csv").read_bytes()
    second = io.write_csv(frame, tmp_path / "b.csv").read_bytes()
    assert first == second
    assert first.decode().splitlines() == ["x,d,y", "1,2024-01-01,0.5", ",,1.25", "3,,"]


def test_to_csv_helper_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(to_csv(base_sessions()))
    assert len(io.read_table(path, "sessions").frame) == len(base_sessions())


def test_csv_cells_are_spreadsheet_safe(tmp_path: Path) -> None:
    frame = pd.DataFrame({"site": ['=HYPERLINK("x")', "-3", "+cmd", "@SUM(A1)", "ok", "-x"]})
    path = io.write_csv(frame, tmp_path / "s.csv")
    read_back = pd.read_csv(path, dtype=str)["site"].tolist()
    assert read_back == ["'=HYPERLINK(\"x\")", "-3", "'+cmd", "'@SUM(A1)", "ok", "'-x"]


def test_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError), io.atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_infinite_floats_are_written_not_cast_to_integers(tmp_path: Path) -> None:
    """An odds ratio of inf (separation) must not crash the integer cast of whole floats."""
    frame = pd.DataFrame({"ci_high": [float("inf"), float("inf")], "n": [1.0, 2.0]})
    path = io.write_csv(frame, tmp_path / "t.csv")
    assert path.read_text().splitlines() == ["ci_high,n", "inf,1", "inf,2"]


def test_formula_headers_are_defused(tmp_path: Path) -> None:
    frame = pd.DataFrame({'=HYPERLINK("http://x")': ["=1+2"], "-3": ["-3"]})
    header, row = io.write_csv(frame, tmp_path / "t.csv").read_text().splitlines()
    assert header.startswith("\"'=HYPERLINK") and row.startswith("'=1+2")
    assert header.endswith(",-3") and row.endswith(",-3")


def test_quoted_field_beyond_the_csv_module_limit_is_read(tmp_path: Path) -> None:
    huge = "x" * (131_072 + 10)  # the csv module's default field limit is 131072
    path = tmp_path / "t.csv"
    path.write_text(f'a,b\n1,"{huge}"\n2,y\n')
    table = io.read_table(path, "t")
    assert table.frame.loc[2, "b"] == huge and list(table.frame.index) == [2, 3]
    import csv

    assert csv.field_size_limit() == 131_072  # the module default is restored


@pytest.mark.parametrize("twin", ["phq9", "PHQ9", " phq9", " PHQ9 "])
def test_columns_differing_only_by_case_or_spaces_are_unusable(tmp_path: Path,
                                                               twin: str) -> None:
    path = tmp_path / "sessions.csv"
    path.write_text(f"patient_id,phq9,{twin}\nP1,1,2\n")
    with pytest.raises(io.InputError, match=f"'phq9' and '{twin}' are the same column"):
        io.read_table(path, "sessions")


def test_a_folder_where_a_table_file_should_be_is_unusable(tmp_path: Path) -> None:
    (tmp_path / "patients.csv").mkdir()
    with pytest.raises(io.InputError, match="not a file"):
        io.read_table(tmp_path / "patients.csv", "patients")


def test_inside_accepts_paths_below_out_and_refuses_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert io.inside(out, "tables", "rates.csv") == out / "tables" / "rates.csv"
    for parts in (("..", "x.csv"), ("tables", "../../x.csv"), (str(tmp_path / "x.csv"),),
                  ("tables", "/etc/passwd"), (".",), ("tables", "..")):
        with pytest.raises(io.InputError, match="outside the output folder"):
            io.inside(out, *parts)
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(io.InputError, match="outside the output folder"):
        io.inside(out, "link", "x.csv")
    assert not list((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize(("value", "message"), [
    ("00", "too short (8 bits)"),
    ("00ff", "too short (16 bits)"),
    ("ab" * 15, "too short (120 bits)"),
    ("not-hex-at-all-not-hex-at-all-xx", "must be hex digits"),
    ("zz" * 16, "must be hex digits"),
])
def test_weak_or_malformed_keys_are_refused(value: str, message: str,
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv(io.KEY_ENV, value)
    with pytest.raises(io.InputError, match=re.escape(message)) as caught:
        io.load_or_create_key()
    assert "secrets.token_hex(32)" in str(caught.value)
    monkeypatch.delenv(io.KEY_ENV)
    key_file = tmp_path / "short.key"
    key_file.write_text(value + "\n")
    monkeypatch.setenv(io.KEY_FILE_ENV, str(key_file))
    with pytest.raises(io.InputError, match=re.escape(message)):
        io.load_or_create_key()


def test_a_128_bit_key_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(io.KEY_ENV, "5eedc0ffee5eedc0ffee5eedc0ffee00")
    assert io.load_or_create_key() == bytes.fromhex("5eedc0ffee5eedc0ffee5eedc0ffee00")
    monkeypatch.setenv(io.KEY_ENV, "AB" * 32)
    assert len(io.load_or_create_key()) == 32


def test_a_weak_key_makes_the_cli_exit_2(write_study: StudyWriter, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    monkeypatch.setenv(io.KEY_ENV, "00")
    assert main(["validate", str(write_study()), "--out", str(tmp_path / "out")]) == 2
    assert "at least 128 bits" in capsys.readouterr().err


# ---------------------------------------------------------------- the fast CSV writer

_TEXT = st.text(alphabet=st.sampled_from(list('ab ,"\n\t=+-@é;\'0.5#\\')), max_size=6)
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 1e-5, 1.5e-7, 1e15, 1e16, 5e-324, 0.1, 3.0]))


@st.composite
def _tables(draw: st.DrawFn) -> pd.DataFrame:
    """Tables of the shapes the pipeline writes: floats (whole or not, missing, infinite),
    integers, nullable integers, booleans and text with every character CSV quotes."""
    rows = draw(st.integers(1, 12))
    kinds = draw(st.lists(st.sampled_from(["float", "whole", "int", "Int64", "bool", "text",
                                           "category"]), min_size=2, max_size=5))
    columns: dict[str, object] = {}
    for k, kind in enumerate(kinds):
        name = draw(st.sampled_from([f"c{k}", f"c {k}", f"c,{k}", f'"c{k}"', f"C{k}", f"c#{k}",
                                     "c", "C", ""]))
        if kind == "float":
            columns[name] = draw(st.lists(_FLOATS, min_size=rows, max_size=rows))
        elif kind == "whole":
            columns[name] = [float(v) for v in draw(st.lists(
                st.integers(-10**6, 10**6), min_size=rows, max_size=rows))]
        elif kind == "int":
            columns[name] = draw(st.lists(st.integers(-2**62, 2**62), min_size=rows,
                                          max_size=rows))
        elif kind == "Int64":
            columns[name] = pd.array(draw(st.lists(st.one_of(st.none(), st.integers(-99, 99)),
                                                   min_size=rows, max_size=rows)), "Int64")
        elif kind == "bool":
            columns[name] = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
        elif kind == "category":
            columns[name] = pd.Categorical(draw(st.lists(st.one_of(st.none(), _TEXT),
                                                         min_size=rows, max_size=rows)))
        else:
            columns[name] = draw(st.lists(st.one_of(st.none(), _TEXT), min_size=rows,
                                          max_size=rows))
    return pd.DataFrame(columns)


@settings(max_examples=150, deadline=None)
@given(_tables())
def test_duckdb_csv_writer_gives_pandas_bytes(frame: pd.DataFrame) -> None:
    """Large tables go through DuckDB's writer; every table must come out byte for byte as
    pandas writes it (floats in shortest round-trip form, minimal quoting, empty NA)."""
    with tempfile.TemporaryDirectory() as folder:
        with patch.object(io, "FAST_CSV_ROWS", 0):
            fast = io.write_csv(frame, Path(folder) / "fast.csv").read_bytes()
        with patch.object(io, "FAST_CSV_ROWS", 10**12):
            plain = io.write_csv(frame, Path(folder) / "plain.csv").read_bytes()
    assert fast == plain


def test_duckdb_csv_writer_is_used_only_where_it_matches_pandas() -> None:
    safe = io._for_csv(pd.DataFrame({"a": [1.5, None], "b": ["x", ""], "c": [True, False]}))
    assert io._duckdb_writable(safe)
    assert not io._duckdb_writable(pd.DataFrame({"a": ["x", None]}))  # one column
    assert not io._duckdb_writable(pd.DataFrame({"a": ["x\ry", "z"], "b": [1, 2]}))
    assert not io._duckdb_writable(pd.DataFrame({"a": [1, "x"], "b": [1, 2]}))  # mixed
    assert not io._duckdb_writable(pd.DataFrame({"a": ["Clinic #2", "x"], "b": [1, 2]}))
    assert not io._duckdb_writable(pd.DataFrame({"a": [1, 2], "A": [1, 2]}))  # case-blind
    assert not io._duckdb_writable(pd.DataFrame({"": [1, 2], "b": [1, 2]}))
    assert not io._duckdb_writable(pd.DataFrame({"n#": [1, 2], "b": [1, 2]}))
    assert io._duckdb_writable(pd.DataFrame({"a": [1, 2], "b": pd.Categorical(["x", "y"])}))
    assert not io._duckdb_writable(pd.DataFrame({"a": [1, 2], "b": pd.Categorical(["x", ""])}))


def test_formula_like_categories_are_defused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": pd.Categorical(["=1+2", "ok", "=1+2"]), "b": [1, 2, 3],
                          "c": pd.Categorical(["=x", "'=x", "y"])})  # defusing would merge
    lines = io.write_csv(frame, tmp_path / "t.csv").read_text().splitlines()
    assert lines == ["a,b,c", "'=1+2,1,'=x", "ok,2,'=x", "'=1+2,3,y"]


def test_large_table_written_fast_has_the_same_bytes(tmp_path: Path) -> None:
    """Above FAST_CSV_ROWS (the real threshold) the bytes are still pandas'."""
    rng = np.random.default_rng(3)
    n = io.FAST_CSV_ROWS + 5
    frame = pd.DataFrame({"id": [f"p{i:06d}" for i in range(n)],
                          "fitted": rng.normal(10, 5, n) * 10.0 ** rng.integers(-7, 17, n),
                          "week": np.arange(n) % 17, "note": np.where(np.arange(n) % 3, "",
                                                                        "a, \"b\"")})
    assert io._duckdb_writable(io._for_csv(frame))
    written = io.write_csv(frame, tmp_path / "big.csv").read_bytes()
    assert written == io._for_csv(frame).to_csv(index=False, lineterminator="\n").encode()


def test_formula_candidates_through_arrow_match_the_prefixes() -> None:
    cells = [*(p + "x" for p in io.FORMULA_PREFIXES), "x=", "]a", "^b", "\\c", "", None,
             float("nan"), "é", " =d"]
    series = pd.Series(cells, dtype=object)
    expected = series.str.startswith(io.FORMULA_PREFIXES, na=False).tolist()
    assert io._formula_candidates(series).tolist() == expected
    assert sum(expected) == len(io.FORMULA_PREFIXES)
    mixed = pd.Series([1, "=x", None], dtype=object)  # not all text: pandas' path
    assert io._formula_candidates(mixed).tolist() == [False, True, False]
