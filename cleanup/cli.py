"""The click layer: options -> JobConfig -> run_job -> summary and exit code. Nothing else."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import MODES, PROGRESS, JobConfig
from .errors import EXIT_USAGE, CleanupError, ConfigError
from .logs import setup_logging
from .redact import redact
from .results import RunSummary, Status
from .runner import StopSignal, run_job
from .throttle import PLANS

EXIT_INTERNAL = 70  # an unexpected error (a bug): the message is masked like everything else


def _parse_columns(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    problems = []
    for value in values:
        field, sep, name = value.partition("=")
        canon = {"botid": "botId", "messageid": "messageId", "reaction": "reaction"}.get(
            field.strip().replace("_", "").replace("-", "").casefold()
        )
        if not sep or not name.strip() or canon is None:
            problems.append(
                f"--column {value!r}: expected botId=NAME, messageId=NAME or reaction=NAME"
            )
            continue
        out[canon] = name.strip()
    if problems:
        raise ConfigError(problems)
    return out


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `run` and `run-job` (where they override the job file)."""
    options = [
        click.option(
            "--report",
            type=click.Path(path_type=Path),
            help="Report path; format by extension: .csv, .jsonl, .parquet. Default: INPUT's name + .report.csv, next to it.",
        ),
        click.option(
            "--webhook",
            envvar="B24_WEBHOOK_URL",
            show_envvar=True,
            help="Inbound webhook URL https://PORTAL/rest/USER_ID/CODE/ (a secret).",
        ),
        click.option(
            "--portal",
            envvar="B24_PORTAL",
            show_envvar=True,
            help="Portal address for OAuth mode, e.g. https://example.bitrix24.com.",
        ),
        click.option(
            "--oauth-file",
            envvar="B24_OAUTH_FILE",
            show_envvar=True,
            type=click.Path(path_type=Path),
            help="JSON token file: client_id, client_secret, access_token, refresh_token (rewritten on refresh).",
        ),
        click.option(
            "--oauth-server",
            envvar="B24_OAUTH_SERVER",
            show_envvar=True,
            help="OAuth server for refresh (default: the token file's server_endpoint, else https://oauth.bitrix.info).",
        ),
        click.option(
            "--bot-tokens",
            envvar="B24_BOT_TOKENS_FILE",
            show_envvar=True,
            type=click.Path(path_type=Path),
            help='Webhook mode: botId -> botToken, JSON {"456": "token"} or CSV botId,botToken.',
        ),
        click.option(
            "--column",
            "columns",
            multiple=True,
            metavar="FIELD=NAME",
            help="Map a field to a differently named column, e.g. --column botId=Bot. Repeatable.",
        ),
        click.option(
            "--sheet",
            help="XLSX sheet name or 1-based number (default: the first sheet with the columns).",
        ),
        click.option(
            "--allow-unknown-reactions",
            is_flag=True,
            default=None,
            help="Send reaction codes that are not in the documented list (the portal's list may grow).",
        ),
        click.option(
            "--mode",
            type=click.Choice(MODES),
            help="batch, single calls, or auto: batch, falling back to single on ERROR_BATCH_METHOD_NOT_ALLOWED. [default: auto]",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1, 50),
            help="Commands per batch request. [default: 50]",
        ),
        click.option(
            "--plan",
            type=click.Choice(list(PLANS)),
            help="Preset rate/burst: standard 2/s burst 50, enterprise 5/s burst 250. [default: standard]",
        ),
        click.option(
            "--rate",
            type=click.FloatRange(min=0.01),
            help="Requests per second the client allows itself (overrides --plan).",
        ),
        click.option(
            "--burst",
            type=click.IntRange(min=1),
            help="Bucket size: requests allowed in a burst (overrides --plan).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 64),
            help="Requests in flight at once. [default: from the rate and observed latency]",
        ),
        click.option(
            "--max-retries",
            type=click.IntRange(min=0),
            help="Re-sends after network errors, 5xx and garbled answers. [default: 5]",
        ),
        click.option(
            "--max-wait",
            type=click.FloatRange(min=0),
            help="Seconds one batch may spend waiting (backoff and limits) before its rows fail. [default: 900]",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=1),
            help="Seconds to wait for an answer. [default: 75]",
        ),
        click.option(
            "--operating-limit",
            type=click.FloatRange(min=0),
            help="The portal's operating-time budget per method, seconds per 10 min; 0 turns the tracking off. [default: 480]",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            default=None,
            help="Validate and plan only: no calls to the portal.",
        ),
        click.option(
            "--resume",
            is_flag=True,
            default=None,
            help="Continue a stopped run: keep the report's final rows and send the rest.",
        ),
        click.option(
            "--allow-insecure-http",
            is_flag=True,
            default=None,
            help="Allow plain http:// to a non-loopback host (an on-premise test portal).",
        ),
        click.option(
            "--progress",
            type=click.Choice(PROGRESS),
            help="Progress display. [default: auto: a bar on a terminal, log lines otherwise]",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines as text or one JSON object per line.",
    )(func)
    func = click.option(
        "--verbose",
        "-v",
        is_flag=True,
        help="Debug logging (requests with secrets masked) and tracebacks.",
    )(func)
    func = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="No progress and no summary unless something went wrong.",
    )(func)
    return func


