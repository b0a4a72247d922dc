"""Tables for papers: the numbers are the CSVs', suppressed labels are carried, Table 1 is
right by hand, the files are reproducible, and a missing analysis never crashes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import docx
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.report import paper_export
from pipeline.report import paper_tables as pt

EN_DASH = "\u2013"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo run with outcomes and relapse (no models: Table 4 must say so), and its
    paper tables."""
    root = tmp_path_factory.mktemp("paper")
    data, out = root / "data", root / "out"
    assert main(["demo", "--out", str(data), "--patients", "300"]) == 0
    assert main(["outcomes", str(data), "--out", str(out)]) == 0
    assert main(["relapse", str(data), "--out", str(out)]) == 0
    assert main(["paper", "--out", str(out)]) == 0
    return out


def _docx_tables(path: Path) -> dict[str, list[list[str]]]:
    """Each table of the Word document (cells as text), keyed by its caption."""
    document = docx.Document(str(path))
    captions = [p.text for p in document.paragraphs if p.style.name == "Caption"]
    assert len(captions) == len(document.tables)
    return {caption: [[cell.text for cell in row.cells] for row in table.rows]
            for caption, table in zip(captions, document.tables, strict=True)}


def _table(tables: dict[str, list[list[str]]], number: int) -> list[list[str]]:
    [caption] = [c for c in tables if c.startswith(f"Table {number}.")]
    return tables[caption]


def _pct(text: str) -> str:
    return f"{100 * float(text):.1f}%"


def _expected_rate_cell(row: pd.Series) -> str:
    """Written independently of the module: events/n, rate (CI) from the CSV's text."""
    counts = f"{row['events']}/{row['n']}"
    if row["rate"] == "":
        return f"{counts}, suppressed" if row["suppressed"] == "True" else f"{counts}, {EN_DASH}"
    return (f"{counts}, {_pct(row['rate'])} ({_pct(row['ci_low'])}{EN_DASH}"
            f"{_pct(row['ci_high'])})")


def _main_rates(out: Path) -> pd.DataFrame:
    rates = pd.read_csv(out / "tables" / "response_rates.csv", dtype=str,
                        keep_default_na=False)
    return rates[(rates["population"] == "finished_course")
                 & (rates["denominator"] == "observed")]


def test_outcome_table_in_word_equals_the_csv(run: Path) -> None:
    rows = _table(_docx_tables(run / "paper" / "tables.docx"), 2)
    header = rows[0]
    assert header == ["Outcome and condition", "Individual", "Group", "All formats"]
    blocks: dict[str, dict[str, list[str]]] = {}
    for row in rows[1:]:
        if not row[0].startswith("   "):
            block = blocks.setdefault(row[0], {})
        else:
            block[row[0].strip()] = row[1:]
    rates = _main_rates(run)
    checked = 0
    for title, (instrument, outcome) in (("Response (PHQ-9)", ("phq9", "response")),
                                         ("Remission (PHQ-9)", ("phq9", "remission")),
                                         ("Reliable improvement (PHQ-9 and GAD-7)",
                                          ("phq9+gad7", "reliable_improvement")),
                                         ("Recovery (PHQ-9 and GAD-7)",
                                          ("phq9+gad7", "recovery"))):
        part = rates[(rates["instrument"] == instrument) & (rates["outcome"] == outcome)]
        assert 3 * len(blocks[title]) == len(part)  # every cell of the CSV, none more
        for _, expected in part.iterrows():
            condition = ("All conditions" if expected["condition"] == "all"
                         else expected["condition"].replace("_", " ").capitalize())
            at = ("individual", "group", "all").index(expected["format"])
            assert blocks[title][condition][at] == _expected_rate_cell(expected), (
                title, condition, expected["format"])
            checked += 1
    assert checked == 4 * 24  # 4 outcomes x (7 conditions + all) x (2 formats + all)


def test_suppressed_labels_are_carried(run: Path) -> None:
    rows = _table(_docx_tables(run / "paper" / "tables.docx"), 2)
    cells = [cell for row in rows[1:] for cell in row[1:] if cell]
    rates = _main_rates(run)
    labels = set(rates["events"]) | set(rates["n"])
    assert {"<5", "*"} <= labels  # the demo run hides counts both ways
    assert any(cell.startswith("<5/") or "/<5," in cell for cell in cells)
    assert any(cell.startswith("*/") or "/*," in cell for cell in cells)
    hidden = [cell for cell in cells if "<5" in cell or "*" in cell]
    assert hidden and all(cell.endswith(", suppressed") for cell in hidden)


