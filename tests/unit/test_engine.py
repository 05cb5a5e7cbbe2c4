"""The engine's decision tables, driven by scripted answers on a fake clock.

The transport is replaced by a script of answers (the engine's seam; HTTP itself is tested
against the sandbox in tests/e2e): each test says what the portal answers and checks
what the report would show, with the attempts that really reached the method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cleanup.errors import NetworkError
from cleanup.inputs.validate import Row
from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.retry import RetryPolicy
from cleanup.pacing.throttle import MayHold, Throttle
from cleanup.portal.classify import Kind, Outcome
from cleanup.portal.transport import Answer
from cleanup.results import RowResult, Status
from cleanup.run.actions import ALREADY_ABSENT, DELETE_METHOD, Action, Doubt, Verdict, failed
from cleanup.run.engine import BATCH_RULES, COMMAND_RULES, SINGLE_RULES, Engine, Step
from tests.helpers.clock import FakeClock

BOT = 456


Reply = Answer | Exception | Callable[[dict[str, Any]], Answer]


class Script:
    """Stands in for the transport: answers requests from a list, records what was sent."""

    def __init__(self, *replies: Reply, throttle: Throttle | None = None) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.throttle = throttle  # given: each request takes its slot there, as HTTP's does

    def batch(
        self,
        commands: dict[str, str],
        halt: int = 0,
        *,
        before_send: Any = None,
        may_hold: MayHold | None = None,
    ) -> Answer:
        self._slot(may_hold)
        self.sent.append(("batch", dict(commands)))
        return self._next(commands)

    def call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        before_send: Any = None,
        may_hold: MayHold | None = None,
    ) -> Answer:
        self._slot(may_hold)
        self.sent.append((method, dict(params)))
        return self._next(params)

    def _slot(self, may_hold: MayHold | None) -> None:
        if self.throttle is not None:
            assert self.throttle.acquire(may_hold)

    def _next(self, request: dict[str, Any]) -> Answer:
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply(request) if callable(reply) else reply


class Auth:
    def __init__(self, renews: bool = True) -> None:
        self.renews = renews
        self.calls: list[tuple[str | None, bool]] = []

    def renew(self, used: str | None, *, refresh: bool) -> bool:
        self.calls.append((used, refresh))
        return self.renews


def answer(status: int, body: Any, *, retry_after: float | None = None) -> Answer:
    return Answer(status, body, "", retry_after, 0.01, token="tok-1")


def per_command(**by_key: Any) -> Callable[[dict[str, Any]], Answer]:
    """A batch answer: `r1=True` a result, `r2="CODE"` an error, a key left out: missing."""

    def reply(commands: dict[str, Any]) -> Answer:
        results = {k: v for k, v in by_key.items() if not isinstance(v, str)}
        errors = {
            k: {"error": v, "error_description": v.lower()}
            for k, v in by_key.items()
            if isinstance(v, str)
        }
        return answer(200, {"result": {"result": results or [], "result_error": errors or []}})

    return reply


def everything_ok(commands: dict[str, Any]) -> Answer:
    return answer(200, {"result": {"result": dict.fromkeys(commands, True), "result_error": []}})


def rows(n: int) -> list[Row]:
    return [
        Row(i, BOT, 1000 + i, "like", (str(BOT), str(1000 + i), "like")) for i in range(1, n + 1)
    ]


def engine(script: Script, *, mode: str = "auto", auth: Auth | None = None, **kw: Any) -> Engine:
    clock = FakeClock()
    return Engine(
        script,
        auth=auth or Auth(),
        bot_tokens={BOT: "bot-token"},
        policy=RetryPolicy(max_retries=3, max_wait=100.0),
        mode=mode,
        clock=clock,
        throttle=Throttle(1000.0, 1000, clock=clock),
        budget=OperatingBudget(None, clock=clock),
        **kw,
    )


def seen(results: list[RowResult]) -> list[tuple[str, str, int]]:
    return [(r.status.value, r.error, r.attempts) for r in results]


# ---------------------------------------------------------------------- the tables


@pytest.mark.parametrize(
    "rules", [COMMAND_RULES, BATCH_RULES, SINGLE_RULES], ids=["command", "batch", "single"]
)
def test_every_kind_has_a_rule(rules: Any) -> None:
    assert set(rules) == set(Kind)


@pytest.mark.parametrize(
    "rules", [COMMAND_RULES, BATCH_RULES, SINGLE_RULES], ids=["command", "batch", "single"]
)
def test_an_attempt_is_a_request_that_reached_the_method(rules: Any) -> None:
    # Refusals at the door (limits, overflow, no batch, credentials) never ran the method;
    # an answer about the row, or no answer at all (5xx, garbage), may have.
    ran = {kind for kind, rule in rules.items() if rule.ran}
    assert ran == {Kind.OK, Kind.ROW_FAILED, Kind.BOT_FAILED, Kind.NOT_FOUND, Kind.TRANSIENT}


def test_the_levels_differ_only_where_they_must() -> None:
    # An expired token for the whole request survived the transport's refresh: final.
    assert COMMAND_RULES[Kind.EXPIRED_TOKEN].step is Step.REFRESH
    assert BATCH_RULES[Kind.EXPIRED_TOKEN].step is Step.ABORT
    # Refused even as a single call: nothing left to fall back to.
    assert BATCH_RULES[Kind.BATCH_NOT_ALLOWED].step is Step.FALL_BACK
    assert SINGLE_RULES[Kind.BATCH_NOT_ALLOWED].step is Step.FAIL
    differ = {k for k in Kind if COMMAND_RULES[k] != SINGLE_RULES[k]}
    assert differ == {Kind.EXPIRED_TOKEN, Kind.BATCH_NOT_ALLOWED}


# ---------------------------------------------------------------------- batches


def test_each_command_of_one_answer_takes_its_own_step() -> None:
    script = Script(
        per_command(r1=True, r2="QUERY_LIMIT_EXCEEDED", r4="REACTION_NOT_FOUND"),  # r3 missing
        per_command(r2=True, r3="REACTION_NOT_FOUND"),
    )
    result = engine(script).run_unit(rows(4))
    assert seen(result.results) == [
        ("removed", "", 1),
        ("removed", "", 1),  # refused for the rate limit first: not an attempt
        ("removed", "", 2),  # its first answer was lost: the second finds it gone
        ("absent", "", 1),  # not there at the first attempt: nothing to remove
    ]
    assert result.results[2].error_description == ALREADY_ABSENT
    assert list(script.sent[1][1]) == ["r2", "r3"]  # only the open rows, in order


def test_a_refused_batch_is_no_attempt() -> None:
    script = Script(
        answer(503, {"error": "QUERY_LIMIT_EXCEEDED"}, retry_after=2.0),
        answer(200, {"error": "OPERATION_TIME_LIMIT"}),
        everything_ok,
    )
    result = engine(script).run_unit(rows(3))
    assert seen(result.results) == [("removed", "", 1)] * 3


def test_a_server_error_counts_and_makes_a_later_not_found_removed() -> None:
    script = Script(answer(502, None), per_command(r1="REACTION_NOT_FOUND", r2=True))
    result = engine(script).run_unit(rows(2))
    assert seen(result.results) == [("removed", "", 2), ("removed", "", 2)]


def test_overflow_lowers_the_batch_to_what_ran() -> None:
    script = Script(
        per_command(
            r1=True,
            r2=True,
            r3=True,
            r4="ERROR_BATCH_LENGTH_EXCEEDED",
            r5="ERROR_BATCH_LENGTH_EXCEEDED",
        ),
        everything_ok,
    )
    e = engine(script)
    result = e.run_unit(rows(5))
    assert seen(result.results) == [("removed", "", 1)] * 5
    assert e.batch_limit == 3 and list(script.sent[1][1]) == ["r4", "r5"]


def test_batch_not_allowed_falls_back_to_single_calls() -> None:
    refused = answer(400, {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED"})
    ok = answer(200, {"result": True})
    script = Script(refused, ok, ok)
    e = engine(script)
    result = e.run_unit(rows(2))
    assert seen(result.results) == [("removed", "", 1)] * 2
    assert e.single and e.stats.fallback and "ERROR_BATCH_METHOD_NOT_ALLOWED" in e.stats.fallback
    assert [method for method, _ in script.sent] == ["batch", DELETE_METHOD, DELETE_METHOD]
    assert script.sent[1][1] == {
        "botId": BOT,
        "messageId": 1001,
        "reaction": "like",
        "botToken": "bot-token",
    }


def test_batch_not_allowed_in_batch_mode_fails_the_rows() -> None:
    script = Script(answer(400, {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED"}))
    result = engine(script, mode="batch").run_unit(rows(2))
    assert seen(result.results) == [("failed", "ERROR_BATCH_METHOD_NOT_ALLOWED", 0)] * 2


def test_an_expired_token_per_command_is_renewed_once_per_unit() -> None:
    auth = Auth()
    script = Script(
        per_command(r1=True, r2="expired_token"), per_command(r2="expired_token"), everything_ok
    )
    result = engine(script, auth=auth).run_unit(rows(2))
    assert seen(result.results) == [("removed", "", 1)] * 2
    # The first expiry refreshes; the next one only takes a token another worker got.
    assert auth.calls == [("tok-1", True), ("tok-1", False)]


def test_an_expired_token_that_cannot_be_renewed_aborts() -> None:
    script = Script(per_command(r1=True, r2="expired_token"))
    result = engine(script, auth=Auth(renews=False)).run_unit(rows(2))
    assert result.fatal is not None and result.fatal.code == "expired_token"
    assert seen(result.results) == [("removed", "", 1), ("skipped", "", 0)]
    assert result.results[1].error_description == "not sent: run aborted (expired_token)"


def test_a_fatal_command_aborts_after_the_rest_of_the_answer_is_settled() -> None:
    script = Script(per_command(r1=True, r2="NO_AUTH_FOUND", r3=True))
    result = engine(script).run_unit(rows(3))
    assert result.fatal is not None and result.fatal.code == "NO_AUTH_FOUND"
    assert seen(result.results) == [("removed", "", 1), ("skipped", "", 0), ("removed", "", 1)]


def test_a_bot_the_portal_rejects_is_not_sent_again() -> None:
    script = Script(per_command(r1="BOT_NOT_FOUND", r2="QUERY_LIMIT_EXCEEDED"))
    result = engine(script).run_unit(rows(2))
    assert seen(result.results) == [("failed", "BOT_NOT_FOUND", 1), ("failed", "BOT_NOT_FOUND", 0)]
    assert "not sent: bot 456 was rejected on row 1" in result.results[1].error_description
    assert len(script.sent) == 1


# ---------------------------------------------------------------------- no answer


class TimedScript(Script):
    """A script that also notes the fake clock's time of each request."""

    def __init__(self, clock: FakeClock, *replies: Reply) -> None:
        super().__init__(*replies)
        self.clock = clock
        self.times: list[float] = []

    def _next(self, request: dict[str, Any]) -> Answer:
        self.times.append(self.clock.t)
        return super()._next(request)


