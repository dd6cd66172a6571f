"""The package's modules import each other without cycles (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "sb3_pathways"


def _import_graph() -> tuple[dict[str, set[str]], set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    return graph, packages


def test_no_import_cycle_between_modules() -> None:
    graph, packages = _import_graph()
    cycles = set()
    for start in graph:
        stack = [(start, [start])]
        while stack:
            module, path = stack.pop()
            for imported in graph[module] - packages:  # a package's __init__ only re-exports
                if imported == start:
                    cycles.add(tuple(sorted(path)))
                elif imported not in path:
                    stack.append((imported, [*path, imported]))
    assert not cycles, f"import cycles: {sorted(cycles)}"
    assert "sb3_pathways.masking.overlap" in graph["sb3_pathways.report"]  # the graph sees real imports
