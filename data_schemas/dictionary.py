"""Render the human-readable data dictionary and empty CSV templates from the contract.

``DATA_DICTIONARY.md`` and ``templates/*.csv`` are generated (``make dictionary``); a test
fails when the committed copies differ from what the contract produces.
"""

from __future__ import annotations

import inspect

import pandas as pd
import pandera.pandas as pa

from data_schemas import CATALOGUE, CONTRACTS, TableContract
from data_schemas.instruments import CATALOGUE_FILE, Instrument
from data_schemas.outputs import OUTPUT_CONTRACTS, OUTPUT_PATTERNS
from data_schemas.vocab import SYNONYMS

#: Score columns written into the CSV templates (a study adds a column per instrument it
#: uses, named as in the catalogue).
TEMPLATE_INSTRUMENTS = ("phq9", "gad7", "hamd17", "bdi2")

TYPE_NAMES = {
    "str": "text",
    "float64": "number",
    "datetime64[ns]": "date (YYYY-MM-DD)",
    "boolean": "yes/no",
}


def _allowed(column: pa.Column) -> str:
    parts = []
    for check in column.checks:
        stats = check.statistics or {}
        if check.name == "isin":
            parts.append(" \\| ".join(f"`{v}`" for v in stats["allowed_values"]))
        elif check.name == "greater_than_or_equal_to":
            parts.append(f">= {stats['min_value']}")
        elif check.name == "less_than_or_equal_to":
            parts.append(f"<= {stats['max_value']}")
        elif check.name == "str_length":
            parts.append("non-empty")
        elif check.name in ("whole_score", "whole_number", "whole_years"):
            parts.append("whole number")
        elif check.name == "in_range":
            parts.append(f"{stats['min_value']:g} to {stats['max_value']:g}")
    if column.unique:
        parts.append("unique")
    return ", ".join(parts)


def _table_section(contract: TableContract) -> list[str]:
    schema = contract.schema()
    status = "required" if contract.required else "optional"
    doc = inspect.cleandoc(contract.model.__doc__ or "")
    lines = [
        f"## `{contract.name}` ({status}): `{contract.name}.csv` or `{contract.name}.parquet`",
        "",
        doc,
        "",
        "| column | type | required | may be empty | allowed | description |",
        "|---|---|---|---|---|---|",
    ]
    for name, column in schema.columns.items():
        lines.append(
            f"| `{name}` | {TYPE_NAMES.get(str(column.dtype), str(column.dtype))} "
            f"| {'yes' if column.required else 'no'} | {'yes' if column.nullable else 'no'} "
            f"| {_allowed(column)} | {column.description or ''} |"
        )
    if contract.name == "sessions":
        lines += ["", "(patient_id, session_number) is unique."]
    lines += ["", "Rules (check name: rule):", ""]
    lines += [
        f"- `{name}`: {text}" for name, text in sorted(contract.rule_texts().items())
    ]
    return [*lines, ""]


def _synonyms_section() -> list[str]:
    lines = [
        "## Normalisation before validation",
        "",
        "Cells are trimmed; the values `''`, `NA`, `N/A`, `null`, `NaN` mean missing. Coded "
        "columns are case-folded and spaces or hyphens become underscores, then these "
        "synonyms are mapped (nothing else is guessed):",
        "",
        "| column | accepted | becomes |",
        "|---|---|---|",
    ]
    for column in sorted(SYNONYMS):
        if column == "secondary_problem_area":
            continue
        for accepted, canonical in sorted(SYNONYMS[column].items()):
            lines.append(f"| `{column}` | `{accepted}` | `{canonical}` |")
    lines += [
        "",
        "Dates are ISO (`YYYY-MM-DD`) unless `--date-format` is given (e.g. `%d/%m/%Y`); a "
        "non-ISO date is never guessed. Yes/no columns accept yes/no, true/false, y/n, 1/0. "
        "Column names match case-insensitively; extra columns are kept as covariates and "
        "their names are made formula-safe (`Employment Status` -> `employment_status`).",
        "",
        "Line numbers in the validation report are source lines of the CSV file (header = "
        "line 1); for Parquet they are 1-based row numbers.",
        "",
    ]
    return lines


OUTCOME_MEANINGS = {
    "baseline": "score at session 0 if scored, else the first scored treatment session",
    "endpoint": "last score at a treatment session after the baseline (or at a given week)",
    "change": "endpoint - baseline",
    "pct_change": "100 * change / baseline (missing when the baseline is 0)",
    "response": "fall of at least the configured share (50%) from baseline",
    "remission": "endpoint below (PHQ-9 < 5) or at most (HAM-D-17 <= 7) the threshold",
    "reliable_improvement": "fall of at least the reliable change (points or JT RCI < -1.96)",
    "reliable_deterioration": "rise of at least the reliable change",
    "jt_class": "Jacobson-Truax: recovered, improved, unchanged or deteriorated",
}


def _outcomes_section() -> list[str]:
    from data_schemas.outcomes import PER_INSTRUMENT, per_instrument_schema

    schema = per_instrument_schema()
    fixed = [c for c in schema.columns if not any(c.startswith(f"{i}_") for i in CATALOGUE)]
    lines = [
        "## `patient_outcomes` (output of `ipt-outcomes outcomes`)",
        "",
        "One row per patient. Outcome columns are yes/no with *missing = not known* "
        "(never False). Definitions and thresholds come from the study config "
        "(`ipt-outcomes config --example` prints them with their sources).",
        "",
        "Fixed columns: " + ", ".join(f"`{c}`" for c in fixed) + ".",
        "",
        "Per instrument in force and present in the sessions table, prefixed with its name "
        "(`phq9_response`); an outcome the instrument does not define is missing for every "
        "patient and has no row in the rate tables:",
        "",
        "| column | meaning |",
        "|---|---|",
    ]
    lines += [f"| `<instrument>_{name}` | {OUTCOME_MEANINGS[name]} |" for name in PER_INSTRUMENT]
    return [*lines, ""]


