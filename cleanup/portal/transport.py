"""HTTP to the portal: knows nothing of reactions.

`call()` and `batch()` pace each request through the throttle, sign it, follow a renamed
portal's redirect by re-POSTing (an auto-followed POST can turn into a bodiless GET),
refresh an expired OAuth token once, and return the parsed answer. Network failures are
raised as `NetworkError`, saying whether the request may have reached the portal.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from cleanup.errors import ConfigError, InsecureTransportError, NetworkError, Stopped
from cleanup.pacing.budget import OperatingBudget
from cleanup.pacing.throttle import MayHold, Throttle
from cleanup.portal.auth import Auth, check_transport_security
from cleanup.portal.protocol import MAX_BATCH
from cleanup.redact import redact
from cleanup.version import __version__

log = logging.getLogger("cleanup")

_REDIRECTS = (301, 302, 303, 307, 308)
# Token changes one call may go through (its own refresh plus others' racing it) before an
# auth error is final: a portal that expires every new token must not loop forever.
_MAX_TOKEN_SWAPS = 3


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    snippet: str  # the start of a non-JSON body, for the report
    retry_after: float | None
    elapsed: float
    token: str | None = None  # the OAuth access token the request carried (None: webhook)


BeforeSend = Callable[[], None]


@dataclass
class TransportStats:
    requests: int = 0
    batch_requests: int = 0
    single_requests: int = 0


class Transport(Protocol):
    """What the engine needs of a transport (as httpx's `BaseTransport`): one method call,
    or a batch of commands, each returning the portal's parsed answer. `HTTPTransport`
    speaks HTTP to the portal; the engine's tests pass scripted ones, checked by mypy."""

    def call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        before_send: BeforeSend | None = None,
        may_hold: MayHold | None = None,
    ) -> Answer: ...

    def batch(
        self,
        commands: dict[str, str],
        halt: int = 0,
        *,
        before_send: BeforeSend | None = None,
        may_hold: MayHold | None = None,
    ) -> Answer: ...


