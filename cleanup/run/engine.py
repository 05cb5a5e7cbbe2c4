"""Send one unit of work (up to 50 rows) until every row has a final status.

The engine knows the method and the batch protocol; the transport knows HTTP. Each row
keeps its true attempt count and whether an earlier attempt may already have removed
its reaction (a lost reply, a 5xx, a crash before the answer was recorded), so that a
REACTION_NOT_FOUND on a re-send is reported as `removed`, not as a failure.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cleanup.clock import Clock
from cleanup.errors import FatalAPIError
from cleanup.inputs.validate import Row
from cleanup.outputs.report import Journal
from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.retry import RetryPolicy
from cleanup.pacing.throttle import Throttle
from cleanup.portal.classify import (
    OPERATION_TIME_LIMIT,
    Kind,
    Outcome,
    classify_answer,
    classify_error,
    classify_result,
)
from cleanup.portal.transport import Answer, NetworkError, Stopped, Transport
from cleanup.redact import redact
from cleanup.results import RowResult, Status, gave_up
from cleanup.run.planner import MAX_BATCH, METHOD, command_key, delete_command, delete_params

log = logging.getLogger("cleanup")

ALREADY_ABSENT = "already absent on retry: an earlier attempt, whose answer was lost, removed it"
ALREADY_ABSENT_EARLIER_RUN = (
    "already absent on retry: an earlier run sent it and stopped before recording the answer,"
    " so that run removed it"
)


MAX_WAIT_REACHED = ": --max-wait reached"
MAX_RESENDS = 20  # rounds of ERROR_BATCH_LENGTH_EXCEEDED without progress before giving up


@dataclass
class EngineStats:
    retries: int = 0
    operating_refusals: int = 0
    fallback: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: float) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


@dataclass
class UnitResult:
    results: list[RowResult]
    fatal: FatalAPIError | None = None


class _RowState:
    __slots__ = ("attempts", "earlier", "maybe_done", "row")

    def __init__(self, row: Row, earlier: int) -> None:
        self.row = row
        # Requests of an earlier, stopped run that carried the row (from the journal): they
        # count as attempts, and any of them may have removed the reaction.
        self.earlier = earlier
        self.attempts = earlier
        self.maybe_done = earlier > 0


class _Unit:
    """Budgets of one unit: transient retries and total waiting."""

    def __init__(self) -> None:
        self.retries = 0
        self.resends = 0
        self.waited = 0.0
        self.refusals = 0
        self.operating_refusals = 0
        self.refreshed = False  # an expired token per command was refreshed for this unit


class Engine:
    def __init__(
        self,
        transport: Transport,
        *,
        bot_tokens: dict[int, str] | None,
        policy: RetryPolicy,
        mode: str,
        clock: Clock,
        throttle: Throttle,
        budget: OperatingBudget,
        journal: Journal | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.bot_tokens = bot_tokens
        self.policy = policy
        self.single = mode == "single"
        self.may_fall_back = mode == "auto"
        self.clock = clock
        self.throttle = throttle
        self.budget = budget
        self.journal = journal
        self.rng = rng or random.Random()
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self.failed_bots: dict[int, tuple[str, str, int]] = {}
        # Commands per batch request; lowered when the portal shows a smaller limit.
        self.batch_limit = MAX_BATCH

    # ------------------------------------------------------------------ public

    def bot_failure(self, row: Row) -> RowResult | None:
        """Rows of a bot the portal already rejected fail the same way, unsent."""
        failed = self.failed_bots.get(row.bot_id)
        if failed is None:
            return None
        code, description, first = failed
        note = f"{description} (not sent: bot {row.bot_id} was rejected on row {first})"
        return row.result(Status.FAILED, code, redact(note.strip()), 0)  # the portal's text

    def run_unit(
        self,
        rows: list[Row],
        previously_sent: Mapping[int, int] | frozenset[int] | set[int] = frozenset(),
    ) -> UnitResult:
        """`previously_sent`: row -> requests of an earlier run that carried it (a set: once)."""
        if isinstance(previously_sent, Mapping):
            states = [_RowState(r, previously_sent.get(r.row, 0)) for r in rows]
        else:
            states = [_RowState(r, int(r.row in previously_sent)) for r in rows]
        done: dict[int, RowResult] = {}
        unit = _Unit()
        fatal: FatalAPIError | None = None
        try:
            pending = self._drop_failed_bots(states, done)
            while pending:
                if self.single:
                    for state in pending:
                        self._single(state, unit, done)
                    pending = []
                else:
                    size = self.batch_limit
                    pending = self._batch_round(pending[:size], unit, done) + pending[size:]
                pending = self._drop_failed_bots(pending, done)
        except Stopped:
            pass
        except FatalAPIError as exc:
            fatal = exc
        for state in states:
            if state.row.row not in done:
                why = f"run aborted ({fatal.code})" if fatal else "job stopped"
                if state.maybe_done:
                    why += " before its outcome was known; an earlier attempt may have removed it"
                else:
                    why = f"not sent: {why}"
                done[state.row.row] = state.row.result(Status.SKIPPED, "", why, state.attempts)
        return UnitResult([done[s.row.row] for s in states], fatal)

    # ------------------------------------------------------------------ batch

    def _batch_round(
        self, pending: list[_RowState], unit: _Unit, done: dict[int, RowResult]
    ) -> list[_RowState]:
        commands = {command_key(s.row): delete_command(s.row, self._token(s.row)) for s in pending}
        try:
            answer = self.transport.batch(
                commands, before_send=self._journal_sent([s.row.row for s in pending])
            )
        except NetworkError as exc:
            return self._network_failure(exc, pending, unit, done)
        except Stopped:
            self._unsent(pending, counted=False)  # stopped before it left
            raise
        for s in pending:
            s.attempts += 1
        outcome = classify_answer(answer.status, answer.body, context="batch")
        if outcome.kind is not Kind.OK:
            return self._call_failure(outcome, answer, pending, unit, done)
        body = answer.body
        self.budget.observe(body.get("time"), "batch")  # the batch method's own budget
        outer = body.get("result")
        if not isinstance(outer, dict):
            outer = {}
        results = _as_map(outer.get("result"))
        errors = _as_map(outer.get("result_error"))
        for timing in _as_map(outer.get("result_time")).values():
            self.budget.observe(timing)

        again: list[_RowState] = []
        unsure: list[_RowState] = []
        blocked: list[_RowState] = []  # refused for the operating-time limit
        refused = False
        last: Outcome | None = None
        fatal: Outcome | None = None
        expired: Outcome | None = None
        for s in pending:
            key = command_key(s.row)
            if key in errors:
                code, text = _error_entry(errors[key])
                outcome = classify_error(code, text, status=None, context="command")
            elif key in results:
                outcome = classify_result(results[key])
            else:
                # Neither map names it: the portal may or may not have run it.
                outcome = Outcome(
                    Kind.TRANSIENT,
                    "MISSING_RESULT",
                    "the batch answer did not mention this command",
                )
            kind = outcome.kind
            if kind in (Kind.OK, Kind.ROW_FAILED, Kind.BOT_FAILED, Kind.NOT_FOUND):
                done[s.row.row] = self._settle(s, outcome)
            elif kind is Kind.RESEND:
                self._unsent([s])  # never ran: the portal cut the batch at its limit
                if unit.resends > MAX_RESENDS:
                    done[s.row.row] = self._fail(s, outcome)
                else:
                    again.append(s)
            elif kind is Kind.RATE_LIMITED:
                self._unsent([s])  # refused for the rate limit: nothing ran, not an attempt
                refused = True
                again.append(s)
            elif kind is Kind.OPERATING_LIMIT:
                self._unsent([s])  # the method was blocked: nothing ran, not an attempt
                blocked.append(s)
                again.append(s)
            elif kind is Kind.BATCH_NOT_ALLOWED:
                self._unsent([s])  # refused unrun: not an attempt
                if not self._fall_back(outcome):
                    done[s.row.row] = self._fail(s, outcome)
                else:
                    again.append(s)  # the single call is its first real try
            elif kind is Kind.EXPIRED_TOKEN:
                self._unsent([s])  # refused unrun
                expired = expired or outcome
                again.append(s)
            elif kind is Kind.FATAL:
                # Settle the rest of the answer first: rows after this one may have been
                # removed, and must not be reported as unsent.
                self._unsent([s])
                fatal = fatal or outcome
            else:  # TRANSIENT
                s.maybe_done = True
                unsure.append(s)
                again.append(s)
                last = outcome
        if expired is not None and fatal is None:
            # One refresh for the whole answer, shared with other workers (by the token the
            # batch carried); a unit whose commands expire again after it is aborted.
            auth = self.transport.auth
            if unit.refreshed:
                renewed = auth.replaced(answer.token)
            else:
                unit.refreshed = True
                renewed = auth.refresh(answer.token)
            if not renewed:
                fatal = expired
        if fatal is not None:
            raise FatalAPIError(fatal.error, fatal.description, fatal.hint)
        overflow = sum(
            1
            for s in pending
            if command_key(s.row) in errors
            and _error_entry(errors[command_key(s.row)])[0] == "ERROR_BATCH_LENGTH_EXCEEDED"
        )
        if overflow:
            self._lower_batch_limit(len(pending) - overflow)
        if any(s.row.row not in done for s in again) and len(again) == len(pending):
            unit.resends += 1  # a round that settled nothing: bound it
        if blocked:
            self._operating_wait(unit, blocked, done)
        if refused:
            self._limit_wait(unit, None, again, done, sent_ago=answer.elapsed)
        if unsure and last is not None:
            self._transient_wait(unit, last, unsure, done, unreachable=False)
        return [s for s in again if s.row.row not in done]

    # ------------------------------------------------------------------ single

    def _single(self, state: _RowState, unit: _Unit, done: dict[int, RowResult]) -> None:
        params = delete_params(state.row, self._token(state.row))
        while state.row.row not in done:
            try:
                answer = self.transport.call(
                    METHOD, params, before_send=self._journal_sent([state.row.row])
                )
            except NetworkError as exc:
                self._network_failure(exc, [state], unit, done)
                continue
            except Stopped:
                self._unsent([state], counted=False)  # stopped before it left
                raise
            state.attempts += 1
            outcome = classify_answer(answer.status, answer.body, context="single")
            if outcome.kind is Kind.OK:
                self.budget.observe(answer.body.get("time"))
                outcome = classify_result(answer.body.get("result"))
            if outcome.kind in (Kind.OK, Kind.ROW_FAILED, Kind.BOT_FAILED, Kind.NOT_FOUND):
                done[state.row.row] = self._settle(state, outcome)
            elif outcome.kind is Kind.BATCH_NOT_ALLOWED:
                self._unsent([state])  # refused unrun: not an attempt
                done[state.row.row] = self._fail(state, outcome)  # not even singly: give up
            else:
                self._call_failure(outcome, answer, [state], unit, done)

    # ------------------------------------------------------------------ outcomes

    def _settle(self, s: _RowState, outcome: Outcome) -> RowResult:
        kind = outcome.kind
        if kind is Kind.OK:
            return s.row.result(Status.REMOVED, attempts=s.attempts)
        if kind is Kind.NOT_FOUND and s.maybe_done:
            # Only this answer in this run: the doubt comes from the earlier run's journal.
            why = ALREADY_ABSENT_EARLIER_RUN if s.attempts - s.earlier <= 1 else ALREADY_ABSENT
            return s.row.result(Status.REMOVED, "", why, s.attempts)
        if kind is Kind.BOT_FAILED:
            with self._lock:
                self.failed_bots.setdefault(
                    s.row.bot_id, (outcome.error, outcome.description, s.row.row)
                )
        return self._fail(s, outcome)

    def _fail(self, s: _RowState, outcome: Outcome) -> RowResult:
        return s.row.result(Status.FAILED, outcome.error, redact(outcome.description), s.attempts)

    def _call_failure(
        self,
        outcome: Outcome,
        answer: Answer,
        pending: list[_RowState],
        unit: _Unit,
        done: dict[int, RowResult],
    ) -> list[_RowState]:
        """An error for the whole call: nothing or everything in it is affected alike."""
        kind = outcome.kind
        if kind is Kind.RATE_LIMITED:
            self._unsent(pending)  # refused at the door: not an attempt at the row
            self._limit_wait(unit, answer.retry_after, pending, done, sent_ago=answer.elapsed)
        elif kind is Kind.OPERATING_LIMIT:
            self._unsent(pending)  # the method was blocked: nothing ran, not an attempt
            self._operating_wait(unit, pending, done, answer.retry_after)
        elif kind is Kind.RESEND:
            # The whole batch refused as too long (the docs' HTTP 400): nothing ran. Halve
            # it until the portal takes it; bounded, so a portal that never does ends it.
            self._unsent(pending)
            unit.resends += 1
            if unit.resends > MAX_RESENDS:
                for s in pending:
                    done[s.row.row] = self._fail(s, outcome)
            else:
                self._lower_batch_limit(len(pending) // 2)
        elif kind is Kind.BATCH_NOT_ALLOWED:
            self._unsent(pending)  # refused unrun: not an attempt (singly, the first real try)
            if not self._fall_back(outcome):
                for s in pending:
                    done[s.row.row] = self._fail(s, outcome)
        elif kind in (Kind.FATAL, Kind.EXPIRED_TOKEN):
            self._unsent(pending)  # refused at the door (credentials, plan): nothing ran
            raise FatalAPIError(outcome.error, outcome.description, outcome.hint)
        elif kind is Kind.TRANSIENT:
            for s in pending:
                s.maybe_done = True
            if outcome.error.startswith("HTTP_") and answer.snippet:
                outcome = Outcome(
                    outcome.kind, outcome.error, f"{outcome.description}: {answer.snippet[:120]}"
                )
            self._transient_wait(unit, outcome, pending, done, unreachable=False)
        else:  # a method error for the whole call: every row gets it
            for s in pending:
                done[s.row.row] = self._settle(s, outcome)
        return [s for s in pending if s.row.row not in done]

    def _network_failure(
        self, exc: NetworkError, pending: list[_RowState], unit: _Unit, done: dict[int, RowResult]
    ) -> list[_RowState]:
        for s in pending:
            if exc.maybe_sent:
                s.attempts += 1
                s.maybe_done = True
        code = "NETWORK_ERROR" if exc.kind not in ("timeout",) else "TIMEOUT"
        outcome = Outcome(Kind.TRANSIENT, code, str(exc))
        self._transient_wait(unit, outcome, pending, done, unreachable=not exc.maybe_sent)
        return [s for s in pending if s.row.row not in done]

    # ------------------------------------------------------------------ waiting

    def _transient_wait(
        self,
        unit: _Unit,
        outcome: Outcome,
        rows: list[_RowState],
        done: dict[int, RowResult],
        *,
        unreachable: bool,
    ) -> None:
        unit.retries += 1
        if unit.retries > self.policy.max_retries:
            if unreachable:
                hint = (
                    f"The portal did not accept connections after {self.policy.max_retries} "
                    "retries; check the address and the network"
                )
                if outcome.description.startswith("ssl:"):
                    # e.g. https:// to a plain-http port, or a certificate not trusted here
                    hint += (
                        " (the TLS handshake failed: does the portal speak https:// at this"
                        " address, with a certificate trusted here?)"
                    )
                raise FatalAPIError("PORTAL_UNREACHABLE", redact(outcome.description), hint)
            for s in rows:
                why = f" after {s.attempts} attempts"
                self._give_up(s, done, outcome.kind, outcome.error, outcome.description, why)
            return
        self.stats.add(retries=1)
        delay = self.policy.backoff(unit.retries, self.rng)
        log.debug("retrying %d row(s) in %.1f s after %s", len(rows), delay, redact(outcome.error))
        if not self._wait(unit, delay):
            for s in rows:
                self._give_up(
                    s, done, outcome.kind, outcome.error, outcome.description, MAX_WAIT_REACHED
                )

    def _give_up(
        self,
        s: _RowState,
        done: dict[int, RowResult],
        kind: Kind,
        error: str,
        description: str,
        why: str,
    ) -> None:
        done[s.row.row] = self._fail(s, Outcome(kind, error, gave_up(description, why)))

    def _limit_wait(
        self,
        unit: _Unit,
        retry_after: float | None,
        rows: list[_RowState],
        done: dict[int, RowResult],
        *,
        sent_ago: float | None = None,
    ) -> None:
        unit.refusals += 1
        self.throttle.on_refusal(retry_after, sent_ago)
        delay = self.policy.limit_wait(unit.refusals, retry_after)
        self.throttle.held(delay)  # wall-clock waiting time for the summary
        if not self._wait(unit, delay):
            for s in rows:
                self._give_up(
                    s,
                    done,
                    Kind.RATE_LIMITED,
                    "QUERY_LIMIT_EXCEEDED",
                    "the portal kept refusing for its rate limit",
                    MAX_WAIT_REACHED,
                )

    def _operating_wait(
        self,
        unit: _Unit,
        rows: list[_RowState],
        done: dict[int, RowResult],
        retry_after: float | None = None,
    ) -> None:
        unit.operating_refusals += 1
        self.stats.add(operating_refusals=1)
        self.budget.refused()  # the portal's limit is at most what it reported
        reset_in = self.budget.reset_in()
        if reset_in is None and self.budget.reset_at is not None:
            # The known reset has just passed, yet the window is still full (errors carry no
            # newer time): short waits that grow, not the long blind backoff.
            reset_in = min(2.0 ** (unit.operating_refusals - 1), 60.0)
        delay = self.policy.operating_wait(unit.operating_refusals, reset_in, retry_after)
        # Bounded like every other wait: a portal that keeps the method blocked must not
        # hold the job forever. The pause itself is served by the throttle (all workers).
        if not self._spend_wait(unit, delay):
            for s in rows:
                self._give_up(
                    s,
                    done,
                    Kind.OPERATING_LIMIT,
                    OPERATION_TIME_LIMIT,
                    "the portal's operating-time limit for the method stayed spent",
                    MAX_WAIT_REACHED,
                )
            return
        # Everyone waits: the budget is per method, for the whole portal. Said once per
        # pause, not by every worker that runs into it.
        if self.throttle.pause(delay):
            log.warning(
                "the portal's operating-time limit for %s is spent (OPERATION_TIME_LIMIT); "
                "waiting %.0f s for it to reset, then re-sending",
                METHOD,
                delay,
            )

    def _spend_wait(self, unit: _Unit, seconds: float) -> bool:
        """Count `seconds` against the unit's --max-wait; False if that would exceed it."""
        if unit.waited + seconds > self.policy.max_wait:
            return False
        unit.waited += seconds
        return True

    def _wait(self, unit: _Unit, seconds: float) -> bool:
        """Sleep `seconds` unless the unit's wait budget is spent. Raises Stopped on stop."""
        if not self._spend_wait(unit, seconds):
            return False
        if not self.clock.sleep(seconds):
            raise Stopped
        return True

    # ------------------------------------------------------------------ helpers

    def _fall_back(self, outcome: Outcome) -> bool:
        """Switch the whole run to single calls. False when --mode batch forbids it."""
        if not self.may_fall_back:
            return False
        with self._lock:
            if not self.single:
                self.single = True
                self.stats.fallback = f"{outcome.error}: {outcome.description}".strip(": ")
                log.warning(
                    "the portal does not allow %s inside batch (%s); sending the rows one by one from now on",
                    METHOD,
                    outcome.error,
                )
        return True

    def _journal_sent(self, rows: list[int]) -> Callable[[], None] | None:
        """Recorded as the request leaves (after its throttle slot), not before it waits:
        a crash while it waits must not make these rows look possibly removed."""
        journal = self.journal
        if journal is None:
            return None
        return lambda: journal.sent(rows)

    def _unsent(self, states: Iterable[_RowState], *, counted: bool = True) -> None:
        """The request that carried these rows never ran: take it back from the attempts
        (`counted`: already added for it) and from the journal, so a resume agrees."""
        states = list(states)
        if counted:
            for s in states:
                s.attempts -= 1
        if self.journal is not None:
            self.journal.unsent(s.row.row for s in states)

    def _lower_batch_limit(self, size: int) -> None:
        size = max(1, size)
        with self._lock:
            if size < self.batch_limit:
                self.batch_limit = size
                log.warning(
                    "the portal runs at most %d command(s) per batch (ERROR_BATCH_LENGTH_EXCEEDED);"
                    " sending batches of %d from now on",
                    size,
                    size,
                )

    def _token(self, row: Row) -> str | None:
        return None if self.bot_tokens is None else self.bot_tokens.get(row.bot_id)

    def _drop_failed_bots(
        self, states: list[_RowState], done: dict[int, RowResult]
    ) -> list[_RowState]:
        if not self.failed_bots:
            return states
        keep = []
        for s in states:
            failed = self.bot_failure(s.row)
            if failed is None:
                keep.append(s)
            else:
                done[s.row.row] = failed
        return keep


def _as_map(value: Any) -> dict[str, Any]:
    """PHP json_encode: an empty map arrives as [], keys 0..n-1 as a list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _error_entry(entry: Any) -> tuple[str, str]:
    if isinstance(entry, dict):
        return str(entry.get("error") or ""), str(entry.get("error_description") or "")
    return "", str(entry)
