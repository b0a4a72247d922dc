"""Property test: randomly corrupted valid data never crashes validation, every row is
accounted for, and what passes validation passes it again on its own."""

from __future__ import annotations

import csv
import io as stdio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import io
from pipeline.ingest import validate
from tests.conftest import base_followups, base_patients, base_sessions, to_csv

TABLES = ("patients", "sessions", "followups")
BASE = {"patients": base_patients(), "sessions": base_sessions(),
        "followups": base_followups()}

cell_values = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 200).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.dates().map(str),
    st.sampled_from(["", "NA", "group", "individual", "attended", "DNA", "P1", "P2", "P9",
                     "G1", "yes", "maybe", "2024-01-10", "03/04/2024", "ongoing", "none"]),
)


@st.composite
def corruptions(draw: st.DrawFn) -> list[tuple[str, int, str, str]]:
    edits = []
    for _ in range(draw(st.integers(1, 6))):
        table = draw(st.sampled_from(TABLES))
        rows = BASE[table]
        row = draw(st.integers(0, len(rows) - 1))
        column = draw(st.sampled_from(list(rows[0])))
        edits.append((table, row, column, draw(cell_values)))
    return edits


def _write(folder: Path, tables: dict[str, list[dict[str, str]]]) -> None:
    for name, rows in tables.items():
        (folder / f"{name}.csv").write_text(to_csv(rows, list(BASE[name][0])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=corruptions(), duplicate=st.booleans())
def test_corrupted_data_is_reconciled(edits: list[tuple[str, int, str, str]],
                                      duplicate: bool) -> None:
    tables = {name: [dict(r) for r in rows] for name, rows in BASE.items()}
    for table, row, column, value in edits:
        tables[table][row][column] = value
    if duplicate:
        tables["sessions"].append(dict(tables["sessions"][0]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write(folder, tables)
        try:
            raw = io.read_study(folder, TABLES, ("patients", "sessions"))
            result = validate.run(raw)
        except io.InputError:
            return  # e.g. a corruption emptied every cell of a row's file: a named refusal
        for name in TABLES:
            counts = result.summary["tables"][name]
            assert counts["rows_in"] == counts["rows_valid"] + counts["rows_quarantined"]
            valid_lines = set(result.tables[name].index)
            quarantined_lines = set(result.quarantine[name]["line"])
            assert not valid_lines & quarantined_lines
            assert valid_lines | quarantined_lines == set(raw[name].frame.index)
            assert result.quarantine[name]["reason"].str.len().gt(0).all()
        # what passed, validated again on its own, passes without a fault
        for name in TABLES:
            kept = raw[name].frame.loc[sorted(result.tables[name].index)]
            buffer = stdio.StringIO()
            kept.to_csv(buffer, index=False, quoting=csv.QUOTE_ALL, lineterminator="\n")
            (folder / f"{name}.csv").write_text(buffer.getvalue())
            if kept.empty:
                (folder / f"{name}.csv").unlink()
        if not (folder / "patients.csv").exists() or not (folder / "sessions.csv").exists():
            return
        again = validate.run(io.read_study(folder, TABLES, ("patients", "sessions")))
        assert again.failure_cases.empty, again.failure_cases.to_string()