def held_engine(*replies: Reply, **kw: Any) -> tuple[Engine, TimedScript]:
    clock = FakeClock()
    script = TimedScript(clock, *replies)
    eng = engine(script, **kw)
    eng.clock = clock
    eng.hold.clock = clock
    eng.throttle = Throttle(1000.0, 1000, clock=clock)
    return eng, script


def test_a_refused_connection_is_no_attempt_and_ends_the_run_after_max_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An outage is waited out for --max-wait (100 s here), one probe at a time with a capped
    # backoff; not --max-retries (3 here): far more than 3 probes go out before the abort.
    refused = NetworkError("connect", "refused", maybe_sent=False)
    eng, script = held_engine(*[refused] * 100)
    result = eng.run_unit(rows(1))
    assert result.fatal is not None and result.fatal.code == "PORTAL_UNREACHABLE"
    assert seen(result.results) == [("skipped", "", 0)]
    gaps = [b - a for a, b in zip(script.times, script.times[1:], strict=False)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 5.0] and max(gaps) == 5.0  # capped backoff
    assert 20 < len(script.times) < 30
    assert script.times[-1] - script.times[0] <= 100.0
    waiting = [r.message for r in caplog.records if "has not answered for" in r.message]
    # A warning once it lasts 10 s, then once a minute.
    assert waiting == [
        f"the portal has not answered for {s} s; still waiting (up to 100 s, --max-wait)"
        for s in (10, 60)
    ]


