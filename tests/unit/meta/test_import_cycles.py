"""No import cycles between the modules of ``conduit/``.

Every import statement counts: at module level, inside functions and under
``TYPE_CHECKING``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg``; ``import a.b.c`` is an edge to ``a.b.c`` only (the implicit
import of its parent packages does not count). The graph is read from the source with
:mod:`ast`, nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3] / "conduit"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file, for every module and package under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the conduit modules it imports (see the module docstring)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                pkg = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{pkg}.{alias.name}"
                    targets.append(sub if sub in mods else pkg)
            graph[name].update(t for t in targets if t in mods and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_finder_reports_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "conduit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from conduit.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import a\n")
    (pkg / "c.py").write_text("import conduit.sub.b\n")
    cycle = find_cycle(edges(modules(pkg)))
    assert cycle == ["conduit.a", "conduit.sub.b", "conduit.a"]


def test_no_import_cycles() -> None:
    graph = edges(modules())
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_config_never_imports_connectors() -> None:
    graph = edges(modules())
    assert not {t for t in graph["conduit.config"] if t == "conduit.connectors" or t.startswith("conduit.connectors.")}
