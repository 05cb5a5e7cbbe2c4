"""The commands a reviewer runs next, as the HTML page shows them: re-run a run's failed
rows from its report, undo it, or send an undo's failed restores again.

Built from the summary's settings only, so they name the files as the run was given them,
shell-quoted. Never a secret: the webhook goes as "$B24_WEBHOOK_URL" (its value is never
in the summary), or, for a run of a job file, as the variable or file the job file names
("$NAME", "$(cat PATH)"); the bot tokens and OAuth files by their paths.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cleanup.results import RunSummary, Status

PROGRAM = "reaction-cleanup"
WEBHOOK_ENV = "B24_WEBHOOK_URL"


@dataclass(frozen=True)
class Command:
    key: str  # "rerun", "undo", "undo-again": a stable name for tests and styling
    title: str
    line: str  # what to type, quoted for a POSIX shell


def next_commands(summary: RunSummary) -> list[Command]:
    """What to type next after this run, given its summary."""
    settings = summary.settings
    report = str(settings.get("report") or summary.report or "")
    if not report or summary.dry_run:
        return []
    shared = _credentials(settings) + _pacing(settings)
    if summary.undo_of:
        codes = sorted(summary.by_error)
        if not summary.count(Status.FAILED) or not codes:
            return []
        line = [
            PROGRAM,
            "undo",
            summary.undo_of,
            "--report",
            report,
            "--only-error",
            ",".join(codes),
        ]
        return [Command("undo-again", "Send the failed restores again", _join(line + shared))]
    out = []
    if summary.count(Status.FAILED):
        line = [PROGRAM, "run", report, "--only", Status.FAILED.value]
        if settings.get("allow_unknown_reactions"):
            line.append("--allow-unknown-reactions")
        out.append(Command("rerun", "Re-run the failed rows", _join(line + shared)))
    if summary.count(Status.REMOVED):
        line = [PROGRAM, "undo", report]
        out.append(Command("undo", "Undo this run", _join(line + shared)))
    return out


def commands_note(summary: RunSummary) -> str:
    """The line above the commands: where to run them, and where they read the webhook."""
    settings = summary.settings
    where = "Run from the folder the run was started in."
    if settings.get("auth") == "oauth":
        return where
    source = settings.get("webhook_source")
    kind, name = source if isinstance(source, (list, tuple)) and len(source) == 2 else ("", "")
    if kind == "env":
        return f"{where} The webhook is read from {name}, the variable the job file names."
    if kind == "file":
        return f"{where} The webhook is read from {name}, the file the job file names."
    return (
        f"{where} The webhook is read from {WEBHOOK_ENV}: set it, or put the address in its place."
    )


def _credentials(settings: Mapping[str, Any]) -> list[str]:
    if settings.get("auth") == "oauth":
        out = ["--portal", str(settings.get("portal") or "")]
        if settings.get("oauth_file"):
            out += ["--oauth-file", str(settings["oauth_file"])]
        return out
    out = ["--webhook", _webhook(settings.get("webhook_source"))]
    if settings.get("bot_tokens"):
        out += ["--bot-tokens", str(settings["bot_tokens"])]
    return out


def _webhook(source: Any) -> str:
    """The webhook as the shell fills it in: from the variable or file a job file named
    (`"$NAME"`, `"$(cat PATH)"`), else from B24_WEBHOOK_URL."""
    kind, where = source if isinstance(source, (list, tuple)) and len(source) == 2 else ("", "")
    if kind == "env" and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(where)):
        return f'"${where}"'
    if kind == "file" and where:
        return f'"$(cat {shlex.quote(str(where))})"'
    return f'"${WEBHOOK_ENV}"'


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


__all__ = ["Command", "commands_note", "next_commands"]
