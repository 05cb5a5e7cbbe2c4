"""run_file(config) -> RunSummary: the whole job, callable from Python without click.

Pipeline: the input streams in chunks through validation; valid rows are packed into
units (a batch of up to 50, or one row in single mode) and handed to worker threads that
share one throttle; results come back in any order and are written to the report in
input order, flushed unit by unit. Every input row gets exactly one line.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from filelock import FileLock, Timeout

from cleanup.clock import Clock, SystemClock
from cleanup.errors import ConfigError, FatalAPIError, LockedError
from cleanup.inputs.readers import Table, open_table
from cleanup.inputs.validate import Row, Validator
from cleanup.outputs.files import sidecar
from cleanup.outputs.journal import Journal, check_resumable, fingerprint
from cleanup.outputs.report import ReportWriter, compact, read_report
from cleanup.outputs.summary import write_summary
from cleanup.pacing.retry import RetryPolicy
from cleanup.pacing.throttle import OperatingBudget, Throttle, ideal_seconds
from cleanup.portal.transport import Transport
from cleanup.redact import redact
from cleanup.results import RowResult, RunSummary, Status
from cleanup.run.config import RunConfig, load_bot_tokens
from cleanup.run.engine import Engine, UnitResult
from cleanup.run.planner import MAX_BATCH, estimate_seconds
from cleanup.run.progress import Progress, choose_mode

log = logging.getLogger("cleanup")

MAX_WORKERS = 16
_BACKLOG_ROWS = 20_000  # results held for ordering before the open unit is sent early


class StopSignal:
    """Set once by a signal handler or an abort; the first reason wins."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


def run_file(
    config: RunConfig,
    *,
    stop: StopSignal | None = None,
    quiet: bool = False,
    clock: Clock | None = None,
) -> RunSummary:
    """Run the job described by `config`. Raises CleanupError subclasses for problems
    with the run as a whole (configuration, unreadable input, lock); row problems and
    portal refusals end up in the report and the returned summary."""
    config.check()
    stop = stop or StopSignal()
    clock = clock or SystemClock(stop.event)
    auth = config.make_auth()
    bot_tokens: dict[int, str] | None = None
    if config.bot_tokens is not None and (auth is None or auth.needs_bot_tokens):
        bot_tokens = load_bot_tokens(config.bot_tokens)
    elif auth is not None and auth.needs_bot_tokens:
        raise ConfigError(
            "webhook mode needs each bot's botToken: give --bot-tokens FILE (or B24_BOT_TOKENS_FILE)"
        )
    table = open_table(
        config.input,
        column_overrides=config.columns,
        sheet=config.sheet,
        chunk_rows=config.chunk_rows,
    )
    validator = Validator(
        allow_unknown_reactions=config.allow_unknown_reactions, bot_tokens=bot_tokens
    )
    rate, burst = config.effective_rate
    summary = RunSummary(
        run_id=config.run_id or uuid.uuid4().hex[:12],
        input=str(config.input),
        report=None if config.dry_run else str(config.report_path),
        mode="single" if config.mode == "single" else "batch",
        auth_mode=auth.kind if auth else "none",
        dry_run=config.dry_run,
        rate=rate,
        burst=burst,
        batch_size=config.batch_size,
        started_at=time.time(),
    )
    if config.dry_run:
        return _dry_run(config, table, validator, summary)
    assert auth is not None
    report = config.report_path
    lock = FileLock(str(sidecar(report, ".lock")), timeout=0)
    report.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(
            f"another reaction-cleanup run is working on {report} (lock {sidecar(report, '.lock').name});"
            " wait for it to finish"
        ) from None
    try:
        return _Run(
            config, table, validator, summary, auth, bot_tokens, stop, clock, quiet
        ).execute()
    finally:
        lock.release()


def _dry_run(
    config: RunConfig, table: Table, validator: Validator, summary: RunSummary
) -> RunSummary:
    t0 = time.monotonic()
    to_send = 0
    examples: list[str] = []
    for chunk in table.chunks():
        checked = validator.check(chunk)
        n_inv, n_dup = checked.n_invalid, checked.n_duplicate
        summary.rows += len(checked)
        summary.by_status[Status.INVALID.value] += n_inv
        summary.by_status[Status.DUPLICATE.value] += n_dup
        to_send += checked.n_to_send
        for i, (error, description) in checked.problems.items():
            summary.by_error[error] += 1
            if len(examples) < 10:
                examples.append(f"row {checked.first_row + i}: {description}")
    rate, burst = config.effective_rate
    per_call = 1 if config.mode == "single" else config.batch_size
    summary.planned_calls = math.ceil(to_send / per_call) if to_send else 0
    summary.estimated_s = estimate_seconds(summary.planned_calls, rate, burst)
    summary.by_status["to_send"] = to_send
    summary.elapsed_s = time.monotonic() - t0
    summary.exit_code = 1 if summary.by_status[Status.INVALID.value] else 0
    summary.examples = examples
    return summary