def test_latex_holds_the_same_cells(run: Path) -> None:
    latex = (run / "paper" / "table2_outcomes.tex").read_text()
    printed = pd.read_csv(run / "paper" / "table2_outcomes.csv", dtype=str,
                          keep_default_na=False)
    assert r"\begin{table}" in latex and r"\toprule" in latex
    for cell in printed.iloc[:, 1:].to_numpy().ravel():
        escaped = cell.replace("%", r"\%").replace("<", r"\textless{}")
        assert escaped in latex, cell
    word = _table(_docx_tables(run / "paper" / "tables.docx"), 2)
    assert [list(printed.columns), *printed.to_numpy().tolist()] == word


def test_same_run_gives_the_same_bytes(run: Path, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in (run / "paper").iterdir()}
    copy = tmp_path / "again"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "paper")
    assert main(["paper", "--out", str(copy)]) == 0
    after = {p.name: p.read_bytes() for p in (copy / "paper").iterdir()}
    assert set(before) == {f"table{i}_{n}.{s}" for i, n in enumerate(
        ("baseline", "outcomes", "comparison", "growth", "relapse"), start=1)
        for s in ("tex", "csv")} | {"tables.docx"}
    assert before == after
    properties = docx.Document(str(run / "paper" / "tables.docx")).core_properties
    assert properties.created == paper_export.FIXED_DATE


def test_missing_analyses_say_so(run: Path, tmp_path: Path) -> None:
    tables = _docx_tables(run / "paper" / "tables.docx")
    growth = _table(tables, 4)  # the fixture ran no models
    assert growth[0] == ["Status"]
    assert growth[1][0].startswith("Not in this run: the models stage did not run")
    copy = tmp_path / "no_relapse"
    shutil.copytree(run, copy)
    for path in (copy / "tables").glob("relapse_*.csv"):
        path.unlink()
    (copy / "tables" / "response_models.csv").unlink()
    (copy / "tables" / "response_standardised.csv").unlink()
    written = paper_export.write(copy)
    assert len(written) == 11
    tables = _docx_tables(copy / "paper" / "tables.docx")
    for number in (3, 5):
        assert _table(tables, number)[0] == ["Status"]
        assert _table(tables, number)[1][0].startswith("Not in this output folder: "), number
    assert len(_table(tables, 2)) > 2  # the others are still there


def test_relapse_table_equals_the_csv(run: Path) -> None:
    rows = _table(_docx_tables(run / "paper" / "tables.docx"), 5)
    km = pd.read_csv(run / "tables" / "relapse_km.csv", dtype=str, keep_default_na=False)
    header = rows[0]
    for row, (_, r) in zip(rows[1:], km.iterrows(), strict=False):
        assert row[header.index("n")] == r["n"]
        assert row[header.index("Relapses")] == r["events"]
        if r["relapse_free_26w"]:
            assert row[header.index("Relapse-free at 26 weeks (95% CI)")].startswith(
                _pct(r["relapse_free_26w"]) + " (")


# --------------------------------------------------------------------------- Table 1


def _tiny() -> pd.DataFrame:
    """14 patients: individual 9 (6 female, 3 male), group 5 (2 female, 3 male)."""
    return pd.DataFrame({
        "format": ["individual"] * 9 + ["group"] * 5,
        "sex": ["female"] * 6 + ["male"] * 3 + ["female"] * 2 + ["male"] * 3,
        "condition": ["major_depression"] * 14,
        "problem_area": ["grief"] * 14,
        "age": [20, 30, 40, 50, 60, 25, 35, 45, 55, 30, 40, 50, None, 60],
        "finished_course": ["True"] * 14,
    })


def test_table1_counts_by_hand_without_suppression() -> None:
    table = pt.table1_baseline(_tiny(), "finished_course", None)
    body = table.body.set_index("Characteristic")
    assert list(body.columns) == ["Individual (N = 9)", "Group (N = 5)", "Overall (N = 14)"]
    assert body.loc["   Female"].tolist() == ["6 (66.7%)", "2 (40.0%)", "8 (57.1%)"]
    assert body.loc["   Male"].tolist() == ["3 (33.3%)", "3 (60.0%)", "6 (42.9%)"]
    # individual ages: mean 40.0; squared deviations sum to 1500, SD = sqrt(1500 / 8) = 13.7
    assert body.loc["Age (years), mean (SD)"].iloc[0] == "40.0 (13.7)"
    assert body.loc["Age (years), median (IQR)"].iloc[1] == f"45.0 (37.5{EN_DASH}52.5)"
    assert body.loc["Age (years), missing, n"].tolist() == ["0", "1", "1"]
    assert any("--no-suppress" in note for note in table.notes)


