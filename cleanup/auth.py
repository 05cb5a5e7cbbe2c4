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
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import requests

from .errors import AuthRefreshError, ConfigError
from .redact import redact, register_secret

log = logging.getLogger("cleanup")

DEFAULT_OAUTH_SERVER = "https://oauth.bitrix.info"
_WEBHOOK_PATH = re.compile(r"^(?P<prefix>.*?/rest)/(?P<user>\d+)/(?P<code>[^/]+)(?:/.*)?$")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport_security(url: str, *, allow_insecure_http: bool, what: str) -> None:
    """Plain http only to loopback: the portal wants HTTPS and secrets would go in clear."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{what}: {redact(url)!r} is not an http(s) address")
    if not parts.hostname:
        raise ConfigError(f"{what}: {redact(url)!r} has no host")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ConfigError(
            f"{what}: plain http:// to {parts.hostname} would send secrets in clear and "
            "Bitrix24 refuses it; use https:// (or --allow-insecure-http for an on-premise test portal)"
        )


class WebhookAuth:
    """`https://portal/rest/USER_ID/CODE/` — the code in the path is the secret."""

    kind = "webhook"
    needs_bot_tokens = True

    def __init__(self, url: str, *, allow_insecure_http: bool = False) -> None:
        url = url.strip()
        parts = urlsplit(url)
        match = _WEBHOOK_PATH.match(parts.path)
        if match:
            register_secret(match["code"])
        check_transport_security(url, allow_insecure_http=allow_insecure_http, what="webhook URL")
        if not match:
            raise ConfigError(
                f"webhook URL {redact(url)!r} should look like https://PORTAL/rest/USER_ID/CODE/"
            )
        self.user_id = int(match["user"])
        self._code = match["code"]
        self.base = urlunsplit(
            (parts.scheme, parts.netloc, f"{match['prefix']}/{self.user_id}/{self._code}/", "", "")
        )

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc

    def endpoint(self, method: str) -> str:
        return f"{self.base}{method}.json"

    def sign(self, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def token_in_use(self) -> str | None:
        return None

    def refresh(self, used: str | None) -> bool:
        return False  # a webhook cannot be refreshed

    def moved(self, new_url: str) -> None:
        """The portal was renamed: keep the path (and its code), take the new origin."""
        new = urlsplit(new_url)
        old = urlsplit(self.base)
        self.base = urlunsplit(
            (new.scheme or old.scheme, new.netloc or old.netloc, old.path, "", "")
        )


@dataclass
class OAuthTokens:
    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    def register(self) -> None:
        register_secret(self.client_secret, self.access_token, self.refresh_token)


class TokenStore:
    """Where tokens come from and go back to: a JSON file (kept 0600) or the environment."""

    FILE_KEYS: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", "access_token", "refresh_token")
    ENV: ClassVar[dict[str, str]] = {
        "client_id": "B24_CLIENT_ID",
        "client_secret": "B24_CLIENT_SECRET",
        "access_token": "B24_ACCESS_TOKEN",
        "refresh_token": "B24_REFRESH_TOKEN",
    }

    def __init__(self, path: Path | None) -> None:
        self.path = path

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
        values = {k: data.get(k) or os.environ.get(self.ENV[k]) for k in self.FILE_KEYS}
        for value in values.values():
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
        data = {**tokens.extra, **{k: getattr(tokens, k) for k in self.FILE_KEYS}}
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class OAuthAuth:
    """`PORTAL/rest/METHOD.json` with `auth`; refreshes once per expiry, for all workers."""

    kind = "oauth"
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
        portal = portal.strip().rstrip("/")
        if not re.match(r"^https?://", portal):
            portal = "https://" + portal
        check_transport_security(portal, allow_insecure_http=allow_insecure_http, what="portal")
        self.store = store
        self.base = portal + "/rest/"
        server = oauth_server or self.tokens.extra.get("server_endpoint") or DEFAULT_OAUTH_SERVER
        self.oauth_server = str(server).rstrip("/").removesuffix("/oauth")
        check_transport_security(
            self.oauth_server, allow_insecure_http=allow_insecure_http, what="OAuth server"
        )
        self.timeout = timeout
        self._lock = threading.Lock()
        self.refreshes = 0

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc

    def endpoint(self, method: str) -> str:
        return f"{self.base}{method}.json"

    def sign(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "auth": self.tokens.access_token}

    def token_in_use(self) -> str | None:
        return self.tokens.access_token

    def moved(self, new_url: str) -> None:
        new = urlsplit(new_url)
        old = urlsplit(self.base)
        self.base = urlunsplit(
            (new.scheme or old.scheme, new.netloc or old.netloc, old.path, "", "")
        )

    def refresh(self, used: str | None) -> bool:
        """Get a new token pair. If another worker already did (the token we used is no
        longer current), just use theirs: two workers hitting expiry refresh once."""
        with self._lock:
            if used is not None and used != self.tokens.access_token:
                return True
            url = f"{self.oauth_server}/oauth/token/"
            params = {
                "grant_type": "refresh_token",
                "client_id": self.tokens.client_id,
                "client_secret": self.tokens.client_secret,
                "refresh_token": self.tokens.refresh_token,
            }
            try:
                answer = requests.get(url, params=params, timeout=self.timeout)
                body = answer.json()
            except requests.RequestException as exc:
                raise AuthRefreshError(
                    "REFRESH_FAILED",
                    redact(f"the OAuth server did not answer ({exc.__class__.__name__})"),
                    f"Check --oauth-server ({self.oauth_server})",
                ) from None
            except ValueError:
                raise AuthRefreshError(
                    "REFRESH_FAILED",
                    f"the OAuth server answered HTTP {answer.status_code} without JSON",
                    f"Check --oauth-server ({self.oauth_server})",
                ) from None
            if not isinstance(body, dict) or not body.get("access_token") or body.get("error"):
                code = str(body.get("error") if isinstance(body, dict) else "") or "REFRESH_FAILED"
                text = str(body.get("error_description", "") if isinstance(body, dict) else "")
                hint = (
                    "Authorise the application again and update the token file"
                    if code
                    in ("invalid_grant", "invalid_client", "invalid_request", "invalid_scope")
                    else "Check the application's client id, secret and subscription"
                )
                raise AuthRefreshError(code, redact(text), hint)
            register_secret(body.get("access_token"), body.get("refresh_token"))
            t = self.tokens
            t.access_token = str(body["access_token"])
            # Each refresh rotates the refresh token; keep the old one only if none came.
            t.refresh_token = str(body.get("refresh_token") or t.refresh_token)
            for key in (
                "expires_in",
                "expires",
                "client_endpoint",
                "server_endpoint",
                "domain",
                "member_id",
                "scope",
            ):
                if key in body:
                    t.extra[key] = body[key]
            self.store.save(t)
            self.refreshes += 1
            log.info("OAuth access token refreshed")
            return True


Auth = WebhookAuth | OAuthAuth
