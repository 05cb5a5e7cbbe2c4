"""The sandbox portal: a real local HTTP server that answers like a Bitrix24 portal for the
calls reaction-cleanup makes, with limits and faults that tests can script.

It answers as the Bitrix24 REST documentation and docs/explanation/portal.md
describe; where the documentation is unsure, the behaviour follows the portal's server
sources (noted inline).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import random
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import SplitResult, unquote, urlsplit

from cleanup.clock import Clock, SystemClock

from . import php
from .config import FAULT_KINDS, PortalConfig
from .limits import LeakyBucket, OperatingClock
from .methods import (
    KNOWN_METHODS,
    METHOD_BATCH,
    METHOD_DELETE,
    METHOD_PROFILE,
    METHOD_SCOPE,
    METHOD_SERVER_TIME,
    METHOD_UPLOAD,
    POST_METHODS,
    REACTION_METHODS,
    Caller,
    MethodError,
    post_call,
    reaction_call,
)
from .state import PortalState
from .stats import PortalStats, RequestRecord

JSON_TYPE = "application/json; charset=utf-8"
MAX_BODY = 16 * 1024 * 1024
# GET: what bots posted (a debug endpoint of the sandbox only; a real portal has none).
POSTS_PATH = "/_sandbox/posts"
IDLE_TIMEOUT = 120.0  # seconds an idle keep-alive connection is kept

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_DIGITS = re.compile(r"[0-9]+\Z")


# --- replies ---------------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the socket instead of answering


def _json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Reply:
    body = json.dumps(php.php_json(payload), separators=(",", ":")).encode("utf-8")
    return _Reply(status, body, JSON_TYPE, dict(headers or {}))


def _error_reply(
    status: int, code: str, description: str, headers: dict[str, str] | None = None
) -> _Reply:
    # Errors carry no "time", as on the portal.
    return _json_reply(status, {"error": code, "error_description": description}, headers)


def _error_entry(code: str, description: str) -> dict[str, str]:
    return {"error": code, "error_description": description}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _time_block(
    start: float, finish: float, processing: float, operating: float, reset_at: int
) -> dict[str, Any]:
    return {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": processing,
        "date_start": _iso(start),
        "date_finish": _iso(finish),
        "operating_reset_at": reset_at,
        "operating": operating,
    }


def _seconds_header(value: float) -> str:
    # Whole seconds as RFC 9110 wants; fractions kept so fast tests can use sub-second waits.
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- request bookkeeping -----------------------------------------------------------------


@dataclass
class _Draft:
    """The request record being filled in while a /rest/ request is handled."""

    t_start: float
    method: str = "?"
    n_commands: int = 0
    status: int = 0
    error: str | None = None


@dataclass
class _Outcome:
    """One executed (or refused) method call, single or inside a batch."""

    value: Any = None
    error: MethodError | None = None
    status: int = 200  # the status a single call would get for this error
    time: dict[str, Any] | None = None
    cost: float = 0.0  # operating seconds it ran for


@dataclass
class _AccessToken:
    client_id: str
    user_id: int
    expires_at: float
    refresh_token: str


@dataclass
class _RefreshToken:
    client_id: str
    user_id: int
    access_token: str


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _ClientGone(Exception):
    """The client closed the connection before sending the whole request."""


# --- the portal ----------------------------------------------------------------------------


class SandboxPortal:
    """A local Bitrix24 stand-in. ``start()`` serves it from a daemon thread; ``stop()`` ends it.

    ``state`` and ``config`` are live: tests may change them while the server runs.
    """

    def __init__(
        self,
        state: PortalState | None = None,
        config: PortalConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        # The limits' time (the bucket's drain, the operating window): injectable for tests.
        self.clock: Clock = clock or SystemClock()
        self.state = state if state is not None else PortalState.build([])
        self.config = config if config is not None else PortalConfig()
        problems = self.config.problems()
        if problems:
            raise ValueError("invalid sandbox config: " + "; ".join(problems))
        self.host = host
        self.port = port
        self.stats = PortalStats()
        self._url: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards tokens, the fault queue and the RNGs
        self._scripted: deque[str] = deque()
        seed = self.config.seed
        self._fault_rng = random.Random(seed)
        # A separate stream for "mixed" shapes, so they don't shift the fault sequence.
        self._shape_rng = random.Random(None if seed is None else seed + 1)
        self._bucket = LeakyBucket(self.clock)
        self._operating = OperatingClock(self.clock)
        self._batch_billed = threading.local()  # .on: a command of a batch billed as a whole
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._expire_batches_left = self.config.expire_during_batches

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler, self)
        self._server = server
        self.port = int(server.server_address[1])
        self._url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-portal-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Keep-alive connections would otherwise keep being served by their threads.
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxPortal:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8024`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("the sandbox portal is not started")
        return self._url

    @property
    def client_endpoint(self) -> str:
        """The OAuth REST base, as ``client_endpoint`` in token answers."""
        return self.url + "/rest/"

    @property
    def server_endpoint(self) -> str:
        """The OAuth server base; refresh at ``server_endpoint + "token/"``."""
        return self.url + "/oauth/"

    def webhook_url(self, user_id: int | None = None) -> str:
        with self.state.lock:
            if user_id is None:
                if not self.state.webhooks:
                    raise LookupError("the portal state has no webhook")
                user_id = next(iter(self.state.webhooks))
            code = self.state.webhooks[user_id]
        return f"{self.url}/rest/{user_id}/{code}/"

    # --- scripting -------------------------------------------------------------------

    def inject(self, *faults: str) -> None:
        """Queue faults for the next /rest/ requests, one each, in order."""
        unknown = [f for f in faults if f not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._scripted.extend(faults)

    def pending_faults(self) -> list[str]:
        with self._lock:
            return list(self._scripted)

    def issue_tokens(self, client_id: str) -> dict[str, Any]:
        """A fresh token pair for an app, as an install gives; same shape as /oauth/token/."""
        with self.state.lock:
            if client_id not in self.state.oauth_apps:
                raise ValueError(f"no OAuth app {client_id!r} in the portal state")
        with self._lock:
            return self._issue_locked(client_id, self._default_user())

    def expire_access_tokens(self) -> None:
        """Every current access token now answers ``expired_token``; refresh tokens still work."""
        with self._lock:
            for token in self._access.values():
                token.expires_at = 0.0

    def reset_stats(self) -> None:
        self.stats.reset()

    def reset_limits(self) -> None:
        """Empty the rate bucket and the operating-time window."""
        self._bucket = LeakyBucket(self.clock)
        self._operating.clear()

    # --- tokens --------------------------------------------------------------------------

    def _default_user(self) -> int:
        with self.state.lock:
            return next(iter(self.state.webhooks), 1)

    def _issue_locked(self, client_id: str, user_id: int) -> dict[str, Any]:
        access, refresh = secrets.token_hex(32), secrets.token_hex(32)
        ttl = self.config.token_ttl
        now = time.time()
        self._access[access] = _AccessToken(client_id, user_id, now + ttl, refresh)
        self._refresh[refresh] = _RefreshToken(client_id, user_id, access)
        return {
            "access_token": access,
            "expires": int(now + ttl),
            "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
            "scope": "imbot",
            "domain": f"{self.host}:{self.port}",
            "server_endpoint": self.server_endpoint,
            "status": "L",
            "client_endpoint": self.client_endpoint,
            "member_id": hashlib.md5(self.url.encode("utf-8")).hexdigest(),
            "user_id": user_id,
            "refresh_token": refresh,
        }

    def _oauth_token(self, query: str, headers: Message, body: bytes) -> _Reply:
        params = _request_params(query, headers, body)

        def text(name: str) -> str:
            value = params.get(name)
            return value if isinstance(value, str) else ""

        grant_type, client_id = text("grant_type"), text("client_id")
        client_secret, refresh_token = text("client_secret"), text("refresh_token")
        if not grant_type or not client_id or not refresh_token:
            return _error_reply(400, "invalid_request", "Missing required parameter")
        if grant_type != "refresh_token":
            return _error_reply(400, "invalid_request", "Unsupported grant_type")
        with self.state.lock:
            secret = self.state.oauth_apps.get(client_id)
        if secret is None or not hmac.compare_digest(
            secret.encode("utf-8"), client_secret.encode("utf-8")
        ):
            return _error_reply(400, "invalid_client", "Invalid client credentials")
        with self._lock:
            grant = self._refresh.get(refresh_token)
            if grant is None or grant.client_id != client_id:
                return _error_reply(400, "invalid_grant", "Invalid refresh token")
            # Rotation: the used refresh token and the access token issued with it both die.
            del self._refresh[refresh_token]
            self._access.pop(grant.access_token, None)
            answer = self._issue_locked(client_id, grant.user_id)
        self.stats.add(refreshes=1)
        return _json_reply(200, answer)

    # --- faults ------------------------------------------------------------------------

    def _take_fault(self, oauth: bool) -> str | None:
        with self._lock:
            if self._scripted:
                kind: str | None = self._scripted.popleft()
            else:
                kind = None
                rates = self.config.fault_rates
                if rates:
                    draw, acc = self._fault_rng.random(), 0.0
                    for name, rate in rates.items():
                        acc += rate
                        if draw < acc:
                            kind = name
                            break
        if kind not in FAULT_KINDS or (kind == "expired" and not oauth):
            return None
        return kind

    def _limit_reply(self) -> _Reply:
        self.stats.add(limit_refusals=1)
        return _error_reply(
            self.config.limit_status,
            "QUERY_LIMIT_EXCEEDED",
            "Too many requests",
            self._retry_after_headers(),
        )

    def _operating_reply(self) -> _Reply:
        """The method blocked for its operating time, for the whole call (no `time`)."""
        self.stats.add(operating_refusals=1)
        return _error_reply(
            429,
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
            self._retry_after_headers(),
        )

    def _retry_after_headers(self) -> dict[str, str]:
        if self.config.retry_after is None:
            return {}
        return {"Retry-After": _seconds_header(self.config.retry_after)}

    # --- request entry -----------------------------------------------------------------

    def _respond(self, raw_path: str, headers: Message, body: bytes) -> _Reply:
        split = urlsplit(raw_path)
        if split.path in ("/oauth/token/", "/oauth/token"):
            return self._oauth_token(split.query, headers, body)
        if split.path.rstrip("/") == POSTS_PATH:
            return _json_reply(200, _posts_json(self.state.posted()))
        if not split.path.startswith("/rest/"):
            return _error_reply(404, "NOT_FOUND", "Not found")
        draft = _Draft(time.time())
        self.stats.begin()
        try:
            reply = self._rest(split, headers, body, draft)
            draft.status = 0 if reply.drop else reply.status
            return reply
        except Exception:
            draft.status, draft.error = 500, "INTERNAL_SERVER_ERROR"
            raise
        finally:
            self.stats.end(
                RequestRecord(
                    draft.t_start,
                    time.time(),
                    draft.method,
                    draft.n_commands,
                    draft.status,
                    draft.error,
                )
            )

    def _rest(self, split: SplitResult, headers: Message, body: bytes, draft: _Draft) -> _Reply:
        cfg = self.config
        segments = [unquote(s) for s in split.path[len("/rest/") :].split("/")]
        while segments and segments[-1] == "":
            segments.pop()
        webhook = len(segments) == 3
        raw_method = segments[-1] if len(segments) in (1, 3) else ""
        if raw_method.lower().endswith(".json"):
            raw_method = raw_method[: -len(".json")]
        method = KNOWN_METHODS.get(raw_method.lower())
        # Only known names reach the log: a mangled URL could hold a webhook code.
        draft.method = method or "?unknown"
        params = _request_params(split.query, headers, body)
        if method == METHOD_BATCH:
            cmd = _batch_commands(params)
            draft.n_commands = len(cmd)
        elif method is not None:
            draft.n_commands = 1

        if cfg.redirect_to:
            draft.error = "redirect"
            location = (
                cfg.redirect_to.rstrip("/")
                + split.path
                + (f"?{split.query}" if split.query else "")
            )
            return _Reply(302, b"", "text/html; charset=utf-8", {"Location": location})

        if cfg.latency > 0:
            time.sleep(cfg.latency)

        fault = self._take_fault(oauth=not webhook)
        lost_reply = False
        if fault is not None:
            self.stats.fault(fault)
            if fault != "slow":  # a slow answer is still a normal answer
                draft.error = fault
            if fault == "reset":
                return _Reply(0, drop=True)
            if fault == "http500":
                return _error_reply(500, "INTERNAL_SERVER_ERROR", "Internal server error")
            if fault == "html502":
                return _Reply(502, HTML_502, "text/html")
            if fault == "limit":
                return self._limit_reply()
            if fault == "operating":
                return self._operating_reply()
            if fault == "expired":
                return _error_reply(401, "expired_token", "The access token provided has expired")
            if fault == "slow":
                time.sleep(cfg.slow_seconds)
            lost_reply = fault == "lost_reply"

        reply = self._rest_call(method, webhook, segments, params, draft)
        if draft.error is None and reply.status >= 400:
            draft.error = _error_code(reply)
        return _Reply(0, drop=True) if lost_reply else reply

    def _rest_call(
        self,
        method: str | None,
        webhook: bool,
        segments: list[str],
        params: dict[str, Any],
        draft: _Draft,
    ) -> _Reply:
        cfg = self.config
        if method is None or method in cfg.missing_methods:
            # Checked before auth, as on the portal.
            return _error_reply(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        if cfg.https_required:
            return _error_reply(401, "INVALID_REQUEST", "Https required.")
        if cfg.force_error is not None:
            return _error_reply(*cfg.force_error)
        if cfg.force_raw is not None:
            status, text = cfg.force_raw
            return _Reply(status, text.encode("utf-8"), "text/plain; charset=utf-8")
        caller = self._authenticate(webhook, segments, params)
        if isinstance(caller, _Reply):
            return caller
        if cfg.rate is not None and not self._bucket.try_acquire(cfg.rate, cfg.burst):
            return self._limit_reply()
        if method == METHOD_BATCH:
            return self._batch(caller, params, draft)
        self.stats.add(single_calls=1)
        outcome = self._run(caller, method, params)
        if outcome.error is not None:
            return _error_reply(outcome.status, outcome.error.code, outcome.error.description)
        assert outcome.time is not None
        finish = time.time()
        timing = dict(outcome.time)
        timing.update(
            start=draft.t_start,
            finish=finish,
            duration=finish - draft.t_start,
            date_start=_iso(draft.t_start),
        )
        timing["date_finish"] = _iso(finish)
        return _json_reply(200, {"result": outcome.value, "time": timing})

    def _authenticate(
        self, webhook: bool, segments: list[str], params: dict[str, Any]
    ) -> Caller | _Reply:
        if webhook:
            user, code = segments[0], segments[1]
            user_id = int(user) if _DIGITS.match(user) else None
            with self.state.lock:
                expected = self.state.webhooks.get(user_id) if user_id is not None else None
            if expected is None or not hmac.compare_digest(
                expected.encode("utf-8"), code.encode("utf-8")
            ):
                return _error_reply(401, "NO_AUTH_FOUND", "Wrong authorization data")
            assert user_id is not None
            return Caller("webhook", user_id)
        token = params.get("auth")
        if not isinstance(token, str) or not token:
            return _error_reply(401, "NO_AUTH_FOUND", "Wrong authorization data")
        with self._lock:
            info = self._access.get(token)
            if info is None:
                return _error_reply(401, "invalid_token", "The access token provided is invalid")
            if info.expires_at <= time.time():
                return _error_reply(401, "expired_token", "The access token provided has expired")
            return Caller("oauth", info.user_id, info.client_id)

    # --- execution ---------------------------------------------------------------------

    def _success_value(self) -> Any:
        if self.config.success_value is not None:
            return self.config.success_value
        shape = self.config.success_shape
        if shape == "mixed":
            with self._lock:
                shape = self._shape_rng.choice(("nested", "flat"))
        return {"result": True} if shape == "nested" else True

    def _run(self, caller: Caller, method: str, params: dict[str, Any]) -> _Outcome:
        """One method call under the operating-time limit, single or inside a batch (then
        charged to its own method unless the whole batch is billed to `batch`)."""
        cfg = self.config
        billed = not getattr(self._batch_billed, "on", False)
        key = (caller.entity, method.lower())
        window = cfg.operating_window
        if cfg.operating_limit is not None and billed:
            used, _ = self._operating.usage(key, window)
            # LoadLimiter::is blocks once the window's total is over the limit.
            if used > cfg.operating_limit:
                self.stats.add(operating_refusals=1)
                return _Outcome(
                    error=MethodError(
                        "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."
                    ),
                    status=429,
                )
        start = time.time()
        if method in REACTION_METHODS:
            outcome = self._reaction(caller, method, params, key if billed else None)
        elif method in POST_METHODS:
            outcome = self._post(caller, method, params, key if billed else None)
        else:
            outcome = _Outcome(value=self._info_value(caller, method, start))
        finish = time.time()
        if outcome.error is None:
            used, reset_at = self._operating.usage(key, window)
            outcome.time = _time_block(start, finish, finish - start, used, reset_at)
        return outcome

    def _reaction(
        self, caller: Caller, method: str, params: dict[str, Any], billed_to: Any
    ) -> _Outcome:
        """Reaction.delete or .add; its cost is charged to `billed_to` (None: the batch pays)."""
        cfg = self.config
        if "botToken" in params or "BOT_TOKEN" in params:
            self.stats.add(bot_tokens_seen=1)
        if cfg.command_error is not None:
            return _Outcome(error=MethodError(*cfg.command_error), status=cfg.method_error_status)
        with self.state.lock:
            error, removed = reaction_call(self.state, caller, params, add=method != METHOD_DELETE)
        self.stats.add(commands_executed=1, removed=int(removed))
        if cfg.per_command_cost > 0:
            time.sleep(cfg.per_command_cost)  # outside the lock, so concurrent requests overlap
        cost = cfg.operating_cost if cfg.operating_cost is not None else cfg.per_command_cost
        if billed_to is not None:
            self._operating.charge(billed_to, cost, cfg.operating_window)
        if error is not None:
            return _Outcome(error=error, status=cfg.method_error_status, cost=cost)
        return _Outcome(value=self._success_value(), cost=cost)

    def _post(
        self, caller: Caller, method: str, params: dict[str, Any], billed_to: Any
    ) -> _Outcome:
        """Chat.Message.send or File.upload, as their documentation pages describe them."""
        cfg = self.config
        with self.state.lock:
            error, value = post_call(self.state, caller, params, upload=method == METHOD_UPLOAD)
        cost = cfg.operating_cost if cfg.operating_cost is not None else cfg.per_command_cost
        if billed_to is not None:
            self._operating.charge(billed_to, cost, cfg.operating_window)
        if error is not None:
            return _Outcome(error=error, status=cfg.method_error_status, cost=cost)
        return _Outcome(value=value, cost=cost)

    @staticmethod
    def _info_value(caller: Caller, method: str, start: float) -> Any:
        """The answers of the few other methods a client asks (profile, server.time, scope)."""
        if method == METHOD_PROFILE:
            return {
                "ID": str(caller.user_id),  # the portal reads it from the database: a string
                "ADMIN": True,
                "NAME": "Sandbox",
                "LAST_NAME": "User",
                "PERSONAL_GENDER": "",
                "TIME_ZONE": "",
                "TIME_ZONE_OFFSET": 0,
            }
        if method == METHOD_SERVER_TIME:
            return _iso(start)
        return ["imbot"] if method == METHOD_SCOPE else None

    def _batch(self, caller: Caller, params: dict[str, Any], draft: _Draft) -> _Reply:
        """CRestProvider::methodsBatch."""
        cfg = self.config
        halt = php.truthy(_upper_keys(params).get("HALT"))
        commands = _batch_commands(params)
        refused = self._batch_refusal(caller, commands)
        if refused is not None:
            return refused
        self.stats.add(batch_calls=1)
        expired = self._expire_batch_token(caller, params)
        done: dict[str, dict[str, Any]] = {k: {} for k in ("result", "next", "total", "time")}
        done["error"] = {}
        whole = cfg.operating_billing == "batch"
        spent = 0.0  # operating seconds of the commands, for the batch billing
        for index, (key, call) in enumerate(commands.items()):
            if index < cfg.batch_max_length and not expired and not isinstance(call, str):
                continue  # the portal skips non-string commands: absent from every map
            error, outcome = self._batch_command(caller, index, call, done, expired, whole)
            spent += outcome.cost if outcome is not None else 0.0
            if error is not None:
                done["error"][key] = _error_entry(error.code, error.description)
                if error.code == "OPERATION_TIME_LIMIT":
                    draft.error = error.code  # some commands refused: the log says so
                if halt:
                    break
            elif outcome is not None:
                done["result"][key] = outcome.value
                done["time"][key] = outcome.time
        return self._batch_reply(caller, done, draft, spent if whole else None)

    def _batch_refusal(self, caller: Caller, commands: dict[str, Any]) -> _Reply | None:
        """A whole batch call refused: a method not allowed in it, too long, `batch` blocked."""
        cfg = self.config
        if cfg.batch_not_allowed == "call" and any(
            isinstance(call, str) and _command_method(call) in REACTION_METHODS
            for call in list(commands.values())[: cfg.batch_max_length]
        ):
            return _error_reply(
                cfg.batch_not_allowed_status,
                "ERROR_BATCH_METHOD_NOT_ALLOWED",
                "Method is not allowed for batch usage",
            )
        if cfg.batch_too_long_refused and len(commands) > cfg.batch_max_length:
            return _error_reply(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        if cfg.operating_billing == "batch" and cfg.operating_limit is not None:
            used, _ = self._operating.usage((caller.entity, METHOD_BATCH), cfg.operating_window)
            if used > cfg.operating_limit:
                return self._operating_reply()  # the method `batch` is blocked
        return None

    def _expire_batch_token(self, caller: Caller, params: dict[str, Any]) -> bool:
        """`expire_during_batches`: this batch's OAuth token expires while it runs."""
        if caller.mode != "oauth":
            return False
        with self._lock:
            if self._expire_batches_left <= 0:
                return False
            self._expire_batches_left -= 1
            info = self._access.get(str(params.get("auth")))
            if info is not None:
                info.expires_at = 0.0
        return True

    def _batch_command(
        self,
        caller: Caller,
        index: int,
        call: Any,
        done: dict[str, dict[str, Any]],
        expired: bool,
        whole: bool,
    ) -> tuple[MethodError | None, _Outcome | None]:
        """One command of a batch: its error, or what it ran to."""
        cfg = self.config
        if index >= cfg.batch_max_length:
            return MethodError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"), None
        if expired:
            return MethodError("expired_token", "The access token provided has expired."), None
        path, query = _split_command(call)
        method = KNOWN_METHODS.get(path.lower())
        # $result[...] references are substituted like the portal does (see php.substitute).
        sub_params = php.substitute(php.parse_str(query), done) if query else {}
        if method is None:
            return MethodError("ERROR_METHOD_NOT_FOUND", "Method not found!"), None
        if method == METHOD_BATCH or (
            cfg.batch_not_allowed == "command" and method in REACTION_METHODS
        ):
            return MethodError(
                "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage"
            ), None
        self._batch_billed.on = whole
        try:
            outcome = self._run(caller, method, sub_params)
        finally:
            self._batch_billed.on = False
        return outcome.error, outcome

    def _batch_reply(
        self,
        caller: Caller,
        done: dict[str, dict[str, Any]],
        draft: _Draft,
        whole_cost: float | None,
    ) -> _Reply:
        """The batch's answer; `whole_cost` is charged to `batch` when the batch pays."""
        cfg = self.config
        batch_key = (caller.entity, METHOD_BATCH)
        finish = time.time()
        if whole_cost is not None:
            self._operating.charge(batch_key, whole_cost, cfg.operating_window)
        used, reset_at = self._operating.usage(batch_key, cfg.operating_window)
        if whole_cost is not None:
            # b24jssdk PR 539: every command's `operating` shows the batch-wide total.
            for timing in done["time"].values():
                if timing is not None:
                    timing.update(operating=used, operating_reset_at=reset_at)
        return _json_reply(
            200,
            {
                "result": {
                    "result": done["result"],
                    "result_error": done["error"],
                    "result_total": done["total"],
                    "result_next": done["next"],
                    "result_time": done["time"],
                },
                "time": _time_block(draft.t_start, finish, finish - draft.t_start, used, reset_at),
            },
        )


