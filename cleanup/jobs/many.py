"""Several job files in one `run-job`: each in a thread of its own, each portal paced once.

A portal's speed is bounded by its limits, not by this machine, so one process serves many
portals: the job files run at once, and two portals take about as long as the slower one.
Job files for the same portal share that portal's one bucket and operating-time budget
(`cleanup.run.portals`). Each job file has its own stop: an abort (credentials refused,
portal unreachable) ends that job file's run only, while a signal stops them all. A job file
that cannot start (bad keys, missing secret, another run holding its lock) is reported and
the others run.

`--index N` picks one job file instead (a Kubernetes Indexed Job's $JOB_COMPLETION_INDEX).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cleanup.errors import CleanupError, ConfigError, problem_lines
from cleanup.exits import EXIT_INTERNAL, EXIT_USAGE, worst
from cleanup.jobs.process import FileOutcome, JobFileResult, run_job_file
from cleanup.jobs.schema import JobFile, load_job_file
from cleanup.logs import naming_job
from cleanup.outputs.metrics import JobFigures, notification_failures
from cleanup.redact import redact
from cleanup.results import Status
from cleanup.run.portals import PortalPacings
from cleanup.run.progress import ProgressFactory
from cleanup.run.runner import StopSignal

log = logging.getLogger("cleanup")


def job_files_in(paths: Sequence[Path]) -> list[Path]:
    """The job files the arguments name, in order: a file as given; a folder's `*.toml`
    files sorted by name, hidden ones left out (a mounted ConfigMap has `..data` and
    `..<timestamp>` entries beside the keys). Raises ConfigError for a missing path or an
    empty folder."""
    out: list[Path] = []
    problems = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                (p for p in path.glob("*.toml") if not p.name.startswith(".") and p.is_file()),
                key=lambda p: p.name,
            )
            if not found:
                problems.append(f"{path} holds no job file (*.toml)")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            problems.append(f"job file {path} does not exist")
    if problems:
        raise ConfigError(problems)
    return out


def pick_index(paths: Sequence[Path], index: int) -> Path:
    """The `index`-th (0-based) job file of `job_files_in(paths)`."""
    files = job_files_in(paths)
    if not 0 <= index < len(files):
        where = ", ".join(str(p) for p in paths)
        raise ConfigError(
            f"--index {index}: {where} has {len(files)} job file(s), so the index must be "
            f"0 to {len(files) - 1}; set completions (or the number of indexes) to the "
            "number of job files"
        )
    return files[index]


@dataclass(eq=False)
class JobRun:
    """One job file's part of a `run-job`: what it ran with and how it ended."""

    path: Path
    job: JobFile | None = None
    base: dict[str, Any] = field(default_factory=dict)  # its runs' RunConfig fields
    result: JobFileResult | None = None
    problems: list[str] = field(default_factory=list)  # why it could not run (or crashed)
    error_code: int | None = None
    started_at: float = 0.0
    elapsed_s: float = 0.0

    @property
    def name(self) -> str:
        return self.job.name if self.job is not None else self.path.stem

    @property
    def exit_code(self) -> int:
        codes = [self.result.exit_code] if self.result is not None else []
        if self.error_code is not None:
            codes.append(self.error_code)
        return worst(codes)


def prepare(path: Path, resolve: Callable[[JobFile], dict[str, Any]]) -> JobRun:
    """Load a job file and its run options (`resolve`); a problem is kept in the JobRun, so
    that the other job files still run."""
    run = JobRun(path)
    try:
        run.job = load_job_file(path)
        run.base = resolve(run.job)
    except CleanupError as exc:
        run.problems = problem_lines(exc)
        run.error_code = exc.exit_code
    return run


def run_job_files(
    runs: Sequence[JobRun],
    *,
    run_id: str,
    stop: StopSignal,
    progress: ProgressFactory | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    on_done: Callable[[JobRun], None] | None = None,
    now: Callable[[], float] = time.time,
) -> int:
    """Run every prepared job file at once; the worst exit code of all.

    `on_file` and `on_done` are called from the job files' threads (the caller serialises
    its output); a job file that could not be prepared is only passed to `on_done`.
    """
    pacings = PortalPacings(stop.event)
    ready = [r for r in runs if r.job is not None and r.error_code is None]
    for run in ready:
        pacings.expect(run.base)
    for run in runs:
        if run not in ready:
            run.started_at = now()
            if run.error_code is None:  # pragma: no cover - prepare() sets one
                run.error_code = EXIT_USAGE
            if on_done is not None:
                on_done(run)
    work = partial(
        _run_one,
        run_id=run_id,
        stop=stop,
        progress=progress,
        on_file=on_file,
        on_done=on_done,
        now=now,
        pacings=pacings,
    )
    if len(runs) == 1 and ready:
        work(ready[0])  # one job file: in this thread, as it always ran
        return ready[0].exit_code
    threads = [
        threading.Thread(target=work, args=(run,), name=f"job-{run.name}", daemon=True)
        for run in ready
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A short timeout: the main thread stays free to take Ctrl-C/SIGTERM.
        while thread.is_alive():
            thread.join(0.2)
    return worst(run.exit_code for run in runs)


def _run_one(
    run: JobRun,
    *,
    run_id: str,
    stop: StopSignal,
    progress: ProgressFactory | None,
    on_file: Callable[[FileOutcome], None] | None,
    on_done: Callable[[JobRun], None] | None,
    now: Callable[[], float],
    pacings: PortalPacings,
) -> None:
    """One job file's run, in its thread; its failure is kept in `run`, never raised."""
    if run.job is None:  # a job file that did not load: its problems are in `run` already
        return
    run.started_at, t0 = now(), time.monotonic()
    with naming_job(run.job.name):
        try:
            run.result = run_job_file(
                run.job,
                run.base,
                run_id=run_id,
                stop=stop.child(),
                progress=progress,
                on_file=on_file,
                now=now,
                pacings=pacings,
            )
        except CleanupError as exc:
            run.problems, run.error_code = problem_lines(exc), exc.exit_code
        except Exception as exc:  # a bug in one job file's run must not take the others
            log.debug("%s", redact("".join(traceback.format_exception(exc))))
            run.problems = problem_lines(exc)
            run.error_code = EXIT_INTERNAL
        run.elapsed_s = time.monotonic() - t0
        if on_done is not None:
            on_done(run)


def figures(run: JobRun) -> JobFigures:
    """A job file's part of the run, as its metrics show it."""
    rows: dict[str, int] = {}
    requests = refusals = notices = 0
    if run.result is not None:
        totals = run.result.totals()
        rows = {s.value: totals[s.value] for s in Status}
        for outcome in run.result.files:
            if outcome.summary is not None:
                requests += outcome.summary.requests
                refusals += outcome.summary.limit_refusals
                notices += notification_failures(outcome.summary)
    return JobFigures(
        job=run.name,
        exit_code=run.exit_code,
        ended_at=run.started_at + run.elapsed_s,
        duration_s=run.elapsed_s,
        rows=rows,
        requests=requests,
        limit_refusals=refusals,
        notification_failures=notices,
    )


def metrics_files(runs: Sequence[JobRun], given: Path | None) -> dict[Path, list[str]]:
    """{metrics file: the jobs whose lines go into it}: each job file's `metrics_file` (or
    the command line's, which wins), one file for the jobs that name the same one."""
    out: dict[Path, list[str]] = {}
    for run in runs:
        path = run.base.get("metrics_file") or given
        if path is not None:
            out.setdefault(Path(path).resolve(), []).append(run.name)
    return out
