"""A message given as the link Bitrix24 copies: `https://portal/online/?IM_DIALOG=chat5&IM_MESSAGE=792`.

The message's id is the link's `IM_MESSAGE` parameter, in its query or in its `#` fragment
(`/online/#IM_MESSAGE=792`, `#/im/?IM_MESSAGE=792`); the path (`/online/`, `/im/`, the
portal's address) and the other parameters do not matter.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

MESSAGE_PARAM = "IM_MESSAGE"


def is_link(text: str) -> bool:
    """Whether a cell holds a link (rather than a mistyped number): an address, a path, or
    text naming the messenger's parameters (`portal/online/?IM_DIALOG=chat5`)."""
    text = text.strip()
    return "://" in text or text.startswith("/") or "IM_" in text.upper()


def message_of_link(text: str) -> str | None:
    """The `IM_MESSAGE` value of a link as written (`"792"`), or None when the link names no
    message. More than one different value: None too (which one was meant is unknown)."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:  # e.g. an unbalanced [ in the host
        return None
    fragment = parts.fragment
    values = {
        value.strip()
        for query in (parts.query, fragment.partition("?")[2] or fragment)
        for key, value in parse_qsl(query, keep_blank_values=True)
        if key.strip().upper() == MESSAGE_PARAM
    }
    return values.pop() if len(values) == 1 else None


__all__ = ["MESSAGE_PARAM", "is_link", "message_of_link"]
