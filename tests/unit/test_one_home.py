"""Issue 20: each rule has one home. Read from the package's source (string constants,
definitions, numbers), so a second copy of a rule fails here before it can drift."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import click

from cleanup import exits
from cleanup.cli.main import main
from cleanup.inputs.formats import INPUT_SUFFIXES

PACKAGE = Path(__file__).resolve().parents[2] / "cleanup"
# The sandbox plays the portal: its own copies of the portal's rules are the other side's.
PRODUCT = sorted(p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.parts)


def _name(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _trees() -> Iterator[tuple[str, ast.Module]]:
    for path in PRODUCT:
        yield _name(path), ast.parse(path.read_text(encoding="utf-8"))


def _strings(tree: ast.AST) -> Iterator[str]:
    """Every string constant, the fixed parts of f-strings included (docstrings are not)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.value


def _homes(predicate: object) -> list[str]:
    assert callable(predicate)
    return sorted({name for name, tree in _trees() if any(predicate(s) for s in _strings(tree))})


def _defined(name: str) -> list[str]:
    """Modules that define `name` at their top level (a function, class or assignment)."""
    found = set()
    for module, tree in _trees():
        for node in tree.body:
            targets: list[ast.expr] = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                found.add(module)
            elif isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.add(module)
    return sorted(found)


def test_the_webhook_address_pattern() -> None:
    assert _homes(lambda s: "/rest/" in s and "\\d" in s) == ["redact.py"]
    assert _defined("webhook_code") == ["redact.py"]


def test_the_input_file_endings() -> None:
    endings = set(INPUT_SUFFIXES)
    assert _homes(lambda s: s.lower() in endings) == ["inputs/formats.py"]


def test_the_50_command_cap() -> None:
    assert _defined("MAX_BATCH") == ["portal/protocol.py"]
    # No module that batches, sends or plans writes the number itself.
    literal = sorted(
        name
        for name, tree in _trees()
        if name.startswith(("run/", "portal/"))
        and any(isinstance(n, ast.Constant) and n.value == 50 for n in ast.walk(tree))
    )
    assert literal == ["portal/protocol.py"]


def test_exit_code_severity() -> None:
    assert _defined("SEVERITY") == ["exits.py"]
    assert _homes(lambda s: " > 70 > " in s or "130/143 >" in s) == []  # printed, not written
    run_job = main.get_command(click.Context(main), "run-job")
    assert run_job is not None and exits.SEVERITY_ORDER in (run_job.help or "")
    assert exits.SEVERITY_ORDER == "130/143 > 70 > 5 > 3 > 2 > 4 > 1 > 75 > 0"


def test_turning_an_exception_into_problem_lines() -> None:
    assert _defined("problem_lines") == ["errors.py"]
    assert _homes(lambda s: s.startswith("internal error: ")) == ["errors.py"]


def test_the_skip_reason_text() -> None:
    words = ("not sent: ", "run aborted (", "run stopped")
    run = [h for h in _homes(lambda s: s.startswith(words)) if h.startswith(("run/", "jobs/"))]
    assert run == ["run/actions.py"]
    assert _homes(lambda s: "job stopped" in s) == []  # a run stops; a job file is scheduled


def test_optional_stripping_and_the_chunk_arrays() -> None:
    none_type = sorted(
        name
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "type"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value is None
    )
    assert none_type == ["options.py"]
    assert _defined("_arrays") == []


def test_every_exception_lives_in_the_error_tree() -> None:
    bases = {"Exception", "BaseException", "ValueError", "RuntimeError", "CleanupError"}
    elsewhere = sorted(
        f"{name}: {node.name}"
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and name != "errors.py"
        and any(
            (isinstance(b, ast.Name) and (b.id in bases or b.id.endswith("Error")))
            or (isinstance(b, ast.Attribute) and b.attr.endswith(("Error", "Exception")))
            for b in node.bases
        )
    )
    assert elsewhere == []


def test_no_assert_guards_the_product_at_run_time() -> None:
    # `python -O` drops asserts: a guard must be an `if` that raises or handles.
    asserts = sorted(
        f"{name}:{node.lineno}"
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert)
    )
    assert asserts == []
