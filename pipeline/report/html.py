"""Render the study report: one self-contained, printable HTML file.

The report reads what the stages wrote under the output folder (tables, figures, messages,
the validation summary and the manifest), so it can be re-rendered without recomputing,
and renders it with a Jinja2 template kept in the package. Every value that comes from the
data is escaped (autoescape); figures are embedded as ``data:`` URIs; a Content Security
Policy forbids any network request; no JavaScript is used.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jinja2
import pandas as pd

from pipeline import io
from pipeline.report.findings import first_screen, instrument_label, percent
from pipeline.trajectories.means import observed_n_wide

TEMPLATES = Path(__file__).parent / "templates"
DASH, EN_DASH, MINUS = "\u2013", "\u2013", "\u2212"
SECTIONS = (
    ("summary", "Summary"),
    ("data", "Data and validation"),
    ("attendance", "Attendance and dropout"),
    ("outcomes", "Outcomes"),
    ("trajectories", "Trajectories"),
    ("relapse", "Relapse"),
    ("audit", "Clinic audit"),
    ("methods", "Methods"),
    ("appendix", "Appendix: detail tables"),
)
#: Tables shown in the appendix, in full (up to :data:`APPENDIX_ROWS` rows).
APPENDIX: Final = frozenset({"audit_sites", "audit_therapists", "audit_benchmarks"})
#: Rows shown of a table in the body and in the appendix (the CSV has them all).
BODY_ROWS: Final = 60
APPENDIX_ROWS: Final = 400
#: The printable width of a table (A4 or letter less the margins, at 8pt), in CSS pixels,
#: and the width of one character of a cell; wider tables are printed in column blocks.
PRINT_WIDTH: Final = 620
CHAR_WIDTH: Final = 6.5
#: One row per patient or per score: never shown in the report (privacy), and not read
#: (at registry scale they hold millions of rows).
PATIENT_LEVEL = frozenset({"patient_outcomes", "mixed_patient_fitted", "not_on_track",
                           "relapse_cohort"})


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows, read from an output folder."""

    tables: dict[str, pd.DataFrame]
    figures: dict[str, str]  # name -> data URI
    messages: dict[str, list[str]]
    validation: dict[str, Any]
    manifest: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def read_outputs(out_dir: Path) -> ReportInputs:
    """Read the tables (not the patient-level ones), figures, messages, validation summary
    and manifest under OUT."""
    tables: dict[str, pd.DataFrame] = {}
    for folder in ("tables", "audit"):
        for path in sorted((out_dir / folder).glob("*.csv")):
            if path.stem not in PATIENT_LEVEL:
                tables[path.stem] = pd.read_csv(path, dtype=str, keep_default_na=False)
    figures = {
        path.stem: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        for path in sorted((out_dir / "figures").glob("*.png"))
    }
    messages = {
        path.stem: list(json.loads(path.read_text()))
        for path in sorted((out_dir / "messages").glob("*.json"))
    }
    return ReportInputs(
        tables=tables,
        figures=figures,
        messages=messages,
        validation=io.read_json(out_dir / "validation" / "summary.json"),
        manifest=io.read_json(out_dir / "manifest.json"),
    )


#: Columns holding p-values: shown as ``<0.001`` below 0.001.
P_VALUE_COLUMNS = frozenset({"p_value", "p", "pvalue", "p_adjusted", "lr_p_value"})


def format_cell(value: Any, column: str = "") -> str:
    """Round numbers for reading, three decimals (tables on disk keep full precision).

    A p-value below 0.001 reads ``<0.001``; any other number prints in fixed notation, so
    a bound a rounding error from zero reads ``0.000``, never ``6.9e-18``.
    """
    text = str(value)
    if text in ("", "nan", "NaN", "<NA>", "None"):
        return DASH
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isnan(number):
        return DASH
    if number.is_integer() and "." not in text and "e" not in text.lower():
        return f"{int(number):,}"
    if column in P_VALUE_COLUMNS and 0 <= number < 0.001:
        return "<0.001"
    shown = f"{number:.3f}"
    return shown[1:] if shown == "-0.000" else shown


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = format_cell
    return env


def _width(column: str, values: list[str]) -> float:
    """A column's printed width: its longest cell or header word, plus padding."""
    words = column.replace("_", " ").split() or [column]
    longest = max([len(w) for w in words] + [len(v) for v in values])
    return longest * CHAR_WIDTH + 10.0


