"""Columnar-route benchmark: per-patient outcomes and rates on DuckDB (and Spark) up to a
national decade (10 million patients, about 130 million session rows).

Usage: ``python bench/columnar.py [--sizes 1000000 10000000] [--repeats 3]
[--engines duckdb pyspark] [--memory-limit 8GB]``.

A registry of ``k`` million patients is ``k`` demo cohorts of a million patients, each
generated with its own seed (``ipt-outcomes demo --seed``) and its ids prefixed with the
part number, written as folders of Parquet parts (``patients/part-<k>.parquet``,
``sessions/part-<k>.parquet``): a registry extract as a warehouse writes it. Each size then
runs ``ipt-outcomes columnar`` in a fresh process; the seconds per step and the process's
peak memory come from ``OUT/columnar/columnar_log.json``. Medians over ``--repeats``; the
cost exponent (slope of log seconds on log patients) between consecutive sizes is printed
per step. Results: ``bench/results/columnar.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
MILLION = 1_000_000
#: patients -> seconds the columnar route must stay under (issue: registry scale, 10M in
#: under 15 minutes on one 24 GB machine)
TARGETS = {10 * MILLION: 900.0}


def cohort(work: Path, seed: int) -> Path:
    """A demo cohort of a million patients (written once, reused)."""
    folder = work / f"data_{MILLION}_seed{seed}"
    if not (folder / "sessions.parquet").exists():
        subprocess.run([BIN / "ipt-outcomes", "demo", "--out", folder, "--patients",
                        str(MILLION), "--seed", str(seed), "--format", "parquet"],
                       check=True, capture_output=True)
    return folder


def registry(work: Path, millions: int, seeds: list[int]) -> Path:
    """``millions`` cohorts as Parquet parts with part-prefixed ids (DuckDB copies them)."""
    import duckdb

    folder = work / f"registry_{millions}M"
    if (folder / "done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for table in ("patients", "sessions"):
        (folder / table).mkdir(parents=True)
    con = duckdb.connect()
    for part in range(millions):
        source = cohort(work, seeds[part % len(seeds)] + (part // len(seeds)) * 1000)
        for table in ("patients", "sessions"):
            ids = f"'R' || {part} || '-' || patient_id"
            con.execute(
                f"COPY (SELECT * REPLACE ({ids} AS patient_id) FROM "
                f"read_parquet('{source / (table + '.parquet')}')) "
                f"TO '{folder / table / f'part-{part:03d}.parquet'}' (FORMAT parquet)")
    (folder / "done").write_text("")
    return folder


def run_once(data: Path, out: Path, engine: str, memory_limit: str | None) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    command = [str(BIN / "ipt-outcomes"), "columnar", str(data), "--out", str(out),
               "--on", engine]
    if memory_limit:
        command += ["--memory-limit", memory_limit]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"columnar run failed on {data}: {done.stderr[-2000:]}")
    log: dict[str, Any] = json.loads((out / "columnar" / "columnar_log.json").read_text())
    log["wall_seconds"] = wall
    return log


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    steps = list(runs[0]["seconds"])
    return {
        "patients": runs[0]["patients"],
        "sessions": runs[0]["sessions"],
        "wall_seconds_median": statistics.median(r["wall_seconds"] for r in runs),
        "wall_seconds_runs": [round(r["wall_seconds"], 1) for r in runs],
        "steps_median": {s: statistics.median(r["seconds"][s] for r in runs) for s in steps},
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
    }


def exponents(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Slope of log(seconds) on log(patients) between consecutive sizes, per step."""
    out: dict[str, list[float]] = {}
    for a, b in itertools.pairwise(results):
        ratio = math.log(b["patients"] / a["patients"])
        times = {"wall": (a["wall_seconds_median"], b["wall_seconds_median"]),
                 **{s: (a["steps_median"][s], b["steps_median"][s]) for s in a["steps_median"]}}
        for step, (ta, tb) in times.items():
            out.setdefault(step, []).append(round(math.log(tb / ta) / ratio, 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[MILLION, 10 * MILLION])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", nargs="+", default=["duckdb"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--memory-limit", default=None)
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "ipt-bench-columnar")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"memory_limit": args.memory_limit, "engines": {}}
    for engine in args.engines:
        results = []
        for n in sorted(args.sizes):
            data = registry(args.work, max(1, n // MILLION), args.seeds)
            runs = [run_once(data, args.work / f"out_{engine}_{n}", engine, args.memory_limit)
                    for _ in range(args.repeats)]
            result = summary(runs)
            target = TARGETS.get(result["patients"])
            result["target_seconds"] = target
            result["meets_target"] = target is None or result["wall_seconds_median"] < target
            print(json.dumps({"engine": engine, **result}), flush=True)
            results.append(result)
        report["engines"][engine] = {"sizes": results, "exponents": exponents(results)}
        print(f"{engine} cost exponents between sizes {sorted(args.sizes)}:")
        for step, values in report["engines"][engine]["exponents"].items():
            print(f"  {step:>18}: {values}")
    (RESULTS / "columnar.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
