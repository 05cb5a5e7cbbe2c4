"""`reaction-cleanup run-job JOBFILE` and `check-job JOBFILE`: the scheduled unit."""

from __future__ import annotations

import functools
import logging
import sys
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
from cleanup.exits import EXIT_OK
from cleanup.logs import set_run_id, setup_logging
from cleanup.outputs.console import job_one_line, one_line, summary_lines
from cleanup.outputs.summary import summary_fields
from cleanup.run.runner import StopSignal

if TYPE_CHECKING:
    from cleanup.jobs.process import FileOutcome, JobFileResult


@click.command("run-job")
@click.argument("job_file", metavar="JOBFILE", type=click.Path(path_type=Path, dir_okay=False))
@run_options
@output_options
def run_job_command(
    job_file: Path, quiet: bool, verbose: bool, log_format: str, **options: Any
) -> None:
    """Run the job file JOBFILE (TOML; see jobs/example.toml).

    Takes each spreadsheet the job has not processed before (known by content, so a
    renamed copy is not done twice), writes a dated report, summary and HTML review page
    into the job's reports folder, and moves the input to the archive once its report is
    complete; an unfinished one is resumed by the next run. Options given here override
    the job file. Nothing to do: exit 0 and no output. Otherwise the exit code is the worst
    of the files' (130/143 > 70 > 5 > 3 > 2 > 4 > 1 > 0); 4 also when another run of the job
    is still going.
    """
    from cleanup.jobs.credentials import resolve_run_options
    from cleanup.jobs.process import run_job_file
    from cleanup.jobs.schema import load_job_file

    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    run_id = new_run_id()
    set_run_id(run_id)
    with cli_errors(verbose), problems_one_per_line(log_format):
        job = load_job_file(job_file)
        cli, env = given_options(options)
        base = resolve_run_options(job, cli, env)
        stop = StopSignal()

        def on_file(outcome: FileOutcome) -> None:
            _print_file(outcome, quiet, log_format)

        with stop_on_signals(stop):
            progress = functools.partial(progress_for, quiet=quiet)
            result = run_job_file(
                job, base, run_id=run_id, stop=stop, progress=progress, on_file=on_file
            )
        if result.files or result.exit_code:
            _print_job_summary(result, quiet, log_format)
        sys.exit(result.exit_code)


@click.command("check-job")
@click.argument("job_file", metavar="JOBFILE", type=click.Path(path_type=Path, dir_okay=False))
@run_options
@output_options
def check_job_command(
    job_file: Path, quiet: bool, verbose: bool, log_format: str, **options: Any
) -> None:
    """Check JOBFILE without removing anything: its keys, the credentials it names (one
    cheap authenticated call to the portal), the bot tokens, and what the next run would
    take. Exit 0 ready; 2 a problem in the job file, a missing variable or file; 3 the
    portal rejected the credentials or could not be reached.
    """
    from cleanup.jobs.credentials import resolve_run_options
    from cleanup.jobs.probe import check_job_file
    from cleanup.jobs.schema import load_job_file

    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    set_run_id(new_run_id())
    with cli_errors(verbose), problems_one_per_line(log_format):
        job = load_job_file(job_file)
        cli, env = given_options(options)
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


def _print_file(outcome: FileOutcome, quiet: bool, fmt: str) -> None:
    """After each file of a job file's run: its summary, or why it could not be processed."""
    summary, name = outcome.summary, outcome.source.name
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
    assert outcome.config is not None
    for line in summary_lines(summary, outcome.config):
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
