"""Exit codes: one module owns them, the signal mapping and how an outcome maps to a code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cleanup import exits
from cleanup.results import RunSummary, concluded

PACKAGE = Path(exits.__file__).parent


def test_worst_exit_code_order() -> None:
    assert exits.worst([]) == 0
    assert exits.worst([0, 1, 0]) == 1
    assert exits.worst([1, 4]) == 4
    assert exits.worst([4, 2, 1]) == 2
    assert exits.worst([2, 3, 1]) == 3
    assert exits.worst([3, 70, 2]) == 70
    assert exits.worst([3, 5, 2]) == 5  # an unwritable output stops every later file too
    assert exits.worst([5, 70]) == 70
    assert exits.ends_a_job_run(exits.EXIT_OUTPUT)
    assert exits.worst([3, 143, 70]) == 143


@pytest.mark.parametrize(
    ("stopped_by", "aborted_code", "not_done", "code"),
    [
        (None, None, 0, 0),
        (None, None, 3, 1),
        (None, 3, 3, 3),
        (None, 2, 0, 2),
        ("SIGINT", None, 3, 130),
        ("SIGTERM", 3, 3, 143),  # the user asked it to stop: that wins over an abort
        ("aborted", None, 0, 0),  # a stop that is no signal changes nothing
    ],
)
def test_a_runs_code(
    stopped_by: str | None, aborted_code: int | None, not_done: int, code: int
) -> None:
    assert (
        exits.run_exit_code(
            stopped_by=stopped_by, aborted_code=aborted_code, rows_not_done=not_done
        )
        == code
    )


def test_a_run_concludes_with_the_code_and_the_signal() -> None:
    assert concluded(stopped_by=None, aborted_code=None, rows_not_done=0) == (None, 0)
    assert concluded(stopped_by="SIGTERM", aborted_code=None, rows_not_done=2) == (
        "SIGTERM",
        143,
    )
    assert concluded(stopped_by="abort", aborted_code=3, rows_not_done=2) == (None, 3)


def test_the_summary_says_how_the_run_ended() -> None:
    def summary(**fields: object) -> RunSummary:
        return RunSummary.model_validate({"report": "r.csv", **fields})

    done = {"removed": 5, "duplicate": 1}
    assert summary(by_status=done).state == "ok"
    assert summary(by_status=done).complete
    assert summary(by_status={"failed": 1}, exit_code=1).state == "failed"
    # failed_rows_exit_code = 0: the code is 0, the run still failed rows
    assert summary(by_status={"failed": 1}, exit_code=0).state == "failed"
    stopped = summary(by_status={"skipped": 2}, interrupted="SIGTERM", exit_code=143)
    assert (stopped.state, stopped.complete) == ("interrupted", False)
    aborted = summary(by_status={"skipped": 2}, aborted="ACCESS_DENIED", exit_code=2)
    assert (aborted.state, aborted.complete) == ("aborted", False)
    assert not summary(by_status={"skipped": 1}, exit_code=1).complete


def test_state_words() -> None:
    assert [exits.state_word(c) for c in (0, 1, 2, 3, 4, 5, 70, 130, 143, 99)] == [
        "ok",
        "failed",
        "error",
        "aborted",
        "locked",
        "unwritable",
        "error",
        "interrupted",
        "interrupted",
        "error",
    ]


def test_no_exit_code_is_a_bare_number_outside_exits() -> None:
    """`sys.exit(130)`, `exit_code = 4`, `code in (130, 143)`: only exits.py may say these."""
    codes = {1, 2, 3, 4, 5, 70, 130, 143}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "exits.py" or "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("exit", "_exit"):
                args = [c for a in node.args for c in ast.walk(a) if isinstance(c, ast.Constant)]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                named = any(
                    getattr(t, "attr", getattr(t, "id", "")) == "exit_code" for t in targets
                )
                walked = ast.walk(node.value) if named else iter(())
                args = [c for c in walked if isinstance(c, ast.Constant)]
            elif isinstance(node, ast.Compare):
                args = [
                    c
                    for comp in node.comparators
                    for c in ast.walk(comp)
                    if isinstance(c, ast.Constant) and c.value in (70, 130, 143)
                ]
            else:
                continue
            found += [f"{path.name}:{a.lineno}" for a in args if a.value in codes]
    assert found == []
