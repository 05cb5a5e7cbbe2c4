"""Many portals in one `run-job`: a sandbox portal with one job folder for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cleanup.run.actions import DELETE_METHOD
from cleanup.sandbox import SandboxPortal
from cleanup.sandbox.stats import RequestRecord
from tests.helpers.cli import write_rows


class Portal:
    """A sandbox portal with one job folder for it: NAME.toml, inbox, reports, archive."""

    def __init__(
        self,
        root: Path,
        portal: SandboxPortal,
        name: str,
        *,
        env: str | None = None,
        **keys: Any,
    ) -> None:
        self.portal, self.name = portal, name
        self.folder = root / name
        self.inbox = self.folder / "inbox"
        self.inbox.mkdir(parents=True)
        tokens = {str(b.id): b.token for b in portal.state.bots.values()}
        (self.folder / "bot_tokens.json").write_text(json.dumps(tokens))
        self.env = env or f"B24_TEST_{name.upper().replace('-', '_')}"
        self.job = root / f"{name}.toml"
        values: dict[str, Any] = {
            "name": name,
            "webhook_env": self.env,
            "bot_tokens_file": str(self.folder / "bot_tokens.json"),
            "inbox": str(self.inbox),
            "reports": str(self.folder / "reports"),
            "archive": str(self.folder / "archive"),
            "min_age": 0,
            "rate": 1000,
            "burst": 1000,
            "progress": "none",
            **keys,
        }
        self.job.write_text(
            "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8"
        )

    def drop(self, rows: list[tuple[int, int, str]], name: str = "rows.csv") -> Path:
        return write_rows(self.inbox / name, rows)

    def summaries(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text())
            for p in sorted((self.folder / "reports").glob("*.summary.json"))
        ]

    def reports(self) -> list[Path]:
        return sorted((self.folder / "reports").glob("*.report.csv"))

    def deletes(self) -> list[RequestRecord]:
        return [r for r in self.portal.stats.log if r.path_method in ("batch", DELETE_METHOD)]


def webhooks(*portals: Portal, wrong: Portal | None = None) -> dict[str, str]:
    env = {p.env: p.portal.webhook_url() for p in portals}
    if wrong is not None:
        env[wrong.env] = wrong.portal.webhook_url().replace("/rest/1/", "/rest/1/x")
    return env
