"""The tests' own house: helpers live in tests.helpers, test modules never import from each
other or from conftest, and there is one fake clock."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_test_modules_import_helpers_only_from_tests_helpers() -> None:
    wrong = {
        f"{path.relative_to(TESTS)}: {name}"
        for path in _modules()
        for name in _imported(path)
        if name == "conftest"
        or name.split(".")[-1].startswith("test_")
        or (
            name.startswith("tests.") and not name.startswith(("tests.helpers", "tests.benchmarks"))
        )
    }
    assert not wrong, sorted(wrong)


def test_there_is_one_fake_clock() -> None:
    homes = [
        str(path.relative_to(TESTS))
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and "Clock" in node.name
    ]
    assert homes == ["helpers/clock.py"]


def test_mypy_checks_the_tests_as_strictly_as_the_package() -> None:
    import tomllib

    config = tomllib.loads((TESTS.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert {"cleanup", "tests"} <= set(config["mypy"]["files"]) and config["mypy"]["strict"]
    relaxed = [
        o["module"]
        for o in config["mypy"].get("overrides", [])
        if set(o) - {"module", "ignore_missing_imports"}
    ]
    assert relaxed == []
