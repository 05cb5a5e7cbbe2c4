"""run_file(config) -> RunSummary: one run (one input file), callable without click.

Pipeline: the input streams in chunks through validation; the planner packs valid rows
into units (a batch of up to 50, or one row in single mode) handed to worker threads that
share one throttle; results come back in any order and are written to the report in
input order, flushed unit by unit. Every input row gets exactly one line.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from filelock import FileLock, Timeout

from cleanup.clock import Clock, SystemClock
from cleanup.errors import ConfigError, FatalAPIError, LockedError, OutputError
from cleanup.exits import EXIT_PAUSED, TIME_UP
from cleanup.inputs.readers import Table
from cleanup.inputs.select import open_rows
from cleanup.inputs.validate import Row, Validator
from cleanup.outputs.files import writing
from cleanup.outputs.journal import (
    Journal,
    check_resumable,
    find_journal,
    fingerprint,
    journal_path,
)
from cleanup.outputs.report import (
    ReportWriter,
    compact,
    lock_path,
    read_report,
    written_by_dry_run,
)
from cleanup.outputs.summary import summary_path, write_summary
from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.retry import RetryPolicy
from cleanup.pacing.throttle import Throttle, ideal_seconds, share_part
from cleanup.portal.auth import Auth
from cleanup.portal.protocol import MAX_BATCH
from cleanup.portal.transport import HTTPTransport
from cleanup.redact import redact
from cleanup.results import (
    RowResult,
    RunSummary,
    Settled,
    Status,
    Tally,
    TimeBucket,
    concluded,
    counts_by_status,
    statuses_of,
)
from cleanup.run.actions import DELETE, Action, Doubt, delete_action, skip_description, stopped_why
from cleanup.run.bounds import TimeBound, config_bound
from cleanup.run.config import NO_CREDENTIALS, RunConfig, load_bot_tokens
from cleanup.run.engine import Engine
from cleanup.run.estimate import Estimate, estimate, how_far_off
from cleanup.run.planner import Batch, Planner, count_batches
from cleanup.run.pool import WorkerPool
from cleanup.run.portals import PortalPacing, sleeping_on
from cleanup.run.progress import ProgressCallback, ProgressUpdate

log = logging.getLogger("cleanup")

MAX_WORKERS = 16
_BACKLOG_ROWS = 20_000  # results held for ordering before the open unit is sent early


class StopSignal:
    """Set once by a signal handler or an abort; the first reason wins."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None
        self._children: list[StopSignal] = []
        self._lock = threading.Lock()

    def stop(self, reason: str) -> None:
        with self._lock:
            if not self.event.is_set():
                self.reason = reason
                self.event.set()
            children = list(self._children)
        for child in children:
            child.stop(reason)

    def child(self) -> StopSignal:
        """A stop of its own (an abort in one job file stops that one only) that stopping
        this one stops too (a signal stops every job file)."""
        child = StopSignal()
        with self._lock:
            self._children.append(child)
            reason = self.reason if self.event.is_set() else None
        if reason is not None:
            child.stop(reason)
        return child

    @property
    def is_set(self) -> bool:
        return self.event.is_set()


