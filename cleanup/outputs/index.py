"""One page for all runs: `index.html` in a reports folder, newest run first.

Built from what is on disk, not from memory: every `*.summary.json` in the folder (a run
of any day, of any process), and every report that has no summary (its run stopped before
its end: a crash, a kill, a full disk). So the page is right after a crash and across runs,
and rebuilding it is idempotent. Each run shows its input, start time, exit code, counts by
status, and relative links to its report, HTML page and undo report; runs that need
attention (aborted, interrupted, unfinished, failed or skipped rows) stand out. Only the
newest `MAX_RUNS` are read, so a folder of years of runs costs one directory listing.
Self-contained like the run pages (the same base template: inline CSS, no script).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleanup.outputs.files import PARTIAL, SUMMARY, sidecar, write_atomic
from cleanup.outputs.journal import journal_path
from cleanup.outputs.summary import load_summary
from cleanup.redact import redact
from cleanup.results import (
    ENDED_ABORTED,
    ENDED_INTERRUPTED,
    RUN_STATUSES,
    RunSummary,
    Status,
    counts_by_status,
)
from cleanup.run.undo import default_undo_report
from cleanup.version import __version__

INDEX_NAME = "index.html"
GENERATOR = "reaction-cleanup index"  # marks a page this module may rebuild
UNFINISHED = "unfinished"  # the state of a run that left no summary
MAX_RUNS = 500  # runs listed; older ones are counted, not read
# Reports a run-job writes (`<time>_<input>_<sha8>.report.<fmt>`); an unfinished Parquet
# report may exist only as its `.partial.jsonl`.
_REPORT_PATTERNS = (
    "*.report.csv",
    "*.report.jsonl",
    "*.report.parquet",
    f"*.report.parquet{PARTIAL}",
)


def page_path(report: Path) -> Path:
    """A run's HTML review page beside its report: `x.report.csv` -> `x.report.html`."""
    return report.with_suffix(".html")


@dataclass
class UndoEntry:
    report: str  # file name, relative to the folder
    exit_code: int | None
    counts: dict[str, int]


@dataclass
class RunEntry:
    """One run as the index shows it."""

    report: str  # file name, relative to the folder
    input: str
    started: float  # seconds since the epoch; for a run without summary, its report's mtime
    exit_code: int | None  # None: the run has no summary (it stopped before its end)
    state: str  # how it ended (RunSummary.state), or "unfinished"
    counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    html: str | None = None
    undo: UndoEntry | None = None
    undo_of: str | None = None  # an undo whose undone report is not listed
    attention: str = ""  # why a person should look; "" when all went well
    level: str = "good"  # good, warn (rows failed), bad (the run did not finish)
    label: str = ""


def collect_runs(folder: Path, limit: int = MAX_RUNS) -> tuple[list[RunEntry], int]:
    """The newest `limit` runs in `folder`, newest first, and how many older ones there are."""
    candidates = sorted(_candidates(folder), key=lambda c: c[0], reverse=True)
    older = max(0, len(candidates) - limit)
    runs: dict[str, RunEntry] = {}
    undos: list[RunEntry] = []
    for _mtime, path, has_summary in candidates[:limit]:
        entry = _from_summary(path) if has_summary else _unfinished(path)
        if entry is None:
            continue
        if entry.undo_of is not None:
            undos.append(entry)
        else:
            runs.setdefault(entry.report, entry)
    for undo in undos:
        parent = runs.get(str(undo.undo_of))
        if parent is None:
            runs[undo.report] = undo  # the undone report is elsewhere: listed on its own
            continue
        parent.undo = UndoEntry(undo.report, undo.exit_code, undo.counts)
        if undo.attention:
            parent.attention = "; ".join(
                p for p in (parent.attention, f"undo: {undo.attention}") if p
            )
            parent.level = _worse(parent.level, undo.level)
    for run in runs.values():
        undo_report = default_undo_report(folder / run.report)
        if run.undo is None and run.undo_of is None and undo_report.exists():
            run.undo = UndoEntry(undo_report.name, None, {})  # its summary is not (yet) there
    return sorted(runs.values(), key=lambda r: r.started, reverse=True), older


def _candidates(folder: Path) -> Iterator[tuple[float, Path, bool]]:
    """(mtime, path, is a summary) for every summary, and every report without one."""
    seen: set[str] = set()
    for path in folder.glob(f"*{SUMMARY}"):
        seen.add(path.name.removesuffix(SUMMARY))
        yield _mtime(path), path, True
    for pattern in _REPORT_PATTERNS:
        for path in folder.glob(pattern):
            report = path.with_name(path.name.removesuffix(PARTIAL))
            if report.name not in seen:
                seen.add(report.name)
                yield _mtime(path), report, False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _from_summary(path: Path) -> RunEntry | None:
    s = load_summary(path)
    if s is None or s.dry_run or not s.report:
        return None  # being replaced right now, or damaged: the next rebuild reads it
    report = path.with_name(path.name.removesuffix(SUMMARY))
    entry = RunEntry(
        report=report.name,
        input=Path(s.input).name,
        started=s.started_at or _mtime(path),
        exit_code=s.exit_code,
        state=s.state,
        counts=counts_by_status(s.by_status, s.statuses),
        rows=s.rows,
        undo_of=Path(s.undo_of).name if s.undo_of else None,
        label=s.label,
    )
    entry.html = page_path(report).name if page_path(report).exists() else None
    entry.attention, entry.level = _attention(s)
    journal = journal_path(report)
    if _mtime(journal) > _mtime(path):  # a later attempt wrote to it and did not finish
        entry.attention = "unfinished: it was resumed after this summary and stopped before its end; --resume finishes it"
        entry.level = "bad"
    return entry


