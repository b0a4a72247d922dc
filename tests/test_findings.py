"""The report's first screen (``pipeline.report.findings``): sentences written from the tables,
checked on hand-made tables (as the report reads them: strings)."""

from __future__ import annotations

import pandas as pd

from pipeline.report import findings
from pipeline.report.findings import MINUS


def _standardised(estimate: float, low: float, high: float) -> dict[str, pd.DataFrame]:
    return {"response_standardised": pd.DataFrame({
        "quantity": ["rate_individual", "rate_group", "risk_difference"],
        "estimate": ["0.5", "0.4", str(estimate)], "ci_low": ["", "", str(low)],
        "ci_high": ["", "", str(high)]})}


def test_format_difference_names_its_direction_in_percentage_points() -> None:
    found = findings.which_format(_standardised(-0.131, -0.239, -0.024))
    assert found is not None and found.table == "response_standardised"
    assert "13.1 percentage points lower than individual IPT's" in found.text
    assert f"(95% CI {MINUS}23.9 to {MINUS}2.4 points)" in found.text
    assert "individual IPT did better" in found.text
    higher = findings.which_format(_standardised(0.05, 0.01, 0.09))
    assert higher is not None and "5.0 percentage points higher" in higher.text
    assert "group IPT did better" in higher.text


def test_an_interval_spanning_zero_is_no_difference() -> None:
    found = findings.which_format(_standardised(-0.02, -0.07, 0.03))
    assert found is not None and "includes no difference" in found.text
    assert "did better" not in found.text


def test_suppressed_or_missing_numbers_write_no_sentence() -> None:
    hidden = _standardised(-0.02, -0.07, 0.03)
    hidden["response_standardised"].loc[2, "estimate"] = ""
    assert findings.which_format(hidden) is None
    assert findings.which_format({}) is None
    assert findings.first_screen({}, "finished_course", "phq9") == []


def _rates() -> pd.DataFrame:
    rows = []
    for condition, fmt, n, events in (("major_depression", "individual", "100", "60"),
                                      ("major_depression", "group", "40", "12"),
                                      ("anxiety", "individual", "30", "21"),
                                      ("anxiety", "group", "<5", "*"),
                                      ("all", "all", "175", "95")):
        rate = "" if n.startswith("<") else str(int(events) / int(n))
        rows.append({"population": "finished_course", "instrument": "phq9",
                     "outcome": "response", "denominator": "observed",
                     "condition": condition, "format": fmt, "n": n, "events": events,
                     "rate": rate, "ci_low": "0.1" if rate else "",
                     "ci_high": "0.9" if rate else ""})
    return pd.DataFrame(rows)


def test_for_whom_ranks_only_shown_cells_with_enough_patients() -> None:
    found = findings.for_whom({"response_rates": _rates()}, "finished_course", "phq9")
    assert found is not None
    assert found.text.startswith("Response was highest for anxiety in individual IPT (70.0%")
    assert "lowest for major depression in group IPT (30.0%" in found.text
    assert "among the 3 condition and format groups" in found.text


def test_did_it_work_reads_the_all_cell() -> None:
    found = findings.did_it_work({"response_rates": _rates()}, "finished_course", "phq9")
    assert found is not None
    assert found.text.startswith("Among patients who finished a course, 54.3% of 175 with "
                                 "paired PHQ-9 scores responded (95% CI 10.0%")


def test_flow_and_benchmarks() -> None:
    flow = pd.DataFrame({"step": ["referred", "started", "finished_course",
                                  "completed_course", "followed_up"],
                         "patients": ["600", "573", "532", "387", "120"]})
    found = findings.patients_treated({"patient_flow": flow})
    assert found is not None and found.text == (
        "Of 600 patients referred, 573 started IPT and 532 finished a course of treatment; "
        "387 of them completed it.")
    bench = pd.DataFrame({"condition": ["all", "major_depression"],
                          "outcome": ["recovery", "remission"], "benchmark_rate": ["0.5", "0.35"],
                          "rate": ["0.48", "0.21"], "verdict": ["around", "below"]})
    found = findings.against_benchmarks({"benchmark_comparison": bench})
    assert found is not None
    assert "above 0, around 1" in found.text and "below 1" in found.text
    assert "remission in major depression 21.0% against 35.0%" in found.text


def test_did_it_last_leads_with_turnbull() -> None:
    km = pd.DataFrame({"stratum_variable": ["all", "maintenance", "maintenance"],
                       "stratum": ["all", "True", "False"], "n": ["131", "50", "81"],
                       "relapse_free_52w": ["0.853", "0.899", "0.824"],
                       "ci_low_52w": ["0.755", "0.694", "0.698"],
                       "ci_high_52w": ["0.914", "0.970", "0.901"]})
    turnbull = pd.DataFrame({"stratum_variable": ["all", "maintenance", "maintenance"],
                             "stratum": ["all", "True", "False"],
                             "time_weeks": ["52.0"] * 3,
                             "relapse_free": ["0.808", "0.893", "0.784"],
                             "relapse_free_low": ["0.808", "0.893", "0.70"],
                             "relapse_free_high": ["0.808", "0.893", "0.80"]})
    found = findings.did_it_last({"relapse_km": km, "relapse_free_interval": turnbull})
    assert found is not None and found.table == "relapse_free_interval"
    assert "80.8% were relapse-free at 52 weeks by the interval-censored (Turnbull)" in \
        found.text
    assert "Kaplan-Meier 85.3%" in found.text
    assert "89.3% with maintenance IPT" in found.text
    assert "between 70.0% and 80.0% without maintenance IPT" in found.text
    only_km = findings.did_it_last({"relapse_km": km})
    assert only_km is not None and only_km.table == "relapse_km"
    assert "85.3% were relapse-free at 52 weeks (95% CI 75.5%" in only_km.text
