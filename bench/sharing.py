"""Benchmark: complementary suppression of the outcomes stage's shared tables.

Median wall time of ``pipeline.sharing.outcome_tables.share`` over three runs, on demo
cohorts of several sizes (small cohorts have the most small counts to protect).

    .venv/bin/python bench/sharing.py [N ...]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipeline import config, io
from pipeline.cli import BENCHMARK_EXAMPLE
from pipeline.demo import generate as demo
from pipeline.ingest import validate
from pipeline.runner import stages
from pipeline.sharing import outcome_tables
from pipeline.sharing.publish import SharingOptions


def built_tables(n_patients: int) -> dict[str, pd.DataFrame]:
    """The outcomes stage's tables of a demo cohort, unsuppressed."""
    cohort = demo.generate_cohort(demo.DemoConfig(n_patients=n_patients))
    with tempfile.TemporaryDirectory() as tmp:
        io.write_study({"patients": cohort.patients, "sessions": cohort.sessions,
                        "followups": cohort.followups}, Path(tmp))
        result = validate.run(io.read_study(Path(tmp), ("patients", "sessions", "followups"),
                                            ("patients", "sessions")))
    study = config.from_mapping(None)
    patient_outcomes = stages.derive_outcomes(result.tables, study)
    benchmarks = io.read_table(BENCHMARK_EXAMPLE, "benchmarks").frame
    output = stages.run_outcomes(result.tables, patient_outcomes, study, benchmarks,
                                 SharingOptions(no_suppress=True))
    return {k: v for k, v in output.tables.items() if k != "patient_outcomes"}


def main(sizes: list[int]) -> None:
    study = config.from_mapping(None)
    for n in sizes:
        built = built_tables(n)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            _shared, summary = outcome_tables.share(built, study.suppress_below - 1,
                                                    study.primary_instrument)
            times.append(time.perf_counter() - start)
        print(f"{n:>7} patients: median {statistics.median(times):.2f} s over 3 runs "
              f"(hidden: {summary.primary} small, {summary.secondary} complementary, "
              f"{summary.pinned} left pinned)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [600, 2000, 20000])
