"""`reaction-cleanup run-job JOBFILE` and `check-job JOBFILE`: the scheduled unit."""

from __future__ import annotations

import functools
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cleanup.cli.common import (
    cli_errors,
    new_run_id,
    problems_one_per_line,
    stop_on_signals,
    summary_event,
)
from cleanup.cli.options import given_options, output_options
from cleanup.cli.progress import progress_for
from cleanup.cli.run import run_options
from cleanup.errors import CleanupError, problem_lines
from cleanup.exits import EXIT_OK, SEVERITY_ORDER, worst
from cleanup.logs import current_job, naming_job, set_run_id, setup_logging
from cleanup.outputs.console import job_one_line, one_line, summary_lines
from cleanup.outputs.summary import summary_fields
from cleanup.redact import redact
from cleanup.run.runner import StopSignal

if TYPE_CHECKING:
    from cleanup.jobs.many import JobRun
    from cleanup.jobs.process import FileOutcome, JobFileResult


JOB_FILES = click.argument(
    "job_files",
    metavar="JOBFILE|FOLDER...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
)


@click.command("run-job")
@JOB_FILES
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=None,
    help="Run only the N-th (0-based) job file, the folder's *.toml files sorted by name (a Kubernetes Indexed Job passes $JOB_COMPLETION_INDEX). An index past the last file exits 2.",
)
@run_options
@output_options
def run_job_command(
    job_files: tuple[Path, ...],
    index: int | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    **options: Any,
) -> None:
    """Run the job files JOBFILE... (TOML; see jobs/example.toml), or every *.toml in FOLDER.

    Each job file takes each spreadsheet it has not processed before (known by content, so a
    renamed copy is not done twice), writes a dated report, summary and HTML review page
    into its reports folder, and moves the input to the archive once its report is
    complete; an unfinished one is resumed by the next run. Several job files run at once,
    each portal under its own limits (job files for the same portal share them); an abort
    on one portal stops that job file only. Options given here override the job files.
    Nothing to do: exit 0 and no output. Otherwise the exit code is the worst of all
    (SEVERITY_ORDER); 4 also when another run of a job is still going.
    """
    from cleanup.jobs.credentials import resolve_run_options
    from cleanup.jobs.many import job_files_in, pick_index, prepare, run_job_files

    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    run_id = new_run_id()
    set_run_id(run_id)
    with cli_errors(verbose), problems_one_per_line(log_format):
        paths = [pick_index(job_files, index)] if index is not None else job_files_in(job_files)
        cli, env = given_options(options)
        runs = [prepare(path, lambda job: resolve_run_options(job, cli, env)) for path in paths]
        printer = _Printer(quiet, log_format, several=len(runs) > 1)
        stop = StopSignal()
        with stop_on_signals(stop):
            code = run_job_files(
                runs,
                run_id=run_id,
                stop=stop,
                progress=functools.partial(_progress, quiet=quiet, several=len(runs) > 1),
                on_file=printer.file,
                on_done=printer.done,
            )
        _publish_metrics(runs, cli.get("metrics_file"), cli.get("pushgateway"))
        if len(runs) > 1:
            printer.overall(runs, code)
        sys.exit(code)


# The order of exit codes is stated once, in exits.py; the help prints it from there.
run_job_command.help = (run_job_command.help or "").replace("SEVERITY_ORDER", SEVERITY_ORDER)


def _progress(requested: str, *, quiet: bool, several: bool) -> Any:
    # Bars of several job files at once would draw over each other: log lines name their job.
    if several and requested in ("auto", "bar"):
        requested = "log"
    return progress_for(requested, quiet=quiet)


def _publish_metrics(runs: list[JobRun], given: Path | None, gateway: str | None) -> None:
    from cleanup.jobs.many import figures, metrics_files
    from cleanup.outputs.metrics import publish

    files = metrics_files(runs, given)
    gateways: dict[str, list[JobRun]] = {}
    for run in runs:
        url = gateway or run.base.get("pushgateway")
        if url:
            gateways.setdefault(url, []).append(run)
    if not files and not gateways:
        return
    all_figures = [figures(run) for run in runs]
    publish(all_figures, files, None)
    for url, pushed in gateways.items():
        names = {run.name for run in pushed}
        publish([f for f in all_figures if f.job in names], {}, url)


@click.command("check-job")
@JOB_FILES
@run_options
@output_options
def check_job_command(
    job_files: tuple[Path, ...], quiet: bool, verbose: bool, log_format: str, **options: Any
) -> None:
    """Check the job files JOBFILE... (or every *.toml in FOLDER) without removing anything:
    their keys, the credentials they name (one cheap authenticated call to each portal), the
    bot tokens, and what the next run would take. Exit 0 ready; 2 a problem in a job file, a
    missing variable or file; 3 a portal rejected the credentials or could not be reached;
    with several job files, the worst of them.
    """
    from cleanup.jobs.many import job_files_in

    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    set_run_id(new_run_id())
    with cli_errors(verbose), problems_one_per_line(log_format):
        paths = job_files_in(job_files)
        cli, env = given_options(options)
        if len(paths) == 1:
            _check_one(paths[0], cli, env, quiet, log_format)
            return
        codes = []
        for path in paths:
            try:
                _check_one(path, cli, env, quiet, log_format)
                codes.append(EXIT_OK)
            except CleanupError as exc:
                _print_problems(exc, log_format, prefix=f"{path.name}: ")
                codes.append(exc.exit_code)
        sys.exit(worst(codes))


