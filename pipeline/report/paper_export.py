"""Tables for papers, written: ``OUT/paper/<table>.tex``, ``<table>.csv`` and one Word
document ``tables.docx`` holding the five tables with their captions and notes.

The content comes from :mod:`pipeline.report.paper_tables`; this module reads the run's CSVs (as
text, exactly as written), and renders. LaTeX is written by great-tables
(``GT.as_latex()``; it needs ``booktabs`` and ``caption`` in the preamble) and Word by
python-docx. Both are byte-reproducible: the same run gives the same files (the Word
document's dates are fixed and its zip entries carry a fixed timestamp).
"""

from __future__ import annotations

import datetime
import io as bytes_io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from pipeline import io
from pipeline.config import StudyConfig
from pipeline.report import paper_tables as pt
from pipeline.report.html import main_population

FOLDER: Final = "paper"
DOCX_NAME: Final = "tables.docx"
#: The Word document's creation and modification dates (fixed: same run, same bytes).
FIXED_DATE: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
#: The study defaults: a run without a recorded value falls back to the config's own default.
DEFAULTS: Final = StudyConfig()
ZIP_DATE: Final = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


@dataclass(frozen=True)
class RunTables:
    """What the paper tables are built from: the run's tables as text (absent ones are
    ``None``), the manifest's config and options."""

    tables: dict[str, pd.DataFrame | None]
    config: dict[str, Any]
    options: dict[str, Any]

    def get(self, name: str) -> pd.DataFrame | None:
        """A table of the run, or ``None`` when the run did not write it."""
        return self.tables.get(name)


NEEDED: Final = ("patient_outcomes", "response_rates", "response_standardised",
                 "response_models", "mixed_growth_fixed", "mixed_growth_variance",
                 "mixed_growth_diagnostics", "mixed_format_difference", "relapse_km",
                 "relapse_logrank", "relapse_cox", "analyses")


def read_run(out_dir: Path) -> RunTables:
    """Read the tables the paper tables need (as text) and the manifest under OUT."""
    tables: dict[str, pd.DataFrame | None] = {}
    for name in NEEDED:
        path = out_dir / "tables" / f"{name}.csv"
        tables[name] = (pd.read_csv(path, dtype=str, keep_default_na=False)
                        if path.exists() else None)
    manifest = io.read_json(out_dir / "manifest.json")
    return RunTables(tables, dict(manifest.get("config", {})),
                     dict(manifest.get("options", {})))


def build(run: RunTables) -> list[pt.PaperTable]:
    """The five paper tables of a run (a missing analysis gives a table that says why)."""
    primary = str(run.config.get("primary_instrument", "phq9"))
    analyses = run.get("analyses")
    rates = run.get("response_rates")
    population = main_population(rates)
    patients = run.get("patient_outcomes")
    suppress_below = (None if run.options.get("no_suppress")
                      else int(run.config.get("suppress_below", DEFAULTS.suppress_below)))
    table1 = (pt.table1_baseline(patients, population, suppress_below,
                                 baseline_spec(run.config), shared_rates=rates)
              if patients is not None
              else pt.missing_table("table1_baseline", "Table 1. Baseline characteristics by "
                                    "format", pt.analysis_reason(analyses, "derive",
                                                                 "patient_outcomes")))
    outcome = str(run.config.get("comparison", {}).get("outcome", "response"))
    return [
        table1,
        pt.table2_outcomes(rates if rates is not None else pd.DataFrame(), primary,
                           suppress_below=suppress_below),
        pt.table3_comparison(run.get("response_standardised"), run.get("response_models"),
                             outcome, pt.analysis_reason(analyses, "outcomes",
                                                         "response_models")),
        pt.table4_growth(run.get("mixed_growth_fixed"), run.get("mixed_growth_variance"),
                         run.get("mixed_growth_diagnostics"),
                         run.get("mixed_format_difference"),
                         reason=pt.analysis_reason(analyses, "models", "model growth")),
        pt.table5_relapse(run.get("relapse_km"), run.get("relapse_logrank"),
                          run.get("relapse_cox"),
                          reason=pt.analysis_reason(analyses, "relapse", "km"),
                          cox_reason=pt.analysis_reason(analyses, "relapse", "cox")),
    ]


def baseline_spec(config: dict[str, Any]) -> pt.BaselineSpec:
    """Table 1's characteristics: age, then the baseline score of the primary instrument and
    of the paired instruments (PHQ-9 and GAD-7 by default), then the categorical ones."""
    primary = str(config.get("primary_instrument", "phq9"))
    paired = [str(i) for i in config.get("paired_instruments", ["phq9", "gad7"])]
    instruments = list(dict.fromkeys([primary, *paired]))
    scores = tuple((f"{i}_baseline", f"Baseline {pt.INSTRUMENT_LABELS.get(i, i)}")
                   for i in instruments)
    return pt.BaselineSpec(continuous=(("age", "Age (years)"), *scores))


