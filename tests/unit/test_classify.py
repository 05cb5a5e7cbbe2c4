"""classify: every answer the portal (or a proxy before it) gives, and what it means.

One table per entry point; each case's id says the answer in words. The expectations come
from the protocol notes (../shared/bitrix24-protocol.md) and the method's page: the code
decides, not the HTTP status, except where an answer has no code.
"""

from __future__ import annotations

from typing import Any

import pytest

from cleanup.portal.classify import Kind, classify_answer, classify_error, classify_result

Case = tuple[int, Any, str, Kind, str]  # status, body, context -> kind, error code

ANSWERS: dict[str, Case] = {
    "200 result true": (200, {"result": True, "time": {}}, "single", Kind.OK, ""),
    "200 batch envelope": (200, {"result": {"result": {}}}, "batch", Kind.OK, ""),
    "200 result and error both: the result wins": (
        200,
        {"result": True, "error": "X"},
        "single",
        Kind.OK,
        "",
    ),
    "503 QUERY_LIMIT_EXCEEDED": (
        503,
        {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
        "batch",
        Kind.RATE_LIMITED,
        "QUERY_LIMIT_EXCEEDED",
    ),
    "429 QUERY_LIMIT_EXCEEDED": (
        429,
        {"error": "QUERY_LIMIT_EXCEEDED"},
        "single",
        Kind.RATE_LIMITED,
        "QUERY_LIMIT_EXCEEDED",
    ),
    "429 from a proxy, not JSON": (429, None, "batch", Kind.RATE_LIMITED, "QUERY_LIMIT_EXCEEDED"),
    "429 with only a description": (
        429,
        {"error_description": "slow down"},
        "batch",
        Kind.RATE_LIMITED,
        "QUERY_LIMIT_EXCEEDED",
    ),
    "503 not JSON: the portal is down": (503, None, "batch", Kind.TRANSIENT, "HTTP_503"),
    "502 JSON without result": (502, {"foo": 1}, "batch", Kind.TRANSIENT, "HTTP_502"),
    "500 with only a description": (
        500,
        {"error_description": "oops"},
        "batch",
        Kind.TRANSIENT,
        "HTTP_500",
    ),
    "500 INTERNAL_SERVER_ERROR": (
        500,
        {"error": "INTERNAL_SERVER_ERROR"},
        "single",
        Kind.TRANSIENT,
        "INTERNAL_SERVER_ERROR",
    ),
    "502 with an undocumented code": (
        502,
        {"error": "WHATEVER"},
        "batch",
        Kind.TRANSIENT,
        "WHATEVER",
    ),
    "200 ERROR_BATCH_TIMEOUT": (
        200,
        {"error": "ERROR_BATCH_TIMEOUT"},
        "batch",
        Kind.TRANSIENT,
        "ERROR_BATCH_TIMEOUT",
    ),
    "200 a JSON list, not an answer": (200, [], "single", Kind.TRANSIENT, "HTTP_200"),
    "200 a JSON object without result": (
        200,
        {"time": {}},
        "single",
        Kind.TRANSIENT,
        "ERROR_UNEXPECTED_ANSWER",
    ),
    "401 not JSON": (401, None, "batch", Kind.FATAL, "HTTP_401"),
    "401 with only a description": (
        401,
        {"error_description": "no"},
        "batch",
        Kind.FATAL,
        "HTTP_401",
    ),
    "401 with an undocumented code": (401, {"error": "ODD"}, "single", Kind.FATAL, "ODD"),
    "401 NO_AUTH_FOUND": (401, {"error": "NO_AUTH_FOUND"}, "batch", Kind.FATAL, "NO_AUTH_FOUND"),
    "401 expired_token": (
        401,
        {"error": "expired_token"},
        "batch",
        Kind.EXPIRED_TOKEN,
        "expired_token",
    ),
    "401 invalid_token": (401, {"error": "invalid_token"}, "batch", Kind.FATAL, "invalid_token"),
    "403 insufficient_scope": (
        403,
        {"error": "insufficient_scope"},
        "single",
        Kind.FATAL,
        "insufficient_scope",
    ),
    "503 OVERLOAD_LIMIT: blocked by support": (
        503,
        {"error": "OVERLOAD_LIMIT"},
        "batch",
        Kind.FATAL,
        "OVERLOAD_LIMIT",
    ),
    "200 OPERATION_TIME_LIMIT": (
        200,
        {"error": "OPERATION_TIME_LIMIT"},
        "single",
        Kind.OPERATING_LIMIT,
        "OPERATION_TIME_LIMIT",
    ),
    "400 ERROR_BATCH_LENGTH_EXCEEDED": (
        400,
        {"error": "ERROR_BATCH_LENGTH_EXCEEDED"},
        "batch",
        Kind.OVERFLOW,
        "ERROR_BATCH_LENGTH_EXCEEDED",
    ),
    "400 ERROR_BATCH_METHOD_NOT_ALLOWED": (
        400,
        {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED"},
        "batch",
        Kind.BATCH_NOT_ALLOWED,
        "ERROR_BATCH_METHOD_NOT_ALLOWED",
    ),
    "403 ACCESS_DENIED for a whole batch: the plan": (
        403,
        {"error": "ACCESS_DENIED", "error_description": "Access denied"},
        "batch",
        Kind.FATAL,
        "ACCESS_DENIED",
    ),
    "400 REACTION_NOT_FOUND": (
        400,
        {"error": "REACTION_NOT_FOUND"},
        "single",
        Kind.NOT_FOUND,
        "REACTION_NOT_FOUND",
    ),
    "400 BOT_NOT_FOUND": (
        400,
        {"error": "BOT_NOT_FOUND"},
        "single",
        Kind.BOT_FAILED,
        "BOT_NOT_FOUND",
    ),
    "400 undocumented method error": (
        400,
        {"error": "MESSAGE_NOT_FOUND"},
        "single",
        Kind.ROW_FAILED,
        "MESSAGE_NOT_FOUND",
    ),
    "400 with only a description": (
        400,
        {"error_description": "bad"},
        "single",
        Kind.ROW_FAILED,
        "UNKNOWN_ERROR",
    ),
}


@pytest.mark.parametrize(
    ("status", "body", "context", "kind", "error"), ANSWERS.values(), ids=ANSWERS
)
def test_a_whole_answer(status: int, body: Any, context: str, kind: Kind, error: str) -> None:
    outcome = classify_answer(status, body, context=context)
    assert (outcome.kind, outcome.error) == (kind, error)
    if kind is Kind.FATAL:
        assert outcome.hint, "a run-stopping answer tells the user what to do"


COMMAND_ERRORS: dict[str, tuple[str, str, Kind]] = {
    "ACCESS_DENIED: the bot is not in the chat": (
        "ACCESS_DENIED",
        "Access denied",
        Kind.ROW_FAILED,
    ),
    "ACCESS_DENIED with 'explanation' is not about a plan": (
        "ACCESS_DENIED",
        "no explanation given",
        Kind.ROW_FAILED,
    ),
    "ACCESS_DENIED on a plan": (
        "ACCESS_DENIED",
        "REST is available only on commercial plans",
        Kind.FATAL,
    ),
    "ACCESS_DENIED on a plan, in Russian": (
        "ACCESS_DENIED",
        "Метод недоступен на вашем тарифе",
        Kind.FATAL,
    ),
    "QUERY_LIMIT_EXCEEDED inside a batch": ("QUERY_LIMIT_EXCEEDED", "", Kind.RATE_LIMITED),
    "OPERATION_TIME_LIMIT inside a batch": ("OPERATION_TIME_LIMIT", "", Kind.OPERATING_LIMIT),
    "ERROR_BATCH_LENGTH_EXCEEDED: past the 50th": (
        "ERROR_BATCH_LENGTH_EXCEEDED",
        "",
        Kind.OVERFLOW,
    ),
    "ERROR_BATCH_METHOD_NOT_ALLOWED per command": (
        "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "",
        Kind.BATCH_NOT_ALLOWED,
    ),
    "expired_token per command": ("expired_token", "", Kind.EXPIRED_TOKEN),
    "REACTION_NOT_FOUND": ("REACTION_NOT_FOUND", "", Kind.NOT_FOUND),
    "BOT_OWNERSHIP_ERROR": ("BOT_OWNERSHIP_ERROR", "", Kind.BOT_FAILED),
    "BOT_TOKEN_NOT_SPECIFIED": ("BOT_TOKEN_NOT_SPECIFIED", "", Kind.BOT_FAILED),
    "ERROR_CORE": ("ERROR_CORE", "", Kind.TRANSIENT),
    "no code at all": ("", "something", Kind.ROW_FAILED),
    "PORTAL_DELETED": ("PORTAL_DELETED", "", Kind.FATAL),
}


@pytest.mark.parametrize(("code", "text", "kind"), COMMAND_ERRORS.values(), ids=COMMAND_ERRORS)
def test_one_command_of_a_batch(code: str, text: str, kind: Kind) -> None:
    outcome = classify_error(code, text, status=None, context="command")
    assert outcome.kind is kind
    assert outcome.error == (code or "UNKNOWN_ERROR")
    assert outcome.description == text


RESULTS: dict[str, tuple[Any, Kind]] = {
    "true (the method's page)": (True, Kind.OK),
    "{result: true} (the server)": ({"result": True}, Kind.OK),
    "false": (False, Kind.ROW_FAILED),
    "{result: false}": ({"result": False}, Kind.ROW_FAILED),
    "null": (None, Kind.ROW_FAILED),
    "1 is not true": (1, Kind.ROW_FAILED),
}


@pytest.mark.parametrize(("value", "kind"), RESULTS.values(), ids=RESULTS)
def test_a_methods_result(value: Any, kind: Kind) -> None:
    outcome = classify_result(value)
    assert outcome.kind is kind
    if kind is not Kind.OK:
        assert outcome.error == "UNEXPECTED_RESULT"
        assert repr(value) in outcome.description


def test_a_long_unexpected_result_is_cut() -> None:
    outcome = classify_result({"result": "x" * 500})
    assert len(outcome.description) < 160 and outcome.description.endswith("…, not true")
