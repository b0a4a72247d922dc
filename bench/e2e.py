"""End-to-end benchmark: the whole pipeline (report included) on cohorts of growing size.

Usage: ``python bench/e2e.py [--sizes 10000 100000 1000000] [--seeds 20261122 1 2] [--resume]
[--modes default every-patient] [--repeats 1] [--timeout S] [--keep] [--work DIR]``
(``make bench-e2e``; ``--report-only`` prints and plots the stored results again).

For each size and seed it writes a demo cohort as Parquet (``ipt-outcomes demo --seed``;
reused when already in ``--work``), and for each mode runs ``ipt-outcomes run`` in a fresh
process on a fresh output folder. Mode ``default`` is the default config (the mixed models
fit a sample of 250,000 patients above that size); ``every-patient`` runs with a config
that sets ``trajectories.max_patients: null`` (every patient in every model). Per-stage wall
time and peak memory come from the run's ``run_log.json`` (the process peak is the largest
stage peak); the wall time outside the logged stages is reported as ``report+startup``.
The run is this checkout's pipeline (``python -m pipeline`` with this folder first on the
path). Medians are taken over every seed and repeat; the machines are shared and noisy, so
each run also records its CPU seconds and the load average before it. The cost
exponent of every stage (slope of log seconds on log patients, between consecutive sizes
and by least squares over all sizes), the issue's targets and the number of fitted models
and curves that converged are printed and stored in ``bench/results/e2e.json``, with a
log-log plot ``bench/results/e2e.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import e2e_summary as summary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: the pipeline of this checkout (not whatever the environment installed)
CLI = [sys.executable, "-m", "pipeline"]
ENV = {"IPT_PSEUDONYM_KEY": "00" * 32, "PATH": str(BIN), "PYTHONPATH": str(ROOT)}
SEEDS = [20261122, 1, 2]
#: mode -> study config YAML (None: the default config)
MODES: dict[str, str | None] = {"default": None,
                                "every-patient": "trajectories:\n  max_patients: null\n"}


def cohort(n: int, seed: int, work: Path) -> Path:
    """The demo cohort of ``n`` patients and ``seed`` (written once, then reused)."""
    data = work / f"data_{n}_seed{seed}"
    if not (data / "patients.parquet").exists():
        staging = work / f"data_{n}_seed{seed}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run([*CLI, "demo", "--out", str(staging), "--patients", str(n),
                        "--seed", str(seed), "--format", "parquet"],
                       check=True, capture_output=True, env=ENV)
        staging.rename(data)
    return data


def run_once(data: Path, out: Path, config: Path | None, timeout: float | None
             ) -> dict[str, Any]:
    """One ``ipt-outcomes run`` on a fresh ``out``: wall seconds and run_log.json's stages."""
    shutil.rmtree(out, ignore_errors=True)  # a run on an existing OUT reruns nothing
    command = [*CLI, "run", str(data), "--out", str(out)]
    if config is not None:
        command += ["--config", str(config)]
    load = os.getloadavg()[0]
    cpu = _children_cpu()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               env=ENV)
    stderr, sampled_peak, timed_out = _wait(process, timeout)
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    record = {"seconds": seconds, "cpu_seconds": cpu, "load_before": load,
              "sampled_peak_rss_mb": sampled_peak}
    if timed_out or process.returncode != 0:
        # the run log is rewritten after every stage: the finished stages are in staging
        staging = out.with_name(f".{out.name}.staging-{process.pid}")
        log = staging / "run_log.json"
        stages = json.loads(log.read_text())["stages"] if log.exists() else {}
        shutil.rmtree(staging, ignore_errors=True)
        outcome = (f"killed after {timeout:.0f} s" if timed_out
                   else f"failed (exit {process.returncode}): "
                   + " | ".join(stderr.strip().splitlines()[-3:]))
        print(f"  run of {data.name} {outcome}", flush=True)
        return {**record, "outcome": outcome, "stages": stages,
                "convergence": {"fitted": 0, "converged": 0, "not_converged": [],
                                "not_done": [f"run {outcome}"], "notes": []}}
    stages = json.loads((out / "run_log.json").read_text())["stages"]
    return {**record, "outcome": "ok", "stages": stages,
            "convergence": summary.convergence(out)}


