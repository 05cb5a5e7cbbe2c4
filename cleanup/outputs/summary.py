"""The run's summary on disk, `R.summary.json` beside the report: written and read back by
the one model, `cleanup.results.RunSummary`; and the fields of the summary log event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cleanup.outputs.files import SUMMARY, sidecar, write_atomic
from cleanup.redact import redact
from cleanup.results import RunSummary, read_summary

# Per-request and per-row detail, and the settings: in the summary JSON and the HTML page,
# not on a log line.
_BULKY = frozenset({"timeline", "examples", "settings"})


def summary_path(report: Path) -> Path:
    return sidecar(report, SUMMARY)


def summary_fields(summary: RunSummary) -> dict[str, Any]:
    """The summary as the fields of one log event (JSON logs)."""
    return {"event": "summary", **summary.model_dump(mode="json", exclude=set(_BULKY))}


def write_summary(report: Path, summary: RunSummary) -> Path:
    """`R.summary.json`, written atomically; nothing that looks like a secret in it."""
    path = summary_path(report)
    write_atomic(path, redact(summary.model_dump_json(indent=2)) + "\n")
    return path


def load_summary(path: Path) -> RunSummary | None:
    """A summary file read back (one an earlier version wrote too); None when it cannot be
    read: being replaced right now, or damaged."""
    try:
        return read_summary(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


__all__ = ["load_summary", "summary_fields", "summary_path", "write_summary"]