def test_table1_suppresses_small_counts_and_what_would_give_them_away() -> None:
    body = pt.table1_baseline(_tiny(), "finished_course", 5).body.set_index("Characteristic")
    sex = body.loc[["   Female", "   Male"]]
    assert sex.iloc[1, 0] == "<5" and sex.iloc[0, 1] == "<5" and sex.iloc[1, 1] == "<5"
    # individual: 6 + <5 = 9 would pin the 3, so the 6 is hidden as well
    assert sex.iloc[0, 0] == "*"
    for cell in sex.to_numpy().ravel():
        shown = cell.split(" ")[0]
        assert shown in ("<5", "*") or int(shown) >= 5 or int(shown) == 0
    # one missing age in the group column: a count of 1 is hidden
    assert body.loc["Age (years), missing, n"].iloc[1] == "<5"
    # the group's 4 known ages are too few to summarise
    assert body.loc["Age (years), mean (SD)"].iloc[1] == f"{EN_DASH} ({EN_DASH})"


def test_table1_population_and_rates_labels() -> None:
    patients = _tiny().assign(finished_course=["True"] * 13 + ["False"])
    table = pt.table1_baseline(patients, "finished_course", None)
    assert "Overall (N = 13)" in table.body.columns
    # 20 patients: major depression 9 individual + 6 group, anxiety 3 + 2
    twenty = pd.DataFrame({"format": ["individual"] * 9 + ["group"] * 6 + ["individual"] * 3
                           + ["group"] * 2,
                           "condition": ["major_depression"] * 15 + ["anxiety"] * 5,
                           "sex": ["female", "male"] * 10})
    counts = pt.baseline_counts(twenty, pt.BaselineSpec())
    rates = pd.DataFrame({
        "population": "finished_course", "instrument": "phq9", "outcome": "response",
        "denominator": "observed",
        "condition": ["major_depression"] * 3 + ["anxiety"] * 3 + ["all"] * 3,
        "format": ["individual", "group", "all"] * 3,
        "n": ["*", "*", "15", "<5", "<5", "5", "12", "8", "20"]})
    shared = pt.shared_condition_counts(counts, rates, "finished_course", "format")
    assert shared is not None and shared["count"].tolist() == rates["n"].tolist()
    body = pt.table1_baseline(twenty, "finished_course", 5,
                              shared_rates=rates).body.set_index("Characteristic")
    assert body.loc["   Major depression"].tolist() == ["*", "*", "15 (75.0%)"]
    assert body.loc["   Anxiety"].tolist() == ["<5", "<5", "5 (25.0%)"]
    wrong = rates.assign(n=["*", "*", "14", "<5", "<5", "5", "12", "8", "20"])
    assert pt.shared_condition_counts(counts, wrong, "finished_course", "format") is None


def test_growth_table_rounds_as_the_report() -> None:
    fixed = pd.DataFrame({"term": ["weeks", "weeks:format[group]"],
                          "estimate": ["-0.5731295779524572", "0.11951296482245721"],
                          "std_error": ["0.02075571409796317", "0.02904446772138842"],
                          "ci_low": ["-0.6138100300578753", "0.06258685413839979"],
                          "ci_high": ["-0.5324491258470392", "0.17643907550651464"],
                          "p_value": ["7.746973413909548e-168", "3.874696290430408e-05"]})
    body = pt.table4_growth(fixed, None, None, None).body
    assert body.iloc[0].tolist() == ["weeks", "-0.573", "0.021", "-0.614 to -0.532",
                                     "<0.001"]
    assert body.iloc[1, 0] == "weeks \u00d7 format: group"


def test_table1_hides_what_the_outcome_tables_hide(run: Path) -> None:
    """The condition counts of Table 1 are the patients of the main population, which
    response_rates also publish: each is shown, or hidden, alike in both."""
    printed = pd.read_csv(run / "paper" / "table1_baseline.csv", dtype=str,
                          keep_default_na=False).set_index("Characteristic")
    rates = _main_rates(run)
    response = rates[(rates["instrument"] == "phq9") & (rates["outcome"] == "response")]
    columns = {"individual": 0, "group": 1, "all": 2}
    compared = 0
    for _, r in response.iterrows():
        if r["condition"] == "all":
            continue
        line = "   " + r["condition"].replace("_", " ").capitalize()
        cell = printed.loc[line].iloc[columns[r["format"]]]
        assert cell.split(" ")[0] == r["n"], (line, r["format"])
        compared += 1
    assert compared >= 12
    for cell in printed.to_numpy().ravel():
        first = cell.split(" ")[0]
        assert not first.isdigit() or int(first) == 0 or int(first) >= 5, cell


