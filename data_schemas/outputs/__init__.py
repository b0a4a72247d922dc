"""Output contracts: a pandera schema for every table the pipeline writes.

Each CSV under ``OUT/tables``, ``OUT/audit`` and ``OUT/validation`` has one schema here,
for the *shared* version as written (pseudonymised ids, small counts suppressed). Tables
whose file names vary (``mixed_<model>_fixed``, a study's custom models, the quarantine of
each input table) have one schema per kind, matched by a name pattern
(:data:`OUTPUT_PATTERNS`); :func:`contract_for` finds the schema of a file name.

How a table is read before it is validated
    With pandas' defaults and only the empty cell as missing::

        pd.read_csv(path, keep_default_na=False, na_values=[""])

    (what a downstream user is most likely to do; ``NA`` stays a code, not a gap). The
    schemas coerce (``coerce=True``): ``1`` read into a text column becomes ``"1"``, a
    whole-number column read as float because of a gap becomes ``Int64``, a yes/no column
    with gaps becomes the nullable ``boolean``.

Suppressed counts
    In the tables protected by ``pipeline.sharing`` a count of 1-4 is written ``<5`` and a
    count hidden to protect another is written ``*``. Such columns hold whole numbers *or*
    those labels, so they carry no dtype (a column with no hidden cell reads as integers,
    one with a hidden cell as text) and an element check instead
    (:func:`is_shared_count`): a non-negative whole number, ``<N`` or ``*``. Rates,
    intervals and means of a row with a hidden count are blank.

Intervals
    Where an estimate and its interval bounds are all present, ``low <= estimate <= high``
    up to a relative tolerance of 1e-9 (:func:`ordered`); where only the bounds are
    present (a Kaplan-Meier median not reached, a Turnbull estimate not unique),
    ``low <= high``.

Columns are described once, in the schema (``description``); the data dictionary's
"Output tables" section is generated from these schemas (``data_schemas.dictionary``).
The pipeline does not validate its outputs at write time (too slow at scale): the tests
(``tests/test_output_contracts.py``) run the pipeline and check every file it writes.

Modules
-------
``columns``
    The column builders (``text``, ``count``, ``shared_count``, ``rate``, ...), ``schema``,
    :func:`is_shared_count` and :func:`ordered`.
``validation``, ``outcomes``, ``trajectories``, ``relapse``, ``audit``
    The contracts of each stage's tables.

This package gathers them into :data:`OUTPUT_CONTRACTS` and finds a file's contract with
:func:`contract_for`.
"""

from __future__ import annotations

import re
from typing import Final

import pandera.pandas as pa

from data_schemas.outputs.audit import audit_contracts
from data_schemas.outputs.columns import KINDS, SUPPRESSION_LABEL, TOLERANCE, is_shared_count
from data_schemas.outputs.outcomes import outcome_contracts, patient_outcomes_contract
from data_schemas.outputs.relapse import relapse_contracts
from data_schemas.outputs.trajectories import MIXED_PATTERN, mixed_contracts, mixed_model_contracts
from data_schemas.outputs.validation import run_contracts

# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


def _registry() -> dict[str, pa.DataFrameSchema]:
    return {
        **run_contracts(), "patient_outcomes": patient_outcomes_contract(), **outcome_contracts(),
        **mixed_contracts(), **mixed_model_contracts(), **relapse_contracts(), **audit_contracts(),
    }


#: Table name (file stem; ``quarantine/<table>`` under ``validation``) or name pattern
#: (a regular expression, matched in full) -> its contract.
OUTPUT_CONTRACTS: Final[dict[str, pa.DataFrameSchema]] = _registry()
#: The keys of :data:`OUTPUT_CONTRACTS` that are patterns rather than names.
OUTPUT_PATTERNS: Final = tuple(k for k in OUTPUT_CONTRACTS if "(" in k)
AUDIT_TABLES: Final = ("audit_sites", "audit_therapists", "audit_outliers", "audit_benchmarks",
                       "audit_funnel_summary", "not_on_track")


def folder_of(key: str) -> str:
    """The folder under ``--out`` where the table of a registry key is written."""
    if key in AUDIT_TABLES:
        return "audit"
    return "validation" if key == "failure_cases" or key.startswith("quarantine") \
        else "tables"


def contract_for(name: str) -> pa.DataFrameSchema | None:
    """The contract of an output table, by file stem (``response_rates``,
    ``mixed_btheb_slope_fixed``, ``quarantine/sessions``); ``None`` when it has none.

    Literal names win over patterns, so ``mixed_patient_fitted`` is never read as the
    table of a model called ``patient``.
    """
    if name in OUTPUT_CONTRACTS and name not in OUTPUT_PATTERNS:
        return OUTPUT_CONTRACTS[name]
    for pattern in OUTPUT_PATTERNS:
        if re.fullmatch(pattern, name):
            return OUTPUT_CONTRACTS[pattern]
    return None


def undocumented_columns() -> list[str]:
    """``table.column`` of every contract column without a description (should be none)."""
    return [f"{table}.{column}" for table, contract in OUTPUT_CONTRACTS.items()
            for column, spec in contract.columns.items() if not spec.description]


#: How a regular-expression column name is shown to a reader, fragment by fragment.
_SHOWN: Final = (
    (r"[a-z][a-z0-9_]*(?<!_pct)(?<!^reliable)_", "<instrument>_"),
    (r"[a-z][a-z0-9_]*_", "<instrument>_"), (r"residual_[a-z0-9_]+", "residual_<instrument>"),
    (r"\d+w", "<weeks>w"), ("^", ""), ("$", ""),
)


def display_name(name: str, column: pa.Column) -> str:
    """A column's name as a reader sees it: ``<instrument>_baseline`` for a pattern."""
    if not column.regex:
        return name
    for pattern, shown in _SHOWN:
        name = name.replace(pattern, shown)
    return name

__all__ = [
    "AUDIT_TABLES",
    "KINDS",
    "MIXED_PATTERN",
    "OUTPUT_CONTRACTS",
    "OUTPUT_PATTERNS",
    "SUPPRESSION_LABEL",
    "TOLERANCE",
    "contract_for",
    "display_name",
    "folder_of",
    "is_shared_count",
    "undocumented_columns",
]
