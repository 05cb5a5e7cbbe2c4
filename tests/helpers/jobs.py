"""A job folder for `run-job` and `check-job`: job.toml, bot tokens, inbox, reports, archive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cleanup.sandbox import SandboxPortal
from tests.helpers.cli import write_rows

BOT = 456


ENV = "B24_JOB_TEST_WEBHOOK"  # a name of our own: never a developer's real variable


def likes(n: int, first: int = 1001) -> list[tuple[int, int, str]]:
    return [(BOT, first + i, "like") for i in range(n)]


class Setup:
    """A job folder: job.toml, bot tokens, inbox/, reports/, archive/."""

    def __init__(self, root: Path, portal: SandboxPortal, **keys: Any) -> None:
        self.root, self.portal = root, portal
        self.inbox, self.reports, self.archive = root / "inbox", root / "reports", root / "archive"
        self.inbox.mkdir(parents=True, exist_ok=True)
        tokens = {str(b.id): b.token for b in portal.state.bots.values()}
        (root / "bot_tokens.json").write_text(json.dumps(tokens))
        self.job = root / "job.toml"
        self.write_job(**keys)
        self.env = {ENV: portal.webhook_url()}

    def write_job(self, **keys: Any) -> None:
        values: dict[str, Any] = {
            "name": "test-job",
            "webhook_env": ENV,
            "bot_tokens_file": "bot_tokens.json",  # relative: to the job file's folder
            "inbox": "inbox",
            "reports": "reports",
            "archive": "archive",
            "min_age": 0,
            "rate": 1000,
            "burst": 1000,
            "progress": "none",
        }
        values.update(keys)
        lines = [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
        self.job.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def drop(self, name: str, rows: list[tuple[Any, ...]]) -> Path:
        return write_rows(self.inbox / name, rows)

    def reports_of(self, suffix: str = ".report.csv") -> list[Path]:
        return sorted(p for p in self.reports.glob(f"*{suffix}"))

    def state(self) -> dict[str, Any]:
        files: dict[str, Any] = json.loads((self.reports / "test-job.state.json").read_text())[
            "files"
        ]
        return files


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))
