"""The click layer: options -> RunConfig -> run_file -> summary and exit code. Nothing else."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from cleanup.cli_progress import progress_for
from cleanup.errors import EXIT_USAGE, CleanupError, ConfigError
from cleanup.inputs.select import split_values
from cleanup.logs import set_run_id, setup_logging
from cleanup.outputs.summary import summary_fields, summary_record
from cleanup.pacing.throttle import PLANS
from cleanup.redact import redact
from cleanup.results import RunSummary, Status
from cleanup.run.config import MODES, PROGRESS, RunConfig
from cleanup.run.runner import StopSignal, run_file
from cleanup.version import __version__

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


def _listed(key: str, values: tuple[str, ...]) -> list[str]:
    listed = split_values(values)
    if not listed:
        raise ConfigError(f"--{key.replace('_', '-')}: give at least one value")
    return listed


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
            "--only",
            multiple=True,
            metavar="STATUS[,STATUS...]",
            help="Re-run a report: send only its rows whose status is one of these (removed, failed, invalid, duplicate, skipped); each keeps its row number.",
        ),
        click.option(
            "--only-error",
            multiple=True,
            metavar="CODE[,CODE...]",
            help="Re-run a report: send only its rows whose error is one of these codes (with --only: rows matching both).",
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
            "--stop-timeout",
            type=click.FloatRange(min=0),
            help="On Ctrl-C/SIGTERM, seconds to let requests in flight finish before their rows are reported skipped. [default: 30]",
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
    """The options the user actually gave, as RunConfig fields."""
    out = {k: v for k, v in options.items() if v is not None and k not in ("columns",)}
    if options.get("columns"):
        out["columns"] = _parse_columns(options["columns"])
    for key in ("only", "only_error"):
        if key in out:
            out[key] = _listed(key, out[key])
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
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML review report (totals, failed rows by cause, a chart of requests) to this path.",
)
def run(
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
    unreachable); 4 another run holds the report's lock; 130/143 interrupted.
    """
    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    run_id = new_run_id()
    set_run_id(run_id)
    with _cli_errors(verbose):
        typed, from_env = _given_options(options)
        config = RunConfig(
            input=input_file, **{"run_id": run_id, **_one_auth_mode(typed, from_env)}
        )
        summary = _run_with_signals(config, quiet)
        extra = []
        if html_path is not None and not summary.dry_run and summary.report:
            _write_html(summary, config, html_path)
            extra.append(f"html: {html_path}")
        _print_summary(summary, config, quiet, log_format, extra)
        sys.exit(summary.exit_code)


def _one_auth_mode(typed: dict[str, Any], from_env: dict[str, Any]) -> dict[str, Any]:
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


def new_run_id() -> str:
    """On every log line and in the summary: ties a scheduler's log to the report."""
    return uuid.uuid4().hex[:12]


def _write_html(summary: RunSummary, config: RunConfig, path: Path) -> None:
    from cleanup.outputs.html import write_html

    write_html(summary_record(summary, config.settings()), config.report_path, path)


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


def _run_with_signals(config: RunConfig, quiet: bool) -> RunSummary:
    stop = StopSignal()
    with _stop_on_signals(stop):
        summary = run_file(
            config, stop=stop, on_progress=progress_for(config.progress, quiet=quiet)
        )
    if stop.reason in ("SIGINT", "SIGTERM"):
        summary.interrupted = stop.reason
        summary.exit_code = 130 if stop.reason == "SIGINT" else 143
    return summary


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _print_summary(
    summary: RunSummary,
    config: RunConfig,
    quiet: bool,
    fmt: str = "text",
    extra: list[str] | None = None,
) -> None:
    if quiet and summary.exit_code == 0:
        return
    if fmt == "json":
        # Log collectors get the summary as one JSON event, like every other line.
        _summary_event(one_line(summary), summary.exit_code, summary_fields(summary))
        return
    lines = summary_lines(summary, config)
    if extra:
        lines[-1:-1] = extra  # the one-line SUMMARY stays last
    for line in lines:
        click.echo(line, err=True)


def _summary_event(message: str, exit_code: int, fields: dict[str, Any]) -> None:
    level = logging.WARNING if exit_code else logging.INFO
    logging.getLogger("cleanup").log(level, "%s", message, extra={"fields": fields})


