"""One place that reads the portal's answers: ok, row failure, wait, retry, or abort.

Classification is by the `error` code, not the HTTP status: the docs and the server
disagree on statuses (400/403, 503/429, 401/403), and errors even come with HTTP 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(Enum):
    OK = "ok"
    ROW_FAILED = "row_failed"  # method-level error: this row failed, never retried
    BOT_FAILED = "bot_failed"  # the bot itself is wrong: every row of that bot fails alike
    NOT_FOUND = "not_found"  # REACTION_NOT_FOUND: failed, unless an earlier try may have removed it
    RATE_LIMITED = "rate_limited"  # nothing ran; wait and resend, no retry budget used
    OPERATING_LIMIT = "operating_limit"  # nothing ran; wait for the method's budget to reset
    OVERFLOW = "overflow"  # nothing ran (batch overflow): send again at once, smaller
    TRANSIENT = "transient"  # outcome unknown (5xx, network, garbage); retry with backoff
    BATCH_NOT_ALLOWED = "batch_not_allowed"  # send these rows as single calls from now on
    EXPIRED_TOKEN = "expired_token"  # OAuth: refresh once and resend
    FATAL = "fatal"  # the run cannot go on: credentials, plan, blocked portal


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    error: str = ""
    description: str = ""
    hint: str = ""


OK = Outcome(Kind.OK)

QUERY_LIMIT_EXCEEDED = "QUERY_LIMIT_EXCEEDED"
OPERATION_TIME_LIMIT = "OPERATION_TIME_LIMIT"
REACTION_NOT_FOUND = "REACTION_NOT_FOUND"

# What to tell the user for each run-stopping code.
FATAL_HINTS: dict[str, str] = {
    "NO_AUTH_FOUND": "Check the webhook URL (user id and code) or the OAuth access token",
    "INVALID_CREDENTIALS": "The webhook's user lacks the rights needed; check the webhook in the portal",
    "user_access_error": "The portal admin restricted the application to other users",
    "authorization_error": "The portal rejected the credentials; check the webhook or tokens",
    "invalid_token": "The access token is not valid; authorise the application again",
    "expired_token": (
        "The access token expired, and a refreshed one was refused as expired too (or none can"
        " be had in webhook mode); check --oauth-server and the application's tokens"
    ),
    "insufficient_scope": "Add the 'imbot' scope to the webhook or application",
    "INVALID_REQUEST": "The portal requires HTTPS; use an https:// address",
    "OVERLOAD_LIMIT": "Bitrix24 support has blocked the REST API for this portal; contact support",
    "PORTAL_DELETED": "The portal is deleted or closed; check the portal address (--portal or the webhook URL)",
    "ERROR_METHOD_NOT_FOUND": "The portal does not offer imbot.v2 methods (old version or module off)",
    "ACCESS_DENIED": "REST is available only on commercial plans; check the portal's subscription",
    "WRONG_AUTH_TYPE": "This method needs another kind of authorisation (webhook vs OAuth)",
    "ERROR_OAUTH": "The OAuth application is not valid on this portal",
    "APPLICATION_NOT_FOUND": "The application is not installed on this portal",
    "PAYMENT_REQUIRED": "The application's subscription has ended",
}
FATAL_CODES = frozenset(FATAL_HINTS) - {"ACCESS_DENIED", "expired_token"}
BOT_CODES = frozenset({"BOT_NOT_FOUND", "BOT_OWNERSHIP_ERROR", "BOT_TOKEN_NOT_SPECIFIED"})
TRANSIENT_CODES = frozenset(
    {"INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER", "ERROR_CORE", "ERROR_BATCH_TIMEOUT"}
)
# Words of the plan-level refusal, matched at a word's start ("plan", "plans", "тарифе"), so
# that a row's "Access denied" text with "explanation" in it is not taken for one.
_PLAN_WORDS = re.compile(r"\b(?:commercial|subscription|plan|тариф|подписк|коммерческ)")


def is_success(value: Any) -> bool:
    """Both documented success shapes: `true` (method page) and `{"result": true}` (server)."""
    if value is True:
        return True
    return isinstance(value, dict) and value.get("result") is True


def classify_error(code: str, description: str, *, status: int | None, context: str) -> Outcome:
    """An error code from the portal; `context` is "batch" (outer call of a batch),
    "command" (one entry of result_error) or "single" (a call of the method itself)."""
    code = code or ""
    if not code:
        # Seen in the wild: an error with only a description. Go by the status.
        if status is not None and status >= 500:
            return Outcome(Kind.TRANSIENT, f"HTTP_{status}", description)
        if status == 429:
            # Too many requests, whichever limit: nothing ran, so wait and re-send.
            return Outcome(Kind.RATE_LIMITED, QUERY_LIMIT_EXCEEDED, description)
        if status == 401:
            return Outcome(Kind.FATAL, "HTTP_401", description, FATAL_HINTS["authorization_error"])
        code = "UNKNOWN_ERROR"
    if code == QUERY_LIMIT_EXCEEDED:
        return Outcome(Kind.RATE_LIMITED, code, description)
    if code == OPERATION_TIME_LIMIT:
        return Outcome(Kind.OPERATING_LIMIT, code, description)
    if code == "ERROR_BATCH_LENGTH_EXCEEDED":
        return Outcome(Kind.OVERFLOW, code, description)
    if code == "ERROR_BATCH_METHOD_NOT_ALLOWED":
        return Outcome(Kind.BATCH_NOT_ALLOWED, code, description)
    if code == "expired_token":
        return Outcome(Kind.EXPIRED_TOKEN, code, description, FATAL_HINTS[code])
    if code in FATAL_CODES:
        return Outcome(Kind.FATAL, code, description, FATAL_HINTS[code])
    if code == "ACCESS_DENIED":
        # Fatal as the outer error of a batch or with a plan/subscription text;
        # otherwise the bot is not a member of the message's chat.
        text = description.casefold()
        if context == "batch" or _PLAN_WORDS.search(text):
            return Outcome(Kind.FATAL, code, description, FATAL_HINTS[code])
        return Outcome(Kind.ROW_FAILED, code, description)
    if code in TRANSIENT_CODES:
        return Outcome(Kind.TRANSIENT, code, description)
    if code == REACTION_NOT_FOUND:
        return Outcome(Kind.NOT_FOUND, code, description)
    if code in BOT_CODES:
        return Outcome(Kind.BOT_FAILED, code, description)
    if status is not None and status >= 500:
        return Outcome(Kind.TRANSIENT, code, description)
    if status == 401:
        # Method errors come as 400/403; a 401 is the portal refusing the credentials,
        # whatever the code says, for a batch and a single call alike.
        return Outcome(Kind.FATAL, code, description, FATAL_HINTS["authorization_error"])
    # Undocumented method errors (e.g. an unknown messageId): the row failed, raw code kept.
    return Outcome(Kind.ROW_FAILED, code, description)


def classify_answer(status: int, body: Any, *, context: str) -> Outcome:
    """A whole HTTP answer (parsed JSON body, or None if it was not JSON)."""
    if (
        isinstance(body, dict)
        and ("error" in body or "error_description" in body)
        and ("result" not in body)
    ):
        return classify_error(
            str(body.get("error") or ""),
            str(body.get("error_description") or ""),
            status=status,
            context=context,
        )
    if body is None or not isinstance(body, dict):
        if status == 401:
            # A proxy or the portal refusing the credentials without a JSON body: nothing
            # ran, and re-sending cannot help.
            return Outcome(
                Kind.FATAL,
                "HTTP_401",
                "the portal answered HTTP 401 without a JSON body",
                FATAL_HINTS["authorization_error"],
            )
        if status == 429 and body is None:
            # A proxy's own "too many requests" page: nothing ran. (A bare 503 is more
            # often a portal that is down: it stays transient, with a retry budget.)
            return Outcome(
                Kind.RATE_LIMITED, QUERY_LIMIT_EXCEEDED, f"HTTP {status} without a JSON body"
            )
        return Outcome(Kind.TRANSIENT, f"HTTP_{status}", "the portal's answer was not JSON")
    if status >= 500:
        return Outcome(Kind.TRANSIENT, f"HTTP_{status}", "server error")
    if "result" not in body:
        return Outcome(Kind.TRANSIENT, "ERROR_UNEXPECTED_ANSWER", "the answer has no result")
    return OK


def classify_result(value: Any) -> Outcome:
    """A method's `result` (single call, or one command's entry in a batch)."""
    if is_success(value):
        return OK
    shown = repr(value)
    if len(shown) > 120:
        shown = shown[:119] + "…"
    return Outcome(Kind.ROW_FAILED, "UNEXPECTED_RESULT", f"the portal answered {shown}, not true")
