"""The package's import graph: no module imports, however indirectly, a module that
imports it back. Every import counts: top-level, inside functions, under
``TYPE_CHECKING``. An edge goes to the most specific module an import names
(``from nerve.stores import base`` -> ``nerve.stores.base``)."""

from __future__ import annotations

import ast
from pathlib import Path

import nerve

ROOT = Path(nerve.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in known else base)
    return {t for t in targets if t in known and t != name}


def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_walk_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    edges = graph()
    assert "nerve.bus" in edges["nerve"]  # the facade
    assert "nerve.transports.base" in edges["nerve.bus"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_nerve_has_no_import_cycle() -> None:
    # The facade (nerve/__init__.py) imports the public names of everything: leave its
    # own edges out, since every "from nerve import x" in the package points at it.
    edges = graph()
    edges = {m: {t for t in ts if t != "nerve"} for m, ts in edges.items() if m != "nerve"}
    assert cycles(edges) == []


def test_the_bus_imports_the_parts_it_runs_and_none_of_them_imports_the_bus() -> None:
    edges = graph()
    parts = {"nerve.runner", "nerve.settler", "nerve.dlq", "nerve.history"}
    assert parts <= edges["nerve.bus"]
    for part in parts:
        assert "nerve.bus" not in edges.get(part, set()), part


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    """Each module's floor: 1 + the highest floor among what it imports (0: imports none)."""
    found: dict[str, int] = {}

    def floor(node: str) -> int:
        if node not in found:
            found[node] = 0  # a cycle (which the test above refuses) stops here
            found[node] = 1 + max((floor(t) for t in edges[node]), default=-1)
        return found[node]

    for node in edges:
        floor(node)
    return found


if __name__ == "__main__":  # python -m tests.test_imports: the package, floor by floor
    edges = {m: {t for t in ts if t != "nerve"} for m, ts in graph().items() if m != "nerve"}
    by_floor: dict[int, list[str]] = {}
    for module, level in floors(edges).items():
        by_floor.setdefault(level, []).append(module)
    for level in sorted(by_floor, reverse=True):
        print(f"floor {level:2}: {', '.join(sorted(by_floor[level]))}")
    print("cycles:", cycles(edges) or "none")