def run_file(
    config: RunConfig,
    *,
    stop: StopSignal | None = None,
    clock: Clock | None = None,
    on_progress: ProgressCallback | None = None,
    action: Action = DELETE,
    pacing: PortalPacing | None = None,
    bound: TimeBound | None = None,
    rows_to_send: int | None = None,
) -> RunSummary:
    """One run: the input file `config` names, to its report. Raises CleanupError subclasses
    for problems with the run as a whole (configuration, unreadable input, lock); row problems
    and portal refusals end up in the report and the returned summary. `on_progress` is called
    as rows finish and while the run waits on a portal limit.

    `pacing`: the portal's bucket and operating-time budget when other runs on the same
    portal share them (`cleanup.run.portals`); by default the run has its own. `bound`: when
    the run must stop sending (a job file's run passes what is left of its own); by default
    the config's --max-duration and window, from now. `rows_to_send`: how many rows the run
    will send, when the caller knows (an undo counts its removed rows) and the input's size
    does not say it: for the estimate before sending, and the progress's total."""
    config.check()
    if action is DELETE:
        action = delete_action(absent_as_failed=config.absent_as_failed)
    if config.resume and not config.dry_run and written_by_dry_run(config.report_path):
        report = config.report_path
        log.info("%s is a dry run's report: nothing was sent; starting from row 1", report)
        config = config.model_copy(update={"resume": False})
    stop = stop or StopSignal()
    clock = clock or SystemClock(stop.event)
    auth = config.make_auth()
    bot_tokens = _bot_tokens(config, auth)
    table = open_input(config)
    validator = Validator(
        allow_unknown_reactions=config.allow_unknown_reactions, bot_tokens=bot_tokens
    )
    start = _start_of(config, auth, table, action)
    if config.dry_run:
        return _dry_run(config, table, validator, start, stop, action)
    if auth is None:  # check() refuses such a run; a caller that skipped it gets the same word
        raise ConfigError(NO_CREDENTIALS)
    lock = lock_report(config.report_path)
    try:
        with sleeping_on(stop.event):
            parts = _Parts.build(config, auth, bot_tokens, clock, action, pacing)
            run = _Run(config, table, validator, start, parts, stop, on_progress)
            run.rows_to_send = rows_to_send
            if rows_to_send is not None and on_progress and not config.resume:
                run.total = rows_to_send
            return run.execute(bound if bound is not None else config_bound(config))
    finally:
        lock.release()


def _start_of(config: RunConfig, auth: Auth | None, table: Table, action: Action) -> _Start:
    """What the summary takes from the run's start."""
    rate, burst = config.effective_rate
    return _Start(
        run_id=config.run_id or uuid.uuid4().hex[:12],
        input=str(config.input),
        report=None if config.dry_run else str(config.report_path),
        auth_mode=auth.mode if auth else "none",
        dry_run=config.dry_run,
        rate=rate,
        burst=burst,
        batch_size=config.batch_size,
        started_at=time.time(),
        source_report=(
            str(config.input) if config.choice or table.detected.get("report_rows") else None
        ),
        undo_of=str(config.input) if action.undo else None,
        retry_run=config.retry_run,
        settings=config.settings(),
        share=config.share,
    )


class _Start(TypedDict):
    """What the summary takes from the run's start."""

    run_id: str
    input: str
    report: str | None
    auth_mode: str
    dry_run: bool
    rate: float
    burst: int
    batch_size: int
    started_at: float
    source_report: str | None
    undo_of: str | None
    retry_run: int
    settings: dict[str, Any]
    share: float


def run_estimate(config: RunConfig, rows: int, bound: TimeBound | None) -> Estimate:
    """How long `rows` take at the run's pace and share, and what fits in its bound."""
    rate, burst = config.effective_rate
    seconds = bound.seconds if bound is not None and bound.seconds != math.inf else None
    return estimate(
        rows,
        rate=rate,
        burst=burst,
        share=config.share,
        batch_size=config.batch_size,
        single=_single_because(config),
        bound_s=seconds,
    )