def column_blocks(frame: pd.DataFrame, width: float = PRINT_WIDTH) -> list[list[str]]:
    """The columns of ``frame`` in blocks that each fit the printed page: the leading
    label columns (text, up to two) are repeated in every block, the others fill blocks in
    order until the next would not fit."""
    cells = {c: [format_cell(v, c) for v in frame[c].tolist()] for c in frame.columns}
    labels = []
    for column in frame.columns[:2]:
        if pd.api.types.is_numeric_dtype(pd.to_numeric(frame[column], errors="coerce")) and \
                pd.to_numeric(frame[column], errors="coerce").notna().any():
            break
        labels.append(column)
    used = sum(_width(c, cells[c]) for c in labels)
    blocks: list[list[str]] = [[]]
    room = used
    for column in (c for c in frame.columns if c not in labels):
        size = _width(column, cells[column])
        if blocks[-1] and room + size > width:
            blocks.append([])
            room = used
        blocks[-1].append(column)
        room += size
    return [[*labels, *block] for block in blocks if block] or [labels]


#: The file a reader-friendly view is built from (the others are their own file).
VIEW_SOURCES = {"rates_observed": "response_rates.csv", "rates_itt": "response_rates.csv",
                "model_formulas": "mixed_*_diagnostics.csv",
                "mixed_observed_n": "mixed_observed_means.csv"}


def _table_rows(frame: pd.DataFrame, name: str, limit: int | None = None) -> dict[str, Any]:
    shown = frame if limit is None else frame.head(limit)
    blocks = [{"columns": columns, "rows": shown[columns].values.tolist()}
              for columns in column_blocks(shown)]
    return {"blocks": blocks, "truncated": len(frame) - len(shown),
            "source": VIEW_SOURCES.get(name, f"{name}.csv")}


def main_population(rates: pd.DataFrame | None) -> str:
    """``randomised`` when the rates are a trial's (``populations.definition: trial``), else
    ``finished_course`` (``pipeline.outcomes.definitions.main_population``)."""
    if rates is not None and "population" in rates and (rates["population"] == "randomised").any():
        return "randomised"
    return "finished_course"


def _ci(low: Any, high: Any) -> str:
    return f"{percent(low)}{EN_DASH}{percent(high)}"


def _rate_text(row: pd.Series, rate: str = "rate", low: str = "ci_low",
               high: str = "ci_high") -> str:
    if row.get(rate, "") in ("", None):
        return "suppressed" if str(row.get("suppressed", "")) == "True" else DASH
    return f"{percent(row[rate])} ({_ci(row[low], row[high])})"


