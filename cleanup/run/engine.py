"""Send one unit of work (up to 50 rows) until every row has a final status.

The engine knows batching, pacing, retries and lost replies; the `Action` knows the method
(what to send for a row and what an answer means for it); the transport knows HTTP. What
each kind of answer leads to is declared once, in the decision tables below. Each row keeps
its true attempt count (requests that reached the method, not those refused at the door)
and whether an earlier attempt may already have acted (a lost reply, a 5xx, a crash before
the answer was recorded), so that the action can read a REACTION_NOT_FOUND on a re-send
as the earlier attempt's work.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from cleanup.clock import Clock
from cleanup.errors import FatalAPIError, NetworkError, OutputError, Stopped, WaitTooLong
from cleanup.inputs.validate import Row
from cleanup.outputs.report import Journal
from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.retry import RetryPolicy
from cleanup.pacing.throttle import OPERATING_PAUSE, MayHold, Throttle
from cleanup.portal.auth import TokenRenewal
from cleanup.portal.classify import OPERATION_TIME_LIMIT, Kind, Outcome, is_unavailable
from cleanup.portal.envelope import BatchEnvelope, call_outcome, single_result
from cleanup.portal.outage import OutageHold
from cleanup.portal.protocol import MAX_BATCH
from cleanup.portal.transport import Answer, Transport
from cleanup.redact import redact
from cleanup.results import RowResult, Status, gave_up
from cleanup.run.actions import DELETE, Action, Doubt, failed, skip_description, stopped_why
from cleanup.run.planner import Batch, plan

log = logging.getLogger("cleanup")

MAX_WAIT_REACHED = ": --max-wait reached"
MAX_OVERFLOWS = 20  # rounds of ERROR_BATCH_LENGTH_EXCEEDED without progress before giving up
# Network failures that may mean the portal is away (see cleanup.portal.outage): the
# connection refused or its name not resolved, a connect timeout, a request dropped.
OUTAGE_CAUSES = frozenset({"connect", "connect_timeout", "connection_lost"})


# ---------------------------------------------------------------------- decision tables


class Step(Enum):
    """What the engine does with the rows an answer names. Declared in the order a round
    takes them: rows are settled before an abort (rows after a fatal command may have been
    acted on), and waits come last."""

    SETTLE = "settle"  # the answer is the row's: the action gives its verdict
    FAIL = "fail"  # the row cannot be done this way: failed with this outcome
    ABORT = "abort"  # the run cannot go on (credentials, plan, blocked portal)
    REFRESH = "refresh"  # the token expired: renew it, then send again
    SHRINK = "shrink"  # more commands than the portal runs: smaller batches, send again
    FALL_BACK = "fall_back"  # the method is not allowed in a batch: single calls from now on
    WAIT_OPERATING = "wait_operating"  # the method's operating time is spent: wait for reset
    WAIT_RATE = "wait_rate"  # refused for the rate limit: wait, send again
    RETRY = "retry"  # the outcome is unknown: back off, send again (--max-retries)


class Rule(NamedTuple):
    step: Step
    ran: bool  # the method ran, or may have: an attempt at the row (else the journal forgets it)


# One command's entry in a batch answer.
COMMAND_RULES: Mapping[Kind, Rule] = {
    Kind.OK: Rule(Step.SETTLE, ran=True),
    Kind.ROW_FAILED: Rule(Step.SETTLE, ran=True),
    Kind.BOT_FAILED: Rule(Step.SETTLE, ran=True),
    Kind.NOT_FOUND: Rule(Step.SETTLE, ran=True),
    Kind.TRANSIENT: Rule(Step.RETRY, ran=True),
    Kind.RATE_LIMITED: Rule(Step.WAIT_RATE, ran=False),
    Kind.OPERATING_LIMIT: Rule(Step.WAIT_OPERATING, ran=False),
    Kind.OVERFLOW: Rule(Step.SHRINK, ran=False),
    Kind.BATCH_NOT_ALLOWED: Rule(Step.FALL_BACK, ran=False),
    Kind.EXPIRED_TOKEN: Rule(Step.REFRESH, ran=False),
    Kind.FATAL: Rule(Step.ABORT, ran=False),
}
# The answer to a whole batch request, for every row it carried. An expired token here
# survived the transport's own refresh of the call: final.
BATCH_RULES: Mapping[Kind, Rule] = {
    **COMMAND_RULES,
    Kind.EXPIRED_TOKEN: Rule(Step.ABORT, ran=False),
}
# A single call of the method: refused even singly, there is nothing left to fall back to.
SINGLE_RULES: Mapping[Kind, Rule] = {
    **BATCH_RULES,
    Kind.BATCH_NOT_ALLOWED: Rule(Step.FAIL, ran=False),
}


# ---------------------------------------------------------------------- state


@dataclass
class EngineStats:
    retries: int = 0
    limit_refusals: int = 0  # this engine's own (its throttle may serve other runs too)
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
    # Why the run cannot go on: the portal refused it, or the journal cannot be written.
    fatal: FatalAPIError | OutputError | None = None
    # Rows not sent: the engine switched to single calls, and the caller sends each as a
    # unit of its own (`Engine.hand_back`), so that each row's result is known on its own.
    handed_back: list[Row] = field(default_factory=list)


class _RowState:
    __slots__ = ("attempts", "earlier", "maybe_done", "retries", "row", "waited")

    def __init__(self, row: Row, earlier: int) -> None:
        self.row = row
        # The row's own budgets: re-sends after an unknown outcome (--max-retries) and
        # seconds waited (--max-wait). A batch spends them for every row it carries, and
        # no row's faults spend another's.
        self.retries = 0
        self.waited = 0.0
        # Requests of an earlier, stopped run that carried the row (from the journal): they
        # count as attempts, and any of them may have acted.
        self.earlier = earlier
        self.attempts = earlier
        self.maybe_done = earlier > 0

    @property
    def doubt(self) -> Doubt:
        if not self.maybe_done:
            return Doubt.NONE
        # Only this answer in this run: the doubt comes from the earlier run's journal.
        return Doubt.EARLIER_RUN if self.attempts - self.earlier <= 1 else Doubt.THIS_RUN


class _Unit:
    """One unit's rows that have their result, and how often the portal refused it (the
    retry and wait budgets are each row's own)."""

    def __init__(self) -> None:
        self.done: dict[int, RowResult] = {}
        self.handed_back: list[Row] = []
        self.overflows = 0
        self.refusals = 0
        self.operating_refusals = 0
        self.refreshed = False  # an expired token per command was renewed for this unit

    def open(self, states: Iterable[_RowState]) -> list[_RowState]:
        back = {r.row for r in self.handed_back}
        return [s for s in states if s.row.row not in self.done and s.row.row not in back]


