"""Issue 20, the typed result: each of its rules has one home in the package, found by
reading the code (the AST), not by trusting a comment.

- The report's columns: a literal list of them only in results.py; an Arrow schema built
  only there (`RowResult.arrow_schema`).
- How a run ended: the words only in exits.py (`state_word`); results.py derives
  `RunSummary.state`, `finished` and `complete` from them.
- Which statuses are not done: one literal group, results.NOT_DONE_STATUSES.
- Whether a row was given up: a field; the phrase only in results.py, read back only for
  a journal of an earlier version (`legacy_given_up`, in journal.py).
- The summary: built by the runner, read back from summary.json only by results.py.
- The outputs after a run: the page and index writers called only from outputs/after.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from cleanup import exits
from cleanup.results import GAVE_UP, NOT_DONE_STATUSES, REPORT_COLUMNS, Status

PACKAGE = Path(__file__).resolve().parents[2] / "cleanup"


@cache
def _trees() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(PACKAGE.parent)): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "sandbox" not in path.parts  # the test portal speaks the protocol, not the report
    }


def _nodes(kind: type[ast.AST]) -> Iterator[tuple[str, ast.AST]]:
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, kind):
                yield name, node


def _words(node: ast.AST) -> set[str]:
    """The strings a tuple, list or set literal names: constants, and enum members
    (`Status.SKIPPED` is "skipped")."""
    out: set[str] = set()
    for element in getattr(node, "elts", []):
        if isinstance(element, ast.Constant) and isinstance(element.value, str):
            out.add(element.value)
        elif isinstance(element, ast.Attribute):
            out.add(element.attr.lower())
    return out


def _homes_of_groups(members: set[str], at_least: int) -> set[str]:
    return {
        name
        for kind in (ast.Tuple, ast.List, ast.Set)
        for name, node in _nodes(kind)
        if len(_words(node) & members) >= at_least
    }


def _modules_naming(name: str) -> set[str]:
    """Modules that define, import or use `name`."""
    found = set()
    for module, node in _nodes(ast.AST):
        named = (
            (isinstance(node, ast.Name) and node.id == name)
            or (isinstance(node, ast.alias) and node.name == name)
            or (isinstance(node, ast.Attribute) and node.attr == name)
            or (isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name)
        )
        if named:
            found.add(module)
    return found


def _modules_with_string(value: str) -> set[str]:
    """Modules with `value` as a string constant, other than a dict's key (a field's
    name: the summary's `aborted` is the reason, not the word)."""
    found = set()
    for module, tree in _trees().items():
        keys = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == value and id(node) not in keys:
                found.add(module)
    return found


def test_the_report_columns_are_listed_in_results_only() -> None:
    # Any literal naming four of the columns lists them (the input's own three, botId,
    # messageId and reaction, are the input's columns, not the report's).
    assert _homes_of_groups(set(REPORT_COLUMNS), 4) == {"cleanup/results.py"}


def test_the_reports_arrow_schema_is_built_in_results_only() -> None:
    calls = {
        name
        for name, node in _nodes(ast.Call)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "schema"
    }
    assert calls == {"cleanup/results.py"}


def test_the_words_for_how_a_run_ended_are_in_exits_only() -> None:
    for word in ("aborted", "interrupted", "unwritable", "locked"):
        assert exits.state_word(_code_of(word)) == word
        assert _modules_with_string(word) == {"cleanup/exits.py"}, word


def _code_of(word: str) -> int:
    return next(c for c in range(256) if exits.state_word(c) == word)


def test_how_a_run_ended_is_derived_in_results_only() -> None:
    # RunSummary.state is the one reader of the words: others compare with its constants.
    assert (
        _modules_naming("ENDED_ABORTED")
        - {
            "cleanup/results.py",
            "cleanup/outputs/html.py",
            "cleanup/outputs/index.py",
        }
        == set()
    )
    # Whether a report is complete: RunSummary.complete, read where inputs are archived.
    assert "cleanup/jobs/process.py" in _modules_naming("complete")


def test_the_not_done_statuses_are_one_group() -> None:
    members = {s.value for s in NOT_DONE_STATUSES}
    assert members == {Status.FAILED.value, Status.INVALID.value, Status.SKIPPED.value}
    assert _homes_of_groups(members, len(members)) == {"cleanup/results.py"}


def test_given_up_is_a_field_not_a_phrase() -> None:
    assert _modules_with_string(GAVE_UP) == {"cleanup/results.py"}
    assert _modules_naming("GAVE_UP") == {"cleanup/results.py"}
    # The phrase is read back only for a journal an earlier version wrote.
    assert _modules_naming("legacy_given_up") == {
        "cleanup/results.py",
        "cleanup/outputs/journal.py",
    }


def test_the_summary_is_built_by_the_run_and_read_back_by_its_model() -> None:
    built = {
        name
        for name, node in _nodes(ast.Call)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "RunSummary"
    }
    assert built == {"cleanup/run/runner.py"}
    assert _modules_naming("model_validate_json") == {"cleanup/results.py"}
    assert _modules_naming("read_summary") == {"cleanup/results.py", "cleanup/outputs/summary.py"}


def test_the_outputs_after_a_run_are_written_by_write_outputs_only() -> None:
    for writer in ("write_html", "write_index", "refresh_index"):
        callers = _modules_naming(writer) - {
            "cleanup/outputs/html.py",
            "cleanup/outputs/index.py",
        }
        assert callers == {"cleanup/outputs/after.py"}, writer
    users = _modules_naming("write_outputs") - {"cleanup/outputs/after.py"}
    assert users == {"cleanup/cli/run.py", "cleanup/cli/undo.py", "cleanup/jobs/process.py"}
