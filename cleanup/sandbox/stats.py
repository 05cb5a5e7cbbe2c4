"""Counters and a request log, for tests and benchmarks to see what the portal went through."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    """One /rest/ HTTP request. Times are ``time.time()``; ``status`` 0 means no answer was
    sent (the "reset" and "lost_reply" faults). ``path_method`` is the method name only, so
    no webhook code or token ever lands here."""

    t_start: float
    t_end: float
    path_method: str
    n_commands: int
    status: int
    error: str | None


@dataclass
class PortalStats:
    """Thread-safe counters. Read them freely; the server changes them under ``_lock``."""

    requests: int = 0  # every /rest/ HTTP request, whatever its outcome
    batch_calls: int = 0  # batch calls that got past auth and limits and ran
    single_calls: int = 0  # non-batch calls that got past auth and limits and ran
    commands_executed: int = 0  # reaction commands whose method ran (success or method error)
    removed: int = 0  # reactions actually removed
    limit_refusals: int = 0  # QUERY_LIMIT_EXCEEDED answers (bucket or "limit" fault)
    operating_refusals: int = 0  # OPERATION_TIME_LIMIT answers, single or per command
    faults: Counter[str] = field(default_factory=Counter)  # fault kind -> times applied
    refreshes: int = 0  # successful OAuth refreshes
    # Reaction commands that carried a botToken (an OAuth client sends none).
    bot_tokens_seen: int = 0
    max_in_flight: int = 0  # most /rest/ requests being processed at once
    in_flight: int = 0
    internal_errors: int = 0  # sandbox bugs caught and answered 500 (should stay 0)
    log: list[RequestRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def begin(self) -> None:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, record: RequestRecord) -> None:
        with self._lock:
            self.in_flight -= 1
            self.log.append(record)

    def reset(self) -> None:
        """Zero everything except requests now in flight."""
        with self._lock:
            in_flight = self.in_flight
            self.requests = self.batch_calls = self.single_calls = 0
            self.commands_executed = self.removed = 0
            self.limit_refusals = self.operating_refusals = self.refreshes = 0
            self.bot_tokens_seen = 0
            self.internal_errors = 0
            self.faults = Counter()
            self.log = []
            self.in_flight = in_flight
            self.max_in_flight = in_flight

    def as_dict(self) -> dict[str, Any]:
        """A consistent copy of the counters (without the log)."""
        with self._lock:
            return {
                "requests": self.requests,
                "batch_calls": self.batch_calls,
                "single_calls": self.single_calls,
                "commands_executed": self.commands_executed,
                "removed": self.removed,
                "limit_refusals": self.limit_refusals,
                "operating_refusals": self.operating_refusals,
                "faults": dict(self.faults),
                "refreshes": self.refreshes,
                "bot_tokens_seen": self.bot_tokens_seen,
                "max_in_flight": self.max_in_flight,
                "internal_errors": self.internal_errors,
            }