def _unfinished(report: Path) -> RunEntry:
    started = max(_mtime(report), _mtime(sidecar(report, PARTIAL)))
    entry = RunEntry(
        report=report.name, input="", started=started, exit_code=None, state=UNFINISHED
    )
    entry.attention = (
        "unfinished: no summary, so the run stopped before its end (a crash, a kill or a full"
        " disk); --resume (or the job's next run) finishes it"
    )
    entry.level = "bad"
    return entry


def _attention(s: RunSummary) -> tuple[str, str]:
    """Why a person should look at this run, and how urgently."""
    if s.state == ENDED_ABORTED:
        return (
            f"aborted: {s.aborted}; the rows not done were skipped, --resume sends them",
            "bad",
        )
    if s.state == ENDED_INTERRUPTED:
        return (
            f"interrupted ({s.interrupted}): the rows not done were skipped; --resume sends them",
            "bad",
        )
    if s.paused:
        return (
            f"paused: time is up ({s.paused}); {s.rows_left} row(s) left, the next run continues",
            "warn",
        )
    if skipped := s.count(Status.SKIPPED):
        return f"{skipped} row(s) skipped: --resume sends them", "bad"
    if not s.finished:
        return f"ended with exit code {s.exit_code} ({s.state})", "bad"
    if s.waits_retry:
        return (
            f"waits for a retry run: {s.waits_retry} row(s) failed for a transient reason;"
            " the next run re-sends them",
            "warn",
        )
    problems = [f"{s.count(st)} {st}" for st in (Status.FAILED, Status.INVALID) if s.count(st)]
    if problems:
        return " and ".join(problems) + " row(s): see its report", "warn"
    return "", "good"


_LEVELS = ("good", "warn", "bad")


def _worse(a: str, b: str) -> str:
    return max(a, b, key=_LEVELS.index)


# --------------------------------------------------------------------------- the page


def render_index(runs: list[RunEntry], older: int, *, title: str, folder: str) -> str:
    from cleanup.outputs.html import environment

    template = environment().get_template("index.html.j2")
    page = template.render(
        title=title,
        folder=folder,
        version=__version__,
        written=_utc(time.time()),
        runs=[_row(r) for r in runs],
        attention=sum(1 for r in runs if r.attention),
        worst=max((r.level for r in runs), key=_LEVELS.index, default="good"),
        generator=GENERATOR,
        older=older,
        statuses=[s.value for s in RUN_STATUSES],
    )
    return redact(page)


def write_index(folder: Path, *, title: str | None = None, limit: int = MAX_RUNS) -> Path:
    """Rebuild `folder/index.html` from the runs on disk, atomically."""
    runs, older = collect_runs(folder, limit)
    name = title or f"reaction-cleanup: runs in {folder.name}"
    out = folder / INDEX_NAME
    write_atomic(out, render_index(runs, older, title=name, folder=str(folder)))
    return out


def refresh_index(folder: Path) -> Path | None:
    """Rebuild `folder/index.html` if this module wrote it (a run-job's reports folder), so
    a run or an undo there shows up at once; never touches a page of someone else's."""
    out = folder / INDEX_NAME
    try:
        head = out.read_text(encoding="utf-8", errors="replace")[:2000]
    except OSError:
        return None
    if f'content="{GENERATOR}"' not in head:
        return None
    try:
        return write_index(folder, title=_title_of(head))
    except Exception as exc:  # a review page must never cost the run its result
        logging.getLogger("cleanup").error(
            "could not rebuild the index page %s: %s", out, redact(str(exc))
        )
        return None


def _title_of(head: str) -> str | None:
    start, end = head.find("<title>"), head.find("</title>")
    if start < 0 or end < start:
        return None
    return html.unescape(head[start + len("<title>") : end])


def _row(r: RunEntry) -> dict[str, Any]:
    return {
        "report": r.report,
        "input": r.input or "?",
        "when": _utc(r.started) if r.started else "?",
        "exit_code": "–" if r.exit_code is None else r.exit_code,
        "state": r.state,
        "rows": r.rows,
        "counts": r.counts,
        "html": r.html,
        "undo": r.undo,
        "undo_of": r.undo_of,
        "attention": r.attention,
        "level": r.level,
        "label": r.label,
    }


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


__all__ = [
    "INDEX_NAME",
    "MAX_RUNS",
    "RunEntry",
    "collect_runs",
    "page_path",
    "refresh_index",
    "write_index",
]
