"""The package's shape, checked: the rules a newcomer relies on when reading the folders.

- No import cycle between modules (imports at module level: those run when a module loads).
- The core (inputs, portal, pacing, run, outputs, jobs) never imports click or tqdm: the CLI
  is a thin layer over it, and progress reaches the edge through a callback.
- The product does not load its test bench: no core module imports the sandbox or the demo.
- No function is longer than a screen (60 lines).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cleanup"
CORE = ("inputs", "portal", "pacing", "run", "outputs", "jobs")
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level: bool) -> Iterator[str]:
    """Modules that `name` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            yield from subs if len(subs) == len(node.names) else [base, *subs]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = set()
        for target in _imports(name, path, top_level=True):
            # Importing a.b.c loads the packages a and a.b first.
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                module = ".".join(parts[:i])
                if module in MODULES and module != name and not name.startswith(module + "."):
                    edges.add(module)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle() -> None:
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("folder", CORE)
def test_core_knows_neither_click_tqdm_nor_the_sandbox(folder: str) -> None:
    banned = ("click", "tqdm", "cleanup.sandbox", "cleanup.cli")
    offenders = {
        f"{name} imports {target}"
        for name, path in MODULES.items()
        if name.startswith(f"cleanup.{folder}")
        for target in _imports(name, path, top_level=False)
        if target.split(".")[0] in banned or target.startswith(banned[2:])
    }
    assert not offenders


def test_no_function_longer_than_a_screen() -> None:
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert not long
