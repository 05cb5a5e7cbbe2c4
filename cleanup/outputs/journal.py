"""A report's journal, `.reaction-cleanup/R.journal` beside it, and what `--resume` sends again.

It holds which input the report belongs to (SHA-256 and size); before each request, the
rows it carries (fsynced before the request leaves); the rows of a request that never ran
(stopped, or refused for a limit); and each row's final result as soon as it is known,
before the report can take it in input order. After a crash, a row that was sent but has
no result may already have been removed by the portal.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

from cleanup.errors import ReportMismatchError
from cleanup.outputs.files import (
    PARTIAL,
    drop_cut_line,
    read_jsonl,
    sidecar,
    state_file,
    writing,
)
from cleanup.results import FINAL_STATUSES, RowResult, Settled, Status, legacy_given_up

# The journal's format: its first line says which one. A journal of another format is
# refused on --resume rather than misread. 2: rows are numbered by their place in the
# file, blank rows counted (format 1 did not count them: its numbers would point elsewhere).
JOURNAL_VERSION = 2


def _choice_text(choice: Any) -> str:
    """[only, only_error] as recorded in a journal, as the options that give them."""
    if not choice:
        return "no --only"
    only, only_error = choice
    parts = [
        f"--only {','.join(only)}" if only else "",
        f"--only-error {','.join(only_error)}" if only_error else "",
    ]
    return " ".join(p for p in parts if p)


def fingerprint(path: Path) -> dict[str, Any]:
    """Identifies an input by content: a renamed copy matches, an edited file does not."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "size": size}


def _settled(entry: list[Any]) -> tuple[int, Settled]:
    """A `done` entry: [row, status, error, description, attempts, given_up]. An earlier
    version wrote no given_up: its description said it (`legacy_given_up`)."""
    row, status, error, description, attempts, *rest = entry
    given_up = bool(rest[0]) if rest else legacy_given_up(str(description))
    return int(row), Settled(Status(status), str(error), str(description), int(attempts), given_up)