# --- request parsing helpers --------------------------------------------------------------


def _request_params(query: str, headers: Message, body: bytes) -> dict[str, Any]:
    """Query and body merged, body winning (rest_util.php getRequestData)."""
    params = php.parse_str(query)
    if not body:
        return params
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None  # malformed JSON is silently ignored, as on the portal
        if isinstance(data, dict):
            params.update(php.from_json(data))
    elif content_type == "application/x-www-form-urlencoded":
        params.update(php.parse_str(body.decode("utf-8", errors="replace")))
    return params


def _posts_json(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What bots posted, for GET /_sandbox/posts: a file's bytes as base64."""
    out = []
    for post in posts:
        content = post.get("content")
        if isinstance(content, bytes):
            post = {**post, "content": base64.b64encode(content).decode("ascii")}
        out.append(post)
    return out


def _upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    # methodsBatch upper-cases its parameter names, so "Cmd" and "HALT" work too.
    return {k.upper(): v for k, v in params.items()}


def _batch_commands(params: dict[str, Any]) -> dict[str, Any]:
    cmd = _upper_keys(params).get("CMD")
    return cmd if isinstance(cmd, dict) else {}


def _split_command(call: str) -> tuple[str, str]:
    """parse_url's path and query of a batch command; a raw "#" ends the query."""
    try:
        parts = urlsplit(call)
    except ValueError:
        return call, ""
    return parts.path, parts.query


def _command_method(call: str) -> str | None:
    return KNOWN_METHODS.get(_split_command(call)[0].lower())


def _error_code(reply: _Reply) -> str | None:
    if not reply.content_type.startswith("application/json"):
        return f"http{reply.status}"
    try:
        data = json.loads(reply.body)
    except ValueError:
        return None
    return data.get("error") if isinstance(data, dict) else None


# --- HTTP plumbing ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connect at once in benchmarks

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], portal: SandboxPortal
    ):
        self.portal = portal
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-answer is normal here; anything else is a sandbox bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # includes a socket closed under it by stop()
            return
        self.portal.stats.add(internal_errors=1)
        _report_bug(exc)


