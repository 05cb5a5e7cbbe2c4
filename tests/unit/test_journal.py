"""cleanup.outputs.journal: what --resume learns from the journal of an earlier run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanup.errors import ReportMismatchError
from cleanup.outputs.journal import (
    JOURNAL_VERSION,
    Journal,
    check_resumable,
    fingerprint,
    journal_path,
)
from cleanup.outputs.report import ReportWriter, read_report
from cleanup.results import GAVE_UP, RowResult, Settled, Status, gave_up


@pytest.fixture
def identity(tmp_path: Path) -> dict[str, object]:
    source = tmp_path / "rows.csv"
    source.write_text("botId,messageId,reaction\n1,2,like\n")
    return {"input": str(source), **fingerprint(source)}


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_new_journal_starts_with_its_format_and_the_inputs_identity(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    path = tmp_path / "r.csv.journal"
    journal = Journal(path, identity, resume=False)
    journal.sent([1, 2])
    journal.close()
    assert lines(path) == [{"version": JOURNAL_VERSION, **identity}, {"sent": [1, 2]}]


def test_fingerprint_is_the_content_not_the_name(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("x\n")
    b.write_text("x\n")
    assert fingerprint(a) == fingerprint(b) == {"sha256": fingerprint(a)["sha256"], "size": 2}
    b.write_text("y\n")
    assert fingerprint(a) != fingerprint(b)


def test_resume_reads_sent_unsent_and_final_results(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    path = tmp_path / "r.csv.journal"
    first = Journal(path, identity, resume=False)
    first.sent([1, 2, 3])
    first.sent([3, 4])  # row 3 carried twice (a retry)
    first.unsent([4])  # that request never ran
    first.unsent([3])  # the retry of row 3 never ran: the first one still may have
    first.done(
        [
            RowResult(1, "7", "11", "like", Status.REMOVED, attempts=1),
            RowResult(2, "7", "12", "like", Status.FAILED, "TIMEOUT", gave_up("timed out", " after 3"), 3, True),
            RowResult(5, "7", "15", "like", Status.SKIPPED),
        ]
    )  # fmt: skip
    first.close()
    again = Journal(path, identity, resume=True)
    again.close()
    assert again.previously_sent == {1: 1, 2: 1, 3: 1}
    # Row 2 gave up and row 5 was skipped: --resume sends them again.
    assert again.outcomes == {1: Settled(Status.REMOVED, "", "", 1)}
    assert again.to_retry == {2}
    assert lines(path)[-1] == {"resumed": True}


def test_a_record_cut_by_a_crash_is_dropped_before_appending(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    path = tmp_path / "r.csv.journal"
    Journal(path, identity, resume=False).close()
    with path.open("a") as fh:
        fh.write('{"sent": [1]}\n{"sent": [2, 3')  # killed while writing
    journal = Journal(path, identity, resume=True)
    journal.sent([9])
    journal.close()
    assert journal.previously_sent == {1: 1}
    assert lines(path)[1:] == [{"sent": [1]}, {"resumed": True}, {"sent": [9]}]


def test_an_empty_journal_is_a_fresh_start(tmp_path: Path, identity: dict[str, object]) -> None:
    path = tmp_path / "r.csv.journal"
    path.write_text("")  # the earlier run died before its first line reached the disk
    Journal(path, identity, resume=True).close()
    assert lines(path) == [{"version": JOURNAL_VERSION, **identity}]


def test_a_journal_of_another_input_is_refused(tmp_path: Path, identity: dict[str, object]) -> None:
    path = tmp_path / "r.csv.journal"
    Journal(path, {**identity, "input": "other.csv", "sha256": "0" * 64}, resume=False).close()
    with pytest.raises(
        ReportMismatchError, match=r"cannot resume r\.csv: it was made from other\.csv"
    ):
        Journal(path, identity, resume=True)


def test_a_journal_of_another_format_is_refused(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    path = tmp_path / "r.csv.journal"
    path.write_text(json.dumps({"version": 99, **identity}) + "\n" + '{"sent": [1]}\n')
    with pytest.raises(ReportMismatchError) as err:
        Journal(path, identity, resume=True)
    assert f"has format 99, and this reaction-cleanup reads format {JOURNAL_VERSION}" in str(
        err.value
    )
    assert "run without --resume to start over" in str(err.value)


def test_a_journal_without_its_header_is_refused(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    path = tmp_path / "r.csv.journal"
    path.write_text('{"sent": [1]}\n')
    with pytest.raises(ReportMismatchError, match="is damaged"):
        Journal(path, identity, resume=True)


def test_a_report_without_its_journal_cannot_be_resumed(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    check_resumable(report)  # nothing yet: a fresh start
    report.write_text("row\n")
    with pytest.raises(
        ReportMismatchError, match=r"has no journal \(\.reaction-cleanup/r\.csv\.journal\)"
    ):
        check_resumable(report)


@pytest.mark.parametrize(
    ("settled", "retried"),
    [
        (Settled(Status.SKIPPED, "", "not sent: run aborted"), True),
        (
            Settled(Status.FAILED, "TIMEOUT", gave_up("timed out", " after 3 attempts"), 3, True),
            True,
        ),
        (Settled(Status.FAILED, "CLIENT_ERROR", "bug"), True),
        (Settled(Status.FAILED, "ACCESS_DENIED", "the portal said no"), False),
        # The field decides, not the text: a portal may say anything.
        (Settled(Status.FAILED, "ACCESS_DENIED", f"no {GAVE_UP} here)"), False),
        (Settled(Status.REMOVED, "", ""), False),
        (Settled(Status.INVALID, "INVALID_BOT_ID", ""), False),
    ],
)
def test_what_resume_sends_again(settled: Settled, retried: bool) -> None:
    assert settled.retry_on_resume is retried


def test_a_journal_of_the_earlier_version_tells_given_up_rows_by_their_text(
    tmp_path: Path, identity: dict[str, object]
) -> None:
    """Its `done` entries have no given_up: the description said it."""
    report = tmp_path / "r.csv"
    writer = ReportWriter(report)
    writer.write(
        [
            RowResult(1, "7", "11", "like", Status.REMOVED, attempts=1),
            RowResult(2, "7", "12", "like", Status.FAILED, "TIMEOUT", "timed out (gave up after 3)", 3),
            RowResult(3, "7", "13", "like", Status.FAILED, "ACCESS_DENIED", "not a member", 1),
        ]
    )  # fmt: skip
    writer.close(complete=True)
    path = journal_path(report)
    path.parent.mkdir()
    done = [
        [1, "removed", "", "", 1],
        [2, "failed", "TIMEOUT", "timed out (gave up after 3)", 3],
        [3, "failed", "ACCESS_DENIED", "not a member", 1],
    ]
    path.write_text(
        json.dumps({"version": JOURNAL_VERSION, **identity})
        + "\n"
        + json.dumps({"done": done})
        + "\n"
    )
    journal = Journal(path, identity, resume=True)
    journal.close()
    assert journal.to_retry == {2}
    assert sorted(journal.outcomes) == [1, 3]
    assert sorted(read_report(report)) == [1, 3]  # from the journal beside it


def test_a_row_given_up_then_done_is_kept(tmp_path: Path, identity: dict[str, object]) -> None:
    path = tmp_path / "r.csv.journal"
    first = Journal(path, identity, resume=False)
    first.done([RowResult(2, "7", "12", "like", Status.FAILED, "TIMEOUT", "x", 3, True)])
    first.done([RowResult(2, "7", "12", "like", Status.REMOVED, attempts=1)])
    first.close()
    again = Journal(path, identity, resume=True)
    again.close()
    assert (again.to_retry, again.outcomes) == (set(), {2: Settled(Status.REMOVED, "", "", 1)})
