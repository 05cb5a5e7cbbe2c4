"""Webhook and OAuth credentials: where a call goes and how it is signed.

Both register their secrets with the redactor the moment they are read, so nothing
the job logs or raises afterwards can show them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests

from cleanup.errors import AuthRefreshError, ConfigError, OutputError
from cleanup.outputs.files import write_atomic
from cleanup.redact import WEBHOOK, redact, register_secret

log = logging.getLogger("cleanup")

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_warned_insecure: set[str] = set()


def check_transport_security(url: str, *, allow_insecure_http: bool, what: str) -> None:
    """Plain http only to loopback: the portal wants HTTPS and secrets would go in clear."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. a bad port or an unclosed [ in the address
        raise ConfigError(f"{what}: not a valid address") from None
    # Messages name the scheme and host only: a path or user info may hold a secret.
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{what}: {parts.scheme or 'no'} scheme; use an https:// address")
    if not host:
        raise ConfigError(f"{what}: the address has no host; use https://HOST/...")
    if parts.scheme == "http" and not is_loopback(host):
        if not allow_insecure_http:
            raise ConfigError(
                f"{what}: plain http:// to {host} would send secrets in clear and "
                "Bitrix24 refuses it; use https:// (or --allow-insecure-http for an on-premise test portal)"
            )
        if host not in _warned_insecure:
            _warned_insecure.add(host)
            log.warning(
                "sending credentials over plain http:// to %s (--allow-insecure-http)", host
            )


class _RestEndpoint:
    """Where calls go: `base` + METHOD + `.json`; a renamed portal moves the origin only."""

    base: str

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc

    def endpoint(self, method: str) -> str:
        return f"{self.base}{method}.json"

    def moved(self, new_url: str) -> None:
        """The portal was renamed: keep the path (and a webhook's code), take the new origin."""
        new = urlsplit(new_url)
        old = urlsplit(self.base)
        self.base = urlunsplit(
            (new.scheme or old.scheme, new.netloc or old.netloc, old.path, "", "")
        )


class WebhookAuth(_RestEndpoint):
    """`https://portal/rest/USER_ID/CODE/` — the code in the path is the secret."""

    mode = "webhook"
    needs_bot_tokens = True

    def __init__(self, url: str, *, allow_insecure_http: bool = False) -> None:
        url = url.strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ConfigError(
                "the webhook URL is not a valid address; it should look like "
                "https://PORTAL/rest/USER_ID/CODE/"
            ) from None
        match = WEBHOOK.search(parts.path)
        if match and parts.path[match.end() :][:1] not in ("", "/"):
            match = None  # the code runs on past what a code may hold
        if match:
            register_secret(match["code"])
        check_transport_security(url, allow_insecure_http=allow_insecure_http, what="webhook URL")
        if not match:
            # Only the origin: the path of a mistyped URL may still hold the code.
            raise ConfigError(
                f"webhook URL {parts.scheme}://{parts.hostname}/… should look like "
                "https://PORTAL/rest/USER_ID/CODE/"
            )
        self.user_id = int(match["user"])
        self._code = match["code"]
        self.base = urlunsplit(
            (
                parts.scheme,
                parts.netloc,
                f"{parts.path[: match.start()]}{match['head']}{self._code}/",
                "",
                "",
            )
        )

    def sign(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def token_in_use(self) -> str | None:
        return None

    def refresh(self, used: str | None) -> bool:
        return False  # a webhook cannot be refreshed

    def replaced(self, used: str | None) -> bool:
        return False

    def renew(self, used: str | None, *, refresh: bool) -> bool:
        return False


@dataclass
class OAuthTokens:
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    def register(self) -> None:
        # The client id is not a secret (it shows in the portal's UI); masking it would
        # only hide a useful name.
        register_secret(self.client_secret, self.access_token, self.refresh_token)


class TokenStore:
    """Where tokens come from and go back to: a JSON file (kept 0600) or the environment."""

    FILE_KEYS: ClassVar[tuple[str, ...]] = (
        "client_id",
        "client_secret",
        "access_token",
        "refresh_token",
    )
    ENV: ClassVar[dict[str, str]] = {
        "client_id": "B24_CLIENT_ID",
        "client_secret": "B24_CLIENT_SECRET",
        "access_token": "B24_ACCESS_TOKEN",
        "refresh_token": "B24_REFRESH_TOKEN",
    }

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._from_file: set[str] = set()  # the credential keys the file itself holds

    def load(self) -> OAuthTokens:
        data: dict[str, Any] = {}
        where = "environment"
        if self.path is not None:
            where = str(self.path)
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ConfigError(f"OAuth token file {self.path} does not exist") from None
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"OAuth token file {self.path} is not readable JSON ({exc.__class__.__name__})"
                ) from None
            if not isinstance(data, dict):
                raise ConfigError(f"OAuth token file {self.path} must hold a JSON object")
            self._from_file = {k for k in self.FILE_KEYS if data.get(k)}
            _warn_if_readable(self.path)
        # The file wins; the environment fills what it lacks (e.g. the secret kept apart).
        values = {k: data.get(k) or os.environ.get(self.ENV[k]) for k in self.FILE_KEYS}
        for key, value in values.items():
            if key != "client_id":
                register_secret(value if isinstance(value, str) else None)
        missing = [k if self.path else self.ENV[k] for k, v in values.items() if not v]
        if missing:
            raise ConfigError(f"OAuth credentials from {where} lack: {', '.join(missing)}")
        extra = {k: v for k, v in data.items() if k not in self.FILE_KEYS}
        tokens = OAuthTokens(**{k: str(v) for k, v in values.items()}, extra=extra)
        tokens.register()
        return tokens

    def save(self, tokens: OAuthTokens) -> None:
        """Atomically, mode 0600: the next scheduled run must find the rotated pair."""
        if self.path is None:
            log.warning(
                "OAuth tokens were refreshed but came from the environment; the new refresh "
                "token is not saved anywhere (use --oauth-file to keep it for the next run)"
            )
            return
        # A client id or secret given by environment stays out of the file.
        keep = self._from_file | {"access_token", "refresh_token"}
        data = {**tokens.extra, **{k: getattr(tokens, k) for k in self.FILE_KEYS if k in keep}}
        target = self.path.resolve()  # a symlinked token file: update the file it points to
        # Durably, rename included: the old refresh token is already dead.
        write_atomic(target, json.dumps(data, indent=2) + "\n", mode=0o600)


