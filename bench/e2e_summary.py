"""Pure summaries for the end-to-end benchmark (``bench/e2e.py``).

Medians over seeds and repeats, the cost exponent per stage (the slope of log seconds on
log patients), the issue's targets, and the convergence count read from a run folder. No
subprocesses here: the functions take the runs' records and return plain dicts, so they are
tested in ``tests/test_bench_e2e.py``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: patients -> (seconds, peak GB) the whole run must stay under (issue "Registry scale":
#: 1,000,000 patients with every patient in every model; checked in every mode)
TARGETS: dict[int, tuple[float, float | None]] = {100_000: (15.0, None),
                                                  1_000_000: (90.0, 8.0)}
#: the wall time of the process that no stage of run_log.json accounts for
OTHER = "report+startup"
TOTAL = "total"
#: the stages in the order the run takes them (others follow in the log's order)
ORDER = ("validate", "outcomes", "outcomes_write", "models", "relapse", "audit", "report",
         OTHER)


def stage_names(stages: Iterable[str]) -> list[str]:
    """``stages`` in :data:`ORDER`, unknown ones after, each once."""
    names = list(dict.fromkeys(stages))
    return sorted(names, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))


def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Medians over every run (all seeds and repeats) of total and per-stage seconds.

    Parameters
    ----------
    runs
        One record per run: ``seconds`` (wall time of ``ipt-outcomes run``), ``seed`` and
        ``stages`` (``run_log.json``'s stages: ``seconds`` and ``peak_rss_mb`` each).

    Returns
    -------
    dict
        ``total_seconds_median``, ``total_seconds_runs``, ``process_peak_rss_mb`` (largest
        stage peak of any run: the run resets the kernel's peak mark at every stage) and
        ``stages`` (median seconds and largest peak per stage, plus :data:`OTHER`, the wall
        time outside the logged stages: report, start-up, file hashing).
    """
    names = stage_names(s for r in runs for s in r["stages"])
    stages: dict[str, dict[str, Any]] = {
        name: {
            "seconds_median": statistics.median(r["stages"][name]["seconds"] for r in runs
                                                if name in r["stages"]),
            "peak_rss_mb_max": max(r["stages"][name]["peak_rss_mb"] for r in runs
                                   if name in r["stages"]),
        }
        for name in names
    }
    complete = [r for r in runs if r.get("outcome", "ok") == "ok"]
    stages[OTHER] = {
        "seconds_median": statistics.median(
            r["seconds"] - sum(s["seconds"] for s in r["stages"].values()) for r in complete)
        if complete else None,
        "peak_rss_mb_max": None,
    }
    return {
        "runs": len(runs),
        "seeds": sorted({int(r["seed"]) for r in runs}),
        # a run killed or failed counts with its seconds so far (a lower bound)
        "incomplete": [f"seed {r['seed']}: {r['outcome']}" for r in runs
                       if r.get("outcome", "ok") != "ok"],
        "total_seconds_median": statistics.median(r["seconds"] for r in runs),
        "total_seconds_runs": [round(float(r["seconds"]), 2) for r in runs],
        # CPU time is less sensitive than wall time to other jobs on a shared machine
        "cpu_seconds_median": statistics.median(r.get("cpu_seconds", math.nan) for r in runs),
        "load_before_runs": [round(float(r.get("load_before", math.nan)), 2) for r in runs],
        # the run log's stage peaks, and the RSS sampled every second by the benchmark (which
        # also covers a stage that was killed)
        "process_peak_rss_mb": max([s["peak_rss_mb"] for r in runs
                                    for s in r["stages"].values()]
                                   + [r.get("sampled_peak_rss_mb", 0.0) for r in runs]),
        "stages": stages,
    }


def check_targets(patients: int, seconds: float, peak_mb: float, complete: bool = True
                  ) -> dict[str, Any]:
    """The issue's targets for ``patients`` (``met`` is None when the size has none, False
    when a run did not complete)."""
    target_seconds, target_gb = TARGETS.get(patients, (None, None))
    if target_seconds is None:
        return {"target_seconds": None, "target_peak_gb": None, "meets_targets": None}
    met = (complete and seconds < target_seconds
           and (target_gb is None or peak_mb / 1024 < target_gb))
    return {"target_seconds": target_seconds, "target_peak_gb": target_gb,
            "meets_targets": met}


def _slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``y`` on ``x``."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return (sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
            / sum((a - mx) ** 2 for a in x))


def exponents(points: Mapping[int, float]) -> dict[str, Any]:
    """Cost exponent b of ``seconds ~ patients**b``.

    ``pairs``: log(t2/t1) / log(n2/n1) between consecutive sizes; ``all``: the
    least-squares slope of log seconds on log patients over every size (None for fewer
    than two sizes). Sizes whose time is not positive are left out (no logarithm).
    """
    sizes = sorted(n for n, t in points.items() if t > 0)
    pairs = {f"{a}-{b}": math.log(points[b] / points[a]) / math.log(b / a)
             for a, b in itertools.pairwise(sizes)}
    fit = (_slope([math.log(n) for n in sizes], [math.log(points[n]) for n in sizes])
           if len(sizes) > 1 else None)
    return {"pairs": pairs, "all": fit}


