"""Benchmark: the growth model of ``pipeline.trajectories.models`` at registry scale.

    .venv/bin/python bench/mixed.py                      # 1e3 .. 1e6 patients, lme4 to 1e5
    .venv/bin/python bench/mixed.py --sizes 1000 10000 --r-max 0

For each size a fresh subprocess generates a cohort (``bench/cohort.py``: 12-16 weekly
sessions, 15% missed, 20% dropout, groups and therapists), builds the model data with
``trajectories.model_data`` and fits the growth model (``score ~ weeks * (condition +
format) + age + sex + (1 + weeks | patient) + (0 + is_group | group) + (1 | therapist) +
(0 + weeks | therapist)``) with the fast engine (``mixedlm``), several times where
affordable. It reports the median fit time (design matrices, optimisation, tables), the
process's peak resident memory (``getrusage``: data generation included) and the memory
before the fit. Where ``Rscript`` with lme4 is installed, the same model on the same data is
timed with ``lmer`` (peak memory from ``/usr/bin/time``) and the ratio reported.

Writes ``bench/results/mixed.json`` and ``bench/results/mixed.png`` (log-log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
REPEATS = {1_000: 5, 10_000: 5, 100_000: 3, 1_000_000: 1}
R_REPEATS = {1_000: 3, 10_000: 3}
MODEL_COLUMNS = ["patient_id", "therapist_id", "group_id", "format", "condition", "problem_area",
                 "age", "sex", "weeks", "score", "dropout"]
R_COLUMNS = ["patient_id", "therapist_id", "group_id", "is_group", "condition", "format",
             "age_centred", "sex[male]", "weeks", "score"]


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def child(n: int, repeats: int, csv: str | None) -> dict[str, Any]:
    """Run one size in this process (called in a subprocess by :func:`main`)."""
    sys.path[:0] = [str(ROOT), str(HERE)]
    import cohort

    from pipeline.trajectories import engines
    from pipeline.trajectories import models as trajectories

    tic = time.perf_counter()
    long = cohort.generate(n)
    frame, covariates, _ = trajectories.model_data(long[MODEL_COLUMNS])
    del long
    components, _ = trajectories.random_structure(frame, "weeks")
    spec = trajectories.model_spec("growth", "weeks", covariates, components)
    generate_s = time.perf_counter() - tic
    if csv:
        out = frame[R_COLUMNS].rename(columns={"sex[male]": "sex_male"})
        out.assign(is_group=out["is_group"].astype(int)).to_csv(csv, index=False)
    before = _peak_gb()
    seconds, fit = [], None
    for _ in range(repeats):
        fit = None
        tic = time.perf_counter()
        fit = engines.fit(spec, frame, "mixedlm")
        seconds.append(time.perf_counter() - tic)
    assert fit is not None
    diagnostics = fit.diagnostics.iloc[0]
    return {"n_patients": n, "n_obs": int(diagnostics["n_obs"]), "seconds": seconds,
            "median_seconds": statistics.median(seconds), "generate_seconds": generate_s,
            "peak_gb": _peak_gb(), "peak_gb_before_fit": before,
            "converged": bool(diagnostics["converged"]),
            "singular": bool(diagnostics["singular"]), "optimizer": diagnostics["optimizer"],
            "loglik": float(diagnostics["loglik"]),
            "fixef": dict(zip(fit.fixed["term"], fit.fixed["estimate"], strict=True)),
            "variance": fit.variance.to_dict(orient="records")}


def _run_child(n: int, repeats: int, csv: str | None, timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(n),
               "--repeats", str(repeats)] + (["--csv", csv] if csv else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=ROOT)
    if done.returncode != 0:
        return {"n_patients": n, "error": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _run_r(csv: str, repeats: int, timeout: float) -> dict[str, Any]:
    out = Path(csv).with_suffix(".json")
    command = ["Rscript", str(HERE / "mixed_lme4.R"), csv, str(repeats), str(out)]
    if shutil.which("time") or Path("/usr/bin/time").exists():
        command = ["/usr/bin/time", "-f", "%M", *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"lme4 did not finish within {timeout:.0f} s"}
    if done.returncode != 0 or not out.exists():
        return {"error": done.stderr[-2000:]}
    result: dict[str, Any] = json.loads(out.read_text())
    if not isinstance(result["seconds"], list):  # jsonlite unboxes a single value
        result["seconds"] = [result["seconds"]]
    result["median_seconds"] = statistics.median(result["seconds"])
    lines = [line for line in done.stderr.strip().splitlines() if line.strip().isdigit()]
    if lines:
        result["peak_gb"] = int(lines[-1]) / 1024**2
    return result


def _compare(python: dict[str, Any], r: dict[str, Any]) -> dict[str, Any]:
    """Timing ratio and the largest relative difference of the fixed effects."""
    if "error" in python or "error" in r:
        return {}
    ours = list(python["fixef"].values())
    theirs = list(r["fixef"].values())
    diff = max(abs(a - b) / max(abs(b), 1e-8) for a, b in zip(ours, theirs, strict=True))
    return {"lme4_over_mixedlm": r["median_seconds"] / python["median_seconds"],
            "fixef_max_relative_difference": diff,
            "loglik_difference": python["loglik"] - r["loglik"]}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Log-log plot of fit time and peak memory against the number of patients."""
    sys.path.insert(0, str(ROOT))
    from pipeline.report.figures import new_figure, png_bytes

    figure = new_figure(width=9.0, height=3.8)
    time_axes, memory_axes = figure.subplots(1, 2)
    ok = [r for r in results if "error" not in r]
    sizes = [r["n_patients"] for r in ok]
    time_axes.loglog(sizes, [r["median_seconds"] for r in ok], "o-", label="mixedlm (ours)")
    memory_axes.loglog(sizes, [r["peak_gb"] for r in ok], "o-", label="mixedlm (ours)")
    with_r = [r for r in ok if "median_seconds" in r.get("lme4", {})]
    if with_r:
        time_axes.loglog([r["n_patients"] for r in with_r],
                         [r["lme4"]["median_seconds"] for r in with_r], "s--", label="R lme4")
        memory_axes.loglog([r["n_patients"] for r in with_r if "peak_gb" in r["lme4"]],
                           [r["lme4"]["peak_gb"] for r in with_r if "peak_gb" in r["lme4"]],
                           "s--", label="R lme4")
    if sizes:
        anchor = next((r for r in ok if r["n_patients"] == 100_000), ok[-1])
        base = anchor["median_seconds"] / anchor["n_patients"]
        time_axes.loglog(sizes, [base * s for s in sizes], ":", color="grey",
                         label="linear (through 1e5)")
    time_axes.axhline(120, color="#d1495b", linewidth=0.8, label="target (1e6: 120 s)")
    memory_axes.axhline(8, color="#d1495b", linewidth=0.8, label="target (1e6: 8 GB)")
    time_axes.set(xlabel="patients", ylabel="fit time (s, median)", title="Growth model fit")
    memory_axes.set(xlabel="patients", ylabel="peak memory (GB)", title="Peak resident memory")
    for axes in (time_axes, memory_axes):
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=8)
    path.write_bytes(png_bytes(figure))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--r-max", type=int, default=100_000,
                        help="largest size also fitted with R lme4 (0: none)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeats or 1, args.csv)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    have_r = shutil.which("Rscript") is not None
    results = []
    for n in args.sizes:
        repeats = args.repeats or REPEATS.get(n, 1)
        with tempfile.TemporaryDirectory() as tmp:
            csv = os.path.join(tmp, "data.csv") if have_r and n <= args.r_max else None
            result = _run_child(n, repeats, csv, args.timeout)
            if csv and "error" not in result:
                result["lme4"] = _run_r(csv, R_REPEATS.get(n, 1), args.timeout)
                result["comparison"] = _compare(result, result["lme4"])
        logging.info("%d patients: %s", n, {k: v for k, v in result.items()
                                             if k not in ("fixef", "variance", "lme4")})
        results.append(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "platform": platform.platform()},
               "model": "growth (pipeline.trajectories.models.model_spec), engine mixedlm",
               "results": results}
    (RESULTS / "mixed.json").write_text(json.dumps(summary, indent=2))
    plot(results, RESULTS / "mixed.png")


if __name__ == "__main__":
    main()
