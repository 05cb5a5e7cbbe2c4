"""A sandbox portal that counts every request carrying each row, the workload the fault tests
run, and the check that a report is truthful against the portal's final state."""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter
from collections.abc import Sequence
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cleanup.run.actions import ALREADY_ABSENT, ALREADY_ABSENT_EARLIER_RUN
from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal

Key = tuple[int, int, str]  # (botId, messageId, reaction)


FAST = ("--rate", "1000", "--burst", "1000", "--progress", "none")


BOTS = (101, 102, 103, 104, 105, 106, 107)


class CountingPortal(SandboxPortal):
    """The sandbox, also counting every request that carried each row, whatever became of
    the request afterwards (answered, dropped, lost, timed out on the client's side)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.carried: Counter[Key] = Counter()
        self._count_lock = threading.Lock()

    def _respond(self, raw_path: str, headers: Message, body: bytes) -> Any:
        keyed: dict[str, Key] = {}  # batch command key (or "" for a single call) -> row
        if "/rest/" in raw_path and body:
            try:
                data = json.loads(body)
            except ValueError:
                data = {}
            for name, command in (data.get("cmd") or {}).items():
                query = parse_qs(urlsplit(command).query)
                keyed[name] = (
                    int(query["botId"][0]), int(query["messageId"][0]), query["reaction"][0]
                )  # fmt: skip
            if "messageId" in data:
                keyed[""] = (int(data["botId"]), int(data["messageId"]), str(data["reaction"]))
        reply = super()._respond(raw_path, headers, body)
        unrun = _refused_unrun(reply)
        with self._count_lock:
            self.carried.update(k for name, k in keyed.items() if name not in unrun)
        return reply


# Answers that mean nothing ran: not attempts at the rows (the job agrees).
REFUSED_UNRUN = {
    "NO_AUTH_FOUND", "QUERY_LIMIT_EXCEEDED", "expired_token", "invalid_token",
    "OPERATION_TIME_LIMIT", "ERROR_BATCH_LENGTH_EXCEEDED", "ERROR_BATCH_METHOD_NOT_ALLOWED",
}  # fmt: skip


class _Everything:
    def __contains__(self, _: object) -> bool:
        return True


def _refused_unrun(reply: Any) -> Any:
    """The command keys of a reply that did not run: all of them, some, or none."""
    if reply.drop or not reply.body:
        return set()  # a dropped connection: the client cannot know, so it counts
    try:
        body = json.loads(reply.body)
    except ValueError:
        return set()
    if not isinstance(body, dict):
        return set()
    if body.get("error") in REFUSED_UNRUN:
        return _Everything()
    result = body.get("result")
    errors = result.get("result_error") if isinstance(result, dict) else None
    if not isinstance(errors, dict):
        return set()
    return {k for k, e in errors.items() if isinstance(e, dict) and e.get("error") in REFUSED_UNRUN}


def workload(n: int) -> tuple[list[Key], list[Key]]:
    """`n` input rows and the reactions the portal has. Every 10th row (3, 13, 23, …) names
    a reaction that was never set (its message exists and its bot is in the chat, so the
    portal answers REACTION_NOT_FOUND); the portal also has a reaction no row names."""
    rows, existing = [], []
    for i in range(n):
        bot, message = BOTS[i % len(BOTS)], 10_000 + i
        existing.append((bot, message, "like"))
        rows.append((bot, message, "fire" if i % 10 == 3 else "like"))
    return rows, existing


def start(existing: Sequence[Key], config: PortalConfig | None = None) -> CountingPortal:
    return CountingPortal(PortalState.build(existing), config or PortalConfig()).start()


def write_input(path: Path, rows: Sequence[Key]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["botId", "messageId", "reaction"])
        writer.writerows(rows)
    return path


def args(portal: SandboxPortal, folder: Path, *extra: Any) -> list[Any]:
    tokens = folder / "bot_tokens.json"
    tokens.write_text(json.dumps({str(b.id): b.token for b in portal.state.bots.values()}))
    return ["--webhook", portal.webhook_url(), "--bot-tokens", tokens, *FAST, *extra]


def left(portal: SandboxPortal) -> set[Key]:
    return {(b, m, r) for m, b, r in portal.state.snapshot()}


def assert_truthful(
    report: list[dict[str, str]],
    rows: Sequence[Key],
    existing: Sequence[Key],
    portal: CountingPortal,
    *,
    exact_attempts: bool = True,
) -> Counter[str]:
    """Exactly one line per input row, in order; each status true against the portal."""
    assert [int(r["row"]) for r in report] == list(range(1, len(rows) + 1))
    now = left(portal)
    had = set(existing)
    kinds: Counter[str] = Counter()
    for line, key in zip(report, rows, strict=True):
        assert (int(line["botId"]), int(line["messageId"]), line["reaction"]) == key
        status, attempts = line["status"], int(line["attempts"])
        carried = portal.carried[key]
        if exact_attempts:
            assert attempts == carried, (line, carried)
        else:  # a kill -9 may land after a row's journal entry and before its request left
            assert carried <= attempts <= carried + 1, (line, carried)
        if key in had:
            # It existed: it must be gone now, and reported removed.
            assert status == "removed", line
            assert key not in now, line
            kinds["removed (existed)"] += 1
        elif status == "failed":
            # Never existed: REACTION_NOT_FOUND is the truth.
            assert line["error"] == "REACTION_NOT_FOUND", line
            kinds["failed REACTION_NOT_FOUND (never existed)"] += 1
        else:
            # Never existed, but an earlier attempt's outcome was unknown: indistinguishable
            # from "that attempt removed it", and reported so, never on a first attempt.
            assert status == "removed", line
            assert line["error_description"] in (ALREADY_ABSENT, ALREADY_ABSENT_EARLIER_RUN), line
            assert attempts >= 2 and carried >= (2 if exact_attempts else 1), line
            kinds["removed, already absent (never existed)"] += 1
    # Every reaction a row named is gone; every other one is still there.
    assert had & now == had - set(rows)
    return kinds


class BreakingPortal(CountingPortal):
    """Starts refusing the webhook (its code is changed) at the n-th request."""

    break_at: int | None = None

    def _respond(self, raw_path: str, headers: Message, body: bytes) -> Any:
        if self.break_at is not None and self.stats.requests + 1 >= self.break_at:
            with self.state.lock:
                self.state.webhooks = {1: "rotated-by-the-admin"}
        return super()._respond(raw_path, headers, body)
