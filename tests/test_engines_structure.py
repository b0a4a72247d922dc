"""The shape of ``pipeline.trajectories.engines``, checked on its source with ``ast``.

(a) No import cycle among the engine modules: the package ``__init__`` imports its members
    (to re-export and dispatch) and no member imports the package namespace or a module
    that leads back to itself. Only imports executed at import time count (not those under
    ``if TYPE_CHECKING:``), and no engine module is imported inside a function, where a
    lazy import would hide a loop. Python's own loading of a parent package before a
    submodule is not an edge: it is no import written in the code.
(b) Only ``engines/mixedlm_adapter.py`` touches ``mixedlm`` internals: elsewhere no
    ``_``-prefixed attribute is accessed and every name taken from ``mixedlm`` is in the
    ``__all__`` of the module it comes from.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline.trajectories.engines as engines_package

PACKAGE = "pipeline.trajectories.engines"
ENGINES_DIR = Path(engines_package.__file__).parent
ADAPTER = "mixedlm_adapter"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


MODULES = {_module_name(p): p for p in sorted(ENGINES_DIR.glob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported (``TYPE_CHECKING`` blocks skipped)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                yield from _module_level(block)


def _function_level(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    yield node


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> set[str]:
    """The engine modules an import statement loads by name."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:
            package = module if module == PACKAGE else module.rsplit(".", 1)[0]
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, *([base] if base else [])])
        names = {base} | {f"{base}.{alias.name}" for alias in node.names}
        if base == PACKAGE:  # `from package import x`: x is a member, else the namespace
            names = {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names}
    return {name for name in names if name in MODULES}


def import_graph() -> dict[str, set[str]]:
    """Module-level import edges among the engine modules."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in _module_level(tree.body):
            edges |= _targets(node, module)
        graph[module] = edges - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def private_access(source: str) -> list[str]:
    """Uses of ``mixedlm`` internals in ``source``: ``_``-prefixed attributes (any object:
    the engines' own code needs none) and names imported from ``mixedlm`` that are not in
    their module's ``__all__`` (or whose module path has a ``_`` part)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                node.attr.startswith("__") and node.attr.endswith("__")):
            found.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "mixedlm" and not _public("mixedlm", node.attr):
            found.append(f"line {node.lineno}: mixedlm.{node.attr}")
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "mixedlm" and _private_path(a.name)]
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mixedlm":
            module = node.module or ""
            found += [f"line {node.lineno}: from {module} import {a.name}" for a in node.names
                      if _private_path(module) or not _public(module, a.name)]
    return found


def _private_path(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def _public(module: str, name: str) -> bool:
    """Whether ``name`` is in the ``__all__`` of ``module`` or of a package above it (a
    module without any ``__all__`` on its path is judged by the name alone)."""
    if name.startswith("_"):
        return False
    parts = module.split(".")
    declared = False
    for depth in range(len(parts), 0, -1):
        try:
            exported = getattr(importlib.import_module(".".join(parts[:depth])), "__all__", None)
        except ImportError:  # mixedlm not installed: judge by the name alone
            return True
        if exported is not None:
            declared = True
            if name in exported:
                return True
    return not declared


def test_no_module_level_import_cycle() -> None:
    graph = import_graph()
    assert f"{PACKAGE}.spec" in graph and f"{PACKAGE}.mixedlm_engine" in graph[PACKAGE]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_members_do_not_import_the_package_namespace() -> None:
    graph = import_graph()
    importers = sorted(m for m, edges in graph.items() if PACKAGE in edges)
    assert importers == []


def test_public_types_import_nothing_from_the_engines() -> None:
    graph = import_graph()
    assert graph[f"{PACKAGE}.spec"] == set()
    assert graph[f"{PACKAGE}.result"] == set()


def test_no_engine_module_is_imported_lazily() -> None:
    lazy = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lazy += [f"{module} line {n.lineno}" for n in _function_level(tree)
                 if _targets(n, module)]
    assert lazy == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith(ADAPTER)))
def test_no_mixedlm_internals_outside_the_adapter(module: str) -> None:
    assert private_access(MODULES[module].read_text(encoding="utf-8")) == []


def test_private_access_is_detected() -> None:
    source = ("from mixedlm.estimation.reml import _build_theta_bounds\n"
              "import mixedlm._rust\n"
              "value = deviance.optimizer._final_evaluation(theta)\n")
    assert len(private_access(source)) == 3
    pytest.importorskip("mixedlm")
    assert private_access("from mixedlm.matrices.design import RandomEffectStructure\n")
    assert private_access("import mixedlm\nmixedlm.lmerControl()\nx.__new__(x)\n") == []


def test_the_adapter_is_where_the_internals_are() -> None:
    assert private_access(MODULES[f"{PACKAGE}.{ADAPTER}"].read_text(encoding="utf-8"))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_the_size_limit(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES
