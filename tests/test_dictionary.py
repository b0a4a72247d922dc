"""The committed data dictionary and templates must match the contract."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from data_schemas import CONTRACTS
from data_schemas.dictionary import render_dictionary, template_frames

ROOT = Path(__file__).resolve().parents[1] / "data_schemas"


def test_data_dictionary_is_up_to_date() -> None:
    committed = (ROOT / "DATA_DICTIONARY.md").read_text()
    assert committed == render_dictionary(), "run `make dictionary` and commit the result"


def test_templates_are_up_to_date() -> None:
    for name, frame in template_frames().items():
        committed = pd.read_csv(ROOT / "templates" / f"{name}.csv")
        assert list(committed.columns) == list(frame.columns)
        assert committed.empty


def test_dictionary_documents_every_column_and_rule() -> None:
    text = render_dictionary()
    for contract in CONTRACTS.values():
        for column in contract.schema().columns:
            assert f"`{column}`" in text
    for rule in ("no_score_on_missed_session", "group_id_matches_format", "patient_exists",
                 "followup_after_last_session", "session_not_after_end"):
        assert f"`{rule}`" in text


def test_dictionary_documents_every_output_table_and_column() -> None:
    from data_schemas.outputs import OUTPUT_CONTRACTS, display_name, folder_of

    text = render_dictionary()
    section = text[text.index("## Output tables"):]
    for key, schema in OUTPUT_CONTRACTS.items():
        assert f"### `{folder_of(key)}/{schema.name}.csv`" in section
        for name, column in schema.columns.items():
            assert f"| `{display_name(name, column)}` |" in section, f"{key}.{name}"
