"""The sandbox portal itself, over real HTTP: protocol answers, limits, faults and OAuth."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from cleanup.sandbox import REACTION_CODES, PortalConfig, PortalState, SandboxPortal, php
from cleanup.sandbox.command import sandbox_command
from cleanup.sandbox.reactions import canonical_reaction

DELETE = "imbot.v2.Chat.Message.Reaction.delete"
BOT, BOT2, APP_BOT = 456, 457, 458
MSG, MSG2, FOREIGN_MSG = 789, 790, 900
APP, SECRET = "app.demo", "app-secret"


def make_state() -> PortalState:
    state = PortalState.build(
        [
            (BOT, MSG, "like"),
            (BOT, MSG, "redHeart"),
            (BOT2, MSG, "fire"),
            (BOT, MSG2, "like"),
            (APP_BOT, MSG, "eyes"),
        ],
        bot_tokens={BOT: "tok-456", BOT2: "tok-457", APP_BOT: "tok-458"},
        oauth_apps={APP: SECRET},
        bot_client_ids={APP_BOT: APP},
    )
    state.add_message(FOREIGN_MSG, FOREIGN_MSG, members=[BOT2])  # BOT is not in this chat
    return state


PortalFactory = Callable[..., SandboxPortal]


@pytest.fixture
def make_portal() -> Iterator[PortalFactory]:
    portals: list[SandboxPortal] = []

    def make(state: PortalState | None = None, **config: Any) -> SandboxPortal:
        portal = SandboxPortal(state if state is not None else make_state(), PortalConfig(**config))
        portals.append(portal.start())
        return portal

    yield make
    for portal in portals:
        portal.stop()


@pytest.fixture
def portal(make_portal: PortalFactory) -> SandboxPortal:
    return make_portal()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def delete_params(
    bot: int = BOT, msg: int = MSG, reaction: str = "like", **extra: Any
) -> dict[str, Any]:
    params: dict[str, Any] = {"botId": bot, "messageId": msg, "reaction": reaction}
    params["botToken"] = {BOT: "tok-456", BOT2: "tok-457", APP_BOT: "tok-458"}.get(bot, "x")
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def command(
    bot: int = BOT, msg: int = MSG, reaction: str = "like", token: str | None = None
) -> str:
    token = token or {BOT: "tok-456", BOT2: "tok-457"}.get(bot, "x")
    return f"{DELETE}?botId={bot}&messageId={msg}&reaction={reaction}&botToken={token}"


def call(
    http: requests.Session, portal: SandboxPortal, method: str, **params: Any
) -> requests.Response:
    return http.post(portal.webhook_url() + method, json=params, timeout=10)


def batch(http: requests.Session, portal: SandboxPortal, cmd: Any, **extra: Any) -> Any:
    response = http.post(portal.webhook_url() + "batch", json={"cmd": cmd, **extra}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# --- reaction codes and PHP helpers ------------------------------------------------------


def test_reaction_codes_are_the_48_documented_ones() -> None:
    assert len(REACTION_CODES) == 48 == len(set(REACTION_CODES))
    assert REACTION_CODES[0] == "like" and REACTION_CODES[-1] == "hundredPoints"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redHeart", "redHeart"),
        ("redheart", None),  # case matters
        ("LIKE", None),
        ("Like", "like"),  # the server's camel2snake quirk: a leading capital is harmless
        ("red_heart", "redHeart"),
        ("smile", None),
    ],
)
def test_reaction_lookup_follows_the_server_conversion(given: str, expected: str | None) -> None:
    assert canonical_reaction(given) == expected


def test_parse_str_php_semantics() -> None:
    parsed = php.parse_str("cmd[r1]=a%26b+c&cmd[r2]=x&halt=0&list[]=1&list[]=2&a.b=3&n[x][y]=z")
    assert parsed == {
        "cmd": {"r1": "a&b c", "r2": "x"},
        "halt": "0",
        "list": {"0": "1", "1": "2"},
        "a_b": "3",
        "n": {"x": {"y": "z"}},
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", True), ("0", False), ("", False), (0, False), (None, False), ("1", True), (1, True)],
)
def test_php_truthiness(value: Any, expected: bool) -> None:
    assert php.truthy(value) is expected


def test_php_json_quirks() -> None:
    assert php.php_json({}) == []
    assert php.php_json({"0": "a", "1": "b"}) == ["a", "b"]
    assert php.php_json({"1": "a", "0": "b"}) == {"1": "a", "0": "b"}
    assert php.php_json({"r1": {}}) == {"r1": []}


def test_php_intval() -> None:
    values = ("12abc", "abc", " 7", "-3", "1e3", "")
    assert [php.intval(v) for v in values] == [12, 0, 7, -3, 1000, 0]


# --- single calls -----------------------------------------------------------------------------


def test_delete_removes_the_reaction_and_answers_nested_with_time(
    portal: SandboxPortal, http: requests.Session
) -> None:
    response = call(http, portal, DELETE + ".json", **delete_params())
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["result"] == {"result": True}
    for key in ("start", "finish", "duration", "processing", "date_start", "date_finish"):
        assert key in body["time"]
    assert isinstance(body["time"]["operating_reset_at"], int)
    assert body["time"]["operating"] == 0
    assert not portal.state.has_reaction(BOT, MSG, "like")
    assert portal.state.has_reaction(BOT, MSG, "redHeart")
    assert portal.stats.removed == 1 and portal.stats.single_calls == 1


def test_flat_success_shape(make_portal: PortalFactory, http: requests.Session) -> None:
    portal = make_portal(success_shape="flat")
    assert call(http, portal, DELETE, **delete_params()).json()["result"] is True


def test_mixed_success_shape_gives_both(make_portal: PortalFactory, http: requests.Session) -> None:
    state = PortalState.build([(BOT, m, "like") for m in range(1, 41)], bot_tokens={BOT: "t"})
    portal = make_portal(state, success_shape="mixed", seed=7)
    cmd = {f"r{m}": command(msg=m, token="t") for m in range(1, 41)}
    results = batch(http, portal, cmd)["result"]["result"]
    assert {json.dumps(v) for v in results.values()} == {"true", '{"result": true}'}


def test_method_names_are_case_insensitive_and_get_works(
    portal: SandboxPortal, http: requests.Session
) -> None:
    url = portal.webhook_url() + DELETE.lower()
    response = http.get(url, params=delete_params(), timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (delete_params(botToken=None), "BOT_TOKEN_NOT_SPECIFIED"),
        (delete_params(botToken=""), "BOT_TOKEN_NOT_SPECIFIED"),
        (delete_params(botToken=None, botId="abc"), "BOT_TOKEN_NOT_SPECIFIED"),  # token first
        (delete_params(botId=None), "BOT_ID_REQUIRED"),
        (delete_params(botId="abc"), "BOT_ID_REQUIRED"),
        (delete_params(botId=0), "BOT_ID_REQUIRED"),
        (delete_params(botId=999), "BOT_NOT_FOUND"),
        (delete_params(botToken="wrong"), "BOT_OWNERSHIP_ERROR"),
        (delete_params(botToken="wrong", messageId=1), "BOT_OWNERSHIP_ERROR"),  # bot before message
        (delete_params(APP_BOT, reaction="eyes"), "BOT_OWNERSHIP_ERROR"),  # an app's bot
        (delete_params(messageId=None), "MESSAGE_NOT_FOUND"),
        (delete_params(messageId=12345), "MESSAGE_NOT_FOUND"),
        (delete_params(msg=FOREIGN_MSG), "ACCESS_DENIED"),
        (delete_params(reaction="redheart"), "REACTION_NOT_FOUND"),
        (delete_params(reaction="noSuchCode"), "REACTION_NOT_FOUND"),
        (delete_params(reaction="fire"), "REACTION_NOT_FOUND"),  # valid code, not set by this bot
    ],
)
def test_method_errors(
    portal: SandboxPortal, http: requests.Session, params: dict[str, Any], code: str
) -> None:
    before = portal.state.snapshot()
    response = call(http, portal, DELETE, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == code and body["error_description"]
    assert "time" not in body
    assert portal.state.snapshot() == before


def test_method_error_status_is_configurable(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    portal = make_portal(method_error_status=403)
    assert call(http, portal, DELETE, **delete_params(reaction="fire")).status_code == 403


def test_deleting_twice_gives_reaction_not_found(
    portal: SandboxPortal, http: requests.Session
) -> None:
    assert call(http, portal, DELETE, **delete_params()).status_code == 200
    assert call(http, portal, DELETE, **delete_params()).json()["error"] == "REACTION_NOT_FOUND"


def test_add_replaces_the_bots_reaction_on_that_message(
    portal: SandboxPortal, http: requests.Session
) -> None:
    response = call(
        http,
        portal,
        "imbot.v2.Chat.Message.Reaction.add",
        **delete_params(msg=MSG2, reaction="fire"),
    )
    assert response.status_code == 200
    assert portal.state.has_reaction(BOT, MSG2, "fire")
    assert not portal.state.has_reaction(BOT, MSG2, "like")


def test_unknown_method_is_404_before_auth(portal: SandboxPortal, http: requests.Session) -> None:
    url = portal.url + "/rest/1/wrong-code/no.such.method"
    response = http.post(url, json={}, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == "ERROR_METHOD_NOT_FOUND"


@pytest.mark.parametrize(
    "path", ["/rest/1/wrong-code/profile", "/rest/77/sandbox-webhook-code/profile"]
)
def test_bad_webhook_is_no_auth_found(
    portal: SandboxPortal, http: requests.Session, path: str
) -> None:
    response = http.get(portal.url + path, timeout=10)
    assert response.status_code == 401
    assert response.json() == {
        "error": "NO_AUTH_FOUND",
        "error_description": "Wrong authorization data",
    }


def test_profile_server_time_scope(portal: SandboxPortal, http: requests.Session) -> None:
    assert call(http, portal, "profile").json()["result"]["ID"] == "1"
    assert call(http, portal, "scope").json()["result"] == ["imbot"]
    assert "T" in call(http, portal, "server.time").json()["result"]


def test_form_body_and_query_merge_with_body_winning(
    portal: SandboxPortal, http: requests.Session
) -> None:
    url = portal.webhook_url() + DELETE
    query = delete_params(reaction="fire")  # the body's reaction must win
    response = http.post(url, params=query, data={"reaction": "like"}, timeout=10)
    assert response.status_code == 200, response.text
    assert not portal.state.has_reaction(BOT, MSG, "like")


def test_malformed_json_body_is_ignored(portal: SandboxPortal, http: requests.Session) -> None:
    url = portal.webhook_url() + DELETE
    response = http.post(
        url,
        params=delete_params(),
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


# --- batch -------------------------------------------------------------------------------------


def test_batch_mixes_results_and_errors(portal: SandboxPortal, http: requests.Session) -> None:
    body = batch(
        http,
        portal,
        {
            "r1": command(),
            "r2": command(reaction="fire"),
            "r3": "no.such.method?x=1",
            "r4": command(BOT2, reaction="fire"),
        },
        halt=0,
    )
    inner = body["result"]
    assert inner["result"] == {"r1": {"result": True}, "r4": {"result": True}}
    assert inner["result_error"]["r2"]["error"] == "REACTION_NOT_FOUND"
    assert inner["result_error"]["r3"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert set(inner["result_time"]) == {"r1", "r4"}
    assert isinstance(inner["result_time"]["r1"]["operating_reset_at"], int)
    assert inner["result_total"] == [] and inner["result_next"] == []
    assert "time" in body
    assert portal.stats.batch_calls == 1 and portal.stats.commands_executed == 3


def test_batch_php_quirks_empty_maps_and_lists(
    portal: SandboxPortal, http: requests.Session
) -> None:
    ok = batch(http, portal, {"r1": command()})["result"]
    assert ok["result_error"] == []  # PHP's empty array
    as_list = batch(http, portal, [command(BOT2, reaction="fire"), command(msg=MSG2)])["result"]
    assert as_list["result"] == [{"result": True}, {"result": True}]  # keys 0..n-1 -> a list
    assert isinstance(as_list["result_time"], list)
    numbered = batch(http, portal, {"0": command(reaction="nope"), "1": command(reaction="nope2")})
    assert numbered["result"]["result"] == []
    assert [e["error"] for e in numbered["result"]["result_error"]] == ["REACTION_NOT_FOUND"] * 2
    empty = batch(http, portal, None)["result"]
    assert empty == {
        "result": [],
        "result_error": [],
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }


def test_batch_form_body_with_nested_cmd(portal: SandboxPortal, http: requests.Session) -> None:
    data = {"cmd[a]": command(), "cmd[b]": command(BOT2, reaction="fire"), "halt": "0"}
    response = http.post(portal.webhook_url() + "batch.json", data=data, timeout=10)
    assert response.status_code == 200
    assert set(response.json()["result"]["result"]) == {"a", "b"}
    assert portal.state.snapshot() == {
        (MSG, BOT, "redHeart"),
        (MSG2, BOT, "like"),
        (MSG, APP_BOT, "eyes"),
    }


def test_batch_command_values_are_url_decoded_like_php(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    state = make_state()
    state.bots[BOT] = state.bots[BOT].__class__(BOT, "a+b&c#d", None)
    portal = make_portal(state)
    raw = f"{DELETE}?botId={BOT}&messageId={MSG}&reaction=like&botToken=a+b&c#d"
    encoded = f"{DELETE}?botId={BOT}&messageId={MSG}&reaction=like&botToken=a%2Bb%26c%23d"
    inner = batch(http, portal, {"raw": raw, "ok": encoded})["result"]
    assert inner["result_error"]["raw"]["error"] == "BOT_OWNERSHIP_ERROR"
    assert inner["result"]["ok"] == {"result": True}


def test_batch_over_50_commands(make_portal: PortalFactory, http: requests.Session) -> None:
    state = PortalState.build([(BOT, m, "like") for m in range(1, 53)], bot_tokens={BOT: "t"})
    portal = make_portal(state)
    cmd = {f"r{m}": command(msg=m, token="t") for m in range(1, 53)}
    inner = batch(http, portal, cmd)["result"]
    assert len(inner["result"]) == 50
    assert inner["result_error"] == {
        "r51": {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        },
        "r52": {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        },
    }
    assert portal.state.snapshot() == {(51, BOT, "like"), (52, BOT, "like")}


@pytest.mark.parametrize(
    ("halt", "halts"), [(1, True), ("false", True), (0, False), ("0", False), (None, False)]
)
def test_batch_halt_uses_php_truthiness(
    portal: SandboxPortal, http: requests.Session, halt: Any, halts: bool
) -> None:
    cmd = {"r1": command(), "r2": command(reaction="fire"), "r3": command(msg=MSG2)}
    extra = {} if halt is None else {"halt": halt}
    inner = batch(http, portal, cmd, **extra)["result"]
    assert set(inner["result_error"]) == {"r2"}
    assert set(inner["result"]) == ({"r1"} if halts else {"r1", "r3"})
    assert portal.state.has_reaction(BOT, MSG2, "like") is halts


def test_batch_substitutes_result_references(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    state = make_state()
    state.add_message(1, 1, members=[BOT])
    state.add_reaction(BOT, 1, "like")
    portal = make_portal(state)
    cmd = {
        "p": "profile",
        "d": f"{DELETE}?botId={BOT}&botToken=tok-456&messageId=$result[p][ID]&reaction=like",
    }
    inner = batch(http, portal, cmd)["result"]
    assert inner["result"]["d"] == {"result": True}
    assert not portal.state.has_reaction(BOT, 1, "like")


def test_batch_not_allowed_for_the_whole_call(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    portal = make_portal(batch_not_allowed="call")
    response = http.post(
        portal.webhook_url() + "batch", json={"cmd": {"r1": command()}}, timeout=10
    )
    assert response.status_code == 405
    assert response.json() == {
        "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "error_description": "Method is not allowed for batch usage",
    }
    assert portal.state.has_reaction(BOT, MSG, "like")
    assert batch(http, portal, {"p": "profile"})["result"]["result"]["p"]["ID"] == "1"
    # Single calls still work.
    assert call(http, portal, DELETE, **delete_params()).status_code == 200


def test_batch_not_allowed_per_command(make_portal: PortalFactory, http: requests.Session) -> None:
    portal = make_portal(batch_not_allowed="command")
    inner = batch(http, portal, {"r1": command(), "p": "profile"})["result"]
    assert inner["result_error"]["r1"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert "p" in inner["result"]
    assert portal.state.has_reaction(BOT, MSG, "like")


# --- limits ------------------------------------------------------------------------------------


def test_rate_limit_leaky_bucket(make_portal: PortalFactory, http: requests.Session) -> None:
    portal = make_portal(rate=1.0, burst=3)
    statuses = [call(http, portal, "profile").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 503, 503]
    refused = call(http, portal, "profile")
    assert refused.json() == {
        "error": "QUERY_LIMIT_EXCEEDED",
        "error_description": "Too many requests",
    }
    assert "Retry-After" not in refused.headers
    assert portal.stats.limit_refusals == 3
    time.sleep(1.1)  # one slot drains
    assert batch(http, portal, {"a": "profile", "b": "scope"})  # a batch counts as one request
    assert call(http, portal, "profile").status_code == 503


def test_rate_limit_status_and_retry_after(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    portal = make_portal(rate=0.5, burst=1, limit_status=429, retry_after=2)
    assert call(http, portal, "profile").status_code == 200
    refused = call(http, portal, DELETE, **delete_params())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "2"
    assert portal.state.has_reaction(BOT, MSG, "like")  # nothing ran


def test_operating_time_limit(make_portal: PortalFactory, http: requests.Session) -> None:
    state = PortalState.build([(BOT, m, "like") for m in range(1, 10)], bot_tokens={BOT: "t"})
    portal = make_portal(state, operating_limit=0.05, operating_cost=0.03, operating_window=1.0)
    first = call(http, portal, DELETE, **delete_params(msg=1, botToken="t")).json()
    assert first["time"]["operating"] == pytest.approx(0.03)
    reset_at = first["time"]["operating_reset_at"]
    assert isinstance(reset_at, int) and time.time() - 1 <= reset_at <= time.time() + 2
    assert call(http, portal, DELETE, **delete_params(msg=2, botToken="t")).status_code == 200
    blocked = call(http, portal, DELETE, **delete_params(msg=3, botToken="t"))
    assert blocked.status_code == 429
    assert blocked.json() == {
        "error": "OPERATION_TIME_LIMIT",
        "error_description": "Method is blocked due to operation time limit.",
    }
    inner = batch(http, portal, {"r4": command(msg=4, token="t"), "p": "profile"})["result"]
    assert inner["result_error"]["r4"]["error"] == "OPERATION_TIME_LIMIT"
    assert "p" in inner["result"]  # other methods have their own budget
    assert portal.stats.operating_refusals == 2
    assert portal.state.has_reaction(BOT, 3, "like") and portal.state.has_reaction(BOT, 4, "like")
    time.sleep(1.05)  # the window passes
    assert call(http, portal, DELETE, **delete_params(msg=3, botToken="t")).status_code == 200


def test_latency_and_concurrency(make_portal: PortalFactory) -> None:
    state = PortalState.build([(BOT, m, "like") for m in range(1, 9)], bot_tokens={BOT: "t"})
    portal = make_portal(state, latency=0.2, per_command_cost=0.05)
    results: list[int] = []

    def worker(m: int) -> None:
        with requests.Session() as session:
            response = call(session, portal, DELETE, **delete_params(msg=m, botToken="t"))
            results.append(response.status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(m,)) for m in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 8
    assert 0.25 <= elapsed < 1.5  # overlapping, not 8 x 0.25 s
    assert portal.stats.max_in_flight >= 4
    assert portal.state.snapshot() == set()


# --- faults --------------------------------------------------------------------------------------


def test_fault_http500_executes_nothing(portal: SandboxPortal, http: requests.Session) -> None:
    portal.inject("http500")
    response = call(http, portal, DELETE, **delete_params())
    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert portal.state.has_reaction(BOT, MSG, "like")
    assert call(http, portal, DELETE, **delete_params()).status_code == 200


def test_fault_reset_executes_nothing(portal: SandboxPortal, http: requests.Session) -> None:
    portal.inject("reset")
    with pytest.raises(requests.ConnectionError):
        call(http, portal, DELETE, **delete_params())
    assert portal.state.has_reaction(BOT, MSG, "like")
    assert portal.stats.faults["reset"] == 1
    assert portal.stats.log[-1].status == 0
    assert call(http, portal, DELETE, **delete_params()).status_code == 200


def test_fault_lost_reply_executes_then_drops(
    portal: SandboxPortal, http: requests.Session
) -> None:
    portal.inject("lost_reply")
    with pytest.raises(requests.ConnectionError):
        batch(http, portal, {"r1": command(), "r2": command(msg=MSG2)})
    assert portal.state.snapshot() == {
        (MSG, BOT, "redHeart"),
        (MSG, BOT2, "fire"),
        (MSG, APP_BOT, "eyes"),
    }
    assert portal.stats.removed == 2
    retry = batch(http, portal, {"r1": command(), "r2": command(msg=MSG2)})["result"]
    assert {e["error"] for e in retry["result_error"].values()} == {"REACTION_NOT_FOUND"}


def test_fault_html502(portal: SandboxPortal, http: requests.Session) -> None:
    portal.inject("html502")
    response = call(http, portal, DELETE, **delete_params())
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Bad Gateway" in response.text
    assert portal.state.has_reaction(BOT, MSG, "like")


def test_fault_slow(make_portal: PortalFactory, http: requests.Session) -> None:
    portal = make_portal(slow_seconds=0.3)
    portal.inject("slow")
    started = time.monotonic()
    assert call(http, portal, DELETE, **delete_params()).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert not portal.state.has_reaction(BOT, MSG, "like")


def test_fault_limit(portal: SandboxPortal, http: requests.Session) -> None:
    portal.inject("limit")
    response = call(http, portal, DELETE, **delete_params())
    assert response.status_code == 503
    assert response.json()["error"] == "QUERY_LIMIT_EXCEEDED"
    assert portal.state.has_reaction(BOT, MSG, "like")


def test_fault_expired_only_on_oauth(portal: SandboxPortal, http: requests.Session) -> None:
    tokens = portal.issue_tokens(APP)
    portal.inject("expired", "expired")
    assert call(http, portal, "profile").status_code == 200  # webhook: consumed, no fault
    url = portal.client_endpoint + "profile"
    response = http.post(url, json={"auth": tokens["access_token"]}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "expired_token"
    assert http.post(url, json={"auth": tokens["access_token"]}, timeout=10).status_code == 200
    assert portal.stats.faults["expired"] == 1


def test_scripted_faults_are_fifo(portal: SandboxPortal, http: requests.Session) -> None:
    portal.inject("http500", "html502", "limit")
    statuses = [call(http, portal, "profile").status_code for _ in range(4)]
    assert statuses == [500, 502, 503, 200]
    assert portal.pending_faults() == []
    with pytest.raises(ValueError):
        portal.inject("meteor")


def test_random_faults_are_reproducible_with_a_seed(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    def run() -> list[int]:
        portal = make_portal(fault_rates={"http500": 0.3, "html502": 0.2}, seed=42)
        return [call(http, portal, "profile").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert {500, 502, 200} <= set(first)


def test_faults_do_not_touch_the_oauth_endpoint(
    portal: SandboxPortal, http: requests.Session
) -> None:
    tokens = portal.issue_tokens(APP)
    portal.inject("http500")
    refreshed = http.get(portal.server_endpoint + "token/", params=_refresh(tokens), timeout=10)
    assert refreshed.status_code == 200
    assert portal.pending_faults() == ["http500"]


# --- OAuth ---------------------------------------------------------------------------------------


def _refresh(tokens: dict[str, Any], **override: str) -> dict[str, Any]:
    params = {
        "grant_type": "refresh_token",
        "client_id": APP,
        "client_secret": SECRET,
        "refresh_token": tokens["refresh_token"],
    }
    params.update(override)
    return params


def test_oauth_calls_and_ownership(portal: SandboxPortal, http: requests.Session) -> None:
    tokens = portal.issue_tokens(APP)
    assert tokens["client_endpoint"] == portal.url + "/rest/"
    assert tokens["server_endpoint"] == portal.url + "/oauth/"
    assert tokens["expires_in"] == 3600 and tokens["scope"] == "imbot"
    url = portal.client_endpoint + DELETE + ".json"
    own = {"botId": APP_BOT, "messageId": MSG, "reaction": "eyes", "botToken": "ignored"}
    response = http.post(url, params={"auth": tokens["access_token"]}, json=own, timeout=10)
    assert response.status_code == 200, response.text
    webhook_bot = {
        "auth": tokens["access_token"],
        "botId": BOT,
        "messageId": MSG,
        "reaction": "like",
    }
    response = http.post(url, json=webhook_bot, timeout=10)
    assert response.json()["error"] == "BOT_OWNERSHIP_ERROR"
    inner = http.post(
        portal.client_endpoint + "batch",
        json={
            "auth": tokens["access_token"],
            "cmd": {"r": f"{DELETE}?botId={BOT}&messageId={MSG}&reaction=like"},
        },
        timeout=10,
    ).json()["result"]
    assert inner["result_error"]["r"]["error"] == "BOT_OWNERSHIP_ERROR"


@pytest.mark.parametrize(
    ("auth", "code"),
    [(None, "NO_AUTH_FOUND"), ("", "NO_AUTH_FOUND"), ("bogus", "invalid_token")],
)
def test_oauth_auth_errors(
    portal: SandboxPortal, http: requests.Session, auth: str | None, code: str
) -> None:
    body = {} if auth is None else {"auth": auth}
    response = http.post(portal.client_endpoint + "profile.json", json=body, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == code


def test_oauth_refresh_rotates_tokens(portal: SandboxPortal, http: requests.Session) -> None:
    first = portal.issue_tokens(APP)
    token_url = portal.server_endpoint + "token/"
    response = http.get(token_url, params=_refresh(first), timeout=10)
    assert response.status_code == 200
    second = response.json()
    for key in (
        "access_token",
        "refresh_token",
        "expires_in",
        "client_endpoint",
        "server_endpoint",
        "domain",
    ):
        assert key in second
    assert second["member_id"] and second["status"] == "L"
    assert second["refresh_token"] != first["refresh_token"]
    # The old pair is dead; the new one works.
    again = http.get(token_url, params=_refresh(first), timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    profile = portal.client_endpoint + "profile"
    assert (
        http.post(profile, json={"auth": first["access_token"]}, timeout=10).json()["error"]
        == "invalid_token"
    )
    assert http.post(profile, json={"auth": second["access_token"]}, timeout=10).status_code == 200
    assert portal.stats.refreshes == 1


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "other.app"}, "invalid_client"),
        ({"refresh_token": "bogus"}, "invalid_grant"),
        ({"refresh_token": ""}, "invalid_request"),
        ({"grant_type": "password"}, "invalid_request"),
    ],
)
def test_oauth_refresh_errors(
    portal: SandboxPortal, http: requests.Session, override: dict[str, str], code: str
) -> None:
    tokens = portal.issue_tokens(APP)
    response = http.get(
        portal.server_endpoint + "token/", params=_refresh(tokens, **override), timeout=10
    )
    assert response.status_code == 400
    assert response.json()["error"] == code


def test_access_tokens_expire(make_portal: PortalFactory, http: requests.Session) -> None:
    portal = make_portal(token_ttl=0.2)
    tokens = portal.issue_tokens(APP)
    profile = portal.client_endpoint + "profile"
    assert http.get(profile, params={"auth": tokens["access_token"]}, timeout=10).status_code == 200
    time.sleep(0.25)
    expired = http.get(profile, params={"auth": tokens["access_token"]}, timeout=10)
    assert expired.status_code == 401
    assert expired.json() == {
        "error": "expired_token",
        "error_description": "The access token provided has expired",
    }
    portal.config.token_ttl = 3600
    fresh = http.get(portal.server_endpoint + "token/", params=_refresh(tokens), timeout=10).json()
    assert http.get(profile, params={"auth": fresh["access_token"]}, timeout=10).status_code == 200
    portal.expire_access_tokens()
    assert http.get(profile, params={"auth": fresh["access_token"]}, timeout=10).status_code == 401


# --- portal-wide behaviour ----------------------------------------------------------------------


def test_redirect_for_a_renamed_portal(make_portal: PortalFactory, http: requests.Session) -> None:
    target = make_portal()
    portal = make_portal(redirect_to=target.url + "/")
    response = http.post(
        portal.webhook_url() + "profile?x=1", json={}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 302
    assert response.headers["Location"] == target.url + "/rest/1/sandbox-webhook-code/profile?x=1"


def test_https_required(make_portal: PortalFactory, http: requests.Session) -> None:
    portal = make_portal(https_required=True)
    response = call(http, portal, "profile")
    assert response.status_code == 401
    assert response.json() == {"error": "INVALID_REQUEST", "error_description": "Https required."}


def test_no_secrets_in_log_or_stderr(
    portal: SandboxPortal, http: requests.Session, capfd: pytest.CaptureFixture[str]
) -> None:
    tokens = portal.issue_tokens(APP)
    call(http, portal, DELETE, **delete_params())
    http.get(portal.url + "/rest/1/sandbox-webhook-code", timeout=10)  # mangled path
    http.post(portal.client_endpoint + "profile", json={"auth": tokens["access_token"]}, timeout=10)
    logged = repr(portal.stats.log)
    for secret in ("sandbox-webhook-code", "tok-456", tokens["access_token"]):
        assert secret not in logged
    _, err = capfd.readouterr()
    assert "sandbox-webhook-code" not in err and tokens["access_token"] not in err
    assert [r.path_method for r in portal.stats.log] == [DELETE, "?unknown", "profile"]


def _raw(portal: SandboxPortal, data: bytes, *, close_early: bool = False) -> bytes:
    with socket.create_connection((portal.host, portal.port), timeout=5) as sock:
        sock.sendall(data)
        if close_early:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_malformed_requests_never_kill_the_server(
    portal: SandboxPortal, http: requests.Session
) -> None:
    assert b"400" in _raw(portal, b"GARBAGE\r\n\r\n")
    bad_length = b"POST /rest/1/x/profile HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    assert b" 400 " in _raw(portal, bad_length).split(b"\r\n")[0] + b" "
    too_big = b"POST /rest/1/x/profile HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"
    assert b"413" in _raw(portal, too_big).split(b"\r\n")[0]
    truncated = b"POST /rest/1/x/profile HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort"
    _raw(portal, truncated, close_early=True)
    tls_hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64)
    _raw(portal, tls_hello, close_early=True)
    assert call(http, portal, "profile").status_code == 200
    assert portal.stats.internal_errors == 0


def test_chunked_body(portal: SandboxPortal) -> None:
    body = json.dumps(delete_params()).encode()
    request = (
        f"POST /rest/1/sandbox-webhook-code/{DELETE} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    request += f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    answer = _raw(portal, request)
    assert answer.startswith(b"HTTP/1.1 200")
    assert not portal.state.has_reaction(BOT, MSG, "like")


def test_stop_is_idempotent_and_closes_keep_alive_connections(
    make_portal: PortalFactory, http: requests.Session
) -> None:
    portal = make_portal()
    assert call(http, portal, "profile").status_code == 200  # leaves a keep-alive connection
    portal.stop()
    portal.stop()
    with pytest.raises(requests.ConnectionError):
        call(http, portal, "profile")


# --- state ---------------------------------------------------------------------------------------


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = make_state()
    path = tmp_path / "state.json"
    state.to_file(path)
    data = json.loads(path.read_text())
    assert data["webhooks"] == {"1": "sandbox-webhook-code"}
    assert data["bots"][str(APP_BOT)] == {"token": "tok-458", "client_id": APP}
    assert [BOT, MSG, "like"] in data["reactions"]
    loaded = PortalState.from_file(path)
    assert loaded.to_dict() == state.to_dict()
    assert loaded.snapshot() == state.snapshot()


def test_state_from_dict_reports_bad_entries() -> None:
    with pytest.raises(ValueError, match=r"reactions\[0\]"):
        PortalState.from_dict({"reactions": [[1, 2]]})
    with pytest.raises(ValueError, match="not an integer"):
        PortalState.from_dict({"messages": {"x": 1}})


def test_build_with_chat_mapping() -> None:
    state = PortalState.build(
        [(1, 10, "like"), (2, 11, "fire")], chat_id_for_message={10: 5, 11: 5}
    )
    assert state.chats == {5: {1, 2}}
    assert state.messages == {10: 5, 11: 5}
    assert state.bots[1].token == "token-1" and state.bots[1].client_id is None


# --- the command --------------------------------------------------------------------------------


def test_command_serves_until_sigterm_and_saves_state(tmp_path: Path) -> None:
    state_file, saved = tmp_path / "state.json", tmp_path / "after.json"
    make_state().to_file(state_file)
    code = "from cleanup.sandbox.command import sandbox_command; sandbox_command()"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = ["--state", str(state_file), "--port", "0", "--save-state", str(saved)]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        webhook = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        assert webhook == base + "/rest/1/sandbox-webhook-code/"
        response = requests.post(webhook + DELETE, json=delete_params(), timeout=10)
        assert response.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert [BOT, MSG, "like"] not in json.loads(saved.read_text())["reactions"]


def test_command_rejects_a_bad_fault(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    make_state().to_file(state_file)
    result = CliRunner().invoke(
        sandbox_command, ["--state", str(state_file), "--fault", "meteor=0.5"]
    )
    assert result.exit_code == 2
    assert "KIND=RATE" in result.output
