"""`reaction-cleanup run INPUT`: one input file, one report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cleanup.cli.common import cli_errors, new_run_id, stop_on_signals, summary_event
from cleanup.cli.options import click_options, given_options, output_options
from cleanup.cli.progress import progress_for
from cleanup.logs import set_run_id, setup_logging
from cleanup.outputs.after import write_outputs
from cleanup.outputs.console import one_line, summary_lines
from cleanup.outputs.summary import summary_fields
from cleanup.results import RunSummary
from cleanup.run.config import RunConfig
from cleanup.run.runner import StopSignal, run_file

if TYPE_CHECKING:
    from cleanup.run.portals import PortalPacing

# The options of `run`, for commands that take the same ones (e.g. run-job, check-job).
run_options = click_options(RunConfig)


@click.command("run")
@click.argument("input_file", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False))
@run_options
@output_options
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML review report (totals, failed rows by cause, a chart of requests) to this path.",
)
def run_command(
    input_file: Path,
    quiet: bool,
    verbose: bool,
    log_format: str,
    html_path: Path | None,
    **options: Any,
) -> None:
    """Remove the reactions listed in INPUT (.csv, .csv.gz, .tsv, .xlsx, .parquet, or a
    report .csv/.jsonl/.parquet with --only/--only-error to re-run some of its rows).

    Exit codes: 0 all rows removed (or duplicates); 1 some rows failed or invalid;
    2 bad usage, input or configuration; 3 aborted by the portal (credentials, plan,
    unreachable); 4 another run holds the report's lock; 5 an output file could not be
    written (disk full, read-only folder: --resume continues); 130/143 interrupted.
    """
    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    run_id = new_run_id()
    set_run_id(run_id)
    with cli_errors(verbose):
        typed, from_env = given_options(options)
        config = RunConfig(input=input_file, run_id=run_id, **one_auth_mode(typed, from_env))
        stop = StopSignal()
        pacing = notify_pacing(config)
        with stop_on_signals(stop):
            summary = run_file(
                config,
                stop=stop,
                on_progress=progress_for(config.progress, quiet=quiet),
                pacing=pacing,
            )
        page, summary = write_outputs(summary, config, html=html_path, pacing=pacing)
        print_summary(summary, config, quiet, log_format, outputs_lines(page, summary))
        sys.exit(summary.exit_code)


def one_auth_mode(typed: dict[str, Any], from_env: dict[str, Any]) -> dict[str, Any]:
    """The options as RunConfig fields, the command line winning over B24_* variables. A mode
    typed on the command line (--webhook, or --portal/--oauth-file) also sets aside the
    other mode's variables: a B24_WEBHOOK_URL left in the shell must not block --portal."""
    env = dict(from_env)
    if typed.get("webhook"):
        for key in ("portal", "oauth_file"):
            env.pop(key, None)
    elif typed.get("portal") or typed.get("oauth_file"):
        env.pop("webhook", None)
    return {**env, **typed}


def notify_pacing(config: RunConfig) -> PortalPacing | None:
    """With --notify, the run's bucket is made here so that the chat notification after it
    is paced by the same bucket (its clock is not the run's: a stopped run still posts)."""
    if config.notify is None:
        return None
    from cleanup.run.portals import PortalPacings

    return PortalPacings().for_config(config)


def outputs_lines(page: Path | None, summary: RunSummary) -> list[str]:
    """The lines the printed summary adds: the page, the chat notification's outcome."""
    from cleanup.outputs.notify import delivery_line

    lines = [f"html: {page}"] if page else []
    notified = delivery_line(summary)
    return [*lines, notified] if notified else lines


def print_summary(
    summary: RunSummary, config: RunConfig, quiet: bool, fmt: str, extra: list[str]
) -> None:
    if quiet and summary.exit_code == 0:
        return
    if fmt == "json":
        # Log collectors get the summary as one JSON event, like every other line.
        summary_event(one_line(summary), summary.exit_code, summary_fields(summary))
        return
    lines = summary_lines(summary, config)
    if extra:
        lines[-1:-1] = extra  # the one-line SUMMARY stays last
    for line in lines:
        click.echo(line, err=True)