def _wait(process: subprocess.Popen[str], timeout: float | None) -> tuple[str, float, bool]:
    """Wait for the run, sampling its resident memory every second (a stage that is killed
    has no peak in the run log): stderr, largest sampled RSS in MB, whether it was killed."""
    deadline = None if timeout is None else time.perf_counter() + timeout
    peak = 0.0
    while True:
        try:
            return process.communicate(timeout=1.0)[1], peak, False
        except subprocess.TimeoutExpired:
            peak = max(peak, _rss_mb(process.pid))
            if deadline is not None and time.perf_counter() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                return process.communicate()[1], peak, True


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_size(n: int, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every seed and repeat of one size in one mode (sequentially), summarised."""
    config = None
    if MODES[mode] is not None:
        config = args.work / f"config_{mode}.yaml"
        config.write_text(str(MODES[mode]))
    runs = []
    for seed in args.seeds:
        data = cohort(n, seed, args.work)
        for k in range(args.repeats):
            out = args.work / f"out_{n}_seed{seed}_{mode}_{k}"
            record = args.work / "runs" / f"{out.name}.json"
            if args.resume and record.exists():
                runs.append(json.loads(record.read_text()))
                print(f"  {mode} {n:,} seed {seed} run {k + 1}: taken from {record}")
                continue
            run = {"seed": seed, **run_once(data, out, config, args.timeout)}
            runs.append(run)
            record.parent.mkdir(exist_ok=True)
            record.write_text(json.dumps(run, indent=1) + "\n")
            print(f"  {mode} {n:,} seed {seed} run {k + 1} {run['outcome']}: "
                  f"{run['seconds']:.1f} s "
                  f"({run['cpu_seconds']:.1f} s CPU, load {run['load_before']:.1f}), "
                  f"{run['convergence']['converged']}/{run['convergence']['fitted']} "
                  "converged", flush=True)
            if not args.keep_runs:
                shutil.rmtree(out, ignore_errors=True)
            if run["outcome"] != "ok":
                break
        if runs[-1]["outcome"] != "ok":
            break  # a run killed or failed: the other cohorts of this size would be too
    result = summary.summarise(runs)
    return {
        "mode": mode,
        "patients": n,
        "sessions": _rows(cohort(n, args.seeds[0], args.work) / "sessions.parquet"),
        **summary.check_targets(n, result["total_seconds_median"],
                                result["process_peak_rss_mb"],
                                complete=not result["incomplete"]),
        **result,
        "convergence": summary.convergence_over_runs(runs),
        "stages_runs": [{name: s["seconds"] for name, s in r["stages"].items()} for r in runs],
    }


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Log-log plot of median seconds per stage against patients (one panel per mode)."""
    from pipeline.report.figures import new_figure, png_bytes

    modes = list(dict.fromkeys(r["mode"] for r in results))
    figure = new_figure(7 * len(modes), 4.5)
    for k, mode in enumerate(modes):
        axes = figure.add_subplot(1, len(modes), k + 1)
        rows = [r for r in results if r["mode"] == mode]
        sizes = [r["patients"] for r in rows]
        for stage in summary.stage_names(s for r in rows for s in r["stages"]):
            points = [(r["patients"], r["stages"][stage]["seconds_median"]) for r in rows
                      if (r["stages"].get(stage, {}).get("seconds_median") or 0) > 0]
            axes.plot(*zip(*points, strict=True), marker="o", label=stage)
        axes.plot(sizes, [r["total_seconds_median"] for r in rows], "k--", marker="s",
                  label="total")
        for n, (seconds, _) in summary.TARGETS.items():
            axes.plot([n], [seconds], "rx", markersize=9)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_title(f"{mode} (x: target)", fontsize=9)
        axes.set_xlabel("patients")
        axes.set_ylabel("seconds (median over seeds)")
        axes.legend(fontsize=7)
        axes.grid(alpha=0.3, which="both")
    path.write_bytes(png_bytes(figure))


def report(results: list[dict[str, Any]], exponents: dict[str, Any]) -> None:
    """Print the medians, targets, exponents and convergence to stdout."""
    print("\nMedian seconds per stage (over seeds and repeats):")
    print(summary.medians_table(results))
    for mode, table in exponents.items():
        print(f"\nCost exponent b (seconds ~ patients^b), mode {mode}:")
        print(summary.exponents_table(table))
    print("\nTargets:")
    for r in results:
        if r["meets_targets"] is not None:
            limit = f"< {r['target_seconds']:g} s" + (
                f" and < {r['target_peak_gb']:g} GB" if r["target_peak_gb"] else "")
            print(f"  {r['mode']:>13} {r['patients']:>9,}: {r['total_seconds_median']:.1f} s,"
                  f" {r['process_peak_rss_mb'] / 1024:.2f} GB ({limit}): "
                  f"{'met' if r['meets_targets'] else 'MISSED'}"
                  + (f" ({'; '.join(r['incomplete'])})" if r.get("incomplete") else ""))
    print("\nConvergence (models and curves fitted / converged; not converged):")
    for r in results:
        c = r["convergence"]
        print(f"  {r['mode']:>13} {r['patients']:>9,}: {c['converged']}/{c['fitted']} "
              f"({'; '.join(c['per_run'])})")
        for item in [*c["not_converged"], *c.get("not_done", []), *c["notes"]]:
            print(f"      {item}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS,
                        help="demo seeds: one cohort per (size, seed); medians over them")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["default"])
    parser.add_argument("--every-patient", action="store_true",
                        help="same as --modes every-patient")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cohort")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill a run after this many seconds (and stop)")
    parser.add_argument("--keep", action="store_true",
                        help="keep results of other sizes and modes already in "
                             "bench/results/e2e.json")
    parser.add_argument("--resume", action="store_true",
                        help="take the runs already recorded in --work/runs/ (each run is "
                             "recorded there when it ends) instead of running them again")
    parser.add_argument("--keep-runs", action="store_true",
                        help="keep every run's output folder in --work")
    parser.add_argument("--report-only", action="store_true",
                        help="print and plot bench/results/e2e.json without running")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results",
                        help="folder of e2e.json and e2e.png")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ipt-bench")
    args = parser.parse_args()
    modes = ["every-patient"] if args.every_patient else args.modes
    args.work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "e2e.json"
    kept = (json.loads(path.read_text()) if (args.keep or args.report_only) and path.exists()
            else {})
    old = kept.get("results", kept) if isinstance(kept, dict) else kept
    if args.report_only:
        report(old, kept["exponents"])
        plot(old, args.results / "e2e.png")
        return
    results = [r for r in old if (r["patients"], r.get("mode", "default"))
               not in {(n, m) for n in args.sizes for m in modes}]
    for mode in modes:
        for n in args.sizes:
            result = run_size(n, mode, args)
            results = sorted([*results, result], key=lambda r: (r["mode"], r["patients"]))
            exponents = {m: summary.stage_exponents(r for r in results if r["mode"] == m)
                         for m in dict.fromkeys(r["mode"] for r in results)}
            path.write_text(json.dumps({"commit": _commit(), "pipeline_commit": _commit(
                "pipeline", "data_schemas"), "results": results, "exponents": exponents},
                indent=2) + "\n")
    report(results, exponents)
    plot(results, args.results / "e2e.png")


def _commit(*paths: str) -> str:
    """The checkout's commit, or the last one that changed ``paths`` (+ when edited since)."""
    done = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", *paths],
                          capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", *paths],
                           check=False).returncode
    return done.stdout.strip() + ("+" if dirty else "")


if __name__ == "__main__":
    main()