class OAuthAuth(_RestEndpoint):
    """`PORTAL/rest/METHOD.json` with `auth`; refreshes once per expiry, for all workers."""

    mode = "oauth"
    needs_bot_tokens = False

    def __init__(
        self,
        portal: str,
        store: TokenStore,
        *,
        oauth_server: str | None = None,
        allow_insecure_http: bool = False,
        timeout: float = 30.0,
    ) -> None:
        self.tokens = store.load()
        portal = portal.strip().rstrip("/").removesuffix("/rest")
        if not re.match(r"^https?://", portal, re.IGNORECASE):
            portal = "https://" + portal
        check_transport_security(portal, allow_insecure_http=allow_insecure_http, what="portal")
        self.store = store
        self.base = portal + "/rest/"
        server = oauth_server or self.tokens.extra.get("server_endpoint") or DEFAULT_OAUTH_SERVER
        self.oauth_server = oauth_base(str(server))
        check_transport_security(
            self.oauth_server, allow_insecure_http=allow_insecure_http, what="OAuth server"
        )
        self.timeout = timeout
        self._lock = threading.Lock()
        self._failed: AuthRefreshError | None = None
        self.refreshes = 0

    def sign(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "auth": self.tokens.access_token}

    def token_in_use(self) -> str | None:
        return self.tokens.access_token

    def replaced(self, used: str | None) -> bool:
        """Whether `used` is no longer the current token, once any refresh in progress ends."""
        with self._lock:
            return used is not None and used != self.tokens.access_token

    def renew(self, used: str | None, *, refresh: bool) -> bool:
        """Whether a request that carried `used`, refused as expired, can be sent again with
        another token: refresh it (once per expiry, shared by all workers) or, when the
        caller already refreshed for this work (`refresh` False), only take one another
        worker made. Raises AuthRefreshError when the refresh fails."""
        return self.refresh(used) if refresh else self.replaced(used)

    def refresh(self, used: str | None) -> bool:
        """Get a new token pair. If another worker already did (the token we used is no
        longer current), just use theirs: two workers hitting expiry refresh once. A failed
        refresh is not repeated by the next worker: the refresh token is the same."""
        with self._lock:
            if used is not None and used != self.tokens.access_token:
                return True
            if self._failed is not None:
                raise self._failed
            try:
                body = self._request_new_pair()
            except AuthRefreshError as exc:
                self._failed = exc
                raise
            register_secret(body.get("access_token"), body.get("refresh_token"))
            old = self.tokens
            extra = dict(old.extra)
            for key in _ANSWER_KEYS:
                if key in body:
                    extra[key] = body[key]
            new = OAuthTokens(
                client_id=old.client_id,
                client_secret=old.client_secret,
                access_token=str(body["access_token"]),
                # Each refresh rotates the refresh token; keep the old one only if none came.
                refresh_token=str(body.get("refresh_token") or old.refresh_token),
                extra=extra,
            )
            # Saved before any worker uses it: the old refresh token is dead now, and a run
            # killed after this point must still leave the next run a working pair.
            try:
                self.store.save(new)
            except OutputError as exc:
                log.error(
                    "OAuth tokens were refreshed but could not be written to %s (%s); the old "
                    "refresh token no longer works, so the next run will need the application "
                    "authorised again",
                    self.store.path,
                    exc.reason,
                )
            self.tokens = new
            self.refreshes += 1
            log.info("OAuth access token refreshed")
            return True

    def _request_new_pair(self) -> dict[str, Any]:
        url = f"{self.oauth_server}/oauth/token/"
        params = {
            "grant_type": "refresh_token",
            "client_id": self.tokens.client_id,
            "client_secret": self.tokens.client_secret,
            "refresh_token": self.tokens.refresh_token,
        }
        where = f"the OAuth server {self.oauth_server}"
        fix_server = "Check --oauth-server (B24_OAUTH_SERVER) and the network, then run again"
        try:
            # No redirects: the query holds the client secret and the refresh token.
            answer = requests.get(url, params=params, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise AuthRefreshError(
                "REFRESH_FAILED",
                f"the access token expired and {where} did not answer ({exc.__class__.__name__})",
                fix_server,
            ) from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AuthRefreshError(
                "REFRESH_FAILED",
                f"the access token expired and {where} answered HTTP {answer.status_code} "
                "without a token",
                fix_server,
            )
        if body.get("access_token") and not body.get("error"):
            return body
        code = str(body.get("error") or "") or "REFRESH_FAILED"
        text = redact(str(body.get("error_description") or ""))
        where_tokens = f"the token file {self.store.path}" if self.store.path else "B24_* variables"
        if code == "invalid_grant":
            hint = (
                "The refresh token is no longer valid (used by another run or copy of the token "
                "file, revoked, or older than 180 days): authorise the application again and put "
                f"the new tokens in {where_tokens}"
            )
        elif code == "invalid_client":
            hint = f"Check client_id and client_secret in {where_tokens} against the application's settings"
        elif code in ("invalid_request", "invalid_scope"):
            hint = f"Authorise the application again and update {where_tokens}"
        elif code == "PAYMENT_REQUIRED":
            hint = "The application's subscription has ended; renew it, then run again"
        else:
            hint = "Check the application's client id, secret and subscription"
        raise AuthRefreshError(
            code, f"refreshing the access token failed: {text or 'no description'}", hint
        )


_ANSWER_KEYS = (
    "expires_in",
    "expires",
    "client_endpoint",
    "server_endpoint",
    "domain",
    "member_id",
    "scope",
)


def oauth_base(server: str) -> str:
    """The OAuth server's origin from any of the forms users and answers give:
    `https://oauth.bitrix.info`, `.../oauth/`, `.../oauth/token/`, or a token answer's
    `server_endpoint` (`https://oauth.bitrix.info/rest/`)."""
    base = server.strip().rstrip("/")
    for suffix in ("/token", "/oauth", "/rest"):
        base = base.removesuffix(suffix)
    if not re.match(r"^[a-z][a-z0-9+.-]*://", base, re.IGNORECASE):
        base = "https://" + base
    return base


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "the OAuth token file %s can be read by other users (mode %o); run: chmod 600 %s",
            path,
            mode & 0o777,
            path,
        )


Auth = WebhookAuth | OAuthAuth


class TokenRenewal(Protocol):
    """What the engine asks of the credentials: whether a request that carried `used`,
    refused as expired, can go again (see `OAuthAuth.renew`; a webhook never can)."""

    def renew(self, used: str | None, *, refresh: bool) -> bool: ...
