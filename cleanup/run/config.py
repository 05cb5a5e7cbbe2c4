"""RunConfig: everything a run needs, validated at once (every problem reported together)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cleanup.errors import ConfigError
from cleanup.inputs.select import RowChoice
from cleanup.outputs.report import default_report_path, report_format
from cleanup.pacing.throttle import PLANS
from cleanup.portal.auth import Auth, OAuthAuth, TokenStore, WebhookAuth
from cleanup.redact import register_secret
from cleanup.run.planner import MAX_BATCH

MODES = ("auto", "batch", "single")
# Files a run writes beside its report (see cleanup.outputs.report).
SIDECARS = (".partial.jsonl", ".partial.jsonl.tmp", ".journal", ".summary.json", ".lock", ".tmp")
PROGRESS = ("auto", "bar", "log", "none")


@dataclass
class RunConfig:
    """Options of `reaction-cleanup run`; the job file keys have the same names."""

    input: Path
    report: Path | None = None
    webhook: str | None = None
    portal: str | None = None
    oauth_file: Path | None = None
    oauth_server: str | None = None
    bot_tokens: Path | None = None
    columns: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None
    # Re-run a report's rows: those whose status / error is one of these (see inputs.select).
    only: list[str] = field(default_factory=list)
    only_error: list[str] = field(default_factory=list)
    allow_unknown_reactions: bool = False
    mode: str = "auto"
    batch_size: int = MAX_BATCH
    plan: str | None = None
    rate: float | None = None
    burst: int | None = None
    concurrency: int | None = None  # None: chosen from the rate and observed latency
    max_retries: int = 5
    max_wait: float = 900.0
    timeout: float = 75.0
    operating_limit: float | None = 480.0
    dry_run: bool = False
    resume: bool = False
    allow_insecure_http: bool = False
    progress: str = "auto"
    stop_timeout: float = 30.0
    chunk_rows: int = 200_000
    run_id: str | None = None
    label: str | None = None  # shown in logs/HTML (a job's name)

    @property
    def report_path(self) -> Path:
        return self.report or default_report_path(self.input)

    @property
    def choice(self) -> RowChoice:
        return RowChoice(tuple(self.only), tuple(self.only_error))

    @property
    def effective_rate(self) -> tuple[float, int]:
        rate, burst = PLANS[self.plan or "standard"]
        return (
            self.rate if self.rate is not None else rate,
            self.burst if self.burst is not None else burst,
        )

    def check(self) -> None:
        """Raise ConfigError listing every problem found."""
        problems: list[str] = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}")
        if not 1 <= self.batch_size <= MAX_BATCH:
            problems.append(
                f"batch size must be 1..{MAX_BATCH} (the portal runs at most {MAX_BATCH} commands per batch)"
            )
        if self.plan is not None and self.plan not in PLANS:
            problems.append(f"plan must be one of {', '.join(PLANS)}")
        rate, burst = self.effective_rate
        if rate <= 0:
            problems.append("rate must be above 0 requests per second")
        if burst < 1:
            problems.append("burst must be at least 1")
        if self.concurrency is not None and not 1 <= self.concurrency <= 64:
            problems.append("concurrency must be 1..64")
        if self.max_retries < 0:
            problems.append("max retries must be 0 or more")
        if self.progress not in PROGRESS:
            problems.append(f"progress must be one of {', '.join(PROGRESS)}")
        if self.webhook and (self.portal or self.oauth_file):
            problems.append("give either a webhook or OAuth (portal + token file), not both")
        if not self.dry_run and not (self.webhook or self.portal):
            problems.append(
                "no portal credentials: give --webhook (or B24_WEBHOOK_URL), or --portal with "
                "OAuth tokens (--oauth-file / B24_OAUTH_FILE)"
            )
        try:
            report_format(self.report_path)
        except ConfigError as exc:
            problems.extend(exc.problems)
        problems.extend(self.choice.problems())
        if not self.dry_run and _writes_over(self.report_path, self.input):
            problems.append(
                f"the report {self.report_path} would overwrite the input {self.input};"
                " give another --report"
            )
        if problems:
            raise ConfigError(problems)

    def make_auth(self) -> Auth | None:
        if self.webhook:
            return WebhookAuth(self.webhook, allow_insecure_http=self.allow_insecure_http)
        if self.portal:
            return OAuthAuth(
                self.portal,
                TokenStore(self.oauth_file),
                oauth_server=self.oauth_server,
                allow_insecure_http=self.allow_insecure_http,
                timeout=min(self.timeout, 30.0),
            )
        return None

    def settings(self) -> dict[str, Any]:
        """For the summary and the HTML report: no secrets, just what was chosen."""
        rate, burst = self.effective_rate
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("webhook",):
                continue
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        out["auth"] = "webhook" if self.webhook else "oauth" if self.portal else "none"
        out["rate"], out["burst"] = rate, burst
        out["report"] = str(self.report_path)
        return out


def _writes_over(report: Path, input_path: Path) -> bool:
    """Whether the report, or a file written beside it, is the input (a report re-run
    with --report set to its own name)."""
    written = [report, *(report.with_name(report.name + s) for s in SIDECARS)]
    target = input_path.resolve()
    for path in written:
        if path.resolve() == target:
            return True
        try:
            if path.exists() and input_path.exists() and path.samefile(input_path):
                return True
        except OSError:
            continue
    return False


def load_bot_tokens(path: Path) -> dict[int, str]:
    """`{"456": "token"}` JSON, or CSV with the header botId,botToken."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"bot tokens file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"bot tokens file {path} cannot be read ({exc.strerror})") from None
    tokens: dict[int, str] = {}
    problems: list[str] = []
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"bot tokens file {path} is not valid JSON (line {getattr(exc, 'lineno', '?')})"
            ) from None
        items = list(data.items())
    else:
        items = []
        reader = csv.DictReader(text.splitlines(), dialect=_sniff(text))
        norm = {
            (h or "").replace("_", "").replace(" ", "").casefold(): h
            for h in reader.fieldnames or []
        }
        bot_col, tok_col = norm.get("botid"), norm.get("bottoken")
        if not bot_col or not tok_col:
            raise ConfigError(
                f"bot tokens file {path}: expected a JSON object or a CSV with the header botId,botToken"
            )
        items = [(rec.get(bot_col), rec.get(tok_col)) for rec in reader]
    for i, (bot, token) in enumerate(items, start=1):
        register_secret(str(token) if token else None)
        try:
            bot_id = int(str(bot).strip())
            if bot_id <= 0:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"bot tokens file {path}, entry {i}: {str(bot)[:40]!r} is not a bot id")
            continue
        if not token or not str(token).strip():
            problems.append(f"bot tokens file {path}, entry {i}: bot {bot_id} has an empty token")
            continue
        tokens[bot_id] = str(token).strip()
    if problems:
        raise ConfigError(problems)
    return tokens


def _sniff(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        return csv.excel
