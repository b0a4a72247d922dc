"""What a run was made from: input hashes, the resolved config, software versions, the
code's git commit, seeds and options. Nothing here changes between reruns of the same
inputs and config (timings live in ``run_log.json``)."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("ipt-outcomes", "pandas", "numpy", "scipy", "statsmodels", "lifelines", "pandera",
            "matplotlib", "mixedlm", "pyarrow", "jinja2", "pyyaml")


def software_versions() -> dict[str, str]:
    """Python and the versions of the packages the results depend on."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(directory: Path | None = None) -> str:
    """The code's git commit (with ``-dirty`` when it has uncommitted changes), or unknown."""
    where = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def base(study: dict[str, Any], sources: dict[str, str], inputs: dict[str, str],
         data_dir: Path, options: dict[str, bool]) -> dict[str, Any]:
    """The manifest's fixed part (stage row counts are added by the caller)."""
    seeds: dict[str, Any] = {"demo_generator": None}
    truth = data_dir / "truth.json"
    if truth.exists():
        import json

        seeds["demo_generator"] = json.loads(truth.read_text()).get("seed")
    return {
        "config": study,
        "sources": sources,
        "inputs": inputs,
        "software": software_versions(),
        "git_commit": git_commit(),
        "seeds": seeds,
        "options": options,
    }
