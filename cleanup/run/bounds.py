"""Runs bounded in time: `--max-duration` and a job file's `window` (with its `timezone`).

Everything here is a pure function of the time it is given, so the window's rules (a window
across midnight, a timezone's offset and its changes) are tested without waiting. The runner
turns a `TimeBound` into a stop at its deadline (`cleanup.exits.TIME_UP`): nothing new is
sent, requests in flight finish, the rows not reached are skipped with `bound.skip_reason`,
and the run exits 75 (paused).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from cleanup.run.config import RunConfig

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])", re.IGNORECASE)
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_duration(text: str) -> float:
    """`90m`, `2h`, `15s`, `1h30m` (or a plain number of seconds) -> seconds, above 0."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise ValueError(
                f"{text!r} is not a duration such as 90m, 2h or 15s (h, m, s; e.g. 1h30m)"
            ) from None
        seconds = sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be above 0")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest of `2h`, `90m`, `15s`, `1h30m` that is exactly `seconds` (to a second)."""
    total = round(seconds)
    if total <= 0:
        return f"{seconds:g}s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours and not secs and minutes and hours < 2:
        return f"{hours * 60 + minutes}m"
    parts = (f"{hours}h" if hours else "", f"{minutes}m" if minutes else "")
    return "".join(parts) + (f"{secs}s" if secs else "")


def timezone_of(name: str | None) -> tzinfo:
    """The IANA zone `name`; None: the machine's local zone."""
    if name is None:
        return datetime.now().astimezone().tzinfo or UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA timezone name such as Europe/Berlin") from None


@dataclass(frozen=True)
class Window:
    """Daily hours a job file may send in, e.g. 22:00-06:00 (across midnight) in `tz`."""

    start: time
    end: time
    tz: tzinfo
    text: str

    @classmethod
    def parse(cls, text: str, tz_name: str | None = None) -> Window:
        match = _WINDOW.match(text)
        if not match:
            raise ValueError(f"window {text!r}: expected HH:MM-HH:MM such as 22:00-06:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"window {text!r}: hours 0-23 and minutes 0-59")
        start, end = time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2)
        if start == end:
            raise ValueError(f"window {text!r}: start and end are the same time")
        return cls(start, end, timezone_of(tz_name), text.strip())

    def _opening(self, day: datetime) -> tuple[datetime, datetime]:
        """The window that opens on `day`'s date: (opens, closes), aware datetimes."""
        opens = datetime.combine(day.date(), self.start, self.tz)
        closes = datetime.combine(day.date(), self.end, self.tz)
        if closes <= opens:  # across midnight: it closes the next day
            closes = datetime.combine(day.date() + timedelta(days=1), self.end, self.tz)
        return opens, closes

    def state(self, now: datetime) -> tuple[bool, datetime]:
        """(inside, when): inside the window and when it closes, or outside and when it
        next opens. `now` is any aware datetime (converted to the window's zone)."""
        local = now.astimezone(self.tz)
        for shift in (-1, 0, 1):
            opens, closes = self._opening(local + timedelta(days=shift))
            if opens <= local < closes:
                return True, closes
        for shift in (0, 1):
            opens, _ = self._opening(local + timedelta(days=shift))
            if opens > local:
                return False, opens
        raise AssertionError("a daily window opens within two days")  # pragma: no cover

    def describe(self) -> str:
        return f"{self.text} ({getattr(self.tz, 'key', None) or datetime.now(self.tz).tzname()})"


@dataclass(frozen=True)
class TimeBound:
    """When a run (or a job file's run) must stop sending: `seconds` after it started."""

    seconds: float
    why: str  # e.g. "--max-duration 2h", "the window 22:00-06:00 (Europe/Berlin) closed"
    then: str = "run again, or --resume, to continue"

    @property
    def skip_reason(self) -> str:
        return f"time is up: {self.why}; {self.then}"


def time_bound(
    max_duration: float | None, window: Window | None, now: datetime
) -> TimeBound | None:
    """The nearer of `max_duration` from now and the end of the window `now` is in."""
    bounds: list[TimeBound] = []
    if max_duration is not None:
        bounds.append(TimeBound(max_duration, f"--max-duration {format_duration(max_duration)}"))
    if window is not None:
        inside, when = window.state(now)
        if inside:
            left = when.timestamp() - now.timestamp()
            why = f"the window {window.describe()} closed"
            bounds.append(TimeBound(left, why, "the next run in the window continues"))
    return min(bounds, key=lambda b: b.seconds, default=None)


# No bound: a job file's run passes it to its runs when it has none.
NO_BOUND = TimeBound(math.inf, "")


def config_bound(config: RunConfig, now: datetime | None = None) -> TimeBound:
    """The bound a run's options set (--max-duration, window), from `now`; NO_BOUND if none."""
    now = now or datetime.now().astimezone()
    return time_bound(config.max_duration, config.time_window, now) or NO_BOUND