def summary_lines(s: RunSummary, config: RunConfig) -> list[str]:
    if s.dry_run:
        lines = [
            f"dry run of {s.input}: {s.rows} rows: {s.to_send} to send, "
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
        return lines + _chosen_lines(s, config)
    state = "aborted" if s.aborted else "interrupted" if s.interrupted else "done"
    lines = [
        f"reaction-cleanup: {state} in {s.elapsed_s:.1f} s ({s.mode} mode, {s.auth_mode} auth)"
    ]
    if s.aborted:
        lines.append(f"  aborted: {s.aborted}")
    for status in Status:
        count = s.by_status.get(status.value, 0)
        lines.append(f"  {status.value:<10} {count:>8}")
    if s.by_error:
        lines.append("  by error: " + ", ".join(f"{k} {v}" for k, v in s.by_error.most_common(12)))
    lines.append(
        f"  requests {s.requests} ({s.batch_requests} batch, {s.single_requests} single), "
        f"limit refusals {s.limit_refusals}, operating-limit refusals {s.operating_refusals}, "
        f"waited {s.limit_wait_s:.1f} s on limits, retries {s.retries}"
    )
    lines.append(
        f"  {s.rows_per_s:.1f} rows/s; the portal's maximum for these settings: "
        f"{s.ideal_rows_per_s:.1f} rows/s ({s.rate:g} req/s x {s.batch_size if s.mode == 'batch' else 1} rows"
        f" after a burst of {s.burst})"
    )
    if s.fallback_to_single:
        lines.append(f"  fell back to single calls: {s.fallback_to_single}")
    if s.resumed_rows:
        lines.append(f"  kept from the earlier run: {s.resumed_rows} rows")
    lines += _chosen_lines(s, config)
    if s.report:
        lines.append(f"report: {s.report}")
        lines.append(f"summary: {s.report}.summary.json")
    lines.append(one_line(s))
    return lines


def _chosen_lines(s: RunSummary, config: RunConfig) -> list[str]:
    """A re-run of a report's rows: which rows, and how many were left out."""
    if not s.source_report:
        return []
    chosen = [f"status {'/'.join(config.only)}" if config.only else ""]
    chosen.append(f"error {'/'.join(config.only_error)}" if config.only_error else "")
    return [
        f"  re-run of {s.source_report}: {s.rows} row(s) with {' and '.join(c for c in chosen if c)};"
        f" {s.left_out} other row(s) left out"
    ]


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


# --------------------------------------------------------------------------- job files


@main.command("run-job")
@click.argument("job_file", metavar="JOBFILE", type=click.Path(path_type=Path, dir_okay=False))
@run_options
@output_options
def run_job_command(
    job_file: Path, quiet: bool, verbose: bool, log_format: str, **options: Any
) -> None:
    """Run the job described by JOBFILE (TOML; see jobs/example.toml).

    Takes each spreadsheet the job has not processed before (known by content, so a
    renamed copy is not done twice), writes a dated report, summary and HTML review page
    into the job's reports folder, and moves the input to the archive once its report is
    complete; an unfinished one is resumed by the next run. Options given here override
    the job file. Nothing to do: exit 0 and no output. Otherwise the exit code is the worst
    of the files' (130/143 > 70 > 3 > 2 > 4 > 1 > 0); 4 also when another run of the job
    is still going.
    """
    from cleanup.jobs.jobfile import load_job, run_sources

    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    run_id = new_run_id()
    set_run_id(run_id)
    with _cli_errors(verbose), _problems_one_per_line(log_format):
        job = load_job(job_file)
        cli, env = _given_options(options)
        base = job.resolve(cli, env)
        stop = StopSignal()

        def on_file(outcome: Any) -> None:
            _print_file(outcome, quiet, log_format)

        with _stop_on_signals(stop):
            progress = functools.partial(progress_for, quiet=quiet)
            result = run_sources(
                job, base, run_id=run_id, stop=stop, progress=progress, on_file=on_file
            )
        if result.files or result.exit_code:
            _print_job_summary(result, quiet, log_format)
        sys.exit(result.exit_code)


@main.command("check-job")
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
    from cleanup.jobs.jobfile import check_job, load_job

    setup_logging(verbose=verbose, quiet=quiet, fmt=log_format)
    set_run_id(new_run_id())
    with _cli_errors(verbose), _problems_one_per_line(log_format):
        job = load_job(job_file)
        cli, env = _given_options(options)
        result = check_job(job, job.resolve(cli, env))
        ready = f"job {job.name!r} is ready to run"
        if log_format == "json":
            # One JSON object per line here too, like every other event of the job.
            for line in result.lines:
                logging.getLogger("cleanup").info("%s", line, extra={"fields": {"event": "check"}})
            _summary_event(ready, 0, {"event": "check_job", "job": job.name, "exit_code": 0})
            return
        if not quiet:
            for line in result.lines:
                click.echo(line)
        click.echo(ready)


# A job writes each file's report under a dated name; --report is refused there, so hide it.
for _command in (run_job_command, check_job_command):
    for _param in _command.params:
        if _param.name == "report" and isinstance(_param, click.Option):
            _param.hidden = True


@contextmanager
def _problems_one_per_line(fmt: str = "text") -> Iterator[None]:
    """A job file can have several problems: one line each reads better than a long one.
    Under --log-format json each is a JSON event, so a log collector parses every line."""
    try:
        yield
    except CleanupError as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        if fmt == "json":
            for problem in problems:
                logging.getLogger("cleanup").error(
                    "%s", problem, extra={"fields": {"event": "error", "exit_code": exc.exit_code}}
                )
        elif isinstance(exc, ConfigError):
            for problem in problems:
                click.echo(f"reaction-cleanup: error: {redact(problem)}", err=True)
        else:
            raise
        sys.exit(exc.exit_code)


def _given_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options typed on the command line, options click took from B24_* variables)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    typed: dict[str, Any] = {}
    from_env: dict[str, Any] = {}
    for name, value in options.items():
        if value is None or value == ():
            continue
        source = ctx.get_parameter_source(name)
        (from_env if source is ParameterSource.ENVIRONMENT else typed)[name] = value
    return config_overrides(typed), config_overrides(from_env)


