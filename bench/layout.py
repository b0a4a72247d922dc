"""The layout's figures for a source tree: module sizes, import edges and cycles, and the
modules that draw outside the report side (the closing note of the architecture issue).

``python bench/layout.py [TREE]`` (default: this checkout); the parser is the one
``tests/test_architecture.py`` checks the layout with. Compare two commits with
``git worktree add /tmp/before <commit>`` and ``python bench/layout.py /tmp/before``.
"""

from __future__ import annotations

import ast
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import test_architecture as layout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def main(root: Path) -> None:
    layout.ROOT = root
    layout.MODULES = layout._modules()
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in layout.MODULES.items()),
                   reverse=True)
    graph = layout._graph()
    drawing = [n for n, p in layout.MODULES.items() if not n.startswith("pipeline.report")
               and any(x.split(".")[0] == "matplotlib"
                       for x in layout._all_imports(ast.parse(p.read_text())))]
    print(f"modules: {len(sizes)}, lines: {sum(s for s, _ in sizes)}, "
          f"median {statistics.median(s for s, _ in sizes)}, largest {sizes[0][1]} "
          f"({sizes[0][0]})")
    print("over 600 lines:", [(n, s) for s, n in sizes if s > layout.MAX_LINES])
    print("import edges:", sum(len(v) for v in graph.values()), "cycles:", _cycles(graph))
    print("drawing outside the report side:", drawing)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else layout.ROOT)
