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

import ast
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
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
#: The modules each stage starts from; its code is everything they import, followed
#: through the package (``code_files``). ``validate``'s code counts for every stage.
ENTRIES: dict[str, tuple[str, ...]] = {
    "validate": ("pipeline.ingest", "pipeline.io", "pipeline.config", "pipeline.estimability",
                 "pipeline.sharing", "pipeline.outcomes.definitions", "pipeline.runner",
                 "pipeline.cli", "pipeline.report.stage_figures", "pipeline.report.manifest",
                 "data_schemas"),
    "outcomes": ("pipeline.outcomes", "pipeline.report.outcome_plots"),
    "models": ("pipeline.trajectories", "pipeline.report.trajectory_plots"),
    "relapse": ("pipeline.relapse", "pipeline.report.relapse_plots"),
    "audit": ("pipeline.audit", "pipeline.report.audit_plots"),
    "report": ("pipeline.report.html", "pipeline.report.paper_export"),
}
#: Modules that dispatch to the stages: only what they import when loaded is followed
#: (their imports inside functions reach every stage, which would make every stage depend
#: on every other); their own source counts for every stage.
DISPATCHERS: tuple[str, ...] = ("pipeline.runner", "pipeline.cli",
                                "pipeline.report.stage_figures")
#: Files other than Python modules that a stage reads.
RESOURCES: dict[str, tuple[str, ...]] = {
    "validate": ("data_schemas/instruments.csv",),
    "report": ("pipeline/report/templates/*",),
}
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "data_schemas")


def _modules(root: Path) -> dict[str, Path]:
    """Dotted name -> source file of every module of the packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _names(node: ast.AST, name: str, is_package: bool) -> set[str]:
    """The dotted names an import statement may bring in (module, or module.attribute)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:
        anchor = name.split(".")[: None if is_package else -1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def _statements(tree: ast.Module) -> Iterator[ast.AST]:
    """Every statement of ``tree``, nested ones included (in functions, classes, ``if``,
    ``try``, ``with``, ``match``), without descending into expressions: an import is a
    statement, and a module's expressions are most of its nodes (``ast.walk`` over them
    made the fingerprints of a run cost seconds)."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node)
                    if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case))


@functools.lru_cache(maxsize=2048)
def _imports(source: bytes, name: str, package: bool
             ) -> tuple[frozenset[str], frozenset[str]]:
    """The dotted names the module ``name`` (``source``) imports anywhere, and at module
    level; cached on the source, so one run parses each module once."""
    tree = ast.parse(source)
    anywhere = frozenset(n for node in _statements(tree) for n in _names(node, name, package))
    loaded = frozenset(n for node in tree.body for n in _names(node, name, package))
    return anywhere, loaded


def _imported(path: Path, name: str, modules: Mapping[str, Path]
              ) -> tuple[set[str], set[str]]:
    """The package modules that the module ``name`` (at ``path``) imports anywhere, and
    those it imports at module level (when it is loaded)."""
    anywhere, loaded = _imports(path.read_bytes(), name, path.name == "__init__.py")
    return ({m for m in anywhere if m in modules}, {m for m in loaded if m in modules})


def _inside(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


Graph = Mapping[str, tuple[Path, tuple[set[str], set[str]]]]


def import_graph(root: Path = ROOT) -> dict[str, tuple[Path, tuple[set[str], set[str]]]]:
    """Each module of the packages: its file, the package modules it imports anywhere and
    those it imports at module level."""
    modules = _modules(root)
    return {name: (path, _imported(path, name, modules)) for name, path in modules.items()}


def code_files(stage: str, root: Path = ROOT,
               graph: Graph | None = None) -> list[Path]:
    """The source files ``stage`` runs: its entry modules (:data:`ENTRIES`) and everything
    they import from the packages, transitively (of :data:`DISPATCHERS`, only what they
    import when loaded), with its resources. A new module is covered as soon as a stage
    imports it."""
    graph = import_graph(root) if graph is None else graph
    modules = {name: path for name, (path, _i) in graph.items()}
    todo = [m for m in modules if _inside(m, ENTRIES[stage])]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        anywhere, loaded = graph[module][1]
        todo.extend(loaded if _inside(module, DISPATCHERS) else anywhere)
    files = {modules[m] for m in seen}
    files.update(p for pattern in RESOURCES.get(stage, ()) for p in root.glob(pattern)
                 if p.is_file())
    return sorted(files)


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_hash(stage: str, root: Path = ROOT,
              graph: Graph | None = None) -> str:
    """SHA-256 over the names and bytes of the source files of ``stage`` (:func:`code_files`)."""
    digest = hashlib.sha256()
    for path in code_files(stage, root, graph):
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
    graph = import_graph()
    core = code_hash("validate", graph=graph)
    prints = {"validate": _digest([data, core])}
    for stage in ANALYSIS_STAGES:
        prints[stage] = _digest([prints["validate"], stage_config(config, stage),
                                 code_hash(stage, graph=graph), extra.get(stage, "")])
    prints["report"] = _digest([[prints[s] for s in ANALYSIS_STAGES],
                                stage_config(config, "report"),
                                code_hash("report", graph=graph)])
    return prints