@contextmanager
def _stop_on_signals(stop: StopSignal) -> Iterator[None]:
    """SIGINT/SIGTERM stop the job after the requests in flight; a second one quits at once
    (even while an abort winds down): the journal lets --resume finish the work."""
    previous: dict[int, Any] = {}
    signals: list[str] = []

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if signals:
            os.write(2, b"\nreaction-cleanup: quitting now; finish later with --resume\n")
            os._exit(130 if signum == signal.SIGINT else 143)
        signals.append(name)
        stop.stop(name)
        click.echo(
            f"\nreaction-cleanup: {name}: finishing requests in flight, then stopping "
            "(send it again to quit at once)",
            err=True,
        )

    if _is_main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _print_file(outcome: Any, quiet: bool, fmt: str) -> None:
    """After each file of a job run: its summary, or why it could not be processed."""
    summary, name = outcome.summary, outcome.source.name
    if outcome.error is not None:
        if fmt == "json":
            _summary_event(
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
        _summary_event(f"{name}: {one_line(summary)}", outcome.exit_code, fields)
        return
    click.echo(f"== {name}{' (resumed)' if outcome.resumed else ''}", err=True)
    for line in summary_lines(summary, outcome.config):
        if not line.startswith("SUMMARY "):  # one SUMMARY line per job run, at the end
            click.echo(line, err=True)
    if outcome.html:
        click.echo(f"html: {outcome.html}", err=True)
    if outcome.archived_to:
        click.echo(f"archived: {outcome.archived_to}", err=True)
    elif summary.report and not summary.dry_run and not outcome.complete:
        click.echo(f"left in place: {outcome.source} (the next run resumes it)", err=True)


def _print_job_summary(result: Any, quiet: bool, fmt: str) -> None:
    line = job_one_line(result)
    if fmt == "json":
        _summary_event(
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


def job_one_line(result: Any) -> str:
    """The job run's last line, for a monitoring alert: one line, key=value."""
    code = result.exit_code
    state = {0: "ok", 1: "failed", 2: "error", 3: "aborted", 4: "locked"}.get(
        code, "interrupted" if code in (130, 143) else "error"
    )
    totals = result.totals()
    counts = " ".join(f"{st.value}={totals[st.value]}" for st in Status)
    return (
        f"SUMMARY job={result.job} run={result.run_id} status={state} exit={code} "
        f"files={len(result.files)} rows={totals['rows']} {counts}"
    )


def _register_extra_commands() -> None:
    from cleanup.sandbox.command import sandbox_command
    from cleanup.sandbox.demo import demo_command

    main.add_command(sandbox_command)
    main.add_command(demo_command)


_register_extra_commands()

__all__ = ["EXIT_USAGE", "main"]