@pytest.mark.parametrize(
    "drop",
    [
        NetworkError("connect", "refused", maybe_sent=False),
        NetworkError("connection_lost", "closed", maybe_sent=True),
        answer(502, None),
        answer(504, None),
    ],
    ids=["refused", "dropped", "proxy 502", "proxy 504"],
)
def test_an_outage_is_waited_out_without_spending_the_rows_retries(drop: Reply) -> None:
    # 15 failures in a row (about 55 s) with --max-retries 3: the row is still removed.
    eng, _ = held_engine(*[drop] * 15, everything_ok)
    [row] = eng.run_unit(rows(1)).results
    assert row.status is Status.REMOVED
    assert eng.hold.outages == 1 and 40 < eng.hold.away_s < 70
    # A request that may have run counts as an attempt, truthfully.
    maybe_sent = not isinstance(drop, NetworkError) or drop.maybe_sent
    assert row.attempts == (16 if maybe_sent else 1)


def test_after_an_outage_a_lost_delete_reads_already_absent() -> None:
    lost = NetworkError("connection_lost", "closed", maybe_sent=True)
    eng, _ = held_engine(lost, lost, lost, per_command(r1="REACTION_NOT_FOUND"))
    [row] = eng.run_unit(rows(1)).results
    assert (row.status, row.error_description) == (Status.REMOVED, ALREADY_ABSENT)