def _report_bug(exc: BaseException | None) -> None:
    # Type and frames only: an exception message might quote a token.
    if exc is None:
        return
    frames = "".join(traceback.format_tb(exc.__traceback__))
    sys.stderr.write(f"sandbox portal: internal error {type(exc).__name__}\n{frames}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so every answer carries Content-Length
    server_version = "SandboxPortal/1.0"
    timeout = IDLE_TIMEOUT
    server: _Server

    # Buffered writes (flushed once per answer by the base class) plus TCP_NODELAY, so an
    # answer leaves as one segment instead of waiting out the client's delayed ACK.
    wbufsize = -1

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def handle_expect_100(self) -> bool:
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for "100 Continue" before sending the body
        return ok

    def finish(self) -> None:
        self.server.untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # Silent: request lines hold webhook codes and auth tokens.
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except _ClientGone:
            self.close_connection = True
            return
        except _BadRequest as exc:
            self.close_connection = True  # the rest of the stream can't be trusted
            self._write(_error_reply(exc.status, "INVALID_REQUEST", str(exc)))
            return
        except (OSError, ValueError):
            self.close_connection = True
            return
        portal = self.server.portal
        try:
            reply = portal._respond(self.path, self.headers, body)
        except Exception as exc:
            portal.stats.add(internal_errors=1)
            _report_bug(exc)
            reply = _error_reply(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        if reply.drop:
            self._drop()
            return
        try:
            self._write(reply)
        except OSError:
            self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _BadRequest(400, "Bad Content-Length") from None
        if size < 0:
            raise _BadRequest(400, "Bad Content-Length")
        if size > MAX_BODY:
            raise _BadRequest(413, "Request body too large")
        data = self.rfile.read(size)
        if len(data) < size:
            raise _ClientGone
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _ClientGone
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "Bad chunk size") from None
            if size < 0:
                raise _BadRequest(400, "Bad chunk size")
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = self.rfile.readline(8192)
                    if not trailer:
                        raise _ClientGone
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                raise _BadRequest(413, "Request body too large")
            data = self.rfile.read(size)
            if len(data) < size:
                raise _ClientGone
            chunks.append(data)
            self.rfile.readline(8)  # the CRLF after each chunk

    def _write(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def _drop(self) -> None:
        """Close the connection without a byte of answer (the request was read in full)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