def _single_because(config: RunConfig) -> str:
    """Why the run will send single calls: --mode single, or the portal refused batch for
    the run this one continues (--resume) or reads its rows from (a re-run or an undo of a
    report); "" when it will send batches."""
    if config.mode == "single":
        return "--mode single"
    if config.mode != "auto":
        return ""
    earlier = [(config.report_path, "the earlier run")] if config.resume else []
    earlier.append((config.input, f"the run of {config.input.name}"))
    for report, which in earlier:
        try:
            summary = json.loads(summary_path(report).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("fallback_to_single"):
            return f"the portal refused batch in {which}"
    return ""


def open_input(config: RunConfig) -> Table:
    """The run's input as the options say: the rows chosen, the columns named, the sheet."""
    return open_rows(
        config.input,
        choice=config.choice,
        column_overrides=config.columns,
        sheet=config.sheet,
        chunk_rows=config.chunk_rows,
    )


def _bot_tokens(config: RunConfig, auth: Auth | None) -> dict[int, str] | None:
    """botId -> botToken, which webhook mode needs (OAuth matches the bot by client_id)."""
    if config.bot_tokens is not None and (auth is None or auth.needs_bot_tokens):
        return load_bot_tokens(config.bot_tokens)
    if auth is not None and auth.needs_bot_tokens:
        raise ConfigError(
            "webhook mode needs each bot's botToken: give --bot-tokens FILE (or B24_BOT_TOKENS_FILE)"
        )
    return None


def lock_report(report: Path) -> FileLock:
    """One run per report at a time (LockedError, exit 4, while another holds it); the
    lock is `outputs.report.lock_path(report)`, in the hidden state folder."""
    path = lock_path(report)
    lock = FileLock(str(path), timeout=0)
    try:
        with writing(path):  # a read-only or full reports folder: exit 5, naming it
            path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire()
    except Timeout:
        raise LockedError(
            f"another reaction-cleanup run is working on {report} (lock"
            f" {path.relative_to(report.parent)}); wait for it to finish"
        ) from None
    return lock


def _dry_run(
    config: RunConfig,
    table: Table,
    validator: Validator,
    start: _Start,
    stop: StopSignal,
    action: Action,
) -> RunSummary:
    """Validate and plan. Given a --report (not an undo's), write there the report the run
    would start from: every row invalid, duplicate or to_send."""
    t0 = time.monotonic()
    examples: list[str] = []
    tally = Tally()
    to_send = 0
    report = config.report if config.report is not None and not action.undo else None
    with _dry_run_report(report) as writer:
        for chunk in table.chunks():
            checked = validator.check(chunk)
            n_inv, n_dup = checked.n_invalid, checked.n_duplicate
            tally.rows += len(checked)
            tally.by_status[action.recast.get(Status.INVALID, Status.INVALID)] += n_inv
            tally.by_status[action.recast.get(Status.DUPLICATE, Status.DUPLICATE)] += n_dup
            to_send += checked.n_to_send
            for i, (error, description) in checked.problems.items():
                tally.by_error[error] += 1
                if len(examples) < 10:
                    examples.append(f"row {checked.row_at(i)}: {description}")
            if writer is not None:
                writer.write(checked.as_planned())
    guess = run_estimate(config, to_send, config_bound(config))
    interrupted, exit_code = concluded(
        stopped_by=stop.reason,
        aborted_code=None,
        rows_not_done=tally.rows_not_done,
        failed_rows_code=config.failed_rows_exit_code,
    )
    summary = RunSummary(
        **{**start, "report": None if report is None else str(report)},
        mode="single" if config.mode == "single" else "batch",
        rows=tally.rows,
        by_status=counts_by_status(tally.by_status, statuses_of(undo=action.undo)),
        by_error=dict(tally.by_error.most_common()),
        elapsed_s=time.monotonic() - t0,
        to_send=to_send,
        planned_calls=guess.calls,
        estimated_s=guess.seconds,
        estimate=guess.as_dict(),
        examples=tuple(examples),
        left_out=int(table.detected.get("left_out", 0)),
        interrupted=interrupted,
        exit_code=exit_code,
    )
    if report is not None:
        write_summary(report, summary)
    return summary


@contextmanager
def _dry_run_report(report: Path | None) -> Iterator[ReportWriter | None]:
    """The dry run's report writer (None: no report), under the report's lock. A run's
    report (it has a journal) is the record of what was sent: never written over."""
    if report is None:
        yield None
        return
    lock = lock_report(report)
    try:
        if find_journal(report).exists():
            raise ConfigError(
                f"{report} is the report of a run that sent rows (it has a journal): a dry run"
                " does not write over it; give the dry run another --report"
            )
        writer = ReportWriter(report)
        try:
            yield writer
        except BaseException:
            writer.abandon()
            raise
        writer.close(complete=True)
    finally:
        lock.release()


# ---------------------------------------------------------------------- collaborators


@dataclass
class _Parts:
    """What a run sends with, built in one place; and what an earlier run left (--resume)."""

    auth: Auth
    throttle: Throttle
    budget: OperatingBudget
    transport: HTTPTransport
    journal: Journal
    engine: Engine
    finals: dict[int, RowResult]  # rows the report already has
    journaled: dict[int, Settled]  # outcomes only the journal has

    @classmethod
    def build(
        cls,
        config: RunConfig,
        auth: Auth,
        bot_tokens: dict[int, str] | None,
        clock: Clock,
        action: Action,
        pacing: PortalPacing | None = None,
    ) -> _Parts:
        if pacing is None:
            rate, burst = config.effective_rate
            pacing = PortalPacing.new(rate, burst, config.operating_limit, clock, config.share)
        throttle, budget = pacing.throttle, pacing.budget
        transport = HTTPTransport(
            auth,
            throttle,
            budget,
            timeout=config.timeout,
            pool_size=MAX_WORKERS,
            allow_insecure_http=config.allow_insecure_http,
        )
        report = config.report_path
        if config.resume:
            check_resumable(report)
        identity: dict[str, Any] = {"input": str(config.input), **fingerprint(config.input)}
        if config.only or config.only_error:  # --resume must choose the same rows
            identity["only"] = [
                sorted({v.casefold() for v in vs}) for vs in (config.only, config.only_error)
            ]
        journal = Journal(journal_path(report), identity, resume=config.resume)
        only_resend = config.redo_rows if config.retry_run else None
        finals = (
            read_report(report, journal.to_retry, only_resend=only_resend) if config.resume else {}
        )
        for row in config.redo_rows:  # their lines are replaced by this run's
            finals.pop(row, None)
        engine = Engine(
            transport,
            auth=auth,
            action=action,
            bot_tokens=bot_tokens,
            policy=RetryPolicy(max_retries=config.max_retries, max_wait=config.max_wait),
            mode=config.mode,
            clock=clock,
            throttle=throttle,
            budget=budget,
            journal=journal,
            rng=random.Random(),
        )
        # Results the earlier run knew but had not yet written to the report (it writes in
        # input order): taken as they are, not re-sent.
        journaled = {
            r: o
            for r, o in journal.outcomes.items()
            if r not in finals and r not in config.redo_rows
        }
        return cls(auth, throttle, budget, transport, journal, engine, finals, journaled)

    def close(self) -> None:
        self.journal.close()
        self.transport.close()


class _Emitter:
    """Writes results in input order; holds the ones that finish early.

    Row numbers may skip (blank rows, rows a --only left out): `expect` is told each
    chunk's numbers in order, and a result is written once those before it are."""

    def __init__(self, writer: ReportWriter, on_result: Callable[[RowResult], None]) -> None:
        self.writer = writer
        self.on_result = on_result
        self.order: deque[int] = deque()
        self.held: dict[int, tuple[RowResult, bool]] = {}

    def expect(self, rows: Iterable[int]) -> None:
        self.order.extend(rows)

    def put(self, result: RowResult, *, write: bool = True) -> None:
        self.held[result.row] = (result, write)

    def release(self) -> int:
        released = 0
        ready: list[RowResult] = []
        while self.order and self.order[0] in self.held:
            result, write = self.held.pop(self.order.popleft())
            if write:
                ready.append(result)
            self.on_result(result)
            released += 1
        if ready:
            self.writer.write(ready)
        return released

    @property
    def backlog(self) -> int:
        return len(self.held)


# ---------------------------------------------------------------------- the run


class _Run:
    def __init__(
        self,
        config: RunConfig,
        table: Table,
        validator: Validator,
        start: _Start,
        parts: _Parts,
        stop: StopSignal,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.config, self.table, self.validator, self.start = config, table, validator, start
        self.tally = Tally()
        self.parts, self.stop = parts, stop
        self.engine, self.throttle = parts.engine, parts.throttle
        self.previously_sent = parts.journal.previously_sent
        # Rows a unit handed back unsent when the run fell back to single calls.
        self.engine.hand_back = True
        self.returned: deque[Row] = deque()
        self.planner = Planner(lambda: 1 if self.engine.single else config.batch_size)
        self.pool = WorkerPool(
            lambda rows: self.engine.run_unit(rows, self.previously_sent),
            config.concurrency or MAX_WORKERS,
        )
        self.on_progress = on_progress
        self.total = _estimate_rows(table) if on_progress else None
        self.failed = 0
        self.waiting = ""  # what the run waits for, as last asked
        self.latency = 1.0  # seconds, EWMA of request round trips; sizes auto-concurrency
        self.timeline: list[tuple[float, float, int]] = []
        parts.transport.on_request.append(self._observe_request)
        self.aborted: FatalAPIError | None = None
        self.waited_before = parts.throttle.waited_so_far()  # a shared bucket's earlier waits
        self.bound: TimeBound | None = None
        self.estimate: dict[str, Any] | None = None  # what the run said before sending
        self.rows_to_send: int | None = None  # when the caller knows (run_file's)
        self.engine.time_up = self._time_up

    # ------------------------------------------------------------------ main loop

    def execute(self, bound: TimeBound | None = None) -> RunSummary:
        self.bound = bound
        timer = None
        if bound is not None and bound.seconds != math.inf:
            # Time up: the same stop as a signal's (nothing new is sent, requests in flight
            # get --stop-timeout), with its own reason: the run is paused, not interrupted.
            timer = threading.Timer(max(bound.seconds, 0.0), self.stop.stop, (TIME_UP,))
            timer.daemon = True
            timer.start()
        try:
            return self._execute()
        finally:
            if timer is not None:
                timer.cancel()

    def _execute(self) -> RunSummary:
        cfg = self.config
        writer = ReportWriter(cfg.report_path, append=cfg.resume)
        emitter = _Emitter(writer, self._count)
        log.info(
            "run %s: %s -> %s (%s, %s auth, %.3g req/s, burst %d)",
            self.start["run_id"],
            cfg.input,
            cfg.report_path,
            cfg.mode,
            self.start["auth_mode"],
            self.throttle.rate,
            self.throttle.burst,
        )
        self._announce_estimate()
        self._progress()
        t0 = time.monotonic()
        complete = False
        unwritable = False
        try:
            self.pool.start()
            for chunk in self.table.chunks():
                checked = self.validator.check(chunk)
                emitter.expect(checked.rows.tolist())
                for item in checked.items():
                    self._take(item, emitter)
                self._drain(emitter, block=False)
                emitter.release()
            self._submit(self.planner.flush(), emitter)
            self._finish_inflight(emitter)
            emitter.release()
            complete = emitter.backlog == 0
        except OutputError:
            # The report or the journal cannot be written: stop sending (nothing may go
            # out that the journal does not know of) and leave whole lines for --resume.
            unwritable = True
            self.stop.stop("output")
            raise
        finally:
            self.pool.stop()
            try:
                if unwritable:
                    writer.abandon()
                else:
                    writer.close(complete=complete and not self.stop.is_set)
            finally:
                self.parts.close()
                self._progress(finished=True)
        if cfg.resume:
            compact(cfg.report_path)
        return self._finish_summary(time.monotonic() - t0)

    def _take(self, item: Row | RowResult, emitter: _Emitter) -> None:
        """One validated input row: its result is known, or it goes to the planner."""
        if isinstance(item, RowResult):
            emitter.put(self.engine.action.adopt(item))
        elif item.row in self.parts.finals:
            emitter.put(self.parts.finals[item.row], write=False)
            self.tally.resumed(self.parts.finals[item.row])
        elif (known := self.parts.journaled.get(item.row)) is not None:
            emitter.put(result := item.result(*known))
            self.tally.resumed(result)
        elif self.stop.is_set:
            emitter.put(item.result(Status.SKIPPED, "", self._skip_reason(item.row)))
        elif (failed := self.engine.bot_failure(item)) is not None:
            emitter.put(failed)
        else:
            self._submit(self.planner.add(item), emitter)
        if emitter.backlog > _BACKLOG_ROWS and emitter.release() == 0:
            # Rows wait for an earlier unit: send the open one and wait for results.
            self._submit(self.planner.flush(), emitter)
            if self.pool.inflight:
                self._drain(emitter, block=True)

    def _submit(self, batches: list[Batch], emitter: _Emitter) -> None:
        """Send `batches`; first the rows a unit handed back (each a unit of its own)."""
        todo = deque(batch.rows for batch in batches)
        while todo or self.returned:
            while len(self.pool.inflight) >= self._concurrency() and not self.stop.is_set:
                self._drain(emitter, block=True)
            rows = [self.returned.popleft()] if self.returned else todo.popleft()
            if self.stop.is_set:
                for row in rows:
                    emitter.put(row.result(Status.SKIPPED, "", self._skip_reason(row.row)))
                continue
            self.pool.submit(rows)

    def _drain(self, emitter: _Emitter, *, block: bool, timeout: float = 0.2) -> None:
        while (result := self.pool.result(block=block, timeout=timeout)) is not None:
            if isinstance(result.fatal, OutputError):
                raise result.fatal  # a worker could not write the journal
            self.parts.journal.done(result.results)
            for r in result.results:
                emitter.put(r)
            if result.handed_back:  # sent next, row by row, in input order (the report's)
                rows = sorted([*self.returned, *result.handed_back], key=lambda r: r.row)
                self.returned = deque(rows)
            if result.fatal is not None and self.aborted is None:
                self.aborted = result.fatal
                log.error("aborting: %s", redact(str(result.fatal)))
                self.stop.stop("abort")
            emitter.release()
            emitter.writer.flush()
            block = False  # got one; take whatever else is ready without waiting
        # A long wait on a limit finishes no unit: keep the countdown moving.
        self._progress()

    def _finish_inflight(self, emitter: _Emitter) -> None:
        deadline: float | None = None
        while self.pool.inflight or self.returned:
            if self.returned:
                self._submit([], emitter)
                continue
            if self.stop.is_set and deadline is None:
                deadline = time.monotonic() + self.config.stop_timeout
            if deadline is not None and time.monotonic() > deadline:
                log.warning(
                    "%d request(s) still in flight after %.0f s; reporting their rows skipped",
                    len(self.pool.inflight),
                    self.config.stop_timeout,
                )
                for unit in self.pool.abandon():
                    for row in unit:
                        note = self._skip_reason(row.row, in_flight=True)
                        emitter.put(row.result(Status.SKIPPED, "", note, 1))
                break
            self._drain(emitter, block=True)

    def _concurrency(self) -> int:
        if self.config.concurrency:
            return self.config.concurrency
        # Enough requests in flight to keep the portal's bucket draining at our rate; while
        # the bucket still has room (the burst at the start, or after a quiet spell), more,
        # to spend it quickly. Not more in steady state: a slot reserved far ahead cannot
        # be taken back when a refusal lowers the rate.
        steady = math.ceil(self.throttle.rate * self.latency) + 2
        return max(2, min(MAX_WORKERS, steady + self.throttle.credit()))

    def _observe_request(self, mode: str, started: float, elapsed: float, status: int) -> None:
        self.latency = 0.8 * self.latency + 0.2 * elapsed
        self.timeline.append((started, elapsed, status))

    # ------------------------------------------------------------------ summary

    def _count(self, result: RowResult) -> None:
        self.tally.add(result)
        self.failed += result.status is Status.FAILED
        self._progress(self.waiting)

    def _progress(self, waiting: str | None = None, *, finished: bool = False) -> None:
        """Tell the caller; `waiting` None: ask the throttle what the run waits for now."""
        if self.on_progress is None:
            return
        if waiting is None:
            waiting = self.waiting = "" if finished else self.throttle.waiting_note()
        done = self.tally.rows
        self.on_progress(
            ProgressUpdate(
                done, self.failed, self.total, waiting, finished, self.tally.resumed_rows
            )
        )

    def _announce_estimate(self) -> None:
        """Log how long the rows will take (and what fits in the bound) before sending."""
        if self.rows_to_send is not None:
            todo = self.rows_to_send
        else:
            total = self.total if self.total is not None else _estimate_rows(self.table)
            if total is None:
                return
            todo = max(total - len(self.parts.finals) - len(self.parts.journaled), 0)
        guess = run_estimate(self.config, todo, self.bound)
        self.estimate = guess.as_dict()
        log.info("%s", guess.describe())
        if self.config.share < 1:
            log.info(
                "share %g: this run uses at most %.3g req/s and a burst of %d of the portal's"
                " %g req/s and %d",
                self.config.share,
                self.throttle.capacity.ceiling,
                self.throttle.burst,
                self.start["rate"],
                self.start["burst"],
            )

    def _time_up(self) -> str | None:
        """The bound's words for a row left unsent when it stopped the run; None otherwise."""
        if self.stop.reason == TIME_UP and self.bound is not None:
            return self.bound.skip_reason
        return None

    def _skip_reason(self, row: int, *, in_flight: bool = False) -> str:
        why = stopped_why(
            self.aborted.code if self.aborted else None,
            self.stop.reason or "stop",
            time_up=self._time_up(),
        )
        doubt = Doubt.EARLIER_RUN if row in self.previously_sent else Doubt.NONE
        return skip_description(why, self.engine.action.did, doubt=doubt, in_flight=in_flight)

    def _finish_summary(self, elapsed: float) -> RunSummary:
        """The run's summary, built once, and written beside the report."""
        tally, stats, t = self.tally, self.engine.stats, self.parts.transport.stats
        start = self.start
        sent = tally.sent - tally.resumed_sent  # this run's (not the rows kept, --resume)
        interrupted, exit_code = concluded(
            stopped_by=self.stop.reason,
            aborted_code=None if self.aborted is None else self.aborted.exit_code,
            rows_not_done=tally.rows_not_done,
            failed_rows_code=self.config.failed_rows_exit_code,
            rows_skipped=tally.by_status[Status.SKIPPED],
        )
        summary = RunSummary(
            **start,
            mode="single" if self.engine.single else "batch",
            rows=tally.rows,
            by_status=counts_by_status(tally.by_status, statuses_of(undo=self.engine.action.undo)),
            by_error=dict(tally.by_error.most_common()),
            elapsed_s=elapsed,
            requests=t.requests,
            batch_requests=t.batch_requests,
            single_requests=t.single_requests,
            # This run's own refusals (the bucket may be shared with other runs on the
            # portal); the waiting is the portal's held time while this run lasted.
            limit_refusals=stats.limit_refusals,
            operating_refusals=stats.operating_refusals,
            limit_wait_s=self.throttle.waited_so_far() - self.waited_before,
            ideal_s=self._ideal_s(sent),
            retries=stats.retries,
            outage_s=round(self.engine.hold.waited_s(), 3),
            outage_open=self.engine.hold.away_for() > 0,
            token_refreshes=getattr(self.parts.auth, "refreshes", 0),
            fallback_to_single=stats.fallback,
            concurrency=self.config.concurrency or self._concurrency(),
            resumed_rows=tally.resumed_rows,
            resumed_sent=tally.resumed_sent,
            given_up=tally.given_up,
            left_out=int(self.table.detected.get("left_out", 0)),
            timeline=_timeline(self.timeline, start["started_at"]),
            aborted=None if self.aborted is None else redact(str(self.aborted)),
            interrupted=interrupted,
            exit_code=exit_code,
            **self._bound_fields(exit_code, elapsed, sent),
        )
        if summary.paused:
            log.warning(
                "paused: time is up (%s); %d row(s) left for the next run (or --resume)",
                summary.paused,
                summary.rows_left,
            )
        write_summary(self.config.report_path, summary)
        return summary

    def _ideal_s(self, sent: int) -> float:
        """What a client keeping the run's part of the bucket exactly full would need for
        the rows this run sent (`ideal_seconds`, at the share's rate and burst)."""
        # The portal may have taught the engine a smaller batch than configured.
        per_request = (
            1 if self.engine.single else min(self.config.batch_size, self.engine.batch_limit)
        )
        # A request's typical round trip, not the EWMA (seeded with a guess, it still carries
        # the guess after a short run and would put the "maximum" below what was achieved).
        typical = statistics.median(e for _, e, _ in self.timeline) if self.timeline else 0.0
        rate, burst = share_part(self.start["rate"], self.start["burst"], self.config.share)
        return ideal_seconds(count_batches(sent, per_request), rate, burst, typical)

    def _bound_fields(self, exit_code: int, elapsed: float, sent: int) -> dict[str, Any]:
        """The time bound, why a paused run paused, and how far off the estimate was."""
        bound = self.bound if self.bound is not None and self.bound.seconds != math.inf else None
        paused = bound.why if bound is not None and exit_code == EXIT_PAUSED else None
        estimate = how_far_off(self.estimate, elapsed, sent) if self.estimate else None
        return {
            "time_bound_s": None if bound is None else round(bound.seconds, 3),
            "paused": paused,
            "estimate": estimate,
        }


def _estimate_rows(table: Table) -> int | None:
    if "left_out" in table.detected:
        return None  # a re-run of some of a report's rows: how many is known at the end
    rows = table.detected.get("rows")
    if isinstance(rows, int):
        return rows
    if table.format == "csv" and table.path.stat().st_size < (1 << 31):
        with table.path.open("rb") as fh:
            lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
        return max(lines - 1, 0) or None
    return None


def _timeline(events: list[tuple[float, float, int]], start: float) -> tuple[TimeBucket, ...]:
    """Requests per time bucket (at most ~120 buckets), for the HTML report's chart."""
    if not events:
        return ()
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
    return tuple(
        TimeBucket(
            t=i * width,
            width=width,
            requests=int(b["requests"]),
            refused=int(b["refused"]),
            latency=round(b["latency"] / b["requests"], 3),
        )
        for i, b in sorted(buckets.items())
    )


__all__ = ["MAX_BATCH", "StopSignal", "lock_report", "run_file"]
