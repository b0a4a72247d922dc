"""When a stage is up to date: content fingerprints of what each stage depends on.

A stage's fingerprint is the SHA-256 of the content hashes of the input files, the part of
the resolved config the stage reads, the options that change its outputs, and the source of
the code it runs. ``make`` keeps one stamp per stage holding it (``ipt-outcomes stamps``
rewrites a stamp only when its fingerprint changed, so ``touch`` on a data file redoes
nothing), and ``ipt-outcomes run`` compares it with the fingerprints in the previous run's
manifest, so a rerun with nothing changed runs nothing and a change of one stage's code or
config section reruns that stage and the report only.

Config sections read by one group of stages only (:data:`SECTIONS`) count for those stages;
every other key counts for all of them (validation included: the contract's instruments
and conditions come from the config).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ANALYSIS_STAGES = ("outcomes", "models", "relapse", "audit")
#: Config sections and the stages that read them (any other key: every stage).
SECTIONS: dict[str, tuple[str, ...]] = {
    "trajectories": ("models",),
    "relapse": ("relapse",),
    "audit": ("outcomes", "audit"),
    "benchmarks": ("outcomes",),
    "comparison": ("outcomes",),
    "paper_size": ("report",),
}
#: Source files (globs under the repository root) of each stage; ``validate``'s count for all.
CODE: dict[str, tuple[str, ...]] = {
    "validate": ("pipeline/io.py", "pipeline/ingest/*.py", "pipeline/cli.py",
                 "pipeline/config.py", "pipeline/outcomes/definitions.py",
                 "pipeline/runner/*.py", "pipeline/sharing/*.py", "pipeline/estimability.py",
                 "pipeline/report/stage_figures.py", "data_schemas/*.py",
                 "data_schemas/instruments.csv"),
    "outcomes": ("pipeline/outcomes/*.py", "pipeline/report/outcome_plots.py",
                 "pipeline/report/figures.py", "pipeline/report/findings.py"),
    "models": ("pipeline/trajectories/*.py", "pipeline/trajectories/engines/*.py",
               "pipeline/report/trajectory_plots.py", "pipeline/report/figures.py"),
    "relapse": ("pipeline/relapse/*.py", "pipeline/report/relapse_plots.py",
                "pipeline/report/figures.py"),
    "audit": ("pipeline/audit/*.py", "pipeline/report/audit_plots.py",
              "pipeline/report/figures.py"),
    "report": ("pipeline/report/*.py", "pipeline/report/templates/*",
               "pipeline/trajectories/means.py"),
}
ROOT = Path(__file__).resolve().parents[2]


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_hash(stage: str, root: Path = ROOT) -> str:
    """SHA-256 over the names and bytes of the source files of ``stage`` (:data:`CODE`)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in CODE[stage] for p in root.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def common_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config keys every stage reads (all but :data:`SECTIONS`)."""
    return {k: v for k, v in config.items() if k not in SECTIONS}


def stage_config(config: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The config sections read by ``stage`` only."""
    return {k: config.get(k) for k, stages in SECTIONS.items() if stage in stages}


def fingerprints(data: str, config: Mapping[str, Any],
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each stage's fingerprint (``validate``, the analysis stages, ``report``).

    Parameters
    ----------
    data : str
        The run's data fingerprint (``run_folder.fingerprint`` of the input hashes, the
        common config and the options): what every stage shares.
    config : mapping
        The resolved study config.
    extra : mapping of str to str, optional
        Further content per stage (the benchmarks file's hash for ``outcomes``).
    """
    extra = extra or {}
    core = code_hash("validate")
    prints = {"validate": _digest([data, core])}
    for stage in ANALYSIS_STAGES:
        prints[stage] = _digest([prints["validate"], stage_config(config, stage),
                                 code_hash(stage), extra.get(stage, "")])
    prints["report"] = _digest([[prints[s] for s in ANALYSIS_STAGES],
                                stage_config(config, "report"), code_hash("report")])
    return prints
