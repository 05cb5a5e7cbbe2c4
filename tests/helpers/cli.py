"""Running the CLI against a sandbox portal: its arguments, input files and reports."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cleanup.sandbox import SandboxPortal


def bot_tokens_file(folder: Path, portal: SandboxPortal, name: str = "bot_tokens.json") -> Path:
    """The portal's real bot tokens, as the user's JSON tokens file."""
    path = folder / name
    path.write_text(json.dumps({str(b.id): b.token for b in portal.state.bots.values()}))
    return path


def portal_args(portal: SandboxPortal, folder: Path, *extra: str) -> list[str]:
    """CLI arguments for webhook mode against `portal`, fast enough for tests."""
    return [
        "--webhook",
        portal.webhook_url(),
        "--bot-tokens",
        str(bot_tokens_file(folder, portal)),
        "--progress",
        "none",
        *extra,
    ]


def write_rows(
    path: Path,
    rows: Sequence[Sequence[Any]],
    header: Sequence[str] = ("botId", "messageId", "reaction"),
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
) -> Path:
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def statuses(path: Path) -> list[str]:
    return [r["status"] for r in read_report(path)]
