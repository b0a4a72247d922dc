"""The isolation boundary: done, not estimable and failed analyses, and their table."""

from __future__ import annotations

import logging

import pytest

from pipeline.estimability import (
    DONE,
    FAILED,
    NOT_ESTIMABLE,
    RECORD_COLUMNS,
    AnalysisRecord,
    NotEstimable,
    any_failed,
    attempt,
    records_table,
    require,
)


def test_attempt_records_done_and_returns_the_result() -> None:
    records: list[AnalysisRecord] = []
    assert attempt("outcomes", "rates", lambda: 41 + 1, records) == 42
    assert records == [AnalysisRecord("outcomes", "rates", DONE)]


def test_attempt_turns_a_verdict_into_a_not_estimable_record() -> None:
    records: list[AnalysisRecord] = []

    def comparison() -> int:
        require(False, "only one format", "patients in both formats")
        return 1

    assert attempt("outcomes", "response_models", comparison, records) is None
    assert records == [AnalysisRecord("outcomes", "response_models", NOT_ESTIMABLE,
                                      "only one format", "patients in both formats")]
    assert not any_failed(records)


def test_attempt_isolates_a_failure_and_logs_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    records: list[AnalysisRecord] = []

    def broken() -> int:
        raise ZeroDivisionError("boom")

    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        assert attempt("models", "model growth", broken, records) is None
        assert attempt("models", "model phases", lambda: 1, records) == 1
    assert [r.status for r in records] == [FAILED, DONE]
    assert records[0].reason == "ZeroDivisionError: boom"
    assert any_failed(records)
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_records_table_has_one_row_per_analysis_in_run_order() -> None:
    records = [AnalysisRecord("derive", "patient_outcomes", DONE),
               AnalysisRecord("relapse", "relapse", NOT_ESTIMABLE, "no follow-ups", "follow-ups")]
    table = records_table(records)
    assert list(table.columns) == list(RECORD_COLUMNS)
    assert table.values.tolist() == [["derive", "patient_outcomes", "done", "", ""],
                                     ["relapse", "relapse", "not estimable", "no follow-ups",
                                      "follow-ups"]]


def test_not_estimable_carries_reason_and_remedy() -> None:
    verdict = NotEstimable("too few events", "longer follow-up")
    assert (str(verdict), verdict.reason, verdict.remedy) == (
        "too few events", "too few events", "longer follow-up")
