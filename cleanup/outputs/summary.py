"""The run's summary as data: the summary JSON beside the report (`R.summary.json`), the
HTML page's input, and the fields of the summary log event. Built here only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleanup.outputs.files import SUMMARY, sidecar, write_atomic
from cleanup.redact import redact
from cleanup.results import RunSummary

# Per-request and per-row detail: in the summary JSON and the HTML page, not on a log line.
_BULKY = ("timeline", "examples")


def summary_path(report: Path) -> Path:
    return sidecar(report, SUMMARY)


def summary_record(summary: RunSummary, settings: Mapping[str, Any]) -> dict[str, Any]:
    """What the summary JSON holds: the run's figures and the settings it ran with."""
    return {**summary.as_dict(), "settings": dict(settings)}


def summary_fields(summary: RunSummary) -> dict[str, Any]:
    """The summary as the fields of one log event (JSON logs)."""
    data = summary.as_dict()
    for bulky in _BULKY:
        data.pop(bulky, None)
    return {"event": "summary", **data}


def write_summary(report: Path, summary: RunSummary, settings: Mapping[str, Any]) -> Path:
    """`R.summary.json`, written atomically; nothing that looks like a secret in it."""
    path = summary_path(report)
    text = json.dumps(summary_record(summary, settings), indent=2, ensure_ascii=False, default=str)
    write_atomic(path, redact(text) + "\n")
    return path


__all__ = ["summary_fields", "summary_path", "summary_record", "write_summary"]
