"""A job file's run: each new (or unfinished) input file processed once, then archived.

`run_job_file()` processes every spreadsheet it has not processed before. A file is known
by its content (SHA-256), so a renamed copy is not done twice and an edited file is done
again. Each file gets a dated report in the reports folder; the input moves to the
archive only once its report is complete. A file whose run stopped early (abort, signal,
crash) stays where it is and the next run resumes its report. The state file in the
reports folder remembers which contents were processed, and a lock there keeps two
scheduled runs of the same job file from taking the inbox together.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cleanup.errors import CleanupError, InputError, LockedError, ReportMismatchError
from cleanup.exits import (
    EXIT_ABORTED,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_USAGE,
    TIME_UP,
    ends_a_job_run,
    signal_exit_code,
    state_word,
    worst,
)
from cleanup.inputs.formats import split_input_suffix
from cleanup.jobs.inbox import NOTHING_TO_DO, html_path, list_sources, report_name
from cleanup.jobs.schema import JobFile
from cleanup.jobs.state import JobState
from cleanup.outputs.after import write_index_page, write_outputs
from cleanup.outputs.files import writing
from cleanup.outputs.journal import fingerprint
from cleanup.outputs.report import transient_failures
from cleanup.outputs.summary import summary_path, write_summary
from cleanup.redact import redact
from cleanup.results import RunSummary, Status, counts_by_status
from cleanup.run.bounds import NO_BOUND, TimeBound, Window, time_bound
from cleanup.run.config import RunConfig
from cleanup.run.portals import PortalPacings
from cleanup.run.progress import ProgressFactory
from cleanup.run.runner import StopSignal, run_file

log = logging.getLogger("cleanup")

RETRY = "retry"  # a file's state: its report is complete, and a retry run is to come
RETRY_RUNS: int = RunConfig.model_fields["retry_runs"].default


@dataclass
class FileOutcome:
    """What happened to one input file in a job file's run."""

    source: Path
    sha256: str
    exit_code: int
    report: Path | None = None
    summary: RunSummary | None = None
    config: RunConfig | None = None
    resumed: bool = False
    complete: bool = False
    archived_to: Path | None = None
    html: Path | None = None
    error: str | None = None  # the file could not be processed at all
    stops_job: bool = False  # a problem every later file would hit too
    retry_run: int = 0  # this was the file's retry run number N (0: its first run or a resume)
    # Rows that failed for a transient reason and that the next run sends again (the file
    # waits in the inbox for that retry run); 0: the file does not wait for one.
    waits_retry: int = 0


