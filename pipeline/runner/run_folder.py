"""A run owns its output folder: a lock, a staging folder, and no report from a mix of runs.

This is an edge module (it touches the disk); the command line is its only user.

- **Lock.** ``<OUT>.lock`` (beside OUT) is created exclusively and holds the writer's process
  id: a second command writing the same OUT stops with a message instead of interleaving
  files. A lock left by a process that no longer runs is taken over.
- **Whole runs are staged.** ``ipt-outcomes run`` writes into a fresh hidden folder beside
  OUT and swaps it in when the command completes (whatever its exit code), so an interrupted
  run leaves the previous OUT exactly as it was, and a rerun whose validation fails leaves
  the validation report only, never the previous run's report beside it.
- **Stage commands mark OUT incomplete.** The commands ``make`` calls one by one
  (``validate``, ``outcomes``, ``models``, ``relapse``, ``audit``) write ``OUT/.incomplete``
  first and remove it when they complete; ``validate`` clears what the previous validation's
  analyses wrote, and each analysis stage removes the files it wrote last time before
  writing anew, so nothing stale survives. ``report`` refuses a folder that is marked
  incomplete or whose stages were run on different inputs or configurations
  (:func:`check_consistent`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

INCOMPLETE = ".incomplete"
OUTPUTS = ".outputs"
#: What an analysis stage writes; ``validate`` clears it all (the analyses depend on it).
DERIVED = ("tables", "audit", "figures", "messages", OUTPUTS, "report.html", "manifest.json",
           "run.log", "paper")


class OutputFolderError(Exception):
    """The output folder cannot be used; the message says why and what to do."""


class FolderBusyError(OutputFolderError):
    """Another live process is writing the same output folder."""


class FolderInconsistentError(OutputFolderError):
    """The output folder is incomplete or mixes runs; the message says which and why."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``<OUT>.lock`` while the block runs (taking over a lock whose process died).

    Raises
    ------
    FolderBusyError
        When a live process holds the lock.
    OutputFolderError
        When OUT is a file, or its parent cannot be created.
    """
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{out}: exists and is not a folder; choose another --out")
    lock = out.with_name(f"{out.name}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"{out}: cannot create the output folder ({exc.strerror})"
                                ) from exc
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder) and holder != os.getpid():
                raise FolderBusyError(f"{out}: another ipt-outcomes process (pid {holder}) is "
                                 f"writing this folder; wait for it, or remove {lock} if it "
                                 "is gone") from None
            lock.unlink(missing_ok=True)  # left by a process that died
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(os.getpid()))
        break
    else:  # pragma: no cover - only when another process races us twice
        raise FolderBusyError(f"{out}: could not take {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def staged(out: Path, seed: Path | None = None) -> Iterator[Path]:
    """Yield a fresh staging folder (a copy of ``seed`` when given: a run that reruns some
    stages only starts from the previous run); on normal exit it replaces ``out`` as a whole.

    On an exception (``KeyboardInterrupt`` included) the staging folder is removed and
    ``out`` is left exactly as it was.
    """
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    if seed is not None and seed.is_dir():
        shutil.copytree(seed, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.is_dir():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(out, retired)
        os.replace(staging, out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out)


@contextlib.contextmanager
def marked_incomplete(out: Path, command: str) -> Iterator[None]:
    """``OUT/.incomplete`` while a stage command writes; removed when it completes."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / INCOMPLETE
    marker.write_text(f"{command}\n", encoding="utf-8")
    yield
    marker.unlink(missing_ok=True)


def clear_derived(out: Path) -> None:
    """Remove what the analyses of a previous validation wrote (before validating anew)."""
    for name in DERIVED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def replace_stage_outputs(out: Path, stage: str, written: list[Path]) -> None:
    """Remove the files ``stage`` wrote last time that it did not write now, and record the
    new list (``OUT/.outputs/<stage>.txt``). A recorded path that resolves outside OUT is
    never removed."""
    record = out / OUTPUTS / f"{stage}.txt"
    now = {str(p.relative_to(out)) for p in written}
    root = out.resolve()
    if record.exists():
        for relative in record.read_text(encoding="utf-8").splitlines():
            # an edited record never deletes anything outside OUT
            stale = out / relative
            if relative and relative not in now and stale.resolve().is_relative_to(root) \
                    and stale.resolve() != root:
                stale.unlink(missing_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("".join(f"{r}\n" for r in sorted(now)), encoding="utf-8")


def fingerprint(inputs: Mapping[str, str], config: Mapping[str, Any],
                options: Mapping[str, Any]) -> str:
    """SHA-256 of the input hashes, the resolved config and the sharing options: stages with
    the same fingerprint belong to the same run."""
    payload = json.dumps({"inputs": inputs, "config": config, "options": options},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def check_consistent(out: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse to report on an interrupted folder or on stages from different runs.

    Raises
    ------
    FolderInconsistentError
        Naming the interrupted command, or the stages whose inputs or config differ.
    """
    marker = out / INCOMPLETE
    if marker.exists():
        command = marker.read_text(encoding="utf-8").strip()
        raise FolderInconsistentError(f"{out}: the command `{command}` did not complete, so the "
                                 "outputs may mix two runs; rerun it (or `ipt-outcomes run`)")
    prints = {stage: entry.get("data") if isinstance(entry, dict) else entry
              for stage, entry in manifest.get("fingerprints", {}).items()}
    if len(set(prints.values())) > 1:
        stages = ", ".join(sorted(prints))
        raise FolderInconsistentError(f"{out}: the stages ({stages}) were run on different inputs "
                                 "or configurations; rerun them together (`ipt-outcomes run` "
                                 "or `make report`)")