# --------------------------------------------------------------------------- LaTeX


def to_latex(table: pt.PaperTable) -> str:
    """The table as a LaTeX ``table`` float (great-tables ``GT.as_latex``), caption on top
    and the notes underneath; cells are escaped by great-tables."""
    from great_tables import GT

    body, first = table.body, str(table.body.columns[0])
    indented = [i for i, text in enumerate(body[first].astype(str)) if text.startswith(" ")]
    if indented:  # level lines under a heading line: the first column as a stub, indented
        body = body.assign(**{first: body[first].astype(str).str.strip()})
        gt = GT(body, rowname_col=first).tab_stubhead(label=first)
        gt = gt.tab_stub_indent(rows=indented, indent=3)
    else:
        gt = GT(body)
    gt = gt.tab_header(title=table.caption).tab_options(table_font_size="9pt")
    for note in table.notes:
        gt = gt.tab_source_note(note)
    header = (f"% {table.caption}\n% generated by ipt-outcomes from {', '.join(table.sources)}"
              "\n% needs \\usepackage{booktabs,caption} in the preamble\n")
    return header + _bars(str(gt.as_latex())).rstrip() + "\n"


def _bars(latex: str) -> str:
    """``|`` (in model formulas) as ``\\textbar{}``: great-tables leaves it as it is, and
    LaTeX's default font encoding prints it as a dash. Only cell and note text holds a
    ``|`` here (column specifications are ``l`` and ``r``, without rules)."""
    head, marker, body = latex.partition("\\toprule")
    return head + marker + body.replace("|", "\\textbar{}")


# --------------------------------------------------------------------------- Word


def to_docx(tables: Sequence[pt.PaperTable], title: str = "IPT outcomes: tables") -> bytes:
    """One Word document with every table: caption, the table, its notes.

    The document's dates are fixed (:data:`FIXED_DATE`) and the zip is rewritten with a
    fixed timestamp per entry, so the same tables give the same bytes.
    """
    from docx import Document
    from docx.enum.section import WD_ORIENT
    from docx.shared import Pt

    document = Document()
    section = document.sections[0]  # landscape: the outcome table has six wide columns
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = section.page_height, section.page_width
    properties = document.core_properties
    properties.title, properties.author = title, "ipt-outcomes"
    properties.last_modified_by, properties.revision = "ipt-outcomes", 1
    properties.comments = "generated by ipt-outcomes from the CSVs of one run"
    properties.created = properties.modified = FIXED_DATE
    properties.last_printed = FIXED_DATE
    document.add_heading(title, level=1)
    for table in tables:
        document.add_paragraph(table.caption, style="Caption")
        grid = document.add_table(rows=1, cols=len(table.body.columns), style="Table Grid")
        for cell, name in zip(grid.rows[0].cells, table.body.columns, strict=True):
            cell.text = str(name)
            for run in cell.paragraphs[0].runs:
                run.bold = True
        for values in table.body.itertuples(index=False):
            for cell, value in zip(grid.add_row().cells, values, strict=True):
                cell.text = str(value)
        for row in grid.rows:
            for cell in row.cells:
                for run in cell.paragraphs[0].runs:
                    run.font.size = Pt(9)
        for note in table.notes:
            paragraph = document.add_paragraph(note)
            for run in paragraph.runs:
                run.font.size = Pt(8)
        document.add_paragraph("")
    buffer = bytes_io.BytesIO()
    document.save(buffer)
    return _deterministic_zip(buffer.getvalue())


def _deterministic_zip(data: bytes) -> bytes:
    """The same zip with every entry dated :data:`ZIP_DATE` (python-docx stamps the time of
    saving), in the same order."""
    source = zipfile.ZipFile(bytes_io.BytesIO(data))
    out = bytes_io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            target.writestr(entry, source.read(info.filename))
    return out.getvalue()


# --------------------------------------------------------------------------- writing


def write(out_dir: Path) -> list[Path]:
    """Build the paper tables of the run under OUT and write ``OUT/paper/``: one ``.tex``
    and one ``.csv`` (the cells as printed; as in every CSV of a run, a cell that a
    spreadsheet would run as a formula, such as ``-20.6%``, is written with a leading
    ``'``) per table, and ``tables.docx`` with all five.

    Returns
    -------
    list of Path
        The files written (every path checked to lie inside OUT).
    """
    tables = build(read_run(out_dir))
    written: list[Path] = []
    for table in tables:
        written.append(io.write_text(to_latex(table),
                                     io.inside(out_dir, FOLDER, f"{table.name}.tex")))
        written.append(io.write_csv(table.body, io.inside(out_dir, FOLDER, f"{table.name}.csv")))
    written.append(io.write_bytes(to_docx(tables), io.inside(out_dir, FOLDER, DOCX_NAME)))
    return written
