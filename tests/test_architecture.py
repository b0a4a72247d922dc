"""The layout's promises, checked on the source tree (``docs/ARCHITECTURE.md``).

- no module over ``MAX_LINES`` lines;
- no import cycle among the package's modules (imports inside functions included: a
  lazy import that closes a loop is still a loop; ``if TYPE_CHECKING:`` blocks excluded);
- matplotlib only on the report side (stages return data, the report draws);
- every package's ``__init__`` names each of its modules in its docstring.
"""

from __future__ import annotations

import ast
import functools
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


def _imports(tree: ast.AST, module: str, is_package: bool, top_level: bool = False
             ) -> set[str]:
    """The package modules ``module`` imports, wherever in the file (not for type checks),
    or only at module level (``top_level``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if top_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
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


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "pipeline" and len(parts) > 1 else parts[0]


def test_packages_depend_down_the_path_when_loaded() -> None:
    """What a package imports when it is loaded (not inside functions, not for type
    checks) points down the path: no two packages load each other. (The dispatchers,
    ``runner`` and ``cli``, reach every stage inside functions; the config checks formulas
    with the trajectories' grammar inside a function.)"""
    loaded: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        body = [node for node in tree.body
                if not (isinstance(node, ast.If) and _type_checking(node))]
        targets = _imports(ast.Module(body=body, type_ignores=[]), name,
                           path.name == "__init__.py", top_level=True)
        loaded.setdefault(_package(name), set()).update(
            _package(t) for t in targets if _package(t) != _package(name))
    try:
        graphlib.TopologicalSorter(loaded).prepare()
    except graphlib.CycleError as error:
        pytest.fail("packages load each other: " + " -> ".join(error.args[1]))


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
    assert "pipeline.report.figures" in graph["pipeline.report.outcome_plots"]
    assert "pipeline.io" in graph["pipeline.cli"]
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


@functools.cache
def _code(stage: str) -> frozenset[str]:
    from pipeline.runner import freshness

    return frozenset(str(p.relative_to(ROOT)) for p in freshness.code_files(stage, ROOT))


def test_every_module_a_run_uses_counts_for_some_stage() -> None:
    """The up-to-date rule hashes the code each stage runs (``runner.freshness``): every
    module but the demo generator, the notebooks' door and the columnar route (its own
    command, outside ``run``) belongs to some stage."""
    from pipeline.runner import freshness

    covered = set().union(*(_code(stage) for stage in freshness.ENTRIES))
    left = sorted(str(p.relative_to(ROOT)) for name, p in MODULES.items()
                  if str(p.relative_to(ROOT)) not in covered
                  and not name.startswith(("pipeline.demo", "pipeline.study",
                                           "pipeline.__main__", "pipeline.columnar")))
    assert left == []


def test_a_module_counts_for_the_stages_that_import_it_and_no_other() -> None:
    common = _code("validate")
    pooling = "pipeline/modelling/pooling.py"
    assert all(pooling in _code(stage) for stage in ("outcomes", "models", "audit"))
    cox = "pipeline/relapse/cox.py"
    assert cox in _code("relapse")
    assert cox not in common | _code("outcomes") | _code("models") | _code("audit")
    assert "pipeline/report/templates/report.html.j2" in _code("report")
    assert "pipeline/trajectories/engines/large.py" in _code("audit")  # the curve's engine


@pytest.mark.parametrize("stage", ["outcomes", "models", "relapse", "audit", "report"])
def test_the_stage_code_holds_what_this_checker_sees_it_import(stage: str) -> None:
    """Cross-check of the two import readers: the modules of ``stage``'s code, and what
    they import by this file's reader, are all hashed (for that stage or all stages)."""
    covered = _code(stage) | _code("validate")
    graph = _graph()
    inside = [name for name, path in MODULES.items()
              if str(path.relative_to(ROOT)) in _code(stage)]
    missing = sorted({str(MODULES[t].relative_to(ROOT)) for m in inside
                      if not m.startswith(("pipeline.runner", "pipeline.cli",
                                           "pipeline.report.stage_figures"))
                      for t in graph[m]} - covered)
    assert missing == []


def test_imports_are_found_in_every_kind_of_nested_statement() -> None:
    """The fingerprints follow imports inside functions, classes, ``if``/``try``/``with``/
    ``match`` blocks and handlers, as ``ast.walk`` over the whole tree would."""
    source = b'''
import a
def f():
    if x:
        import b
    try:
        from c import d
    except ImportError:
        import e
    else:
        import f2
    finally:
        from . import g
class K:
    def m(self):
        with open("x"):
            import h
match y:
    case 1:
        import i
text = "import j"
'''
    from pipeline.runner import freshness

    anywhere, loaded = freshness._imports(source, "pkg.mod", False)
    assert anywhere == {"a", "b", "c", "c.d", "e", "f2", "pkg", "pkg.g", "h", "i"}
    assert loaded == {"a"}