def config_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The options the user actually gave, as JobConfig fields."""
    out = {k: v for k, v in options.items() if v is not None and k not in ("columns",)}
    if options.get("columns"):
        out["columns"] = _parse_columns(options["columns"])
    if out.get("operating_limit") == 0:
        out["operating_limit"] = None
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reaction-cleanup")
def main() -> None:
    """Remove chat-bot reactions listed in a spreadsheet from a Bitrix24 portal."""


@main.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(path_type=Path, dir_okay=False))
@run_options
@output_options
def run(input_file: Path, quiet: bool, verbose: bool, log_format: str, **options: Any) -> None:
    """Remove the reactions listed in INPUT (.csv, .csv.gz, .tsv, .xlsx, .parquet).

    Exit codes: 0 all rows removed (or duplicates); 1 some rows failed or invalid;
    2 bad usage, input or configuration; 3 aborted by the portal (credentials, plan,
    unreachable); 4 another run holds the report's lock; 130/143 interrupted.
    """
    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    with _cli_errors(verbose):
        config = JobConfig(input=input_file, **config_overrides(options))
        summary = _run_with_signals(config, quiet)
        _print_summary(summary, config, quiet)
        sys.exit(summary.exit_code)


@contextmanager
def _cli_errors(verbose: bool) -> Iterator[None]:
    """One boundary turns errors into one masked line and an exit code."""
    try:
        yield
    except CleanupError as exc:
        click.echo(f"reaction-cleanup: error: {redact(exc)}", err=True)
        if verbose:
            click.echo(redact("".join(traceback.format_exc())), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit:
        raise
    except (SystemExit, click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:
        click.echo("reaction-cleanup: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        click.echo(
            f"reaction-cleanup: internal error: {redact(f'{type(exc).__name__}: {exc}')}", err=True
        )
        if verbose:
            click.echo(redact("".join(traceback.format_exc())), err=True)
        else:
            click.echo("(run with --verbose for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)


def _run_with_signals(config: JobConfig, quiet: bool) -> RunSummary:
    stop = StopSignal()
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop.is_set and stop.reason in ("SIGINT", "SIGTERM"):
            os._exit(130 if signum == signal.SIGINT else 143)  # second signal: leave at once
        stop.stop(name)
        click.echo(
            f"\nreaction-cleanup: {name}: finishing requests in flight, then stopping "
            "(send it again to quit at once)",
            err=True,
        )

    in_main = _is_main_thread()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        summary = run_job(config, stop=stop, quiet=quiet)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if stop.reason in ("SIGINT", "SIGTERM"):
        summary.interrupted = stop.reason
        summary.exit_code = 130 if stop.reason == "SIGINT" else 143
    return summary


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _print_summary(summary: RunSummary, config: JobConfig, quiet: bool) -> None:
    if quiet and summary.exit_code == 0:
        return
    for line in summary_lines(summary, config):
        click.echo(line, err=True)


def summary_lines(s: RunSummary, config: JobConfig) -> list[str]:
    if s.dry_run:
        lines = [
            f"dry run of {s.input}: {s.rows} rows: {s.by_status.get('to_send', 0)} to send, "
            f"{s.by_status[Status.INVALID.value]} invalid, {s.by_status[Status.DUPLICATE.value]} duplicate",
            f"would make {s.planned_calls} {'single' if config.mode == 'single' else 'batch'} call(s) of up to "
            f"{1 if config.mode == 'single' else config.batch_size} rows: about {s.estimated_s:.0f} s at "
            f"{s.rate:g} req/s (burst {s.burst})",
        ]
        if s.by_error:
            lines.append(
                "invalid rows by reason: "
                + ", ".join(f"{k} {v}" for k, v in s.by_error.most_common())
            )
        lines += [f"  {e}" for e in s.examples]
        return lines
    state = "aborted" if s.aborted else "interrupted" if s.interrupted else "done"
    lines = [
        f"reaction-cleanup: {state} in {s.elapsed_s:.1f} s ({s.mode} mode, {s.auth_mode} auth)"
    ]
    if s.aborted:
        lines.append(f"  aborted: {s.aborted}")
    errors_by_status: dict[str, list[str]] = {}
    for status in Status:
        count = s.by_status.get(status.value, 0)
        lines.append(f"  {status.value:<10} {count:>8}")
    if s.by_error:
        lines.append("  by error: " + ", ".join(f"{k} {v}" for k, v in s.by_error.most_common(12)))
    del errors_by_status
    lines.append(
        f"  requests {s.requests} ({s.batch_requests} batch, {s.single_requests} single), "
        f"limit refusals {s.limit_refusals}, operating-limit refusals {s.operating_refusals}, "
        f"waited {s.limit_wait_s:.1f} s on limits, retries {s.retries}"
    )
    lines.append(
        f"  {s.rows_per_s:.1f} rows/s; the portal's maximum for these settings: "
        f"{s.ideal_rows_per_s:.1f} rows/s ({s.rate:g} req/s x {s.batch_size if s.mode == 'batch' else 1} rows)"
    )
    if s.fallback_to_single:
        lines.append(f"  fell back to single calls: {s.fallback_to_single}")
    if s.resumed_rows:
        lines.append(f"  kept from the earlier run: {s.resumed_rows} rows")
    if s.report:
        lines.append(f"report: {s.report}")
        lines.append(f"summary: {s.report}.summary.json")
    lines.append(one_line(s))
    return lines


def one_line(s: RunSummary) -> str:
    """One line for a monitoring alert or a log search."""
    counts = " ".join(f"{st.value}={s.by_status.get(st.value, 0)}" for st in Status)
    state = (
        "aborted"
        if s.aborted
        else "interrupted"
        if s.interrupted
        else "failed"
        if s.exit_code
        else "ok"
    )
    return f"SUMMARY run={s.run_id} status={state} exit={s.exit_code} rows={s.rows} {counts} elapsed={s.elapsed_s:.1f}s"


def _register_extra_commands() -> None:
    from .demo import demo_command
    from .sandbox.command import sandbox_command

    main.add_command(sandbox_command)
    main.add_command(demo_command)


_register_extra_commands()

__all__ = ["EXIT_USAGE", "main"]