class _Emitter:
    """Writes results in input order; holds the ones that finish early."""

    def __init__(self, writer: ReportWriter, on_result: Callable[[RowResult], None]) -> None:
        self.writer = writer
        self.on_result = on_result
        self.next_row = 1
        self.held: dict[int, tuple[RowResult, bool]] = {}

    def put(self, result: RowResult, *, write: bool = True) -> None:
        self.held[result.row] = (result, write)

    def release(self) -> int:
        released = 0
        ready: list[RowResult] = []
        while self.next_row in self.held:
            result, write = self.held.pop(self.next_row)
            if write:
                ready.append(result)
            self.on_result(result)
            self.next_row += 1
            released += 1
        if ready:
            self.writer.write(ready)
        return released

    @property
    def backlog(self) -> int:
        return len(self.held)


class _Run:
    def __init__(
        self,
        config: RunConfig,
        table: Table,
        validator: Validator,
        summary: RunSummary,
        auth: Any,
        bot_tokens: dict[int, str] | None,
        stop: StopSignal,
        clock: Clock,
        quiet: bool,
    ) -> None:
        self.config, self.table, self.validator, self.summary = config, table, validator, summary
        self.stop, self.clock = stop, clock
        rate, burst = config.effective_rate
        self.throttle = Throttle(rate, burst, clock=clock)
        self.budget = OperatingBudget(config.operating_limit, clock=clock)
        self.throttle.budget = self.budget  # a nearly spent budget stretches the spacing
        self.transport = Transport(
            auth,
            self.throttle,
            self.budget,
            timeout=config.timeout,
            pool_size=MAX_WORKERS,
            allow_insecure_http=config.allow_insecure_http,
        )
        self.identity = {"input": str(config.input), **fingerprint(config.input)}
        report = config.report_path
        self.finals: dict[int, RowResult] = {}
        if config.resume:
            check_resumable(report)
        self.journal = Journal(sidecar(report, ".journal"), self.identity, resume=config.resume)
        if config.resume:
            self.finals = read_report(report)
        # Results the earlier run knew but had not yet written to the report (it writes in
        # input order): taken as they are, not re-sent.
        self.journaled = {r: o for r, o in self.journal.outcomes.items() if r not in self.finals}
        self.previously_sent = self.journal.previously_sent
        self.engine = Engine(
            self.transport,
            bot_tokens=bot_tokens,
            policy=RetryPolicy(max_retries=config.max_retries, max_wait=config.max_wait),
            mode=config.mode,
            clock=clock,
            throttle=self.throttle,
            budget=self.budget,
            journal=self.journal,
            rng=random.Random(),
        )
        self.progress = Progress(choose_mode(config.progress, quiet), _estimate_rows(table))
        self.latency = 1.0  # seconds, EWMA of request round trips; sizes auto-concurrency
        self.timeline: list[tuple[float, float, int]] = []
        self.transport.on_request.append(self._observe_request)
        self._results: queue.Queue[tuple[int, UnitResult]] = queue.Queue()
        self._tasks: queue.Queue[tuple[int, list[Row]] | None] = queue.Queue()
        self._inflight: dict[int, list[Row]] = {}
        self._next_unit = 0
        self._workers: list[threading.Thread] = []
        self.aborted: FatalAPIError | None = None

    # ------------------------------------------------------------------ main loop

    def execute(self) -> RunSummary:
        cfg = self.config
        writer = ReportWriter(cfg.report_path, append=cfg.resume)
        emitter = _Emitter(writer, self._count)
        log.info(
            "run %s: %s -> %s (%s, %s auth, %.3g req/s, burst %d)",
            self.summary.run_id,
            cfg.input,
            cfg.report_path,
            cfg.mode,
            self.summary.auth_mode,
            self.throttle.rate,
            self.throttle.burst,
        )
        t0 = time.monotonic()
        complete = False
        try:
            self._start_workers()
            open_rows: list[Row] = []
            for chunk in self.table.chunks():
                checked = self.validator.check(chunk)
                for item in checked.items():
                    if isinstance(item, RowResult):
                        emitter.put(item)
                    elif item.row in self.finals:
                        emitter.put(self.finals[item.row], write=False)
                        self.summary.resumed_rows += 1
                    elif (known := self.journaled.get(item.row)) is not None:
                        emitter.put(item.result(*known))
                        self.summary.resumed_rows += 1
                    elif self.stop.is_set:
                        emitter.put(item.result(Status.SKIPPED, "", self._skip_reason(item.row)))
                    elif (failed := self.engine.bot_failure(item)) is not None:
                        emitter.put(failed)
                    else:
                        open_rows.append(item)
                        if len(open_rows) >= self._unit_size():
                            open_rows = self._submit(open_rows, emitter)
                    if emitter.backlog > _BACKLOG_ROWS and emitter.release() == 0:
                        # Rows wait for an earlier unit: send the open one and wait for results.
                        open_rows = self._submit(open_rows, emitter)
                        if self._inflight:
                            self._drain(emitter, block=True)
                self._drain(emitter, block=False)
                emitter.release()
            self._submit(open_rows, emitter)
            self._finish_inflight(emitter)
            emitter.release()
            complete = emitter.backlog == 0
        finally:
            self._stop_workers()
            writer.close(complete=complete and not self.stop.is_set)
            self.journal.close()
            self.progress.close()
            self.transport.close()
        if cfg.resume:
            compact(cfg.report_path)
        return self._finish_summary(time.monotonic() - t0)

    def _unit_size(self) -> int:
        return 1 if self.engine.single else self.config.batch_size

    def _submit(self, rows: list[Row], emitter: _Emitter) -> list[Row]:
        if not rows:
            return []
        if self.stop.is_set:
            for row in rows:
                emitter.put(row.result(Status.SKIPPED, "", self._skip_reason(row.row)))
            return []
        # Fell back to single calls meanwhile: hand them out one per unit, for parallelism.
        units = [rows] if not self.engine.single else [[r] for r in rows]
        for unit in units:
            while len(self._inflight) >= self._concurrency() and not self.stop.is_set:
                self._drain(emitter, block=True)
            if self.stop.is_set:
                for row in unit:
                    emitter.put(row.result(Status.SKIPPED, "", self._skip_reason(row.row)))
                continue
            unit_id = self._next_unit
            self._next_unit += 1
            self._inflight[unit_id] = unit
            self._tasks.put((unit_id, unit))
        return []

    def _drain(self, emitter: _Emitter, *, block: bool, timeout: float = 0.2) -> None:
        while True:
            try:
                unit_id, result = (
                    self._results.get(timeout=timeout) if block else self._results.get_nowait()
                )
            except queue.Empty:
                # A long wait on a limit finishes no unit: keep the bar's countdown moving.
                self.progress.note_wait(self.throttle.waiting_note())
                return
            if self._inflight.pop(unit_id, None) is None:
                continue  # given up on at the stop timeout; already reported skipped
            self.journal.done(result.results)
            for r in result.results:
                emitter.put(r)
            if result.fatal is not None and self.aborted is None:
                self.aborted = result.fatal
                log.error("aborting: %s", redact(str(result.fatal)))
                self.stop.stop("abort")
            emitter.release()
            emitter.writer.flush()
            self.progress.note_wait(self.throttle.waiting_note())
            block = False  # got one; take whatever else is ready without waiting

    def _finish_inflight(self, emitter: _Emitter) -> None:
        deadline: float | None = None
        while self._inflight:
            if self.stop.is_set and deadline is None:
                deadline = time.monotonic() + self.config.stop_timeout
            if deadline is not None and time.monotonic() > deadline:
                log.warning(
                    "%d request(s) still in flight after %.0f s; reporting their rows skipped",
                    len(self._inflight),
                    self.config.stop_timeout,
                )
                for unit in self._inflight.values():
                    for row in unit:
                        note = self._skip_reason(row.row) + "; its request was still in flight"
                        emitter.put(row.result(Status.SKIPPED, "", note, 1))
                self._inflight.clear()
                break
            self._drain(emitter, block=True)

    # ------------------------------------------------------------------ workers

    def _start_workers(self) -> None:
        n = self.config.concurrency or MAX_WORKERS
        for i in range(n):
            # Daemon threads: a request hung past the stop timeout must not keep the job alive.
            t = threading.Thread(target=self._work, name=f"cleanup-worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def _stop_workers(self) -> None:
        for _ in self._workers:
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            unit_id, rows = task
            try:
                result = self.engine.run_unit(rows, self.previously_sent)
            except Exception as exc:  # a bug must not lose rows: report them, keep going
                log.exception("internal error while sending rows %d..%d", rows[0].row, rows[-1].row)
                text = redact(f"{type(exc).__name__}: {exc}")
                result = UnitResult([r.result(Status.FAILED, "CLIENT_ERROR", text) for r in rows])
            self._results.put((unit_id, result))

    def _concurrency(self) -> int:
        if self.config.concurrency:
            return self.config.concurrency
        # Enough requests in flight to keep the portal's bucket draining at our rate; while
        # the bucket still has room (the burst at the start, or after a quiet spell), more,
        # to spend it quickly. Not more in steady state: a slot reserved far ahead cannot
        # be taken back when a refusal lowers the rate.
        steady = math.ceil(self.throttle.rate * self.latency) + 2
        return max(2, min(MAX_WORKERS, steady + self.throttle.credit()))

    def _observe_request(self, kind: str, started: float, elapsed: float, status: int) -> None:
        self.latency = 0.8 * self.latency + 0.2 * elapsed
        self.timeline.append((started, elapsed, status))

    # ------------------------------------------------------------------ summary

    def _count(self, result: RowResult) -> None:
        self.summary.add(result)
        self.progress.advance(1, 1 if result.status is Status.FAILED else 0)

    def _skip_reason(self, row: int) -> str:
        if self.aborted is not None:
            why = f"not sent: run aborted ({self.aborted.code})"
        else:
            why = f"not sent: job stopped ({self.stop.reason or 'stop'})"
        if row in self.previously_sent:
            why += "; an earlier run may have removed it"
        return why

    def _finish_summary(self, elapsed: float) -> RunSummary:
        s = self.summary
        s.elapsed_s = elapsed
        s.mode = "single" if self.engine.single else "batch"
        s.fallback_to_single = self.engine.stats.fallback
        t = self.transport.stats
        s.requests, s.batch_requests, s.single_requests = (
            t.requests,
            t.batch_requests,
            t.single_requests,
        )
        s.limit_refusals = self.throttle.stats.refusals
        s.operating_refusals = self.engine.stats.operating_refusals
        s.limit_wait_s = self.throttle.waited_so_far()  # wall-clock, all limits together
        sent = s.by_status[Status.REMOVED.value] + s.by_status[Status.FAILED.value]
        # The portal may have taught the engine a smaller batch than configured.
        per_request = (
            1 if self.engine.single else min(self.config.batch_size, self.engine.batch_limit)
        )
        # A request's typical round trip, not the EWMA (seeded with a guess, it still carries
        # the guess after a short run and would put the "maximum" below what was achieved).
        typical = statistics.median(e for _, e, _ in self.timeline) if self.timeline else 0.0
        s.ideal_s = ideal_seconds(math.ceil(sent / per_request), s.rate, s.burst, typical)
        s.retries = self.engine.stats.retries
        s.token_refreshes = getattr(self.transport.auth, "refreshes", 0)
        s.concurrency = self.config.concurrency or self._concurrency()
        s.timeline = _timeline(self.timeline, self.summary.started_at)
        if self.aborted is not None:
            s.aborted = redact(str(self.aborted))
        elif self.stop.reason in ("SIGINT", "SIGTERM"):
            s.interrupted = self.stop.reason
        s.exit_code = s.decide_exit_code()
        if self.aborted is not None:
            s.exit_code = self.aborted.exit_code  # 3, or 2 for a config problem found mid-run
        write_summary(self.config.report_path, s, self.config.settings())
        return s


def _estimate_rows(table: Table) -> int | None:
    rows = table.detected.get("rows")
    if isinstance(rows, int):
        return rows
    if table.format == "csv" and table.path.stat().st_size < (1 << 31):
        with table.path.open("rb") as fh:
            lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
        return max(lines - 1, 0) or None
    return None


def _timeline(events: list[tuple[float, float, int]], start: float) -> list[dict[str, float]]:
    """Requests per time bucket (at most ~120 buckets), for the HTML report's chart."""
    if not events:
        return []
    end = max(e[0] + e[1] for e in events)
    span = max(end - start, 1.0)
    width = max(1.0, math.ceil(span / 120))
    buckets: dict[int, dict[str, float]] = {}
    for started, elapsed, status in events:
        b = buckets.setdefault(
            int((started - start) // width), {"requests": 0, "refused": 0, "latency": 0.0}
        )
        b["requests"] += 1
        b["latency"] += elapsed
        if status in (429, 503):
            b["refused"] += 1
    out = []
    for i in sorted(buckets):
        b = buckets[i]
        out.append(
            {
                "t": i * width,
                "width": width,
                "requests": b["requests"],
                "refused": b["refused"],
                "latency": round(b["latency"] / b["requests"], 3),
            }
        )
    return out


__all__ = ["MAX_BATCH", "StopSignal", "run_file"]
