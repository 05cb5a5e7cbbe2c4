"""PHP semantics the portal's answers depend on: ``parse_str``, truthiness, ``(int)`` casts,
``json_encode`` of arrays, and the batch ``$result[...]`` substitution.

PHP arrays are modelled as ``dict[str, Any]`` with string keys; a key that PHP would store
as an integer (``"0"``, ``"17"``, ``"-3"``) is kept as its decimal string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

_INT_KEY = re.compile(r"(?:0|-?[1-9][0-9]*)\Z")
_LEADING_NUMBER = re.compile(
    r"[ \t\n\r\v\f]*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_STRICT_INT = re.compile(r"\s*[+-]?[0-9]+\s*\Z")


def _next_index(array: dict[str, Any]) -> str:
    ints = [int(k) for k in array if _INT_KEY.match(k)]
    return str(max(max(ints) + 1, 0)) if ints else "0"


def php_assign(target: dict[str, Any], name: str, value: Any) -> None:
    """Store ``value`` under a PHP variable name like ``cmd[r1]`` or ``a[]`` (parse_str rules)."""
    name = name.lstrip(" ")
    open_at = name.find("[")
    if open_at != -1 and name.find("]", open_at) == -1:
        # PHP turns an unclosed first bracket into "_" and keeps the rest as a plain name.
        name = name[:open_at] + "_" + name[open_at + 1 :]
        open_at = -1
    base = name if open_at == -1 else name[:open_at]
    base = base.replace(" ", "_").replace(".", "_")
    if not base:
        return
    path: list[str | None] = [base]
    pos = open_at
    while pos != -1 and pos < len(name) and name[pos] == "[":
        close = name.find("]", pos)
        if close == -1:
            break  # PHP ignores a later unclosed bracket and whatever follows it
        segment = name[pos + 1 : close]
        path.append(segment if segment != "" else None)
        pos = close + 1
    cursor = target
    for i, key in enumerate(path):
        if key is None:
            key = _next_index(cursor)
        if i == len(path) - 1:
            cursor[key] = value
        else:
            child = cursor.get(key)
            if not isinstance(child, dict):
                child = {}
                cursor[key] = child
            cursor = child


def parse_str(query: str) -> dict[str, Any]:
    """PHP ``parse_str``: ``&``-separated, ``+`` is a space, ``%XX`` decoded, ``a[b]=c`` nests."""
    result: dict[str, Any] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        php_assign(
            result,
            unquote_plus(raw_name, errors="replace"),
            unquote_plus(raw_value, errors="replace"),
        )
    return result


def from_json(value: Any) -> Any:
    """A decoded JSON value as PHP sees it after ``json_decode($s, true)``: lists become arrays."""
    if isinstance(value, list):
        return {str(i): from_json(v) for i, v in enumerate(value)}
    if isinstance(value, dict):
        return {str(k): from_json(v) for k, v in value.items()}
    return value


def truthy(value: Any) -> bool:
    """PHP ``(bool)``: "", "0", 0, 0.0, null, false and empty arrays are false; "false" is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (dict, list)):
        return len(value) > 0
    return True


def intval(value: Any) -> int:
    """PHP ``(int)`` cast: leading number of a string ("12abc" -> 12, "abc" -> 0)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value == value and abs(value) < 2**63 else 0
    if isinstance(value, str):
        match = _LEADING_NUMBER.match(value)
        if not match:
            return 0
        number = match.group(1)
        try:
            return int(number) if number.lstrip("+-").isdigit() else int(float(number))
        except (OverflowError, ValueError):
            return 0
    if isinstance(value, dict):
        return 1 if value else 0
    return 0


def strict_int(value: Any) -> int | None:
    """An integer parameter bound by type (an int, an integral float, or a string of digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _STRICT_INT.match(value):
        return int(value)
    return None


def to_string(value: Any) -> str:
    """PHP ``(string)`` cast for a request parameter."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, dict):
        return "Array"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def php_json(value: Any) -> Any:
    """Shape a value the way PHP ``json_encode`` would: an empty array becomes ``[]`` and an
    array whose keys are exactly 0..n-1 in order becomes a JSON list."""
    if isinstance(value, dict):
        if not value:
            return []
        if all(k == str(i) for i, k in enumerate(value)):
            return [php_json(v) for v in value.values()]
        return {k: php_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [php_json(v) for v in value]
    return value


# --- batch substitution (SRV rest_util.php processBatchElement) -------------------------

_BATCH_KEYS = ("result", "next", "total", "time", "error")
_BATCH_REF = re.compile(r"\$(" + "|".join(_BATCH_KEYS) + r")(\S*)", re.IGNORECASE)
_BATCH_PATH = re.compile(r"\[([^\]]+)\]")


def _lookup(node: Any, key: str) -> tuple[bool, Any]:
    if isinstance(node, dict) and node.get(key) is not None:
        return True, node[key]
    return False, None


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return (
        isinstance(value, str)
        and re.fullmatch(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*", value) is not None
    )


def substitute(value: Any, done: dict[str, dict[str, Any]]) -> Any:
    """Replace ``$result[key]...`` references with earlier commands' answers, as the portal does.

    ``done`` maps "result", "next", "total", "time", "error" to the maps built so far.
    Arrays are walked recursively; keys are left alone (their substitution is a PHP oddity).
    """
    if isinstance(value, dict):
        return {k: substitute(v, done) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    result: Any = value
    for match in list(_BATCH_REF.finditer(value)):
        segments = _BATCH_PATH.findall(match.group(2))
        if not segments:
            continue
        # PHP looks the name up case-sensitively, so "$Result[...]" resolves to null.
        node: Any = done.get(match.group(1))
        for segment in segments:
            found, child = _lookup(node, segment)
            if not found:
                break
            node = child
        if match.group(0) == value:
            return node
        if _is_numeric(node):
            node = to_string(node)
        if not isinstance(node, str) or not isinstance(result, str):
            continue
        result = result.replace(match.group(0), node)
    return result