@dataclass
class JobFileResult:
    job: str
    run_id: str
    files: list[FileOutcome] = field(default_factory=list)
    already_done: int = 0  # known contents found again (renamed copies, unarchived inputs)
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the loop ended early
    started_at: float = 0.0  # unix time
    elapsed_s: float = 0.0

    @property
    def waiting_retry(self) -> list[FileOutcome]:
        """The files that stay in the inbox for a retry run of their transient failures."""
        return [f for f in self.files if f.waits_retry]

    @property
    def exit_code(self) -> int:
        codes = [f.exit_code for f in self.files]
        # A signal between files (or while waiting for one) still ends the run as interrupted:
        # the files not reached wait for the next run.
        stopped = signal_exit_code(self.stopped)
        if stopped is not None:
            codes.append(stopped)
        if self.stopped == TIME_UP:  # paused: the files not reached wait for the next run
            codes.append(EXIT_PAUSED)
        return worst(codes)

    def totals(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        out["rows"] = 0
        for f in self.files:
            if f.summary is not None:
                out["rows"] += f.summary.rows
                for s in Status:
                    out[s.value] += f.summary.by_status.get(s.value, 0)
        return out


@dataclass
class _Context:
    """What every file of one job file's run shares."""

    job: JobFile
    base: dict[str, Any]
    state: JobState
    run_id: str
    stop: StopSignal
    progress: ProgressFactory | None  # the display for a run's --progress
    now: Callable[[], float]
    dry: bool
    pacings: PortalPacings | None  # the portals' buckets, when job files run together
    bound: TimeBound = NO_BOUND  # the job file's run's time bound, from `started`
    started: float = 0.0  # time.monotonic() when the job file's run started

    def time_left(self) -> TimeBound:
        """The bound with what is left of it now (seconds <= 0: time is up)."""
        return replace(self.bound, seconds=self.bound.seconds - (time.monotonic() - self.started))


def run_job_file(
    job: JobFile,
    base: dict[str, Any],
    *,
    run_id: str,
    stop: StopSignal | None = None,
    progress: ProgressFactory | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    now: Callable[[], float] = time.time,
    pacings: PortalPacings | None = None,
) -> JobFileResult:
    """Process every new (or unfinished) input of `job`. `base` comes from
    `resolve_run_options()`; `pacings` shares each portal's bucket among job files run
    together (`cleanup.jobs.many`).

    Raises LockedError when another run of this job file holds its lock; per-file problems
    end up in the returned FileOutcomes. An abort (credentials, unreachable portal) or a
    signal ends the loop: the files not reached wait for the next run.
    """
    stop = stop or StopSignal()
    dry = bool(base.get("dry_run"))
    started, t0 = now(), time.monotonic()
    window = Window.parse(base["window"], base.get("timezone")) if base.get("window") else None
    moment = datetime.fromtimestamp(started, tz=UTC)
    if window is not None and not window.state(moment)[0]:
        return _outside_window(job, run_id, window, moment)
    bound = time_bound(base.get("max_duration"), window, moment) or NO_BOUND
    lock = None if dry else _lock(job)
    try:
        state = JobState(job.state_path)
        ctx = _Context(job, base, state, run_id, stop, progress, now, dry, pacings, bound, t0)
        result = _run_sources(ctx, on_file)
    finally:
        if lock is not None:
            lock.release()
    result.started_at, result.elapsed_s = started, time.monotonic() - t0
    return result


def _outside_window(job: JobFile, run_id: str, window: Window, now: datetime) -> JobFileResult:
    """A run started outside the job file's window does nothing (exit 0), saying when the
    window opens."""
    opens = window.state(now)[1]
    wait = opens.timestamp() - now.timestamp()
    note = (
        f"outside its window {window.describe()}: nothing sent; the window opens at "
        f"{opens:%Y-%m-%d %H:%M %Z} (in {wait / 3600:.1f} h)"
    )
    log.info("%s: %s", job.name, note)
    result = JobFileResult(job.name, run_id, notes=[note])
    result.started_at = now.timestamp()
    return result


def _lock(job: JobFile) -> FileLock:
    lock = FileLock(str(job.lock_path), timeout=0)
    try:
        with writing(job.lock_path):  # a read-only or full reports folder: exit 5
            job.lock_path.parent.mkdir(parents=True, exist_ok=True)  # the reports folder too
            lock.acquire()
    except Timeout:
        raise LockedError(
            f"another run of job {job.name!r} is still working (lock {job.lock_path}); "
            "this run leaves the inputs to it"
        ) from None
    return lock


def _run_sources(ctx: _Context, on_file: Callable[[FileOutcome], None] | None) -> JobFileResult:
    result = JobFileResult(ctx.job.name, ctx.run_id)
    sources, notes = list_sources(
        ctx.job, now=ctx.now(), settle=lambda seconds: not ctx.stop.event.wait(seconds)
    )
    result.notes.extend(notes)
    _log_notes(notes)
    if ctx.stop.is_set:
        result.stopped = ctx.stop.reason
    for source in sources:
        if ctx.stop.is_set:
            result.stopped = ctx.stop.reason
            break
        if ctx.time_left().seconds <= 0:
            log.info("time is up (%s): the files left wait for the next run", ctx.bound.why)
            result.stopped = TIME_UP
            break
        try:
            sha = fingerprint(source.path)["sha256"]
        except FileNotFoundError:
            continue
        entry = ctx.state.files.get(sha)
        if entry is not None and entry.get("status") == "done":
            result.already_done += 1
            _already_done(ctx.job, source.path, entry, ctx.dry)
            if not ctx.dry:
                ctx.state.save()
            continue
        outcome = _process(ctx, source.path, sha)
        result.files.append(outcome)
        if not ctx.dry and ctx.job.html and outcome.summary is None:
            # A run that ended without a summary: the index shows it unfinished.
            write_index_page(ctx.job.reports, _index_title(ctx.job))
        if on_file is not None:
            on_file(outcome)
        if outcome.stops_job or ends_a_job_run(outcome.exit_code):
            aborted = outcome.exit_code == EXIT_ABORTED
            result.stopped = state_word(EXIT_ABORTED) if aborted else ctx.stop.reason or "error"
            break
    return result


def _log_notes(notes: list[str]) -> None:
    for note in notes:
        if note.startswith("ignoring"):
            log.warning("%s", note)
        elif note.endswith(NOTHING_TO_DO):
            # The named input was archived by an earlier run, or has not come yet: a run
            # that finds nothing prints nothing (check-job still says it).
            log.debug("%s", note)
        else:
            log.info("%s", note)


def _already_done(job: JobFile, path: Path, entry: dict[str, Any], dry: bool) -> None:
    """A content this job file processed before: a renamed copy, or an input left in place."""
    if job.archive is None or dry:
        log.debug("skipping %s: already processed (report %s)", path, entry.get("report"))
        return
    target = _archive(path, job.archive)
    log.info(
        "%s was already processed on %s (report %s); moved it to %s",
        path.name,
        entry.get("finished", "?"),
        entry.get("report", "?"),
        target,
    )


def _process(ctx: _Context, path: Path, sha: str) -> FileOutcome:
    """Run one input file into its report; archive it if the report is complete."""
    job, state = ctx.job, ctx.state
    entry = state.files.get(sha) or {}
    resumed = entry.get("status") in ("running", RETRY) and bool(entry.get("report"))
    retry = _retry_of(ctx, entry) if entry.get("status") == RETRY else None
    report = _take(ctx, path, sha, resumed, retry)
    outcome = FileOutcome(path, sha, EXIT_OK, report=None if ctx.dry else report, resumed=resumed)
    again = {} if retry is None else {"redo_rows": retry[1], "retry_run": retry[0]}
    # A dry run of a job writes no report (given one, a dry run writes the rows it would
    # send there, and this path may be an unfinished run's report).
    config = RunConfig(
        input=path,
        report=None if ctx.dry else report,
        resume=resumed,
        run_id=ctx.run_id,
        label=job.name,
        **ctx.base,
        **again,
    )
    outcome.config, outcome.retry_run = config, config.retry_run
    try:
        on_progress = ctx.progress(config.progress) if ctx.progress else None
        pacing = ctx.pacings.for_config(config) if ctx.pacings else None
        summary = run_file(
            config, stop=ctx.stop, on_progress=on_progress, pacing=pacing, bound=ctx.time_left()
        )
    except CleanupError as exc:
        outcome.exit_code, outcome.error = exc.exit_code, redact(exc)
        # An unreadable file or a busy report concerns this file only; a configuration
        # problem would hit every file alike.
        outcome.stops_job = not isinstance(exc, (InputError, ReportMismatchError, LockedError))
        log.error("%s: %s", path.name, redact(exc))
        if not ctx.dry and not resumed and not report.exists():
            state.files.pop(sha, None)  # nothing was written: the next run starts it afresh
            state.save()
        return outcome
    outcome.summary = summary
    outcome.exit_code = summary.exit_code
    if not ctx.dry:
        _finish(ctx, outcome, summary, config)
    return outcome


def _retry_of(ctx: _Context, entry: dict[str, Any]) -> tuple[int, frozenset[int]]:
    """A file waiting for a retry run: its number, and the rows that failed transiently."""
    report = ctx.job.reports / str(entry["report"])
    return int(entry.get("retry_runs", 0)) + 1, frozenset(transient_failures(report))


def _take(
    ctx: _Context,
    path: Path,
    sha: str,
    resumed: bool,
    retry: tuple[int, frozenset[int]] | None = None,
) -> Path:
    """The file's report path, noted in the state file before anything is sent."""
    entry = ctx.state.files.get(sha)
    started = ctx.now()
    if resumed and entry is not None:
        report = ctx.job.reports / str(entry["report"])
        if retry is not None:
            log.info(
                "%s: retry run %d of %d: re-sending its %d row(s) that failed for a transient"
                " reason (report %s)",
                path.name,
                retry[0],
                int(ctx.base.get("retry_runs", RETRY_RUNS)),
                len(retry[1]),
                report.name,
            )
        else:
            log.info(
                "resuming %s (sha256 %s…): its report %s is unfinished",
                path.name,
                sha[:8],
                report.name,
            )
    else:
        report = ctx.job.reports / report_name(path, sha, started, ctx.job.report_format)
        log.info("processing %s (sha256 %s…) -> %s", path.name, sha[:8], report.name)
    if ctx.dry:
        return report
    new_entry = dict(entry or {})
    new_entry.update(
        status="running",
        input=path.name,
        report=report.name,
        started=new_entry.get("started") or _iso(started),
        size=path.stat().st_size,
    )
    if retry is not None:
        new_entry["retry_runs"] = retry[0]
    ctx.state.files[sha] = new_entry
    ctx.state.save()  # before anything is sent: a crash now still resumes this report
    return report


def _finish(ctx: _Context, outcome: FileOutcome, summary: RunSummary, config: RunConfig) -> None:
    """After a run: the HTML and index pages, the state, and the move to the archive if
    its report is complete."""
    job, path, sha = ctx.job, outcome.source, outcome.sha256
    outcome.complete = summary.complete
    entry = ctx.state.files[sha]
    if outcome.complete:
        summary = _check_retry(outcome, entry, summary, config)
    # One chat message per file, as soon as its report and page are written: each file has
    # its own page to attach and its own re-run command. Paced by the portal's shared bucket
    # unless the run was stopped (that bucket sends no more: the message gets its own).
    pacing = None if ctx.stop.is_set or ctx.pacings is None else ctx.pacings.for_config(config)
    written = write_outputs(
        summary,
        config,
        html=html_path(Path(str(summary.report))) if job.html else None,
        context=_page_context(job, summary, path, sha),
        index_title=_index_title(job) if job.html else None,
        metrics=False,  # a job file's run publishes its files' figures together
        on_error="log",
        pacing=pacing,
    )
    outcome.html, outcome.summary = written.page, written.summary
    entry.update(exit_code=summary.exit_code, counts=_counts(summary), run_id=ctx.run_id)
    if not outcome.complete:
        ctx.state.save()
        log.warning(
            "%s: its report is not complete (%s); the next run resumes it",
            path.name,
            summary.aborted or summary.interrupted or summary.paused or "rows left unsent",
        )
        return
    if outcome.waits_retry:
        entry.update(status=RETRY, retry_rows=outcome.waits_retry)
        ctx.state.save()
        return
    entry.update(status="done", finished=_iso(ctx.now()))
    entry.pop("retry_rows", None)
    ctx.state.save()  # done first: if the move below fails, the next run only finishes the move
    if job.archive is None:
        return
    try:
        outcome.archived_to = _archive(path, job.archive)
    except OSError as exc:
        log.error(
            "%s: could not move it to the archive %s (%s)", path.name, job.archive, exc.strerror
        )
        outcome.exit_code = worst([outcome.exit_code, EXIT_USAGE])
    else:
        entry["archived_to"] = str(outcome.archived_to)
        ctx.state.save()


def _check_retry(
    outcome: FileOutcome, entry: dict[str, Any], summary: RunSummary, config: RunConfig
) -> RunSummary:
    """A complete report with rows that failed for a transient reason: the file stays in
    the inbox for the next run to re-send them, up to `retry_runs` times. Said in the
    summary (rewritten: the one returned) and the log."""
    if outcome.report is None:  # a dry run
        return summary
    done = int(entry.get("retry_runs", 0))
    rows = transient_failures(outcome.report)
    name = outcome.source.name
    if rows and done < config.retry_runs:
        outcome.waits_retry = len(rows)
        summary = summary.model_copy(update={"waits_retry": len(rows)})
        outcome.summary = summary
        write_summary(outcome.report, summary)
        log.warning(
            "%s: %d row(s) failed for a transient reason; it stays in the inbox and the next"
            " run re-sends them (retry run %d of %d)",
            name,
            len(rows),
            done + 1,
            config.retry_runs,
        )
    elif rows:
        log.warning(
            "%s: %d row(s) failed for a transient reason after %d retry run(s); archiving it"
            " with what is left (retry_runs = %d)",
            name,
            len(rows),
            done,
            config.retry_runs,
        )
    return summary


def _index_title(job: JobFile) -> str:
    return f"reaction-cleanup: {job.name}"


def _page_context(job: JobFile, summary: RunSummary, source: Path, sha: str) -> dict[str, str]:
    """What the review page of a job file's run says about where the run came from."""
    report = Path(str(summary.report))
    return {
        "job": job.name,
        "job file": str(job.path),
        "input file": source.name,
        "input sha256": sha,
        "report file": report.name,
        "summary file": summary_path(report).name,
    }


def _archive(path: Path, archive: Path) -> Path:
    """Move `path` into `archive`, never overwriting: a clash gets the content's hash."""
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / path.name
    if target.exists():
        sha8 = fingerprint(path)["sha256"][:8]
        stem, ext = split_input_suffix(path.name)
        target = archive / f"{stem}_{sha8}{ext}"
        n = 2
        while target.exists():
            target = archive / f"{stem}_{sha8}_{n}{ext}"
            n += 1
    shutil.move(str(path), str(target))
    return target


def _counts(summary: RunSummary) -> dict[str, int]:
    return counts_by_status(summary.by_status, tuple(Status))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
