"""Pseudonyms: keyed, stable, collision-checked; the key never comes from the output."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pandas as pd
import pytest

from pipeline import io
from pipeline.sharing import pseudonyms as privacy


def test_pseudonym_is_hmac_sha256_by_hand() -> None:
    expected = hmac.new(b"k", b"P000001", hashlib.sha256).hexdigest()[:16]
    assert privacy.pseudonym("P000001", b"k") == f"p_{expected}"


def test_same_key_same_pseudonyms_other_key_different() -> None:
    ids = pd.Series(["P1", "P2", None, "P1"])
    first = privacy.pseudonymise(ids, b"key-one")
    assert first.equals(privacy.pseudonymise(ids, b"key-one"))
    assert first[0] == first[3] and first[0] != first[1]
    assert pd.isna(first[2])
    other = privacy.pseudonymise(ids, b"key-two")
    assert not (other.dropna() == first.dropna()).any()


def test_key_from_environment_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(io.KEY_ENV, "00ff" * 8)
    assert io.load_or_create_key() == b"\x00\xff" * 8
    monkeypatch.delenv(io.KEY_ENV)
    key_file = tmp_path / "keys" / "pseudonym.key"
    monkeypatch.setenv(io.KEY_FILE_ENV, str(key_file))
    created = io.load_or_create_key()
    assert len(created) == 32 and key_file.stat().st_mode & 0o777 == 0o600
    assert io.load_or_create_key() == created
    with pytest.raises(io.InputError, match="must not be inside the output"):
        io.load_or_create_key(out_dir=tmp_path / "keys")