def test_one_dropped_request_counts_against_its_rows_only() -> None:
    # Dropped requests with answers between them are faults of those requests, not an
    # outage: each spends its own rows' budget (3 re-sends), and no other row's.
    lost = NetworkError("connection_lost", "closed", maybe_sent=True)
    ok = answer(200, {"result": {"result": True}})
    replies: list[Reply] = [lost, ok] * 4
    eng, _ = held_engine(*replies, ok, mode="single")
    results = eng.run_unit(rows(5)).results
    assert [r.status for r in results] == [Status.REMOVED] * 5
    assert [r.attempts for r in results] == [2, 2, 2, 2, 1]
    assert eng.hold.outages == 0


def test_the_retry_budget_is_each_rows_own_in_single_calls() -> None:
    # Row 1 fails 4 times (3 re-sends, then given up); row 2 still has all of its own.
    err = answer(500, {"error": "INTERNAL_SERVER_ERROR"})
    ok = answer(200, {"result": {"result": True}})
    eng, _ = held_engine(err, err, err, err, err, err, err, ok, mode="single")
    first, second = eng.run_unit(rows(2)).results
    assert (first.status, first.attempts) == (Status.FAILED, 4)
    assert first.error_description.endswith("(gave up after 4 attempts)")
    assert (second.status, second.attempts) == (Status.REMOVED, 4)


def test_a_batch_spends_the_budget_of_the_rows_it_carries() -> None:
    # Both rows ride the same batches: both spend; a row answered OK leaves the others
    # with what they had spent, not less.
    err = answer(500, {"error": "INTERNAL_SERVER_ERROR"})
    eng, _ = held_engine(err, per_command(r1=True, r2="INTERNAL_SERVER_ERROR"), err, err, err)
    first, second = eng.run_unit(rows(2)).results
    assert (first.status, first.attempts) == (Status.REMOVED, 2)
    assert (second.status, second.attempts) == (Status.FAILED, 4)


def test_a_lost_reply_is_an_attempt_that_may_have_acted() -> None:
    lost = NetworkError("connection_lost", "reset", maybe_sent=True)
    script = Script(lost, per_command(r1="REACTION_NOT_FOUND"))
    result = engine(script).run_unit(rows(1))
    assert seen(result.results) == [("removed", "", 2)]


def test_retries_are_bounded() -> None:
    script = Script(*[answer(500, {"error": "INTERNAL_SERVER_ERROR"})] * 4)
    result = engine(script).run_unit(rows(1))
    [row] = result.results
    assert (row.status, row.error, row.attempts) == (Status.FAILED, "INTERNAL_SERVER_ERROR", 4)
    assert row.error_description.endswith("(gave up after 4 attempts)")