class HTTPTransport:
    """The transport over HTTP: base URL, auth and token refresh, redirects, pacing, and
    the PHP JSON quirks; returns parsed answers."""

    def __init__(
        self,
        auth: Auth,
        throttle: Throttle,
        budget: OperatingBudget | None = None,
        *,
        timeout: float = 75.0,
        connect_timeout: float = 10.0,
        pool_size: int = 16,
        allow_insecure_http: bool = False,
    ) -> None:
        self.auth = auth
        self.throttle = throttle
        self.budget = budget or OperatingBudget(None)
        # The portal aborts requests after 60 s; wait a little longer than that for the answer.
        self.timeout = (connect_timeout, timeout)
        self.pool_size = pool_size
        self.allow_insecure_http = allow_insecure_http
        self._local = threading.local()
        self._lock = threading.Lock()
        self._warned_moved = False
        self.stats = TransportStats()
        self.on_request: list[Any] = []  # callbacks(mode, t0, elapsed, status) for the timeline

    # ------------------------------------------------------------------ public

    def call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        before_send: BeforeSend | None = None,
        may_hold: MayHold | None = None,
    ) -> Answer:
        """`before_send` runs once the request has its throttle slot, right before each POST
        (the journal records what goes out there, not while the request waits its turn)."""
        return self._send(method, params, mode="single", before_send=before_send, may_hold=may_hold)

    def batch(
        self,
        commands: dict[str, str],
        halt: int = 0,
        *,
        before_send: BeforeSend | None = None,
        may_hold: MayHold | None = None,
    ) -> Answer:
        # `halt` as an integer: the server tests PHP truthiness, and the string "false" is true.
        payload = {"cmd": commands, "halt": int(halt)}
        return self._send(
            "batch", payload, mode="batch", before_send=before_send, may_hold=may_hold
        )

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    # ------------------------------------------------------------------ internals

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(
                {"User-Agent": f"reaction-cleanup/{__version__}", "Accept": "application/json"}
            )
            session.trust_env = True
            self._local.session = session
        return session

    def _send(
        self,
        method: str,
        params: dict[str, Any],
        *,
        mode: str,
        before_send: BeforeSend | None,
        may_hold: MayHold | None = None,
    ) -> Answer:
        rejected: set[str] = set()  # tokens the portal called expired or invalid for this call
        refreshed = False  # this call asked for a refresh already: "refresh once, then fatal"
        while True:
            payload = self.auth.sign(params)
            # The token this request carries, read from the payload itself: another worker
            # may swap the current token between two separate reads.
            token = payload.get("auth") if self.auth.token_in_use() is not None else None
            answer = self._post_following_redirects(method, payload, mode, before_send, may_hold)
            if token is not None:
                answer = replace(answer, token=token)
            body = answer.body
            error = body.get("error") if isinstance(body, dict) else None
            if (
                token is None
                or error not in ("expired_token", "invalid_token")
                or token in rejected
                or len(rejected) >= _MAX_TOKEN_SWAPS
            ):
                return answer  # classified upstream: invalid_token and a repeat are fatal
            rejected.add(token)
            # Another worker may have refreshed while this request was on its way: the portal
            # then calls our old token invalid (rotation killed it) or expired. Both checks
            # wait for a refresh in progress, then re-send with the new token.
            if error == "expired_token" and not refreshed:
                refreshed = True
                if self.auth.refresh(token):
                    continue  # one refresh per expired token, shared by all workers
            elif self.auth.replaced(token):
                continue  # another worker's refresh, not ours: use its token
            return answer

    def _post_following_redirects(
        self,
        method: str,
        payload: dict[str, Any],
        mode: str,
        before_send: BeforeSend | None,
        may_hold: MayHold | None,
    ) -> Answer:
        url = self.auth.endpoint(method)
        for _hop in range(4):
            answer, location = self._post(url, payload, mode, before_send, may_hold)
            if location is None:
                return answer
            target = urljoin(url, location)
            try:
                check_transport_security(
                    target, allow_insecure_http=self.allow_insecure_http, what="redirect"
                )
            except ConfigError as exc:
                # Found mid-run, but still a configuration problem: stop before any secret
                # goes to that address.
                raise InsecureTransportError(
                    "INSECURE_REDIRECT",
                    f"the portal redirected to {redact(target.split('/rest/')[0])}",
                    str(exc),
                ) from None
            with self._lock:
                if not self._warned_moved:
                    self._warned_moved = True
                    log.warning(
                        "the portal answered with a redirect to %s; it was probably renamed. "
                        "Following it, but update the configured address",
                        redact(target.split("/rest/")[0]),
                    )
                self.auth.moved(target)
            url = self.auth.endpoint(method)
        raise NetworkError("redirects", "too many redirects", maybe_sent=False)

    def _post(
        self,
        url: str,
        payload: dict[str, Any],
        mode: str,
        before_send: BeforeSend | None,
        may_hold: MayHold | None,
    ) -> tuple[Answer, str | None]:
        # The operating-time budget is checked when the request's slot has come, counting
        # the commands already on their way and this request's own: with several batches
        # in flight, a check before the wait would let them all overshoot together. A hold
        # is a pause of the throttle: the request waits it out in `acquire`, which asks
        # `may_hold` first (the rows' --max-wait; WaitTooLong when they may not wait so long).
        commands = _command_count(payload, mode)
        while True:
            hold = self.budget.hold_seconds(commands)
            if hold > 0 and self.throttle.pause(hold):
                # Short looks (waiting for answers in flight) are routine: debug only.
                log.log(
                    logging.INFO if hold > 1.0 else logging.DEBUG,
                    "operating-time budget nearly spent; pausing requests %.1f s (rows that may not"
                    " wait so long, --max-wait, fail OPERATION_TIME_LIMIT instead)",
                    hold,
                )
            if not self.throttle.acquire(may_hold):
                raise Stopped
            if self.budget.try_send(commands) <= 0:  # counted as in flight from here
                break
        try:
            return self._post_now(url, payload, mode, before_send)
        finally:
            self.budget.settled(commands)

    def _post_now(
        self, url: str, payload: dict[str, Any], mode: str, before_send: BeforeSend | None
    ) -> tuple[Answer, str | None]:
        if before_send is not None:
            before_send()
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        t0 = time.monotonic()
        wall0 = time.time()
        with self._lock:
            self.stats.requests += 1
            if mode == "batch":
                self.stats.batch_requests += 1
            else:
                self.stats.single_requests += 1
        try:
            resp = self._session().post(
                url,
                data=data,
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise _network_error(exc) from None
        elapsed = time.monotonic() - t0
        for callback in self.on_request:
            callback(mode, wall0, elapsed, resp.status_code)
        location = resp.headers.get("Location") if resp.status_code in _REDIRECTS else None
        answer = Answer(
            status=resp.status_code,
            body=_json_or_none(resp),
            snippet=_snippet(resp),
            retry_after=_retry_after(resp.headers.get("Retry-After")),
            elapsed=elapsed,
        )
        return answer, location


def _network_error(exc: requests.exceptions.RequestException) -> NetworkError:
    """What a failed request tells: whether the portal may have seen it. Told apart by the
    exception's type, as urllib3 and httpx do, never by its (OS- and locale-dependent) text."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return NetworkError("connect_timeout", str(exc), maybe_sent=False)
    if isinstance(exc, requests.exceptions.SSLError):
        return NetworkError("ssl", str(exc), maybe_sent=False)
    if isinstance(exc, requests.exceptions.ConnectionError):
        # Refused, no route, no DNS name: the connection never opened. A reset or a dropped
        # connection after the request went out may have been acted upon.
        never = _never_connected(exc)
        return NetworkError(
            "connect" if never else "connection_lost", str(exc), maybe_sent=not never
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return NetworkError("timeout", str(exc), maybe_sent=True)
    return NetworkError("network", str(exc), maybe_sent=True)


def _never_connected(exc: BaseException) -> bool:
    """Whether urllib3's NewConnectionError (NameResolutionError is one) is in the chain
    requests wraps it in: ConnectionError(MaxRetryError(reason=...)), or a proxy's error."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, NewConnectionError):
            return True
        linked = (
            *error.args,
            getattr(error, "reason", None),
            getattr(error, "original_error", None),
        )
        todo += [
            e for e in (*linked, error.__cause__, error.__context__) if isinstance(e, BaseException)
        ]
    return False


def _command_count(payload: dict[str, Any], mode: str) -> int:
    """Method calls a request carries: a batch's commands (at most MAX_BATCH run), else one."""
    if mode != "batch":
        return 1
    cmd = payload.get("cmd")
    return min(len(cmd), MAX_BATCH) if isinstance(cmd, dict | list) else 1


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _snippet(resp: requests.Response) -> str:
    text = resp.text[:200] if resp.content else ""
    return redact(" ".join(text.split()))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
