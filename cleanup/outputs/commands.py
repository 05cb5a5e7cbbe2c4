"""The commands a reviewer runs next, as the HTML page shows them: re-run a run's failed
rows from its report, undo it, or send an undo's failed restores again.

Built from the summary's settings only, so they name the files as the run was given them,
shell-quoted. Never a secret: the webhook goes as "$B24_WEBHOOK_URL" (its value is never
in the summary), the bot tokens and OAuth files by their paths.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROGRAM = "reaction-cleanup"
WEBHOOK_ENV = "B24_WEBHOOK_URL"


@dataclass(frozen=True)
class Command:
    key: str  # "rerun", "undo", "undo-again": a stable name for tests and styling
    title: str
    line: str  # what to type, quoted for a POSIX shell


def next_commands(summary: Mapping[str, Any]) -> list[Command]:
    """What to type next after this run, given its summary (with `settings`)."""
    settings = dict(summary.get("settings") or {})
    report = str(settings.get("report") or summary.get("report") or "")
    if not report or summary.get("dry_run"):
        return []
    by_status = dict(summary.get("by_status") or {})
    shared = _credentials(settings) + _pacing(settings)
    if summary.get("undo_of"):
        codes = sorted(str(c) for c in dict(summary.get("by_error") or {}))
        if not by_status.get("failed") or not codes:
            return []
        undone = str(summary["undo_of"])
        line = [PROGRAM, "undo", undone, "--report", report, "--only-error", ",".join(codes)]
        return [Command("undo-again", "Send the failed restores again", _join(line + shared))]
    out = []
    if by_status.get("failed"):
        line = [PROGRAM, "run", report, "--only", "failed"]
        if settings.get("allow_unknown_reactions"):
            line.append("--allow-unknown-reactions")
        out.append(Command("rerun", "Re-run the failed rows", _join(line + shared)))
    if by_status.get("removed"):
        line = [PROGRAM, "undo", report]
        out.append(Command("undo", "Undo this run", _join(line + shared)))
    return out


def _credentials(settings: Mapping[str, Any]) -> list[str]:
    if settings.get("auth") == "oauth":
        out = ["--portal", str(settings.get("portal") or "")]
        if settings.get("oauth_file"):
            out += ["--oauth-file", str(settings["oauth_file"])]
        return out
    out = ["--webhook", f'"${WEBHOOK_ENV}"']  # kept as typed: the shell fills it in
    if settings.get("bot_tokens"):
        out += ["--bot-tokens", str(settings["bot_tokens"])]
    return out


def _pacing(settings: Mapping[str, Any]) -> list[str]:
    """The choices that shaped how the run sent, when they were not the defaults."""
    out = []
    if settings.get("plan"):
        out += ["--plan", str(settings["plan"])]
    if settings.get("mode") not in (None, "auto"):
        out += ["--mode", str(settings["mode"])]
    if settings.get("allow_insecure_http"):
        out.append("--allow-insecure-http")
    return out


def _join(words: list[str]) -> str:
    """Each word quoted for the shell, except the webhook's variable (to be expanded)."""
    return " ".join(w if w.startswith('"$') else shlex.quote(w) for w in words)


__all__ = ["Command", "next_commands"]
