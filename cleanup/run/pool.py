"""Worker threads that send units of rows; results come back in any order.

Each unit's result is collected by the id it was submitted under; a unit given up on (the
stop timeout passed while its request hung) is forgotten, and its late result dropped.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable

from cleanup.errors import OutputError
from cleanup.inputs.validate import Row
from cleanup.redact import redact
from cleanup.results import CLIENT_ERROR, Status
from cleanup.run.engine import UnitResult

log = logging.getLogger("cleanup")


class WorkerPool:
    """Worker threads that send units; results come back in any order."""

    def __init__(self, send: Callable[[list[Row]], UnitResult], workers: int) -> None:
        self._send = send
        self._size = workers
        self._results: queue.Queue[tuple[int, UnitResult]] = queue.Queue()
        self._tasks: queue.Queue[tuple[int, list[Row]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._next_unit = 0
        self.inflight: dict[int, list[Row]] = {}

    def start(self) -> None:
        for i in range(self._size):
            # Daemon threads: a request hung past the stop timeout must not keep the process
            # alive. Each in the run's context: its job file's name (log lines) and its stop
            # (a shared clock).
            context = contextvars.copy_context()
            t = threading.Thread(
                target=context.run, args=(self._work,), name=f"cleanup-worker-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)

    def submit(self, rows: list[Row]) -> None:
        unit_id = self._next_unit
        self._next_unit += 1
        self.inflight[unit_id] = rows
        self._tasks.put((unit_id, rows))

    def result(self, *, block: bool, timeout: float) -> UnitResult | None:
        """A finished unit's result; None when there is none (yet)."""
        while True:
            try:
                unit_id, result = (
                    self._results.get(timeout=timeout) if block else self._results.get_nowait()
                )
            except queue.Empty:
                return None
            if self.inflight.pop(unit_id, None) is not None:
                return result
            # else: given up on at the stop timeout, and already reported skipped

    def abandon(self) -> list[list[Row]]:
        """Stop waiting for the units in flight; their rows."""
        units = list(self.inflight.values())
        self.inflight.clear()
        return units

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            unit_id, rows = task
            try:
                result = self._send(rows)
            except OutputError as exc:  # the journal could not be written: the run stops
                result = UnitResult([], fatal=exc)
            except Exception as exc:  # a bug must not lose rows: report them, keep going
                log.exception("internal error while sending rows %d..%d", rows[0].row, rows[-1].row)
                text = redact(f"{type(exc).__name__}: {exc}")
                result = UnitResult([r.result(Status.FAILED, CLIENT_ERROR, text) for r in rows])
            self._results.put((unit_id, result))
