"""Output contracts of the run and validation tables: analyses, failure cases, quarantine."""

from __future__ import annotations

import pandera.pandas as pa

from data_schemas import CONTRACTS
from data_schemas.outputs.columns import count, schema, text

# --------------------------------------------------------------------------------------
# tables/analyses.csv and validation/
# --------------------------------------------------------------------------------------


def run_contracts() -> dict[str, pa.DataFrameSchema]:
    """The contracts of ``analyses`` and the validation tables, by table name."""
    return {
        "analyses": schema("analyses", (
            "Every analysis of the run and what became of it."), {
            "stage": text("Stage (`derive`, `outcomes`, `models`, `relapse`, `audit`, "
                          "`report`)."),
            "analysis": text("Analysis name."),
            "status": text("`done`, `not estimable` or `failed`.",
                           isin=["done", "not estimable", "failed"]),
            "reason": text("Why it is not estimable or failed (blank when done).",
                           nullable=True),
            "remedy": text("What would make it estimable (blank when done).",
                           nullable=True),
        }),
        "failure_cases": schema("failure_cases", (
            "Every value that failed the input contract (pandera, lazy)."), {
            "table": text("Input table (`patients`, `sessions`, `followups`)."),
            "line": count("Source line in the file (header = 1); blank for a whole-table "
                          "failure.", nullable=True),
            "column": text("Column of the failing value (blank for a row rule).",
                           nullable=True),
            "value": text("The failing value (ids pseudonymised).", nullable=True),
            "check": text("Name of the failed check or rule."),
            "message": text("The failure in words (never holds an id)."),
        }),
        r"quarantine/(?P<table>patients|sessions|followups)": schema("quarantine/<table>", (
            "Rows set aside by validation, in the input contract's columns (patient ids "
            "pseudonymised), with the source line and the reason."), {
            **_quarantine_columns(),
            "line": count("Source line in the file (header = 1)."),
            "reason": text("Why the row was quarantined."),
        }, strict=False),
    }


def _quarantine_columns() -> dict[str, pa.Column]:
    """Every input-contract column of any input table, as optional text."""
    columns: dict[str, pa.Column] = {}
    for contract in CONTRACTS.values():
        for name, column in contract.schema().columns.items():
            if name not in columns:
                description = column.description or f"As in the input contract " \
                                                    f"(`{contract.name}.{name}`)."
                columns[name] = text(f"Input value as read: {description}", nullable=True,
                                     required=False)
    return columns
