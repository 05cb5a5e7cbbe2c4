"""`reaction-cleanup undo REPORT`: add back what a run removed (cleanup.run.undo)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from cleanup.cli.common import cli_errors, new_run_id, stop_on_signals
from cleanup.cli.options import click_options, given_options, output_options
from cleanup.cli.progress import progress_for
from cleanup.cli.run import notify_pacing, one_auth_mode, outputs_lines, print_summary
from cleanup.errors import ConfigError
from cleanup.exits import EXIT_OK
from cleanup.inputs.select import split_values
from cleanup.logs import set_run_id, setup_logging
from cleanup.outputs.after import write_outputs
from cleanup.run.config import RunConfig
from cleanup.run.runner import StopSignal
from cleanup.run.undo import Undo, prepare_undo, undo_file

# run's options, less those that choose or read an input's rows: an undo reads a report
# (its own columns) and takes every reaction code it shows removed.
# --report is the undo's own report, with another default.
_NOT_FOR_UNDO = ("report", "only", "only_error", "columns", "sheet", "allow_unknown_reactions")


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question (not a scheduler, not a pipe)."""
    return sys.stdin.isatty()


@click.command("undo")
@click.argument("report_file", metavar="REPORT", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--report",
    "undo_report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The undo's report; format by extension: .csv, .jsonl, .parquet."
    " Default: REPORT's name + .undo.csv, next to it.",
)
@click_options(RunConfig, exclude=_NOT_FOR_UNDO)
@output_options
@click.option(
    "--rows",
    "rows",
    metavar="ROWS",
    help="Restore only these rows (the report's row numbers), e.g. 12,40-55.",
)
@click.option(
    "--only-error",
    "only_error",
    multiple=True,
    metavar="CODE[,CODE...]",
    help="Send again the rows whose restore failed with one of these codes in the undo report"
    " (after fixing the cause); its other lines stay.",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Send without asking; needed where no one can answer (a scheduler, a pipe).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the HTML review page of the undo to this path.",
)
def undo_command(
    report_file: Path,
    undo_report: Path | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
    rows: str | None,
    only_error: tuple[str, ...],
    yes: bool,
    html_path: Path | None,
    **options: Any,
) -> None:
    """Add back, with imbot.v2.Chat.Message.Reaction.add, every reaction that REPORT (a
    report of `run`: .csv, .jsonl or .parquet) shows removed. The undo's own report is
    REPORT's name + .undo.csv by default (--report to choose), with the original row numbers
    and the statuses restored, failed and skipped. The reactions come back; their original
    time and order do not.

    It asks before sending on a terminal; elsewhere it needs --yes. An undo report that is
    already there is continued (--resume, --only-error), never overwritten. Exit codes as
    for run: 0 all restored (or nothing to restore); 1 some rows failed or skipped; 2 bad
    usage, no --yes without a terminal, or REPORT undone before; 3 aborted by the portal;
    4 a run still writes REPORT, or another undo writes the undo report; 5 an output file
    could not be written; 130/143 interrupted.
    """
    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    run_id = new_run_id()
    set_run_id(run_id)
    with cli_errors(verbose):
        typed, from_env = given_options(options)
        config = RunConfig(
            input=report_file,
            report=undo_report,
            run_id=run_id,
            **one_auth_mode(typed, from_env),
        )
        with prepare_undo(config, rows=rows, only_error=split_values(only_error)) as undo:
            for warning in undo.warnings:
                click.echo(f"reaction-cleanup: warning: {warning}", err=True)
            if undo.to_restore == 0:
                click.echo(f"reaction-cleanup: nothing to restore: {undo.nothing}", err=True)
                sys.exit(EXIT_OK)
            if not undo.config.dry_run and not _consent(undo, yes):
                click.echo("reaction-cleanup: not confirmed; nothing was sent", err=True)
                sys.exit(EXIT_OK)
            stop = StopSignal()
            pacing = notify_pacing(undo.config)
            with stop_on_signals(stop):
                summary = undo_file(
                    undo,
                    stop=stop,
                    on_progress=progress_for(undo.config.progress, quiet=quiet),
                    pacing=pacing,
                )
        # No metrics: an undo's figures would replace its run's under the same job name.
        page, summary = write_outputs(
            summary, undo.config, html=html_path, metrics=False, pacing=pacing
        )
        print_summary(summary, undo.config, quiet, log_format, outputs_lines(page, summary))
        sys.exit(summary.exit_code)


def _consent(undo: Undo, yes: bool) -> bool:
    """--yes, or a person's answer on a terminal. Without either: a usage error."""
    if yes:
        return True
    if not stdin_is_terminal():
        raise ConfigError(
            f"undo changes the portal: give --yes to add back {undo.to_restore} reaction(s)"
            " where no one can confirm (a scheduler, a pipe)"
        )
    where = _portal_host(undo.config)
    return click.confirm(
        f"Add back {undo.to_restore} reaction(s) that {undo.undone} shows removed"
        f"{f' on {where}' if where else ''}?",
        default=False,
        err=True,
    )


def _portal_host(config: RunConfig) -> str:
    """The portal's host name, for the question (never the webhook's path: it holds the code)."""
    address = config.webhook or config.portal or ""
    return urlsplit(address if "//" in address else "//" + address).hostname or ""
