"""The data contract: pandera models for every table the pipeline reads.

Each table is described once, as a ``DataFrameModel``; the score columns of sessions and
follow-ups are generated from the instrument catalogue (``data_schemas.instruments``) and
the study's own instruments (``data_schemas.scores``), and the allowed conditions can be
extended by the study. The validator, the cleaner (which reads the column types from the
contract) and the data dictionary are all derived from ``TableContract``.

Modules
-------
``patients``, ``sessions``, ``followups``
    The input tables' contracts (one ``DataFrameModel`` each, with cross-column rules).
``scores``, ``instruments``
    Score columns from the instrument catalogue (``instruments.csv``: ranges, cut-offs,
    sources) and the study's own instruments.
``vocab``, ``rules``
    The controlled vocabularies (conditions, formats, problem areas) and rule texts.
``outcomes``
    The contract of the per-patient outcomes.
``outputs``
    A contract for every table a run writes (``OUTPUT_CONTRACTS``, ``contract_for``).
``dictionary``
    ``DATA_DICTIONARY.md`` and the empty CSV templates, generated from the contracts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandera.pandas as pa

from data_schemas.followups import RULE_COLUMNS as _FOLLOWUP_RULES
from data_schemas.followups import Followups, FollowupsInContext
from data_schemas.instruments import CATALOGUE, Instrument, match_columns
from data_schemas.patients import RULE_COLUMNS as _PATIENT_RULES
from data_schemas.patients import Patients
from data_schemas.rules import rule_texts
from data_schemas.scores import RULE_TEXTS as _SCORE_RULE_TEXTS
from data_schemas.scores import with_scores
from data_schemas.sessions import RULE_COLUMNS as _SESSION_RULES
from data_schemas.sessions import Sessions, SessionsInContext
from data_schemas.vocab import CONDITIONS

#: Tables that carry score columns, and whether the missed-session rule applies.
SCORED_TABLES = {"sessions": True, "followups": False}


@dataclass(frozen=True)
class TableContract:
    """What the pipeline expects of one input table.

    ``scores`` are the instruments whose columns the table may carry (sessions and
    follow-ups only); ``conditions`` the allowed condition codes (patients only).
    """

    name: str
    model: type[pa.DataFrameModel]
    in_context: type[pa.DataFrameModel]
    required: bool
    rule_columns: dict[str, str]
    scores: tuple[Instrument, ...] = ()
    conditions: tuple[str, ...] = CONDITIONS

    def _extend(self, schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
        if self.name in SCORED_TABLES:
            schema = with_scores(schema, self.scores, SCORED_TABLES[self.name])
        if "condition" in schema.columns and self.conditions != CONDITIONS:
            schema = schema.update_column("condition", checks=[pa.Check.isin(self.conditions)])
        return schema

    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema of the table itself (no cross-table columns)."""
        return self._extend(self.model.to_schema())

    def in_context_schema(self) -> pa.DataFrameSchema:
        """The schema with the cross-table (``ctx_``) columns and rules."""
        return self._extend(self.in_context.to_schema())

    def required_columns(self) -> list[str]:
        """Columns that must be present in the file."""
        return [n for n, c in self.schema().columns.items() if c.required]

    def rule_texts(self) -> dict[str, str]:
        """Custom rule name -> its wording, generated score rules included."""
        texts = rule_texts(self.in_context)
        if self.name in SCORED_TABLES:
            texts["whole_score"] = _SCORE_RULE_TEXTS["whole_score"]
            if SCORED_TABLES[self.name]:
                texts["no_score_on_missed_session"] = \
                    _SCORE_RULE_TEXTS["no_score_on_missed_session"]
        return texts

    def for_columns(self, columns: Sequence[str]) -> TableContract:
        """This contract with only the score columns present in ``columns`` (the file's
        header, matched case-insensitively)."""
        present = set(match_columns(tuple(columns), tuple(i.name for i in self.scores)))
        return dataclasses.replace(
            self, scores=tuple(i for i in self.scores if i.name in present))


def build_contracts(
    instruments: Iterable[Instrument] = (), conditions: Sequence[str] = CONDITIONS
) -> dict[str, TableContract]:
    """The contracts of a study: its instruments' score columns and its conditions."""
    scores = tuple(instruments)
    allowed = tuple(dict.fromkeys(conditions))
    return {
        "patients": TableContract("patients", Patients, Patients, True, _PATIENT_RULES,
                                  conditions=allowed),
        "sessions": TableContract("sessions", Sessions, SessionsInContext, True,
                                  _SESSION_RULES, scores),
        "followups": TableContract("followups", Followups, FollowupsInContext, False,
                                   _FOLLOWUP_RULES, scores),
    }


#: The contracts with every catalogued instrument and the built-in conditions.
CONTRACTS: dict[str, TableContract] = build_contracts(CATALOGUE.values())

__all__ = [
    "CATALOGUE",
    "CONTRACTS",
    "Followups",
    "FollowupsInContext",
    "Instrument",
    "Patients",
    "Sessions",
    "SessionsInContext",
    "TableContract",
    "build_contracts",
]
