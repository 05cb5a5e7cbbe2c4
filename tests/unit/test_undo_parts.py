"""The pieces of an undo that need no portal: row ranges (--rows), the ADD action's
verdicts, and the commands the HTML page shows."""

from __future__ import annotations

import numpy as np
import pytest

from cleanup.errors import ConfigError
from cleanup.inputs.select import RowRanges
from cleanup.inputs.validate import Row
from cleanup.outputs.commands import next_commands
from cleanup.portal.classify import Kind, Outcome
from cleanup.results import RunSummary, Status
from cleanup.run.actions import ADD, ALREADY_SET, ALREADY_SET_ON_RETRY, Doubt


def test_row_ranges_parse_merge_and_contain() -> None:
    ranges = RowRanges.parse("40-55, 12,13-14,50-60")
    assert ranges.spans == ((12, 14), (40, 60))
    assert str(ranges) == "12-14,40-60"
    rows = np.array([1, 12, 14, 15, 39, 40, 60, 61], dtype=np.int64)
    assert ranges.contains(rows).tolist() == [False, True, True, False, False, True, True, False]
    assert RowRanges.of([]).contains(rows).tolist() == [False] * len(rows)


@pytest.mark.parametrize("text", ["", "0", "5-2", "a", "3-", "1,,x"])
def test_row_ranges_refuse_what_is_not_rows(text: str) -> None:
    with pytest.raises(ConfigError, match="--rows"):
        RowRanges.parse(text)


ROW = Row(7, 456, 789, "like", ("456", "789", "like"))


@pytest.mark.parametrize(
    "outcome, doubt, verdict",
    [
        (Outcome(Kind.OK), Doubt.NONE, (Status.RESTORED, "", "")),
        (
            Outcome(Kind.ROW_FAILED, "REACTION_ALREADY_SET", "x"),
            Doubt.NONE,
            (Status.RESTORED, "", ALREADY_SET),
        ),
        (
            Outcome(Kind.ROW_FAILED, "REACTION_ALREADY_SET", "x"),
            Doubt.THIS_RUN,
            (Status.RESTORED, "", ALREADY_SET_ON_RETRY),
        ),
        # From an add, REACTION_NOT_FOUND means an unknown code, whatever came before.
        (
            Outcome(Kind.NOT_FOUND, "REACTION_NOT_FOUND", "Reaction not found"),
            Doubt.THIS_RUN,
            (Status.FAILED, "REACTION_NOT_FOUND", "Reaction not found"),
        ),
    ],
)
def test_add_verdicts(outcome: Outcome, doubt: Doubt, verdict: tuple[Status, str, str]) -> None:
    assert tuple(ADD.settle(ROW, outcome, doubt)) == verdict


def test_commands_for_an_oauth_run_name_files_not_secrets() -> None:
    summary = {
        "report": "out/march report.csv",
        "by_status": {"removed": 3, "failed": 1},
        "settings": {
            "report": "out/march report.csv",
            "auth": "oauth",
            "portal": "https://example.bitrix24.com",
            "oauth_file": "/etc/b24/oauth.json",
            "plan": "enterprise",
            "mode": "single",
        },
    }
    lines = {c.key: c.line for c in next_commands(RunSummary.model_validate(summary))}
    tail = " --portal https://example.bitrix24.com --oauth-file /etc/b24/oauth.json --plan enterprise --mode single"
    assert lines == {
        "rerun": "reaction-cleanup run 'out/march report.csv' --only failed" + tail,
        "undo": "reaction-cleanup undo 'out/march report.csv'" + tail,
    }


def test_no_commands_for_a_dry_run_or_a_clean_undo() -> None:
    dry = {"dry_run": True, "report": "r.csv", "by_status": {"failed": 1}}
    assert next_commands(RunSummary.model_validate(dry)) == []
    undo = {"report": "r.undo.csv", "undo_of": "r.csv", "by_status": {"restored": 5}}
    assert next_commands(RunSummary.model_validate(undo)) == []