def _definitions(instrument: Instrument) -> str:
    """The outcomes an instrument defines, in words ("-" for none)."""
    i, parts = instrument, []
    sign = ">=" if i.lower_is_better else "<="
    if i.caseness is not None:
        parts.append(f"caseness {sign} {i.caseness:g}")
    if i.response_reduction is not None:
        parts.append(f"response: fall >= {i.response_reduction:.0%}")
    if i.remission_below is not None:
        parts.append(f"remission < {i.remission_below:g}")
    if i.remission_at_most is not None:
        parts.append(f"remission <= {i.remission_at_most:g}")
    if i.reliable_change is not None:
        parts.append(f"reliable change {i.reliable_change:g} points")
    elif i.reliability is not None and i.sd_pre is not None:
        parts.append(f"reliable change: JT RCI (r = {i.reliability:g}, SD = {i.sd_pre:g})")
    if i.jt_cutoff != "caseness":
        parts.append(f"JT cut-off {i.jt_cutoff}")
    return "; ".join(parts) or "-"


def _sources(instrument: Instrument) -> str:
    """The distinct sources of an instrument's values."""
    texts = dict.fromkeys(t for t in instrument.sources.values() if t)
    return " / ".join(t.replace("|", "\\|") for t in texts)


def _catalogue_section() -> list[str]:
    lines = [
        "## Instrument catalogue",
        "",
        f"Score columns of `sessions` and `followups`, from `data_schemas/{CATALOGUE_FILE}`. "
        "Name the column as in the first column below (case does not matter); only the "
        "instruments present in a file are checked. A study config can override thresholds "
        "or declare its own instruments (`instruments:`; `ipt-outcomes config --example`). "
        "An empty definition means the outcome is not defined for that instrument.",
        "",
        "| column | instrument | range | whole numbers | better | definitions | sources |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in CATALOGUE.values():
        lines.append(
            f"| `{i.name}` | {i.label} | {i.range_text()} | {'yes' if i.whole else 'no'} "
            f"| {'lower' if i.lower_is_better else 'higher'} | {_definitions(i)} "
            f"| {_sources(i)} |")
    return [*lines, ""]


def _output_table(key: str, schema: pa.DataFrameSchema) -> list[str]:
    from data_schemas.outputs import KINDS, display_name, folder_of

    lines = [f"### `{folder_of(key)}/{schema.name}.csv`", "", schema.description or "", ""]
    if key in OUTPUT_PATTERNS:
        lines += [f"One file per match of the name pattern `{key.replace('|', chr(92) + '|')}`.",
                  ""]
    lines += ["| column | type | always present | may be empty | allowed | description |",
              "|---|---|---|---|---|---|"]
    for name, column in schema.columns.items():
        kind = KINDS[(column.metadata or {}).get("kind", "text")]
        present = "no" if column.regex or not column.required else "yes"
        lines.append(
            f"| `{display_name(name, column)}` | {kind} | {present} "
            f"| {'yes' if column.nullable else 'no'} | {_allowed(column)} "
            f"| {column.description or ''} |")
    rules = [str(check.name) for check in schema.checks]
    if rules:
        lines += ["", "Rules: " + "; ".join(f"`{rule}`" for rule in rules) + "."]
    if not schema.strict:
        lines += ["", "Other columns may follow (the study's own covariates or input "
                  "columns)."]
    return [*lines, ""]


def _outputs_section() -> list[str]:
    lines = [
        "## Output tables",
        "",
        "Every CSV that `ipt-outcomes run` writes under `--out` (`tables/`, `audit/`, "
        "`validation/`), as shared (pseudonymised ids, small counts suppressed). Generated "
        "from the pandera schemas in `data_schemas/outputs/`; `tests/test_output_"
        "contracts.py` checks every file of a run against them. Read them with "
        "`pd.read_csv(path, keep_default_na=False, na_values=[\"\"])`: an empty cell is "
        "missing. A count of a protected table is a whole number, `<5` (1-4) or `*` "
        "(hidden to protect another count); the rates, intervals and means of a row with a "
        "hidden count are empty. Where an estimate and its interval are present, "
        "low <= estimate <= high. `<instrument>` stands for an instrument's column name "
        "(`phq9`), `<weeks>` for a horizon in weeks (`relapse.horizon_weeks`), `<model>` "
        "for a mixed model's name.",
        "",
    ]
    for key, schema in OUTPUT_CONTRACTS.items():
        lines += _output_table(key, schema)
    return lines


def render_dictionary() -> str:
    """The data dictionary as Markdown."""
    lines = [
        "# Data dictionary",
        "",
        "Generated from the pandera models in `data_schemas/` by `make dictionary`; "
        "do not edit by hand. A study folder (DATA_DIR) holds one file per table.",
        "",
    ]
    for contract in CONTRACTS.values():
        lines += _table_section(contract)
    lines += _synonyms_section()
    lines += _catalogue_section()
    lines += _outcomes_section()
    lines += _outputs_section()
    return "\n".join(lines)


def template_frames() -> dict[str, pd.DataFrame]:
    """An empty frame per table with every contract column, for clinics to fill in."""
    return {
        name: pd.DataFrame(columns=list(
            contract.for_columns(TEMPLATE_INSTRUMENTS).schema().columns))
        for name, contract in CONTRACTS.items()
    }
