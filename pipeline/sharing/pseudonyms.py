"""Keyed pseudonyms for ids in shared outputs (part of ``pipeline.sharing``).

Pseudonyms are a keyed hash, HMAC-SHA-256(key, id) (Krawczyk, Bellare & Canetti 1997,
RFC 2104), truncated to 64 bits and written as ``p_<16 hex digits>``. Without the key they
cannot be reversed or recomputed from a list of candidate ids (unlike a plain hash); with the
same key the same id always gets the same pseudonym, so audits can be followed over time.
The key itself is loaded at the edge (``pipeline.io.load_or_create_key``) and never written
into outputs or logs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import numpy as np
import pandas as pd

PSEUDONYM_HEX = 16


def pseudonym(value: str, key: bytes, prefix: str = "p") -> str:
    """``prefix_`` + the first 64 bits of HMAC-SHA-256(key, value) in hex."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}_{digest[:PSEUDONYM_HEX]}"


def pseudonymise(ids: pd.Series, key: bytes, prefix: str = "p") -> pd.Series:
    """Replace every non-missing id by its pseudonym (missing stays missing).

    Raises
    ------
    ValueError
        If two different ids would share a pseudonym (probability ~ n^2 / 2^65).
    """
    present = ids.notna().to_numpy(dtype=bool)
    # each distinct id is hashed once and spread back by its code (not a map per row)
    codes, unique = pd.factorize(ids[present].astype(str))
    names = np.array([pseudonym(value, key, prefix) for value in unique], dtype=object)
    if len(set(names)) != len(names):
        raise ValueError("pseudonym collision: use a longer pseudonym")
    out = ids.astype(object)
    out[present] = names[codes]
    return out


def pseudonymise_columns(
    frame: pd.DataFrame, key: bytes, columns: Iterable[tuple[str, str]] = (("patient_id", "p"),)
) -> pd.DataFrame:
    """A copy of ``frame`` with the given (column, prefix) pairs pseudonymised, if present."""
    out = frame.copy()
    for column, prefix in columns:
        if column in out.columns:
            out[column] = pseudonymise(out[column], key, prefix)
    return out
