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