def stage_exponents(results: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`exponents` of every stage and of the total, over the results of one mode."""
    by_size = {int(r["patients"]): r for r in results}
    names = stage_names(s for r in by_size.values() for s in r["stages"])
    table = {name: exponents({n: r["stages"][name]["seconds_median"]
                              for n, r in by_size.items()
                              if r["stages"].get(name, {}).get("seconds_median") is not None})
             for name in names}
    # a run that was killed has no total, only a lower bound
    table[TOTAL] = exponents({n: r["total_seconds_median"] for n, r in by_size.items()
                              if not r.get("incomplete")})
    return table


#: analyses of ``analyses.csv`` that fit an iterative model or curve besides the mixed
#: models (their rows are named ``model <name>``): the adjusted comparison (logistic GEE),
#: the Cox model, the Turnbull NPMLE, the interval-censored Weibull AFT, the audit's
#: case-mix logistic model and its not-on-track expected-recovery curve (a mixed model).
#: A fit of these that does not converge is refused (*not estimable*) with the reason.
FITTED: tuple[str, ...] = ("response_models", "cox", "turnbull", "aft_interval",
                           "units (sites, therapists, funnels, benchmarks)", "not_on_track")
#: a message saying that some fit did not converge
NOT_CONVERGED = re.compile(r"(not|failed to|n't) converge|convergencewarning", re.IGNORECASE)


def convergence(out: Path) -> dict[str, Any]:
    """How many fitted models and curves of one run converged, and which did not.

    Reads the run folder: every mixed model in ``tables/mixed_model_comparison.csv``
    (``converged``) and every analysis of :data:`FITTED` in ``tables/analyses.csv``
    (converged when ``done``; otherwise listed with its status and reason); every other
    analysis that is not ``done`` is listed under ``not_done``, and the messages that say
    a fit did not converge (e.g. a Cox model refitted without a term) under ``notes``.
    """
    fitted: list[str] = []
    not_converged: list[str] = []
    for row in _rows(out / "tables" / "mixed_model_comparison.csv"):
        fitted.append(f"model {row['model']}")
        if row["converged"] != "True":
            not_converged.append(f"model {row['model']}: {row['convergence_note']}")
    not_done = []
    for row in _rows(out / "tables" / "analyses.csv"):
        name, done = row["analysis"], row["status"] == "done"
        if name in FITTED:
            fitted.append(f"{row['stage']} {name}")
        if not done:
            (not_converged if name in FITTED else not_done).append(
                f"{row['stage']} {name}: {row['status']} ({row['reason']})")
    notes = [m for path in sorted((out / "messages").glob("*.json"))
             for m in json.loads(path.read_text()) if NOT_CONVERGED.search(m)]
    return {"fitted": len(fitted), "converged": len(fitted) - len(not_converged),
            "not_converged": not_converged, "not_done": not_done, "notes": notes}


def convergence_over_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum of :func:`convergence` over runs; what did not converge is named with its seed."""
    counts = [r["convergence"] for r in runs]
    return {
        "fitted": sum(c["fitted"] for c in counts),
        "converged": sum(c["converged"] for c in counts),
        "per_run": [f"seed {r['seed']}: {c['converged']}/{c['fitted']}"
                    for r, c in zip(runs, counts, strict=True)],
        "not_converged": [f"seed {r['seed']}: {item}" for r, c in zip(runs, counts, strict=True)
                          for item in c["not_converged"]],
        "not_done": [f"seed {r['seed']}: {item}" for r, c in zip(runs, counts, strict=True)
                     for item in c["not_done"]],
        "notes": sorted({note for c in counts for note in c["notes"]}),
    }


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def medians_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Text table: one row per (mode, patients), median seconds per stage, peak, targets."""
    names = stage_names(s for r in results for s in r["stages"])
    head = ["mode", "patients", "runs", TOTAL, "CPU s", *names, "peak GB", "target",
            "converged"]
    rows = [head]
    for r in results:
        target = ("-" if r["meets_targets"] is None else
                  f"{'met' if r['meets_targets'] else 'MISSED'} (<{r['target_seconds']:g} s"
                  + (f", <{r['target_peak_gb']:g} GB)" if r["target_peak_gb"] else ")"))
        count = r.get("convergence", {})
        rows.append([r["mode"], f"{r['patients']:,}", str(r["runs"]),
                     (">" if r.get("incomplete") else "") + _seconds(r["total_seconds_median"]),
                     _seconds(r.get("cpu_seconds_median")),
                     *[_seconds(r["stages"].get(s, {}).get("seconds_median")) for s in names],
                     f"{r['process_peak_rss_mb'] / 1024:.2f}", target,
                     f"{count.get('converged', '?')}/{count.get('fitted', '?')}"])
    return _align(rows)


def exponents_table(table: Mapping[str, Mapping[str, Any]]) -> str:
    """Text table: one row per stage, the exponent between each pair of sizes and overall."""
    pairs = sorted({p for e in table.values() for p in e["pairs"]},
                   key=lambda p: int(p.split("-")[0]))
    rows = [["stage", *pairs, "least squares"]]
    for name, e in table.items():
        rows.append([name, *[_number(e["pairs"].get(p)) for p in pairs], _number(e["all"])])
    return _align(rows)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _align(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
                     for row in rows)