def test_no_suppress_run_shows_small_counts_and_says_so() -> None:
    patients = _tiny()
    run = paper_export.RunTables({"patient_outcomes": patients}, {},
                                 {"no_suppress": True})
    tables = paper_export.build(run)
    body = tables[0].body.set_index("Characteristic")
    assert body.loc["   Male"].iloc[0] == "3 (33.3%)"
    assert any("--no-suppress" in note for note in tables[0].notes)
    assert [t.body.columns[0] for t in tables[1:]] == ["Status"] * 4  # nothing else ran
    shielded = paper_export.build(paper_export.RunTables({"patient_outcomes": patients}, {},
                                                         {}))
    assert shielded[0].body.set_index("Characteristic").loc["   Male"].iloc[0] == "<5"


def test_growth_table_variance_difference_and_reason() -> None:
    fixed = pd.DataFrame({"term": ["(Intercept)"], "estimate": ["15.680817993550269"],
                          "std_error": ["0.355"], "ci_low": ["14.98"], "ci_high": ["16.38"],
                          "p_value": ["0.0"]})
    variance = pd.DataFrame({"level": ["patient_id", "patient_id", "Residual", "patient_id"],
                             "term": ["(Intercept)", "cor((Intercept), weeks)", "", "ICC"],
                             "variance": ["15.124759588726556", "-0.218", "4.05514915", ""],
                             "sd": ["3.889", "", "2.0137", ""],
                             "correlation": ["", "-0.3852633900056696", "", ""],
                             "icc": ["", "", "", "0.7885730737609107"]})
    difference = pd.DataFrame({"model": ["growth", "completers"], "instrument": "phq9",
                               "time_scale": "weeks", "time_point": ["16", "16"],
                               "contrast": "group - individual",
                               "estimate": ["2.8991748974151363", "9"],
                               "std_error": ["0.5645104913474588", "1"],
                               "ci_low": ["1.7927546654791073", "1"],
                               "ci_high": ["4.005595129351166", "1"],
                               "p_value": ["2.810471286717187e-07", "1"],
                               "effect_size": ["0.5991679925568942", "1"],
                               "effect_size_ci_low": ["0.37050583427023676", "1"],
                               "effect_size_ci_high": ["0.8278301508435518", "1"]})
    body = pt.table4_growth(fixed, variance, None, difference).body.set_index("Term")
    assert body.loc["(Intercept)", "Estimate"] == "15.681"
    assert body.loc["(Intercept)", "p"] == "<0.001"
    assert body.loc["Variance, patient_id: (Intercept)", "Estimate"] == "15.125"
    assert body.loc["Correlation, patient_id: cor((Intercept), weeks)", "Estimate"] == "-0.385"
    assert body.loc["Variance, Residual", "Estimate"] == "4.055"
    assert body.loc["ICC, patient_id", "Estimate"] == "0.789"
    row = body.loc["Difference group - individual at weeks 16"]
    assert row.tolist() == ["2.899", "0.565", "1.793 to 4.006", "<0.001"]  # growth only
    analyses = pd.DataFrame({"stage": ["models"], "analysis": ["model growth"],
                             "status": ["not estimable"], "reason": ["one format only"],
                             "remedy": ["patients in both formats"]})
    reason = pt.analysis_reason(analyses, "models", "model growth")
    missing = pt.table4_growth(None, None, None, None, reason=reason)
    assert missing.body.iloc[0, 0] == ("Not estimable: one format only (what would help: "
                                       "patients in both formats)")
    plain = pt.table4_growth(None, None, None, None)
    assert plain.body.iloc[0, 0] == "Not estimable: no growth model in the run"


def test_table1_with_a_format_of_few_patients_shows_the_overall_column_only() -> None:
    patients = pd.DataFrame({"format": ["individual"] * 12 + ["group"] * 2,
                             "sex": ["female"] * 8 + ["male"] * 6, "age": range(14)})
    table = pt.table1_baseline(patients, "finished_course", 5)
    assert list(table.body.columns) == ["Characteristic", "Overall (N = 14)"]
    assert table.body.set_index("Characteristic").loc["   Male"].iloc[0] == "6 (42.9%)"
    assert any("not shown apart" in note for note in table.notes)
    shown = pt.table1_baseline(patients, "finished_course", None)  # --no-suppress
    assert "Group (N = 2)" in shown.body.columns


@pytest.mark.latex
def test_latex_compiles(run: Path, tmp_path: Path) -> None:
    """Every .tex compiles in a plain article with booktabs and caption, without an overfull
    line (``make latex-deps`` installs pdflatex; ``make test`` does it)."""
    assert shutil.which("pdflatex"), "pdflatex is required: make latex-deps"
    inputs = "".join(f"\\input{{{path}}}\n" for path in sorted((run / "paper").glob("*.tex")))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage[margin=2cm,landscape]{geometry}\n"
        "\\usepackage{booktabs,caption}\n\\begin{document}\n" + inputs + "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           "doc.tex"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Overfull" not in (tmp_path / "doc.log").read_text(errors="replace")