class Journal:
    """Records the input's identity, the rows each request carries, and final results."""

    def __init__(self, path: Path, identity: dict[str, Any], *, resume: bool) -> None:
        self.path = path
        self.identity = identity
        # From an earlier run, on --resume: row -> requests that carried it and may have
        # run; row -> its final result, and the rows whose final result --resume sends
        # again (given up, or a bug: `Settled.retry_on_resume`).
        self.previously_sent: dict[int, int] = {}
        self.outcomes: dict[int, Settled] = {}
        self.to_retry: set[int] = set()
        self._lock = threading.Lock()
        header = self._load() if resume and path.exists() else {}
        # An empty journal: the earlier run died before its first line was on disk, so
        # before it sent anything. That is a fresh start, not another input.
        if header or self.previously_sent or self.outcomes:
            self._check(header)
            with writing(path):
                drop_cut_line(path)  # else the next record would be glued to a cut one
                self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._write({"resumed": True})
        else:
            with writing(path):
                path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)
            self._write({"version": JOURNAL_VERSION, **identity})

    def _check(self, header: dict[str, Any]) -> None:
        """The earlier run's journal must be one this version reads, of this input."""
        report = self.path.name.removesuffix(".journal")
        if "sha256" not in header:
            raise ReportMismatchError(
                f"cannot resume {report}: its journal {self.path.name} is damaged (no header),"
                " so it cannot be matched to this input; run without --resume to start over"
            )
        if header.get("version") != JOURNAL_VERSION:
            raise ReportMismatchError(
                f"cannot resume {report}: its journal {self.path.name} has format"
                f" {header.get('version')!r}, and this reaction-cleanup reads format"
                f" {JOURNAL_VERSION}; resume it with the version that started it, or run"
                " without --resume to start over"
            )
        if (
            header["sha256"] != self.identity["sha256"]
            or header.get("size") != self.identity["size"]
        ):
            was = str(header.get("input") or "?")
            why = (
                f"{was} has changed since that run started"
                if was == self.identity.get("input")
                else f"it was made from {was}, whose content differs from this input"
            )
            raise ReportMismatchError(
                f"cannot resume {report}: {why}. Resuming would mix two inputs' rows; give"
                " another --report, or run without --resume to start over"
            )
        if header.get("only") != self.identity.get("only"):
            raise ReportMismatchError(
                f"cannot resume {report}: that run chose its rows with"
                f" {_choice_text(header.get('only'))}, this one with"
                f" {_choice_text(self.identity.get('only'))}; give the same --only and"
                " --only-error, or run without --resume to start over"
            )

    def _load(self) -> dict[str, Any]:
        header: dict[str, Any] = {}
        sent = self.previously_sent
        for i, record in enumerate(read_jsonl(self.path)):
            try:
                if i == 0 and "sha256" in record:
                    header = record
                elif "sent" in record:
                    for r in record["sent"]:
                        sent[int(r)] = sent.get(int(r), 0) + 1
                elif "unsent" in record:
                    for r in record["unsent"]:
                        if sent.get(int(r), 0) > 1:
                            sent[int(r)] -= 1
                        else:
                            sent.pop(int(r), None)
                elif "done" in record:
                    for entry in record["done"]:
                        self._settle(*_settled(entry))
            except (TypeError, ValueError):
                continue  # a damaged record: the rows it named are simply re-sent
        return header

    def _settle(self, row: int, settled: Settled) -> None:
        if settled.retry_on_resume:
            self.outcomes.pop(row, None)
            self.to_retry.add(row)
        else:
            self.outcomes[row] = settled
            self.to_retry.discard(row)

    def _write(self, record: dict[str, Any]) -> None:
        """Durable before it returns. A write the disk refuses raises OutputError: a `sent`
        record that is not on disk must stop its request from leaving. Unbuffered, so a
        refused record is not written later by a flush, after its request never left."""
        data = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        with writing(self.path):
            while data:
                data = data[os.write(self._fd, data) :]
            os.fsync(self._fd)

    def sent(self, rows: Iterable[int]) -> None:
        """Durable before the request goes out: after a crash, these rows may be done."""
        with self._lock:
            self._write({"sent": list(rows)})

    def unsent(self, rows: Iterable[int]) -> None:
        """The last request that carried these rows never ran (stopped, or refused unrun)."""
        rows = list(rows)
        if rows:
            with self._lock:
                self._write({"unsent": rows})

    def done(self, results: Iterable[RowResult]) -> None:
        """Final results as soon as they are known: the report holds them back until the
        rows before them are done, and a crash must not turn them back into guesses."""
        records = [[r.row, *r.settled] for r in results if r.status in FINAL_STATUSES]
        if records:
            with self._lock:
                self._write({"done": records})

    def close(self) -> None:
        with self._lock, suppress(OSError):
            # Every record was fsynced when written; one the disk refused was reported then,
            # and its stray bytes are a cut line that readers skip.
            os.close(self._fd)


def rows_to_retry(report: Path) -> set[int]:
    """The rows of `report` whose final result its journal says --resume sends again (a
    row the run gave up on), read without opening the journal for writing."""
    path = journal_path(report)
    rows: set[int] = set()
    if not path.exists():
        return rows
    for record in read_jsonl(path):
        for entry in record.get("done") or ():
            try:
                row, settled = _settled(entry)
            except (TypeError, ValueError):
                continue
            if settled.retry_on_resume:
                rows.add(row)
            else:
                rows.discard(row)
    return rows


def journal_path(report: Path) -> Path:
    """`reports/.reaction-cleanup/R.journal`: kept after the run, out of sight (a finished
    report resumed sends nothing, and is still matched to its input by it)."""
    return state_file(report, ".journal")


def find_journal(report: Path) -> Path:
    """The report's journal for --resume. One an older version left beside the report
    (`R.journal`) is moved into the state folder first, so its run is resumed all the same."""
    journal = journal_path(report)
    legacy = sidecar(report, ".journal")
    if not journal.exists() and legacy.exists():
        journal.parent.mkdir(parents=True, exist_ok=True)
        legacy.replace(journal)
    return journal


def check_resumable(report: Path) -> None:
    """A report without its journal cannot be matched to an input: refuse to resume it."""
    journal = find_journal(report)
    has_report = report.exists() or sidecar(report, PARTIAL).exists()
    if has_report and not journal.exists():
        where = journal.relative_to(report.parent)
        raise ReportMismatchError(
            f"{report} has no journal ({where}), so it cannot be matched to this input;"
            " run without --resume to start over"
        )


__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "check_resumable",
    "find_journal",
    "fingerprint",
    "journal_path",
    "rows_to_retry",
]
