"""Rows -> batches: pure, no I/O, so its invariants are checked with hypothesis."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

from cleanup.inputs.validate import Row

MAX_BATCH = 50  # the portal runs the first 50 commands of a batch and refuses the rest
METHOD = "imbot.v2.Chat.Message.Reaction.delete"


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands to send together, keyed `r<row>`: non-numeric keys dodge PHP's list quirk."""

    commands: dict[str, Row]

    @property
    def rows(self) -> list[Row]:
        return list(self.commands.values())

    def __len__(self) -> int:
        return len(self.commands)


def command_key(row: Row) -> str:
    return f"r{row.row}"


def plan(rows: Iterable[Row], max_per_batch: int = MAX_BATCH) -> Iterator[Batch]:
    """Group rows in order into batches of at most `max_per_batch` (clamped to 1..50)."""
    size = max(1, min(max_per_batch, MAX_BATCH))
    chunk: dict[str, Row] = {}
    for row in rows:
        chunk[command_key(row)] = row
        if len(chunk) == size:
            yield Batch(chunk)
            chunk = {}
    if chunk:
        yield Batch(chunk)


def delete_params(row: Row, bot_token: str | None) -> dict[str, str | int]:
    """The method's parameters; botToken only in webhook mode (OAuth matches by client_id)."""
    params: dict[str, str | int] = {
        "botId": row.bot_id,
        "messageId": row.message_id,
        "reaction": row.reaction,
    }
    if bot_token is not None:
        params["botToken"] = bot_token
    return params


def delete_command(row: Row, bot_token: str | None) -> str:
    """One batch command. Every value is URL-encoded, so `#`, `&` or `+` in a value
    cannot cut the query, add a parameter or turn into a space."""
    return f"{METHOD}?{urlencode(delete_params(row, bot_token))}"


def estimate_seconds(calls: int, rate: float, burst: int) -> float:
    """Time to send `calls` requests through a leaky bucket that starts empty."""
    if rate <= 0:
        return 0.0
    return max(0, calls - max(burst - 1, 0)) / rate
