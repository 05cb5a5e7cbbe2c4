"""Keep secrets out of everything the job writes or prints.

Two layers: the exact secret values this process knows (webhook code, tokens), and
patterns for the places secrets sit in Bitrix24 URLs and bodies, for values we never saw.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

# Parameter names that carry secrets in Bitrix24 calls, OAuth answers and our own messages.
_NAMES = r"(?:auth|bot_?token|access_token|refresh_token|client_secret|application_token)"

# A webhook address, https://PORTAL/rest/USER_ID/CODE/: the code is the secret. The one
# pattern that finds, parses and masks it.
WEBHOOK = re.compile(r"(?P<head>/rest/(?P<user>\d+)/)(?P<code>[^/\s?#\"']+)")

_PATTERNS = (
    (WEBHOOK, r"\g<head>" + MASK),
    # secrets as query or form parameters, also URL-encoded inside batch commands
    (re.compile("(" + _NAMES + r"(?:=|%3D))[^&\s\"'#]+", re.IGNORECASE), r"\1" + MASK),
    # secrets as JSON fields or Python dict items (a repr in a traceback)
    (
        re.compile(r"([\"']" + _NAMES + r"[\"']\s*:\s*[\"'])[^\"']*", re.IGNORECASE),
        r"\1" + MASK,
    ),
)


class Redactor:
    """Process-wide registry of known secret values; `redact()` masks them and the patterns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def register(self, *values: str | None) -> None:
        with self._lock:
            known = set(self._values)
            # Short values would mask ordinary words; real codes and tokens are long.
            known.update(v for v in values if v and len(v) >= 4)
            # Longest first, so a secret that contains another is masked whole.
            self._values = tuple(sorted(known, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values = ()

    def redact(self, text: object) -> str:
        out = str(text)
        for value in self._values:
            if value in out:
                out = out.replace(value, MASK)
        for pattern, repl in _PATTERNS:
            out = pattern.sub(repl, out)
        return out


REDACTOR = Redactor()


def webhook_code(url: str) -> list[str]:
    """The secret part of a webhook URL, to be masked wherever it might appear."""
    match = WEBHOOK.search(url)
    return [match["code"]] if match else []


def register_secret(*values: str | None) -> None:
    REDACTOR.register(*values)


def redact(text: object) -> str:
    return REDACTOR.redact(text)


class RedactingFilter(logging.Filter):
    """Masks secrets in every record, including exception text, before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