def rates_view(rates: pd.DataFrame, denominator: str,
               outcomes: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """Finished-course rates as condition x format rows and one column per outcome."""
    wanted = pd.Series(list(zip(rates["instrument"], rates["outcome"], strict=True)),
                       index=rates.index).isin(outcomes)
    part = rates[(rates["population"] == main_population(rates))
                 & (rates["denominator"] == denominator) & wanted]
    if part.empty:
        return pd.DataFrame()
    cells = part.assign(
        label=[f"{instrument_label(i)} {o.replace('_', ' ')}"
               for i, o in zip(part["instrument"], part["outcome"], strict=True)],
        text=[f"{_rate_text(r)}, n={r['n']}" for _, r in part.iterrows()],
    )
    view = cells.pivot_table(index=["condition", "format"], columns="label", values="text",
                             aggfunc="first", sort=False)
    return human_groups(view.reset_index().rename_axis(columns=None))


def human_groups(view: pd.DataFrame) -> pd.DataFrame:
    """A view's condition and format codes in words (``major_depression`` -> ``Major
    depression``, ``all`` -> ``All``); the CSVs keep the codes."""
    out = view.copy()
    for column in ("condition", "format"):
        if column in out:
            out[column] = out[column].map(
                lambda code: "All" if code == "all" else str(code).replace("_", " ").capitalize())
    return out


def attendance_view(attendance: pd.DataFrame) -> pd.DataFrame:
    """Attendance with each estimate and its CI in one cell."""
    def mean_ci(r: pd.Series) -> str:
        return (f"{format_cell(r['sessions_attended_mean'])} ("
                f"{format_cell(r['sessions_attended_ci_low'])}{EN_DASH}"
                f"{format_cell(r['sessions_attended_ci_high'])})")

    return human_groups(pd.DataFrame({
        "condition": attendance["condition"], "format": attendance["format"],
        "patients": attendance["patients"],
        "sessions attended, mean (95% CI)": [mean_ci(r) for _, r in attendance.iterrows()],
        "did not attend (95% CI)": [_rate_text(r, "dna_rate", "dna_ci_low", "dna_ci_high")
                                    for _, r in attendance.iterrows()],
        "dropout (95% CI)": [_rate_text(r, "dropout_rate", "dropout_ci_low", "dropout_ci_high")
                             for _, r in attendance.iterrows()],
    }))


def turnbull_view(turnbull: pd.DataFrame, horizons: list[float]) -> pd.DataFrame:
    """The Turnbull table (``relapse_free_interval``) at 0 and the horizons only."""
    times = pd.to_numeric(turnbull["time_weeks"], errors="coerce")
    return turnbull.loc[times.isin([0.0, *horizons])].drop(
        columns=["relapse_free_low", "relapse_free_high"], errors="ignore")


def _estimate_text(row: pd.Series, estimate: str, low: str, high: str) -> str:
    """``0.912 (0.801-1.02)`` for a ratio or effect size (a dash when blank)."""
    if row.get(estimate, "") in ("", None):
        return "suppressed" if str(row.get("suppressed", "")) == "True" else DASH
    return (f"{format_cell(row[estimate])} ({format_cell(row[low])}{EN_DASH}"
            f"{format_cell(row[high])})")


UNIT_VIEW_COLUMNS: Final = frozenset({
    "unit", "site_id", "referred", "finished_course", "recovery_rate", "recovery_ci_low",
    "recovery_ci_high", "adjusted_rate", "adjusted_ci_low", "adjusted_ci_high", "oe_ratio",
    "oe_ci_low", "oe_ci_high", "dropout_rate", "dropout_ci_low", "dropout_ci_high",
    "dna_rate", "completeness"})
BENCHMARK_VIEW_COLUMNS: Final = frozenset({"level", "unit", "measure", "n", "estimate",
                                           "ci_low", "ci_high", "benchmark", "verdict"})


def audit_unit_view(units: pd.DataFrame) -> pd.DataFrame:
    """A site or therapist table with each estimate and its CI in one cell: the columns a
    reader compares units on (the CSV keeps every count and interval)."""
    rows = list(units.iterrows())
    view: dict[str, Any] = {"unit": units["unit"]}
    if (units.get("level", pd.Series(dtype=str)) == "therapist").any():
        view["site"] = units["site_id"]
    view.update({
        "referred": units["referred"], "finished": units["finished_course"],
        "recovery (95% CI)": [_rate_text(r, "recovery_rate", "recovery_ci_low",
                                         "recovery_ci_high") for _, r in rows],
        "adjusted recovery (95% CI)": [_rate_text(r, "adjusted_rate", "adjusted_ci_low",
                                                  "adjusted_ci_high") for _, r in rows],
        "observed / expected (95% CI)": [_estimate_text(r, "oe_ratio", "oe_ci_low",
                                                        "oe_ci_high") for _, r in rows],
    })
    for instrument in ("phq9", "gad7"):
        if f"{instrument}_effect_size" in units:
            view[f"{instrument_label(instrument)} effect size (95% CI)"] = [
                _estimate_text(r, f"{instrument}_effect_size", f"{instrument}_es_ci_low",
                               f"{instrument}_es_ci_high") for _, r in rows]
    view.update({
        "dropout (95% CI)": [_rate_text(r, "dropout_rate", "dropout_ci_low",
                                        "dropout_ci_high") for _, r in rows],
        "did not attend": [percent(v) for v in units["dna_rate"]],
        "paired scores": [percent(v) for v in units["completeness"]],
    })
    return pd.DataFrame(view)


def audit_benchmark_view(table: pd.DataFrame) -> pd.DataFrame:
    """Each unit against each benchmark: estimate with its CI in one cell."""
    return pd.DataFrame({
        "level": table["level"], "unit": table["unit"],
        "measure": table["measure"].str.replace("_", " "), "n": table["n"],
        "estimate (95% CI)": [_estimate_text(r, "estimate", "ci_low", "ci_high")
                              for _, r in table.iterrows()],
        "benchmark": table["benchmark"], "verdict": table["verdict"].str.replace("_", " "),
    })


def _views(tables: dict[str, pd.DataFrame], primary: str,
           horizons: list[float]) -> dict[str, pd.DataFrame]:
    """Reader-friendly versions of the widest tables (the CSVs keep every column)."""
    views = dict(tables)
    main = ((primary, "response"), (primary, "remission"),
            ("phq9+gad7", "reliable_improvement"), ("phq9+gad7", "recovery"))
    if "response_rates" in tables:
        views["rates_observed"] = rates_view(tables["response_rates"], "observed", main)
        itt = rates_view(tables["response_rates"], "itt", main)
        if itt.equals(views["rates_observed"]):
            views["rates_itt_same"] = pd.DataFrame()  # a marker: the template says so
        else:
            views["rates_itt"] = itt
    if "attendance" in tables:
        views["attendance"] = attendance_view(tables["attendance"])
    # the reader's views of tables with the audit's columns (any other table is shown as is)
    for name in ("audit_sites", "audit_therapists"):
        if name in tables and set(tables[name].columns) >= UNIT_VIEW_COLUMNS:
            views[name] = audit_unit_view(tables[name])
    if "audit_benchmarks" in tables and set(
            tables["audit_benchmarks"].columns) >= BENCHMARK_VIEW_COLUMNS:
        views["audit_benchmarks"] = audit_benchmark_view(tables["audit_benchmarks"])
    if "relapse_free_interval" in tables:
        views["relapse_free_interval"] = turnbull_view(
            tables["relapse_free_interval"], horizons)
    if "mixed_observed_means" in tables:
        views["mixed_observed_n"] = observed_n_wide(tables["mixed_observed_means"])
    formulas: list[pd.DataFrame] = []
    for name, frame in tables.items():
        if name.startswith("mixed_") and name.endswith("_diagnostics"):
            # warnings are shown as notes above the tables, formulas in the methods
            if "formula" in frame.columns:
                formulas.append(pd.DataFrame({"model": name[6:-12], "formula": frame["formula"]}))
            views[name] = frame.drop(columns=["warnings", "formula", "model"], errors="ignore")
    if formulas:
        # in the order of the model comparison (the config's), not the files' names
        order = list(tables.get("mixed_model_comparison", pd.DataFrame({"model": []}))["model"])

        def rank(frame: pd.DataFrame) -> tuple[int, str]:
            model = str(frame["model"].iloc[0])
            return (order.index(model) if model in order else len(order), model)

        positions = sorted(range(len(formulas)), key=lambda i: rank(formulas[i]))
        views["model_formulas"] = pd.concat([formulas[i] for i in positions],
                                            ignore_index=True)
    return views


def analysis_records(analyses: pd.DataFrame | None) -> dict[str, dict[str, str]]:
    """The run's analysis records (``tables/analyses.csv``) keyed ``stage/analysis``, so the
    template can show each reason where that analysis would have been."""
    if analyses is None or analyses.empty:
        return {}
    return {f"{r['stage']}/{r['analysis']}": {str(k): str(v) for k, v in r.items()}
            for r in analyses.to_dict("records")}


def render(inputs: ReportInputs, title: str = "IPT outcomes report") -> str:
    """The report as HTML text."""
    config = inputs.manifest.get("config", {})
    primary = str(config.get("primary_instrument", "phq9"))
    horizons = [float(h) for h in config.get("relapse", {}).get("horizon_weeks", (26.0, 52.0))]
    tables = {name: _table_rows(frame, name,
                                limit=APPENDIX_ROWS if name in APPENDIX else BODY_ROWS)
              for name, frame in _views(inputs.tables, primary, horizons).items()}
    return _environment().get_template("report.html.j2").render(
        title=title,
        sections=SECTIONS,
        findings=first_screen(inputs.tables, main_population(inputs.tables.get("response_rates")),
                              primary),
        synthetic=inputs.manifest.get("seeds", {}).get("demo_generator") is not None,
        paper=str(config.get("paper_size", "A4")),
        appendix=sorted(APPENDIX),
        tables=tables,
        figures=inputs.figures,
        messages=inputs.messages,
        validation=inputs.validation,
        manifest=inputs.manifest,
        manifest_json=json.dumps(inputs.manifest.get("config", {}), indent=2, sort_keys=True),
        primary=primary,
        analyses=analysis_records(inputs.tables.get("analyses")),
        population=("randomised patients (intention to treat)"
                    if main_population(inputs.tables.get("response_rates")) == "randomised"
                    else "finished courses"),
    )


def write(out_dir: Path, title: str = "IPT outcomes report") -> Path:
    """Render ``OUT/report.html`` from the outputs under ``out_dir`` (atomically)."""
    return io.write_text(render(read_outputs(out_dir), title), out_dir / "report.html")
