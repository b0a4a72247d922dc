"""The layout's promises, checked on the source tree (``docs/ARCHITECTURE.md``).

- no module over ``MAX_LINES`` lines;
- no import cycle among the package's modules (imports inside functions included: a
  lazy import that closes a loop is still a loop; ``if TYPE_CHECKING:`` blocks excluded);
- matplotlib only on the report side (stages return data, the report draws);
- every package's ``__init__`` names each of its modules in its docstring.
"""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "data_schemas")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted name -> path of every module of the packages (``__init__`` as the package)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The package modules ``module`` imports, wherever in the file (not for type checks)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            found.update(submodules)
            if not submodules <= MODULES.keys():  # names from the module itself
                found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in MODULES and name != module}


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    return {name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
            for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_longer_than_the_limit(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines"


def test_no_import_cycle() -> None:
    try:
        graphlib.TopologicalSorter(_graph()).prepare()
    except graphlib.CycleError as error:
        pytest.fail("import cycle: " + " -> ".join(error.args[1]))


def test_only_the_report_side_draws() -> None:
    drawing = sorted(
        name for name, path in MODULES.items()
        if not name.startswith("pipeline.report")
        and any(part.split(".")[0] == "matplotlib"
                for part in _all_imports(ast.parse(path.read_text()))))
    assert drawing == []


def _all_imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(
    name for name, path in MODULES.items() if path.name == "__init__.py"))
def test_every_package_names_its_modules(package: str) -> None:
    folder = MODULES[package].parent
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    members = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") + sorted(
        p.name for p in folder.iterdir() if (p / "__init__.py").exists())
    missing = [m for m in members if not m.startswith("_")
               and not re.search(rf"\b{m}\b", doc)]
    assert doc and missing == [], f"{package} docstring does not name {missing}"


def test_the_graph_sees_known_edges() -> None:
    """The checker itself: a known import is an edge (else the cycle test proves nothing)."""
    graph = _graph()
    assert "pipeline.runner.stages" in graph["pipeline.report.outcome_plots"]
    assert "pipeline.io" in graph["pipeline.cli"]
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()