Group = list[tuple[_RowState, Outcome]]


@dataclass(frozen=True, slots=True)
class _Round:
    """The answer a step acts on."""

    answer: Answer
    whole_call: bool  # one outcome for the whole request, not one per command
    carried: int  # rows the request carried


# ---------------------------------------------------------------------- engine


class Engine:
    def __init__(
        self,
        transport: Transport,
        *,
        auth: TokenRenewal,
        bot_tokens: dict[int, str] | None,
        policy: RetryPolicy,
        mode: str,
        clock: Clock,
        throttle: Throttle,
        budget: OperatingBudget,
        action: Action = DELETE,
        journal: Journal | None = None,
        rng: random.Random | None = None,
        hold: OutageHold | None = None,
    ) -> None:
        self.transport = transport
        # When a time bound stopped the run, its words for the rows left unsent (the runner
        # knows: "time is up: --max-duration 2h; ..."); None otherwise.
        self.time_up: Callable[[], str | None] = lambda: None
        self.auth = auth
        self.action = action
        self.bot_tokens = bot_tokens
        self.policy = policy
        self.single = mode == "single"
        self.may_fall_back = mode == "auto"
        self.clock = clock
        self.throttle = throttle
        self.budget = budget
        self.journal = journal
        self.rng = rng or random.Random()
        # The portal being away holds every worker of the run, for up to --max-wait.
        self.hold = hold or OutageHold(clock, max_wait=policy.max_wait)
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self.failed_bots: dict[int, tuple[str, str, int]] = {}
        self._said_too_long = False  # the warning for rows given up at a long pause, once
        # Commands per batch request; lowered when the portal shows a smaller limit.
        self.batch_limit = MAX_BATCH
        # True: a unit of several rows that is to be sent as single calls (the portal refused
        # the method in batch) is handed back unsent, for the caller to send row by row:
        # one unit's 50 single calls would hold its rows' results until the last is answered.
        self.hand_back = False

    # ------------------------------------------------------------------ public

    def bot_failure(self, row: Row) -> RowResult | None:
        """Rows of a bot the portal already rejected fail the same way, unsent."""
        failed_bot = self.failed_bots.get(row.bot_id)
        if failed_bot is None:
            return None
        code, description, first = failed_bot
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
        unit = _Unit()
        fatal: FatalAPIError | None = None
        try:
            self._send_all(states, unit)
        except Stopped:
            pass
        except FatalAPIError as exc:
            fatal = exc
        why = stopped_why(fatal.code if fatal else None, time_up=self.time_up())
        for state in unit.open(states):
            doubt = Doubt.THIS_RUN if state.maybe_done else Doubt.NONE
            note = skip_description(why, self.action.did, doubt=doubt)
            unit.done[state.row.row] = state.row.result(Status.SKIPPED, "", note, state.attempts)
        results = [unit.done[s.row.row] for s in states if s.row.row in unit.done]
        return UnitResult(results, fatal, unit.handed_back)

    def _send_all(self, states: list[_RowState], unit: _Unit) -> None:
        pending = self._drop_failed_bots(states, unit)
        while pending:
            if self.single:
                self._void_batch_attempts(pending)
                if self.hand_back and len(pending) > 1:
                    unit.handed_back = [s.row for s in pending]
                    return
                for state in pending:
                    while state.row.row not in unit.done:
                        self._single_round(state, unit)
                pending = []
            else:
                batch = next(plan((s.row for s in pending), self.batch_limit))
                sent, rest = pending[: len(batch)], pending[len(batch) :]
                pending = self._batch_round(batch, sent, unit) + rest
            pending = self._drop_failed_bots(pending, unit)

    def _void_batch_attempts(self, pending: list[_RowState]) -> None:
        """Rows about to go as single calls after the fallback: this run's batch requests
        that carried them (answers lost, or unknown) never ran the method, which the portal
        refuses in batch. Not attempts, and no doubt (the journal forgets them too)."""
        for state in pending:
            for _ in range(state.attempts - state.earlier):
                self._unsent([state])
            state.attempts = state.earlier
            state.maybe_done = state.earlier > 0

    # ------------------------------------------------------------------ sending

    def _batch_round(self, batch: Batch, states: list[_RowState], unit: _Unit) -> list[_RowState]:
        commands = {
            key: self.action.command(row, self._token(row)) for key, row in batch.commands.items()
        }
        answer = self._send(
            states,
            unit,
            lambda before, may_hold: self.transport.batch(
                commands, before_send=before, may_hold=may_hold
            ),
        )
        if answer is None:
            return unit.open(states)
        outcome = call_outcome(answer, context="batch")
        if outcome.kind is not Kind.OK:
            return self._apply(BATCH_RULES, [(s, outcome) for s in states], answer, unit)
        envelope = BatchEnvelope.parse(answer.body)
        self.budget.observe(envelope.time, "batch")  # the batch method's own budget
        for timing in envelope.timings():
            self.budget.observe(timing)
        outcomes = [
            (s, envelope.outcome(key)) for key, s in zip(batch.commands, states, strict=True)
        ]
        return self._apply(COMMAND_RULES, outcomes, answer, unit, whole_call=False)

    def _single_round(self, state: _RowState, unit: _Unit) -> None:
        params = self.action.params(state.row, self._token(state.row))
        method = self.action.method
        answer = self._send(
            [state],
            unit,
            lambda before, may_hold: self.transport.call(
                method, params, before_send=before, may_hold=may_hold
            ),
        )
        if answer is None:
            return
        outcome = call_outcome(answer, context="single")
        if outcome.kind is Kind.OK:
            outcome, timing = single_result(answer)
            self.budget.observe(timing)
        self._apply(SINGLE_RULES, [(state, outcome)], answer, unit)

    def _send(
        self,
        states: list[_RowState],
        unit: _Unit,
        request: Callable[[Callable[[], None] | None, MayHold], Answer],
    ) -> Answer | None:
        """The request's answer; None after a network failure or a wait too long for its
        rows (handled here). While the portal is away, waits in the outage hold first (or
        is the probe). A pause it meets before it leaves (the operating-time limit, a
        Retry-After) is counted against its rows' --max-wait."""
        self.hold.admit()
        try:
            answer = request(
                self._journal_sent([s.row.row for s in states]),
                lambda seconds: self._spend_wait(states, seconds),
            )
        except NetworkError as exc:
            self._network_failure(exc, states, unit)
            return None
        except WaitTooLong as exc:
            self.hold.release()
            self._unsent(states)  # never left
            self._too_long(exc, states, unit)
            return None
        except Stopped:
            self.hold.release()
            self._unsent(states)  # stopped before it left
            raise
        except BaseException:
            self.hold.release()
            raise
        if not is_unavailable(answer.status, answer.body):
            self.hold.answered()
        return answer

    # ------------------------------------------------------------------ one answer

    def _apply(
        self,
        rules: Mapping[Kind, Rule],
        outcomes: Group,
        answer: Answer,
        unit: _Unit,
        *,
        whole_call: bool = True,
    ) -> list[_RowState]:
        """Look each row's outcome up in `rules`, count the attempts that reached the
        method, then take the steps in their order. Returns the rows to send again."""
        steps: dict[Step, Group] = {}
        unrun: list[_RowState] = []
        for state, outcome in outcomes:
            rule = rules[outcome.kind]
            if rule.ran:
                state.attempts += 1
            else:
                unrun.append(state)
            steps.setdefault(rule.step, []).append((state, outcome))
        self._unsent(unrun)  # refused before the method ran: not an attempt
        rnd = _Round(answer, whole_call, len(outcomes))
        for step in Step:
            group = steps.get(step)
            if group:
                self._steps[step](self, group, rnd, unit)
        return unit.open(s for s, _ in outcomes)

    def _settle(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        for s, outcome in group:
            if outcome.kind is Kind.BOT_FAILED:
                with self._lock:
                    self.failed_bots.setdefault(
                        s.row.bot_id, (outcome.error, outcome.description, s.row.row)
                    )
            verdict = self.action.settle(s.row, outcome, s.doubt)
            unit.done[s.row.row] = s.row.result(*verdict, s.attempts)

    def _fail(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        for s, outcome in group:
            unit.done[s.row.row] = s.row.result(*failed(outcome), s.attempts)

    def _abort(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        outcome = group[0][1]
        raise FatalAPIError(outcome.error, outcome.description, outcome.hint)

    def _refresh(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        # One renewal for the whole answer, shared with other workers (by the token the
        # batch carried); a unit whose commands expire again after it is aborted.
        renewed = self.auth.renew(rnd.answer.token, refresh=not unit.refreshed)
        unit.refreshed = True
        if not renewed:
            self._abort(group, rnd, unit)

    def _shrink(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        ran = rnd.carried - len(group)  # the portal ran the commands before its limit
        if ran == 0:
            unit.overflows += 1  # bounded: a portal that never takes the batch ends it
        if unit.overflows > MAX_OVERFLOWS:
            self._fail(group, rnd, unit)
        else:
            # A whole request refused as too long (the docs' HTTP 400) says no number: halve.
            self._lower_batch_limit(rnd.carried // 2 if rnd.whole_call else ran)

    def _fall_back(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        """Switch the whole run to single calls; with --mode batch, the rows fail."""
        if not self.may_fall_back:
            self._fail(group, rnd, unit)
            return
        outcome = group[0][1]
        with self._lock:
            if not self.single:
                self.single = True
                self.stats.fallback = f"{outcome.error}: {outcome.description}".strip(": ")
                log.warning(
                    "the portal does not allow %s inside batch (%s); sending the rows one by one from now on",
                    self.action.method,
                    outcome.error,
                )

    def _wait_operating(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        retry_after = rnd.answer.retry_after if rnd.whole_call else None
        self._operating_wait(unit, [s for s, _ in group], retry_after)

    def _wait_rate(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        retry_after = rnd.answer.retry_after if rnd.whole_call else None
        self._limit_wait(unit, retry_after, [s for s, _ in group], sent_ago=rnd.answer.elapsed)

    def _retry(self, group: Group, rnd: _Round, unit: _Unit) -> None:
        for s, _ in group:
            s.maybe_done = True
        outcome = group[-1][1]
        rows = [s for s, _ in group]
        # A proxy's page, not the portal's answer: the portal may be away. An outage is
        # waited out in the hold, not counted against the rows.
        proxy = rnd.whole_call and is_unavailable(rnd.answer.status, rnd.answer.body)
        if proxy and not self.hold.failed(
            f"{outcome.error} without the portal's answer", certain=False
        ):
            return
        self._transient_wait(unit, outcome, rows, unreachable=False)

    _steps: Mapping[Step, Callable[[Engine, Group, _Round, _Unit], None]] = {
        Step.SETTLE: _settle,
        Step.FAIL: _fail,
        Step.ABORT: _abort,
        Step.REFRESH: _refresh,
        Step.SHRINK: _shrink,
        Step.FALL_BACK: _fall_back,
        Step.WAIT_OPERATING: _wait_operating,
        Step.WAIT_RATE: _wait_rate,
        Step.RETRY: _retry,
    }

    def _network_failure(self, exc: NetworkError, states: list[_RowState], unit: _Unit) -> None:
        if exc.maybe_sent:  # the request may have reached the method
            for s in states:
                s.attempts += 1
                s.maybe_done = True
        else:
            self._unsent(states)  # the connection never opened: no attempt
        if exc.cause in OUTAGE_CAUSES:
            certain = not exc.maybe_sent
            if not self.hold.failed(str(exc), certain=certain):
                return  # an outage: waited out in the hold, not counted against the rows
        else:
            self.hold.release()  # a probe that timed out: another worker may probe
        code = "TIMEOUT" if exc.cause == "timeout" else "NETWORK_ERROR"
        outcome = Outcome(Kind.TRANSIENT, code, str(exc))
        self._transient_wait(unit, outcome, states, unreachable=not exc.maybe_sent)

    # ------------------------------------------------------------------ waiting

    def _transient_wait(
        self, unit: _Unit, outcome: Outcome, rows: list[_RowState], *, unreachable: bool
    ) -> None:
        """Each row spends one re-send of its own budget; a row whose budget is spent is
        given up (an unreachable portal: the run aborts), the others wait and re-send."""
        for s in rows:
            s.retries += 1
        spent = [s for s in rows if s.retries > self.policy.max_retries]
        if spent and unreachable:
            raise _unreachable(outcome, self.policy.max_retries)
        for s in spent:
            why = f" after {s.attempts} attempts"
            self._give_up(s, unit, outcome.kind, outcome.error, outcome.description, why)
        rows = [s for s in rows if s.retries <= self.policy.max_retries]
        if not rows:
            return
        self.stats.add(retries=1)
        delay = self.policy.backoff(max(s.retries for s in rows), self.rng)
        log.debug("retrying %d row(s) in %.1f s after %s", len(rows), delay, redact(outcome.error))
        if not self._wait(rows, delay):
            for s in rows:
                self._give_up(
                    s, unit, outcome.kind, outcome.error, outcome.description, MAX_WAIT_REACHED
                )

    def _give_up(
        self, s: _RowState, unit: _Unit, kind: Kind, error: str, description: str, why: str
    ) -> None:
        outcome = Outcome(kind, error, gave_up(description, why))
        unit.done[s.row.row] = s.row.result(*failed(outcome), s.attempts, given_up=True)

    def _limit_wait(
        self,
        unit: _Unit,
        retry_after: float | None,
        rows: list[_RowState],
        *,
        sent_ago: float | None = None,
    ) -> None:
        unit.refusals += 1
        self.stats.add(limit_refusals=1)
        self.throttle.on_refusal(retry_after, sent_ago)
        delay = self.policy.limit_wait(unit.refusals, retry_after)
        self.throttle.held(delay)  # wall-clock waiting time for the summary
        if not self._wait(rows, delay):
            for s in rows:
                self._give_up(
                    s,
                    unit,
                    Kind.RATE_LIMITED,
                    "QUERY_LIMIT_EXCEEDED",
                    "the portal kept refusing for its rate limit",
                    MAX_WAIT_REACHED,
                )

    def _operating_wait(
        self, unit: _Unit, rows: list[_RowState], retry_after: float | None = None
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
        # hold the run forever. The pause itself is served by the throttle (all workers);
        # the rows pay for it as their re-send waits it out (`_send`), so not here too.
        if not self._may_wait(rows, delay):
            self._too_long(WaitTooLong(delay, OPERATING_PAUSE), rows, unit)
            return
        # Everyone waits: the budget is per method, for the whole portal. Said once per
        # pause, not by every worker that runs into it.
        if self.throttle.pause(delay):
            log.warning(
                "the portal's operating-time limit for %s is spent (OPERATION_TIME_LIMIT); "
                "waiting %.0f s for it to reset, then re-sending",
                self.action.method,
                delay,
            )

    def _too_long(self, exc: WaitTooLong, rows: list[_RowState], unit: _Unit) -> None:
        """The rows would wait out a pause past their --max-wait: given up, not held (an
        operating-time limit: a transient failure, re-sent by run-job's retry runs)."""
        if exc.reason == OPERATING_PAUSE:
            kind, code = Kind.OPERATING_LIMIT, OPERATION_TIME_LIMIT
            what = "the portal's operating-time limit for the method stayed spent"
        else:
            kind, code = Kind.RATE_LIMITED, "QUERY_LIMIT_EXCEEDED"
            what = "the portal kept refusing for its rate limit"
        with self._lock:
            said, self._said_too_long = self._said_too_long, True
        log.log(
            logging.DEBUG if said else logging.WARNING,
            "giving up rows that would wait %.0f s more for the %s, past --max-wait %.0f s "
            "(failed %s; re-send them later)",
            exc.seconds,
            exc.reason,
            self.policy.max_wait,
            code,
        )
        for s in rows:
            self._give_up(s, unit, kind, code, what, MAX_WAIT_REACHED)

    def _may_wait(self, rows: list[_RowState], seconds: float) -> bool:
        """Whether every row may still wait `seconds` more (its --max-wait)."""
        return all(s.waited + seconds <= self.policy.max_wait for s in rows)

    def _spend_wait(self, rows: list[_RowState], seconds: float) -> bool:
        """Count `seconds` against each row's --max-wait; False if that would exceed one."""
        if not self._may_wait(rows, seconds):
            return False
        for s in rows:
            s.waited += seconds
        return True

    def _wait(self, rows: list[_RowState], seconds: float) -> bool:
        """Sleep `seconds` unless the rows' wait budget is spent. Raises Stopped on stop."""
        if not self._spend_wait(rows, seconds):
            return False
        if not self.clock.sleep(seconds):
            raise Stopped
        return True

    # ------------------------------------------------------------------ helpers

    def _journal_sent(self, rows: list[int]) -> Callable[[], None] | None:
        """Recorded as the request leaves (after its throttle slot), not before it waits:
        a crash while it waits must not make these rows look possibly acted on."""
        journal = self.journal
        if journal is None:
            return None
        return lambda: journal.sent(rows)

    def _unsent(self, states: list[_RowState]) -> None:
        """The request that carried these rows never ran: take it back from the journal,
        so a resume agrees (it was never counted as an attempt)."""
        if self.journal is not None and states:
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

    def _drop_failed_bots(self, states: list[_RowState], unit: _Unit) -> list[_RowState]:
        if not self.failed_bots:
            return states
        keep = []
        for s in states:
            failed_bot = self.bot_failure(s.row)
            if failed_bot is None:
                keep.append(s)
            else:
                unit.done[s.row.row] = failed_bot
        return keep


def _unreachable(outcome: Outcome, retries: int) -> FatalAPIError:
    hint = (
        f"The portal did not accept connections after {retries} retries; check the address"
        " and the network"
    )
    if outcome.description.startswith("ssl:"):
        # e.g. https:// to a plain-http port, or a certificate not trusted here
        hint += (
            " (the TLS handshake failed: does the portal speak https:// at this address, with"
            " a certificate trusted here?)"
        )
    return FatalAPIError("PORTAL_UNREACHABLE", redact(outcome.description), hint)
