"""The data contract: pandera models for every table the pipeline reads.

Each table is described once, as a ``DataFrameModel``; the validator, the cleaner (which
reads the column types from the models) and the data dictionary are all derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandera.pandas as pa

from data_schemas.followups import RULE_COLUMNS as _FOLLOWUP_RULES
from data_schemas.followups import Followups, FollowupsInContext
from data_schemas.patients import RULE_COLUMNS as _PATIENT_RULES
from data_schemas.patients import Patients
from data_schemas.sessions import RULE_COLUMNS as _SESSION_RULES
from data_schemas.sessions import SCORE_COLUMNS, Sessions, SessionsInContext


@dataclass(frozen=True)
class TableContract:
    """What the pipeline expects of one input table."""

    name: str
    model: type[pa.DataFrameModel]
    in_context: type[pa.DataFrameModel]
    required: bool
    rule_columns: dict[str, str]

    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema of the table itself (no cross-table columns)."""
        return self.model.to_schema()

    def required_columns(self) -> list[str]:
        """Columns that must be present in the file."""
        return [n for n, c in self.schema().columns.items() if c.required]


CONTRACTS: dict[str, TableContract] = {
    "patients": TableContract("patients", Patients, Patients, True, _PATIENT_RULES),
    "sessions": TableContract("sessions", Sessions, SessionsInContext, True, _SESSION_RULES),
    "followups": TableContract(
        "followups", Followups, FollowupsInContext, False, _FOLLOWUP_RULES
    ),
}

__all__ = [
    "CONTRACTS",
    "SCORE_COLUMNS",
    "Followups",
    "FollowupsInContext",
    "Patients",
    "Sessions",
    "SessionsInContext",
    "TableContract",
]
