"""The report: self-contained, escaped, reproducible byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.report import html as report


def _inputs(**tables: pd.DataFrame) -> report.ReportInputs:
    return report.ReportInputs(tables=tables, figures={}, messages={"audit": ["<b>x</b>"]},
                               validation={}, manifest={})


def test_values_from_the_data_are_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    html = report.render(_inputs(audit_sites=pd.DataFrame({"site_id": [hostile], "n": ["3"]})))
    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_cells_are_rounded_for_reading_only() -> None:
    assert report.format_cell("0.123456") == "0.123"
    assert report.format_cell("1234") == "1,234"
    assert report.format_cell("") == report.DASH
    assert report.format_cell("<5") == "<5"
    assert report.format_cell("0.00001234") == "0.000"
    assert report.format_cell(6.9e-18) == "0.000"  # a CI bound a rounding error from 0
    assert report.format_cell(-1e-9) == "0.000"
    assert report.format_cell(1.7e-12, "p_value") == "<0.001"
    assert report.format_cell(0.0012, "p_value") == "0.001"
    assert report.format_cell(1.7e-12, "estimate") == "0.000"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    data = root / "data"
    assert main(["demo", "--out", str(data), "--patients", "300"]) == 0
    for name in ("a", "b"):
        assert main(["outcomes", str(data), "--out", str(root / name)]) == 0
        assert main(["report", "--out", str(root / name)]) == 0
    return root / "a", root / "b"


def test_rerun_gives_identical_bytes(two_runs: tuple[Path, Path]) -> None:
    first, second = two_runs
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert Path("report.html") in files and Path("manifest.json") in files
    assert any(p.suffix == ".png" for p in files)
    for relative in files:
        if relative.name in ("run_log.json", "run.log"):  # timings and timestamps
            continue
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative


def test_report_is_self_contained_with_every_section(two_runs: tuple[Path, Path]) -> None:
    html = (two_runs[0] / "report.html").read_text()
    for key, _heading in report.SECTIONS:
        assert f'<section id="{key}">' in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no network references"
    assert "Content-Security-Policy" in html
    assert html.count("data:image/png;base64,") >= 2
    assert "<script" not in html


def test_every_file_the_report_cites_exists(two_runs: tuple[Path, Path]) -> None:
    out = two_runs[0]
    html = (out / "report.html").read_text()
    cited = set(re.findall(r"<code>([^<>]+\.csv)</code>", html))
    assert "response_rates.csv" in cited
    missing = [name for name in cited if not any(out.rglob(name))]
    assert not missing, missing


def test_patient_level_tables_are_not_read(two_runs: tuple[Path, Path]) -> None:
    """One row per patient: never shown, and not loaded (millions of rows at scale)."""
    out = two_runs[0]
    assert (out / "tables" / "patient_outcomes.csv").exists()
    inputs = report.read_outputs(out)
    assert "response_rates" in inputs.tables
    assert not set(inputs.tables) & report.PATIENT_LEVEL


def test_no_raw_patient_id_in_outputs(two_runs: tuple[Path, Path]) -> None:
    raw_ids = set(pd.read_csv(two_runs[0].parent / "data" / "patients.csv")["patient_id"])
    for path in two_runs[0].rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".html"):
            text = path.read_text()
            found = [pid for pid in raw_ids if pid in text]
            assert not found, f"{path}: raw ids {found[:3]}"


def test_no_raw_patient_id_anywhere_after_every_stage(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    assert main(["demo", "--out", str(data), "--patients", "300", "--with-faults"]) == 0
    for stage in ("relapse", "audit"):
        assert main([stage, str(data), "--out", str(out), "--max-quarantine", "0.5"]) == 0
    assert main(["report", "--out", str(out)]) == 0
    raw_ids = set(pd.read_csv(data / "patients.csv", dtype=str)["patient_id"].dropna())
    raw_ids |= {"P999999"}  # the unknown patient of the injected faults
    checked = 0
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".html"):
            text = path.read_text()
            found = [pid for pid in raw_ids if pid in text]
            assert not found, f"{path}: raw ids {found[:3]}"
            checked += 1
    assert checked >= 15


def test_relapse_section_states_the_primary_estimate() -> None:
    """The Turnbull curve is named as primary and shown at 0 and the horizons only; the
    Kaplan-Meier cut-off is the run's ``relapse.min_at_risk``."""
    turnbull = pd.DataFrame({
        "stratum_variable": "all", "stratum": "all", "n": "40", "events": "9",
        "time_weeks": ["0.0", "13.0", "26.0", "30.5", "52.0"],
        "relapse_free": ["1.0", "0.9", "0.8", "", "0.7"],
        "relapse_free_low": ["1.0", "0.9", "0.8", "0.75", "0.7"],
        "relapse_free_high": ["1.0", "0.9", "0.8", "0.8", "0.7"]})
    inputs = report.ReportInputs(
        tables={"relapse_free_interval": turnbull}, figures={}, messages={}, validation={},
        manifest={"config": {"relapse": {"min_at_risk": 25, "horizon_weeks": [26.0, 52.0]}}})
    html = report.render(inputs)
    section = html[html.index('<section id="relapse">'):]
    section = section[:section.index("</section>")]
    assert "primary estimate of relapse-free survival is therefore the Turnbull" in section
    assert "fewer than 25 patients remain at risk" in section
    assert "<td>13" not in section and "<td>30.5" not in section  # horizons only
    assert "<td>52" in section
    # without a Kaplan-Meier table there is no cohort size to state: no sentence is guessed
    assert "Did it last?" not in html[:html.index('<section id="data">')]


def test_an_itt_table_equal_to_the_observed_one_is_said_once() -> None:
    observed = pd.DataFrame({
        "population": "finished_course", "instrument": "phq9", "outcome": "response",
        "denominator": "observed", "condition": ["all"], "format": ["all"], "n": ["40"],
        "events": ["20"], "rate": ["0.5"], "ci_low": ["0.35"], "ci_high": ["0.65"],
        "suppressed": ["False"]})
    same = pd.concat([observed, observed.assign(denominator="itt")], ignore_index=True)
    page = report.render(report.ReportInputs(tables={"response_rates": same}, figures={},
                                             messages={}, validation={}, manifest={}))
    assert "intention-to-treat rates equal the observed ones" in page
    assert 'id="t-rates_itt"' not in page and 'id="t-rates_observed"' in page
    differ = same.assign(n=["40", "44"], rate=["0.5", "0.4545"])
    page = report.render(report.ReportInputs(tables={"response_rates": differ}, figures={},
                                             messages={}, validation={}, manifest={}))
    assert 'id="t-rates_itt"' in page and "equal the observed ones" not in page


def test_model_formulas_follow_the_model_comparison_order() -> None:
    def diagnostics(model: str) -> pd.DataFrame:
        return pd.DataFrame({"model": [model], "formula": [f"phq9 ~ {model}"], "aic": ["1"]})

    tables = {"mixed_completers_diagnostics": diagnostics("completers"),
              "mixed_growth_diagnostics": diagnostics("growth"),
              "mixed_model_comparison": pd.DataFrame({"model": ["growth", "completers"]})}
    page = report.render(report.ReportInputs(tables=tables, figures={}, messages={},
                                             validation={}, manifest={}))
    methods = page[page.index('<section id="methods">'):]
    assert methods.index("phq9 ~ growth") < methods.index("phq9 ~ completers")
