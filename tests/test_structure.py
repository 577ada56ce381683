"""The package's import structure (issue 25): no import cycle among `transalign` modules, and
the runtime path never imports the offline stages.

Imports inside functions count too: they keep heavy or optional dependencies off the import
path (`transalign --help` must stay cheap), but a deferred import is still a dependency, and two
modules that need each other (corpus.job and corpus.ray_job did) are one module in two files."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "transalign"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """`transalign` modules ``path`` imports anywhere (``from X import Y`` counts Y when Y is itself
    a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) - {module_name(p)} for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_transalign():
    graph = import_graph()
    assert len(graph) > 50 and "transalign.engine.aligner" in graph
    assert find_cycle(graph) is None


def test_the_runtime_does_not_import_the_offline_stages():
    """engine and kernels never import export or train (DESIGN.md: data flows one way; export and
    train are offline stages)."""
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith(("transalign.engine", "transalign.kernels")):
            offline = {m for m in imports if m.startswith(("transalign.export", "transalign.train"))}
            assert not offline, (module, offline)
