"""Rows -> batches: pure, no I/O, so its invariants are checked with hypothesis.

The runner packs the input stream into units with a `Planner` (rows arrive one by one,
and the batch size can drop mid-run: a fall-back to single calls, a portal that takes
fewer commands); the engine splits what a unit still has to send with `plan`. Both are
this module's one rule, which the property tests check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cleanup.inputs.validate import Row
from cleanup.portal.protocol import MAX_BATCH


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


def clamp(size: int) -> int:
    """A batch size the portal runs whole: 1..MAX_BATCH."""
    return max(1, min(size, MAX_BATCH))


class Planner:
    """Packs rows, in order, into batches of `size()` rows (clamped to 1..MAX_BATCH), read when
    a batch is cut: a size that drops mid-run applies to the rows still open."""

    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._open: list[Row] = []

    def add(self, row: Row) -> list[Batch]:
        """Take one row; the batches it completes, if any."""
        self._open.append(row)
        return self.flush() if len(self._open) >= clamp(self._size()) else []

    def flush(self) -> list[Batch]:
        """Every open row, in batches (the last may be short): sent early, or at the end."""
        size = clamp(self._size())
        rows, self._open = self._open, []
        return [_batch(rows[i : i + size]) for i in range(0, len(rows), size)]

    def __len__(self) -> int:
        return len(self._open)


def plan(rows: Iterable[Row], max_per_batch: int = MAX_BATCH) -> Iterator[Batch]:
    """Group rows in order into batches of at most `max_per_batch` (clamped to 1..MAX_BATCH)."""
    planner = Planner(lambda: max_per_batch)
    for row in rows:
        yield from planner.add(row)
    yield from planner.flush()


def count_batches(rows: int, size: int) -> int:
    """How many batches `plan` makes of `rows` rows: for estimates, without the rows."""
    return -(-max(rows, 0) // clamp(size))


def _batch(rows: list[Row]) -> Batch:
    return Batch({command_key(row): row for row in rows})


def estimate_seconds(calls: int, rate: float, burst: int) -> float:
    """Time to send `calls` requests through a leaky bucket that starts empty."""
    if rate <= 0:
        return 0.0
    return max(0, calls - max(burst - 1, 0)) / rate
