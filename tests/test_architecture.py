"""Architecture rules the folder tree cannot enforce by itself: no import cycles, no
module over 400 lines.

The import graph is read from the source with `ast` (nothing is imported): every
`import` and `from … import` of fleetd, the built-in plugins and the example plugin,
including imports inside functions (a function-level import that closes a cycle is still
a cycle: it only moves the failure from start-up to the first call), but not those under
`if TYPE_CHECKING:` (never executed). `from pkg import name` is an edge to `pkg.name`
when that is a module, else to `pkg` itself (its `__init__`, which counts as a module).
Every cycle is reported with its edges, and where each edge is (file:line).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (source folder, the folder its top-level packages live in)
PACKAGES = (
    (ROOT / "fleetd", ROOT),
    (ROOT / "plugins" / "fleetd_plugins", ROOT / "plugins"),
    (ROOT / "plugins" / "example" / "fleetd_example", ROOT / "plugins" / "example"),
)
# STYLE.md: aim for 80-250 lines, split near 400.
MAX_MODULE_LINES = 400
SIZE_CHECKED = (ROOT / "fleetd", ROOT / "plugins" / "fleetd_plugins")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # "path:line"


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, base in PACKAGES:
        for path in sorted(folder.rglob("*.py")):
            found[_module_name(path, base)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except the body of `if TYPE_CHECKING:`
    (its `else:` branch runs, so it counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _edges(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Edge]:
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where_file = path.relative_to(ROOT)
    for node in _imports(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                # Relative: strip `level` parts from this module's package.
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, node.module] if node.module else package)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in modules else base)
        seen = set()
        for imported in targets:
            # An import of a module we do not know (a third-party one) is not an edge;
            # of a dotted name, the longest known prefix is (`import a.b.c` → a.b.c).
            target = imported
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target not in seen:
                seen.add(target)
                yield Edge(name, target, f"{where_file}:{node.lineno}")


def import_graph() -> dict[str, list[Edge]]:
    modules = _modules()
    return {name: list(_edges(name, path, modules)) for name, path in modules.items()}


def _strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = [e.target for e in graph[node]]
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def cycle_report(graph: dict[str, list[Edge]]) -> str:
    """Every import cycle (strongly connected component) with the edges inside it."""
    lines = []
    for component in _strongly_connected(graph):
        members = set(component)
        lines.append(f"cycle among {len(component)} modules: {', '.join(component)}")
        for name in component:
            for edge in graph[name]:
                if edge.target in members:
                    lines.append(f"    {edge.source} -> {edge.target}  ({edge.where})")
    return "\n".join(lines)


def test_no_import_cycles() -> None:
    report = cycle_report(import_graph())
    assert not report, "import cycles:\n" + report


def test_the_cycle_check_sees_function_level_and_relative_imports() -> None:
    # The checker itself: a cycle closed inside a function, or by a relative import,
    # is found; one closed only under TYPE_CHECKING is not.
    tree = {
        "a": [Edge("a", "b", "a.py:1")],
        "b": [Edge("b", "a", "b.py:9")],
        "c": [],
    }
    assert "a -> b" in cycle_report(tree)
    assert "b -> a" in cycle_report(tree)
    graph = import_graph()
    source = graph["fleetd_plugins.fleetdata.demo_cli"]
    # demo_cli imports `.demo` inside a function, relatively.
    assert any(e.target == "fleetd_plugins.fleetdata.demo" for e in source)
    # fleetd.plugins.hookspecs imports fleetd.jobs.handlers only under TYPE_CHECKING.
    hook_targets = {e.target for e in graph["fleetd.plugins.hookspecs"]}
    assert not any(t.startswith("fleetd.jobs") for t in hook_targets)


def test_no_module_over_400_lines() -> None:
    too_long = []
    for folder in SIZE_CHECKED:
        for path in sorted(folder.rglob("*.py")):
            count = len(path.read_text(encoding="utf-8").splitlines())
            if count > MAX_MODULE_LINES:
                too_long.append(f"{path.relative_to(ROOT)}: {count} lines")
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them):\n" + "\n".join(
        too_long
    )
