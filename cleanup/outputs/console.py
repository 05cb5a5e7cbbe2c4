"""The text a person reads at the end of a run: the console summary and the one-line
SUMMARY for monitoring. Used by the CLI and by the demo; prints nothing itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleanup.exits import state_word
from cleanup.outputs.files import SUMMARY
from cleanup.results import RUN_STATUSES, RunSummary, Status, rows_not_done

if TYPE_CHECKING:
    from cleanup.jobs.process import JobFileResult
    from cleanup.run.config import RunConfig


def summary_lines(s: RunSummary, config: RunConfig) -> list[str]:
    """The summary of one run, ending with its one-line SUMMARY."""
    if s.dry_run:
        return _dry_run_lines(s, config)
    # The run got to its end ("done"), or how it stopped.
    state = "done" if s.finished else s.state
    lines = [
        f"reaction-cleanup: {state} in {s.elapsed_s:.1f} s ({s.mode} mode, {s.auth_mode} auth)"
    ]
    if s.aborted:
        lines.append(f"  aborted: {s.aborted}")
    if s.paused:
        lines.append(
            f"  paused: time is up ({s.paused}); {s.rows_left} row(s) left: run again, or"
            " --resume, to continue (exit 75)"
        )
    for status in s.statuses:
        count = s.count(status)
        lines.append(f"  {status.value:<10} {count:>8}")
    if s.by_error:
        lines.append(
            "  by error: " + ", ".join(f"{k} {v}" for k, v in list(s.by_error.items())[:12])
        )
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
    lines += _neighbour_lines(s)
    if s.resumed_rows:
        lines.append(f"  kept from the earlier run: {s.resumed_rows} rows")
    lines += _bad_night_lines(s)
    lines += _chosen_lines(s, config)
    if s.report:
        lines.append(f"report: {s.report}")
        lines.append(f"summary: {s.report}{SUMMARY}")
    lines.append(one_line(s))
    return lines


def _neighbour_lines(s: RunSummary) -> list[str]:
    """The share the run used, and how far off its estimate was."""
    lines = [f"  {s.share_text}"] if s.share_text else []
    est = s.estimate or {}
    if "time_off" in est:
        lines.append(
            f"  estimate: {est['seconds']:.0f} s for {est['rows']} row(s); took"
            f" {est['actual_s']:.0f} s ({est['time_off']:+.0%})"
        )
    elif "rows_off" in est:
        lines.append(
            f"  estimate: this run would finish about {est['rows_this_run']} of"
            f" {est['rows']} row(s) in its bound; it sent {est['actual_rows']}"
            f" ({est['rows_off']:+.0%})"
        )
    return lines


def _dry_run_lines(s: RunSummary, config: RunConfig) -> list[str]:
    single = config.mode == "single"
    if s.undo_of:
        head = (
            f"dry run of the undo of {s.undo_of}: would send {s.to_send} add(s)"
            f" (Reaction.add) to restore {s.rows} removed row(s)"
        )
    else:
        head = (
            f"dry run of {s.input}: {s.rows} rows: {s.to_send} to send, "
            f"{s.count(Status.INVALID)} invalid, {s.count(Status.DUPLICATE)} duplicate"
        )
    lines = [
        head,
        f"would make {s.planned_calls} {'single' if single else 'batch'} call(s) of up to "
        f"{1 if single else config.batch_size} rows: about {s.estimated_s:.0f} s at "
        f"{s.rate * s.share:g} req/s (burst {max(1, int(s.burst * s.share))})",
    ]
    if s.estimate:
        lines.append(str(s.estimate.get("said", "")))
    if s.by_error:
        lines.append(
            "invalid rows by reason: " + ", ".join(f"{k} {v}" for k, v in s.by_error.items())
        )
    lines += [f"  {e}" for e in s.examples]
    lines += _chosen_lines(s, config)
    if s.report:  # --dry-run --report: the report the run would start from
        lines += [
            f"report: {s.report} (a dry run's: each row to_send, invalid or duplicate; fix the"
            " invalid rows in the input, then run again without --dry-run)",
            f"summary: {s.report}{SUMMARY}",
        ]
    return lines


def _bad_night_lines(s: RunSummary) -> list[str]:
    """An outage waited out, a retry run, and rows the next run re-sends."""
    lines = []
    if s.outage_s:
        lines.append(f"  the portal was away for {s.outage_s:.0f} s: {_outage_end(s)}")
    if s.retry_run:
        lines.append(f"  retry run {s.retry_run}: re-sent the rows that had failed transiently")
    if s.waits_retry:
        lines.append(
            f"  waits for a retry run: {s.waits_retry} row(s) failed for a transient reason;"
            " the next run re-sends them"
        )
    return lines


def _outage_end(s: RunSummary) -> str:
    """How the portal's absence ended for the run: waited out, or not."""
    if not s.outage_open:
        return "waited out (--max-wait)"
    if s.aborted:
        return "not back after --max-wait, so the run aborted"
    return "still away when the run ended"


def _chosen_lines(s: RunSummary, config: RunConfig) -> list[str]:
    """A re-run of a report's rows: which rows, and how many were left out."""
    if s.undo_of:
        shown = "; ".join(str(r) for r in config.rows)
        rows = f" in rows {shown if len(shown) <= 60 else shown[:59] + '…'}" if shown else ""
        return [
            f"  undo of {s.undo_of}: {s.rows} removed row(s){rows};"
            f" {s.left_out} other row(s) left out"
        ]
    if not s.source_report:
        return []
    chosen = [f"status {'/'.join(config.only)}" if config.only else ""]
    chosen.append(f"error {'/'.join(config.only_error)}" if config.only_error else "")
    if not any(chosen):
        return [f"  re-run of {s.source_report}: every row ({s.rows}), with its row number there"]
    return [
        f"  re-run of {s.source_report}: {s.rows} row(s) with {' and '.join(c for c in chosen if c)};"
        f" {s.left_out} other row(s) left out"
    ]


def one_line(s: RunSummary) -> str:
    """One line for a monitoring alert or a log search."""
    counts = " ".join(f"{st.value}={s.count(st)}" for st in s.statuses)
    return f"SUMMARY run={s.run_id} status={s.state} exit={s.exit_code} rows={s.rows} {counts} elapsed={s.elapsed_s:.1f}s"


def job_one_line(result: JobFileResult) -> str:
    """The last line of a job file's run, for a monitoring alert: one line, key=value."""
    code = result.exit_code
    totals = result.totals()
    counts = " ".join(f"{st.value}={totals[st.value]}" for st in RUN_STATUSES)
    state = state_word(code, rows_not_done=rows_not_done(totals))
    return (
        f"SUMMARY job={result.job} run={result.run_id} status={state} exit={code} "
        f"files={len(result.files)} waiting_retry={len(result.waiting_retry)}"
        f" rows={totals['rows']} {counts}"
    )
