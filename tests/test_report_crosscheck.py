"""Every number that a run shows in two places is the same number.

One run of every stage on a demo study, then: the first screen against the tables it
links to; each table that repeats another's rows against them (main rates, benchmarks,
attendance and flow, the relapse cohort's size in every relapse table, the audit's whole
service in both unit tables); and the report's HTML against the CSVs it renders.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.report import findings
from pipeline.report import html as report

PERCENT = re.compile(r"(\d+\.\d)%")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crosscheck")
    assert main(["demo", "--out", str(root / "data"), "--patients", "400"]) == 0
    assert main(["run", str(root / "data"), "--out", str(root / "out")]) in (0, 4)
    return root / "out"


def _table(out: Path, name: str) -> pd.DataFrame:
    path = next(out.rglob(f"{name}.csv"))
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _percents(table: pd.DataFrame) -> set[str]:
    """Every proportion of a table as the report prints it (``48.4``), and every
    difference in percentage points."""
    found = set()
    for column in table.columns:
        for value in table[column]:
            number = findings.number(value)
            if number == number and -1.0 <= number <= 1.0:
                found.add(f"{abs(100 * number):.1f}")
    return found


def test_every_percentage_of_the_first_screen_is_in_its_table(run: Path) -> None:
    inputs = report.read_outputs(run)
    population = report.main_population(inputs.tables.get("response_rates"))
    screen = findings.first_screen(inputs.tables, population, "phq9")
    assert len(screen) >= 5
    sources = {"rates_observed": "response_rates"}
    for finding in screen:
        table = inputs.tables[sources.get(finding.table, finding.table)]
        printed = set(PERCENT.findall(finding.text))
        if finding.table == "relapse_free_interval":  # Kaplan-Meier beside it
            table = pd.concat([table, inputs.tables["relapse_km"]])
        if finding.table == "response_standardised":
            printed |= set(re.findall(r"(\d+\.\d) (?:percentage )?points", finding.text))
            printed |= {x.lstrip("\u2212") for x in re.findall(r"\u2212?\d+\.\d", finding.text)}
        missing = printed - _percents(table)
        assert not missing, (finding.text, missing)


def test_the_first_screen_is_in_the_report_and_links_to_tables_that_are(run: Path) -> None:
    page = html.unescape((run / "report.html").read_text())
    inputs = report.read_outputs(run)
    population = report.main_population(inputs.tables.get("response_rates"))
    for finding in findings.first_screen(inputs.tables, population, "phq9"):
        assert finding.text in page
        assert f'id="t-{finding.table}"' in page, finding.table


def test_tables_that_repeat_rows_repeat_the_same_numbers(run: Path) -> None:
    rates = _table(run, "response_rates")
    keys = ["population", "instrument", "outcome", "denominator", "condition", "format"]
    main_rates = _table(run, "response_rates_main")
    merged = main_rates.merge(rates, on=keys, suffixes=("", "_all"))
    assert len(merged) == len(main_rates)
    for column in ("n", "events", "rate", "ci_low", "ci_high"):
        assert (merged[column] == merged[f"{column}_all"]).all(), column
    bench = _table(run, "benchmark_comparison")
    for row in bench.itertuples():
        instrument = "phq9+gad7" if row.outcome in ("reliable_improvement", "recovery",
                                                     "reliable_recovery") else "phq9"
        match = rates[(rates["population"] == "finished_course")
                      & (rates["denominator"] == "observed") & (rates["instrument"] == instrument)
                      & (rates["outcome"] == row.outcome) & (rates["condition"] == row.condition)
                      & (rates["format"] == "all")]
        assert match[["n", "events", "rate"]].iloc[0].tolist() == [row.n, row.events, row.rate]


def test_flow_attendance_and_completeness_agree(run: Path) -> None:
    flow = _table(run, "patient_flow").set_index("step")["patients"]
    attendance = _table(run, "attendance")
    whole = attendance[(attendance["condition"] == "all") & (attendance["format"] == "all")]
    assert whole["patients"].iloc[0] == flow["started"]
    completeness = _table(run, "completeness")
    assert completeness["finished_courses"].iloc[0] == flow["finished_course"]
    counts = [int(flow[s]) for s in flow.index]
    assert counts == sorted(counts, reverse=True)


def test_every_relapse_table_describes_the_same_cohort(run: Path) -> None:
    km = _table(run, "relapse_km").set_index(["stratum_variable", "stratum"])
    whole = km.loc[("all", "all"), ["n", "events"]].tolist()
    rmst = _table(run, "relapse_rmst").set_index(["variable", "group"])
    assert rmst.loc[("all", "all"), ["n", "events"]].tolist() == whole
    turnbull = _table(run, "relapse_free_interval")
    assert set(map(tuple, turnbull.loc[turnbull["stratum_variable"] == "all",
                                       ["n", "events"]].to_numpy())) == {tuple(whole)}
    for name in ("relapse_cox", "relapse_logrank", "relapse_aft"):
        if any(run.rglob(f"{name}.csv")):
            table = _table(run, name)
            assert set(map(tuple, table[["n", "events"]].to_numpy())) <= {tuple(whole)}, name
    at_risk = _table(run, "relapse_km_at_risk")
    start = at_risk[(at_risk["stratum_variable"] == "all") & (at_risk["time_weeks"] == "0")]
    assert start["at_risk"].tolist() == [whole[0]]


def test_the_whole_service_reads_the_same_in_both_audit_tables(run: Path) -> None:
    sites = _table(run, "audit_sites").set_index("unit").loc["all"]
    therapists = _table(run, "audit_therapists").set_index("unit").loc["all"]
    shared = [c for c in sites.index if c.startswith(("phq9_es", "phq9_effect", "recovery_"))]
    assert shared
    if sites["phq9_es_n"] == therapists["phq9_es_n"]:
        assert sites[shared].tolist() == therapists[shared].tolist()


def test_the_html_shows_each_rate_as_its_csv(run: Path) -> None:
    page = html.unescape((run / "report.html").read_text())
    rates = _table(run, "response_rates")
    row = rates[(rates["population"] == "finished_course") & (rates["denominator"] == "observed")
                & (rates["instrument"] == "phq9") & (rates["outcome"] == "response")
                & (rates["condition"] == "all") & (rates["format"] == "all")].iloc[0]
    shown = findings.percent(row["rate"])
    assert shown in page
    assert page.count(shown) >= 2  # on the first screen and in the outcomes table
