"""The shape of the package: imports point one way and form no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import esmpy_hs

ROOT = Path(esmpy_hs.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package → the names it imports (at any depth of the file)."""
    out: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                found |= {base} | {f"{base}.{a.name}" for a in node.names}
        out[name] = found
    return out


def _internal_graph() -> dict[str, set[str]]:
    imports = _imports()
    graph: dict[str, set[str]] = {}
    for name, found in imports.items():
        edges = set()
        for target in found:
            while target and target not in imports:
                target = target.rpartition(".")[0]
            # a module importing its own package (or itself) is not an edge between modules
            if target and target != name and not name.startswith(target + "."):
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    graph = _internal_graph()
    assert len(graph) > 30  # the walk found the package
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nmf_imports_neither_hyperspy_nor_physics():
    for name, found in _imports().items():
        if name.startswith("esmpy_hs.nmf"):
            bad = {t for t in found if t.split(".")[0] in ("hyperspy", "exspy")
                   or t.startswith("esmpy_hs.physics") or t.startswith("esmpy_hs.signals")}
            assert not bad, f"{name} imports {sorted(bad)}"