# ---------------------------------------------------------------------- another action


def test_the_method_and_what_its_answers_mean_belong_to_the_action() -> None:
    def settle(row: Row, outcome: Outcome, doubt: Doubt) -> Verdict:
        if outcome.kind is Kind.OK or outcome.error == "REACTION_ALREADY_SET":
            return Verdict(Status.REMOVED, "", "there again")  # stands in for `restored`
        return failed(outcome)

    add = Action(
        "imbot.v2.Chat.Message.Reaction.add",
        lambda row, token: {"messageId": row.message_id, "reaction": row.reaction},
        settle,
        did="added",
    )
    script = Script(per_command(r1=True, r2="REACTION_ALREADY_SET"))
    result = engine(script, action=add).run_unit(rows(2))
    assert [r.error_description for r in result.results] == ["there again"] * 2
    assert (
        script.sent[0][1]["r1"] == "imbot.v2.Chat.Message.Reaction.add?messageId=1001&reaction=like"
    )


def test_a_batch_lost_before_the_fallback_is_no_attempt_at_its_rows() -> None:
    # QA round 2: a batch whose answer was lost, then the portal refused batch: the lost
    # request never ran the method either (the portal runs none of it in batch), so the
    # rows' single calls are their first attempts, and a not-found is absent, not "removed
    # by the earlier attempt".
    lost = NetworkError("connection_lost", "closed", maybe_sent=True)
    refused = answer(405, {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED"})
    ok = answer(200, {"result": True})
    gone = answer(400, {"error": "REACTION_NOT_FOUND", "error_description": "not found"})
    eng, _ = held_engine(lost, refused, ok, gone)
    first, second = eng.run_unit(rows(2)).results
    assert (first.status, first.attempts) == (Status.REMOVED, 1)
    assert (second.status, second.attempts) == (Status.ABSENT, 1)


# ---------------------------------------------------------------------- pauses and --max-wait


def paused_engine(script: Script, clock: FakeClock, throttle: Throttle) -> Engine:
    return Engine(
        script,
        auth=Auth(),
        bot_tokens={BOT: "bot-token"},
        policy=RetryPolicy(max_retries=3, max_wait=30.0),
        mode="single",
        clock=clock,
        throttle=throttle,
        budget=OperatingBudget(None, clock=clock),
    )


def test_a_pause_longer_than_max_wait_gives_the_rows_up_unsent_instead_of_holding() -> None:
    # QA bug 3: the operating-time budget held requests 541 s under --max-wait 30.
    clock = FakeClock()
    throttle = Throttle(1000.0, 1000, clock=clock)
    script = Script(throttle=throttle)
    e = paused_engine(script, clock, throttle)
    start = clock.now()
    throttle.pause(541.4)  # what the budget does when it is spent until the window's reset
    results = e.run_unit(rows(3)).results
    assert seen(results) == [("failed", "OPERATION_TIME_LIMIT", 0)] * 3
    assert all("(gave up: --max-wait reached)" in r.error_description for r in results)
    assert script.sent == [] and clock.now() - start < 1.0  # nothing sent, nothing held


def test_pauses_are_counted_against_each_rows_max_wait() -> None:
    # 20 s fits in --max-wait 30 and is waited out; the next 20 s pause would make 40.
    clock = FakeClock()
    throttle = Throttle(1000.0, 1000, clock=clock)
    ok = answer(200, {"result": True})

    def pause_again(params: dict[str, Any]) -> Answer:
        throttle.pause(20.0)
        return answer(200, {"error": "OPERATION_TIME_LIMIT"})

    script = Script(pause_again, ok, throttle=throttle)
    e = paused_engine(script, clock, throttle)
    throttle.pause(20.0)
    first, second = e.run_unit(rows(2)).results
    assert (first.status, first.error, first.attempts) == (Status.FAILED, "OPERATION_TIME_LIMIT", 0)
    assert (second.status, second.attempts) == (Status.REMOVED, 1)  # its own budget is whole