def _check_one(
    path: Path, cli: dict[str, Any], env: dict[str, Any], quiet: bool, log_format: str
) -> None:
    from cleanup.jobs.credentials import resolve_run_options
    from cleanup.jobs.probe import check_job_file
    from cleanup.jobs.schema import load_job_file

    job = load_job_file(path)
    with naming_job(job.name):
        result = check_job_file(job, resolve_run_options(job, cli, env))
        ready = f"job {job.name!r} is ready to run"
        if log_format == "json":
            # One JSON object per line here too, like every other event of the job.
            for line in result.lines:
                logging.getLogger("cleanup").info("%s", line, extra={"fields": {"event": "check"}})
            summary_event(
                ready, EXIT_OK, {"event": "check_job", "job": job.name, "exit_code": EXIT_OK}
            )
            return
        if not quiet:
            for line in result.lines:
                click.echo(line)
        click.echo(ready)


# A job file's run names each file's report itself; --report is refused there, so hide it.
for _command in (run_job_command, check_job_command):
    for _param in _command.params:
        if _param.name == "report" and isinstance(_param, click.Option):
            _param.hidden = True


class _Printer:
    """What run-job prints as each file and each job file ends. Called from the job files'
    threads: one at a time, and naming the job when several run."""

    def __init__(self, quiet: bool, fmt: str, *, several: bool) -> None:
        self.quiet, self.fmt, self.several = quiet, fmt, several
        self._lock = threading.Lock()

    def file(self, outcome: FileOutcome) -> None:
        with self._lock:
            _print_file(outcome, self.quiet, self.fmt, current_job() if self.several else None)

    def done(self, run: JobRun) -> None:
        with self._lock:
            if run.problems:
                prefix = f"{run.name}: " if self.several else ""
                _print_problems(run.problems, self.fmt, run.exit_code, prefix=prefix)
            result = run.result
            if result is not None and (result.files or result.exit_code):
                _print_job_summary(result, self.quiet, self.fmt)

    def overall(self, runs: list[JobRun], code: int) -> None:
        """The last line when several job files ran: each one's code, and the worst."""
        with self._lock:
            if self.quiet and code == EXIT_OK:
                return
            each = " ".join(f"{run.name}={run.exit_code}" for run in runs)
            line = f"SUMMARY jobs={len(runs)} exit={code} {each}"
            if self.fmt == "json":
                codes = {run.name: run.exit_code for run in runs}
                summary_event(
                    line, code, {"event": "jobs_summary", "exit_code": code, "jobs": codes}
                )
            else:
                click.echo(line, err=True)


def _print_problems(
    problems: CleanupError | list[str], fmt: str, code: int | None = None, *, prefix: str = ""
) -> None:
    """A job file's problems, one line each (as `problems_one_per_line` prints them)."""
    if isinstance(problems, CleanupError):
        code = problems.exit_code
        problems = problem_lines(problems)
    for problem in problems:
        if fmt == "json":
            logging.getLogger("cleanup").error(
                "%s", prefix + problem, extra={"fields": {"event": "error", "exit_code": code}}
            )
        else:
            click.echo(f"reaction-cleanup: error: {redact(prefix + problem)}", err=True)


def _print_file(outcome: FileOutcome, quiet: bool, fmt: str, job: str | None = None) -> None:
    """After each file of a job file's run: its summary, or why it could not be processed."""
    summary, name = outcome.summary, outcome.source.name
    if job:
        name = f"{job}: {name}"
    if outcome.error is not None:
        if fmt == "json":
            summary_event(
                f"{name}: {outcome.error}",
                outcome.exit_code,
                {"event": "file", "input": str(outcome.source), "exit_code": outcome.exit_code},
            )
        else:
            click.echo(f"reaction-cleanup: {name}: {outcome.error}", err=True)
        return
    if summary is None or (quiet and outcome.exit_code == 0):
        return
    if fmt == "json":
        fields = summary_fields(summary)
        fields.update(
            event="file",
            html=str(outcome.html) if outcome.html else None,
            archived_to=str(outcome.archived_to) if outcome.archived_to else None,
            complete=outcome.complete,
            resumed=outcome.resumed,
        )
        summary_event(f"{name}: {one_line(summary)}", outcome.exit_code, fields)
        return
    click.echo(f"== {name}{' (resumed)' if outcome.resumed else ''}", err=True)
    config = outcome.config
    for line in summary_lines(summary, config) if config is not None else [one_line(summary)]:
        if not line.startswith("SUMMARY "):  # one SUMMARY line per job file's run, at the end
            click.echo(line, err=True)
    if outcome.html:
        click.echo(f"html: {outcome.html}", err=True)
    if outcome.archived_to:
        click.echo(f"archived: {outcome.archived_to}", err=True)
    elif summary.report and not summary.dry_run and not outcome.complete:
        click.echo(f"left in place: {outcome.source} (the next run resumes it)", err=True)


def _print_job_summary(result: JobFileResult, quiet: bool, fmt: str) -> None:
    line = job_one_line(result)
    if fmt == "json":
        summary_event(
            line,
            result.exit_code,
            {
                "event": "job_summary",
                "job": result.job,
                "exit_code": result.exit_code,
                "files": len(result.files),
                "already_done": result.already_done,
                "stopped": result.stopped,
                **result.totals(),
            },
        )
    elif not (quiet and result.exit_code == 0):
        click.echo(line, err=True)
