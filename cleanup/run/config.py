"""RunConfig: everything a run needs. Every option is declared here once (type, bounds,
default, environment variable, help); the click options of `run` and the job-file keys are
derived from these fields (`cleanup.cli.options`, `cleanup.jobs.schema`)."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from cleanup.errors import ConfigError
from cleanup.inputs.columns import canonical_field, normalise_name
from cleanup.inputs.select import RowChoice, RowRanges, split_values
from cleanup.options import Option, problems_of, shown_value
from cleanup.outputs.files import PARTIAL, SUMMARY, state_file
from cleanup.outputs.report import default_report_path, report_format
from cleanup.pacing.throttle import PLANS
from cleanup.portal.auth import Auth, OAuthAuth, TokenStore, WebhookAuth
from cleanup.portal.protocol import MAX_BATCH
from cleanup.redact import register_secret
from cleanup.run.bounds import Window, parse_duration, timezone_of

Mode = Literal["auto", "batch", "single"]
NotifyAttach = Literal["page", "report", "none"]
NotifyWhen = Literal["always", "problems"]
# A dialog as imbot.v2 names it: `chat{chatId}` for a group chat, `{userId}` for a private one.
DIALOG_PATTERN = r"^(?:chat[1-9][0-9]*|[1-9][0-9]*)$"
ProgressMode = Literal["auto", "bar", "log", "none"]
# The plans are the throttle's table; a Literal built from it keeps one list of names
# (a type checker sees text).
if TYPE_CHECKING:
    PlanName = str
else:
    PlanName = Literal[tuple(PLANS)]
# Files a run writes beside its report, and in the state folder beside it (see
# cleanup.outputs.report).
SIDECARS = (PARTIAL, f"{PARTIAL}.tmp", SUMMARY, ".tmp")
STATE_FILES = (".journal", ".lock")


def parse_column_options(values: tuple[str, ...]) -> dict[str, str]:
    """`--column botId=Bot --column reaction=Emoji` -> {"botId": "Bot", "reaction": "Emoji"}."""
    out: dict[str, str] = {}
    problems = []
    for value in values:
        field, sep, name = value.partition("=")
        canon = canonical_field(field)
        if not sep or not name.strip() or canon is None:
            problems.append(
                f"--column {value!r}: expected botId=NAME, messageId=NAME or reaction=NAME"
            )
            continue
        out[canon] = name.strip()
    if problems:
        raise ConfigError(problems)
    return out


def _columns(value: Any) -> Any:
    """A {field: column name} table: each field spelt as in FIELDS, each name given."""
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "problems",
            "{problems}",
            {"problems": ['columns must be a table such as columns = { botId = "Bot" }']},
        )
    out: dict[str, str] = {}
    problems = []
    for field, column in value.items():
        canon = canonical_field(field)
        if canon is None:
            problems.append(f"columns.{field}: the fields are botId, messageId and reaction")
        elif not isinstance(column, str) or not column.strip():
            problems.append(f"columns.{field} must be a column name (text)")
        else:
            out[canon] = column.strip()
    if problems:
        raise PydanticCustomError("problems", "{problems}", {"problems": problems})
    return out


def _listed_option(flag: str, values: tuple[str, ...]) -> list[str]:
    """`--only failed,invalid --only skipped` -> [failed, invalid, skipped]; not none."""
    listed = split_values(values)
    if not listed:
        raise ConfigError(f"{flag}: give at least one value")
    return listed


def _listed(value: Any, info: ValidationInfo) -> Any:
    """A list of text, or one text with commas (a job file's `only = "failed,skipped"`)."""
    items = [value] if isinstance(value, str) else value
    if isinstance(items, (list, tuple)) and all(isinstance(v, str) for v in items):
        listed = split_values(items)
        if listed or not items:
            return listed
    raise PydanticCustomError(
        "problems",
        "{problems}",
        {
            "problems": [
                f'{info.field_name} must be a list of text such as ["failed"], not {shown_value(value)}'
            ]
        },
    )


# In a job file: a list of text, or one text with commas.
_LISTED_SCHEMA = WithJsonSchema(
    {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
)


def _sheet_number(value: Any) -> Any:
    # sheet = 2 in a job file: the 1-based sheet number, as `--sheet 2` gives it.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _dialog_text(value: Any) -> Any:
    # notify = 12 in a job file: a private chat with user 12, as `--notify 12` gives it.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _dialog(value: str | None) -> str | None:
    if value is None or re.fullmatch(DIALOG_PATTERN, value):
        return value
    raise PydanticCustomError(
        "problems",
        "{problems}",
        {
            "problems": [
                f"notify must be chat123 (a group chat) or a user id (a private chat),"
                f" not {shown_value(value)}"
            ]
        },
    )


def _zero_is_off(value: float | None) -> float | None:
    return None if value == 0 else value


def _duration(value: Any) -> Any:
    """`--max-duration 2h` / `max_duration = "90m"` (or a number of seconds) -> seconds."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("problems", "{problems}", {"problems": [str(exc)]}) from None
    return value


def _checked_by(check: Any) -> Any:
    """An AfterValidator that raises `check`'s ValueError as our one-line problem."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        try:
            check(value)
        except ValueError as exc:
            problem = f"{info.field_name}: {exc}"
            raise PydanticCustomError("problems", "{problems}", {"problems": [problem]}) from None
        return value

    return AfterValidator(validate)


def _rate_and_burst(plan: str | None, rate: float | None, burst: int | None) -> tuple[float, int]:
    """--rate and --burst where given, the plan's (standard by default) where not."""
    plan_rate, plan_burst = PLANS[plan or "standard"]
    return (rate if rate is not None else plan_rate, burst if burst is not None else plan_burst)


NOTIFY_NEEDS_BOTH = (
    "--notify and --notify-bot go together: the dialog to post to and the bot that posts"
)
NO_CREDENTIALS = (
    "no portal credentials: give --webhook (or B24_WEBHOOK_URL), or --portal with "
    "OAuth tokens (--oauth-file / B24_OAUTH_FILE)"
)


class RunConfig(BaseModel):
    """What a run of one input file needs. Constructing it checks every option's type and
    bounds (ConfigError naming each problem); `check()` adds what needs them together."""

    model_config = ConfigDict(extra="forbid")

    input: Path
    report: Annotated[Path | None, Option(job=False)] = Field(
        None,
        description="Report path; format by extension: .csv, .jsonl, .parquet. Default: INPUT's name + .report.csv, next to it.",
    )
    webhook: Annotated[str | None, Option(job=False, env="B24_WEBHOOK_URL")] = Field(
        None, description="Inbound webhook URL https://PORTAL/rest/USER_ID/CODE/ (a secret)."
    )
    portal: Annotated[str | None, Option(env="B24_PORTAL")] = Field(
        None, description="Portal address for OAuth mode, e.g. https://example.bitrix24.com."
    )
    oauth_file: Annotated[Path | None, Option(env="B24_OAUTH_FILE")] = Field(
        None,
        description="JSON token file: client_id, client_secret, access_token, refresh_token (rewritten on refresh).",
    )
    oauth_server: Annotated[str | None, Option(env="B24_OAUTH_SERVER")] = Field(
        None,
        description="OAuth server for refresh (default: the token file's server_endpoint, else https://oauth.bitrix.info).",
    )
    # The job file names the file with bot_tokens_file (cleanup.jobs.schema).
    bot_tokens: Annotated[Path | None, Option(job=False, env="B24_BOT_TOKENS_FILE")] = Field(
        None,
        description='Webhook mode: botId -> botToken, JSON {"456": "token"} or CSV botId,botToken.',
    )
    columns: Annotated[
        dict[str, str],
        BeforeValidator(_columns),
        Option(flag="--column", metavar="FIELD=NAME", parse=parse_column_options),
    ] = Field(
        default_factory=dict,
        description='Map a field to a differently named column: --column botId=Bot (repeatable); in a job file columns = { botId = "Bot" }.',
    )
    sheet: Annotated[str | None, BeforeValidator(_sheet_number), Option()] = Field(
        None,
        description="XLSX sheet name or 1-based number (default: the first sheet with the columns).",
        json_schema_extra={"type": ["string", "integer"]},
    )
    # Re-run a report's rows: those whose status / error is one of these (see inputs.select).
    only: Annotated[
        list[str],
        BeforeValidator(_listed),
        _LISTED_SCHEMA,
        Option(metavar="STATUS[,STATUS...]", parse=partial(_listed_option, "--only")),
    ] = Field(
        default_factory=list,
        description="Re-run a report: send only its rows whose status is one of these (removed, absent, failed, invalid, duplicate, skipped; to_send in a dry run's report); each keeps its row number.",
    )
    only_error: Annotated[
        list[str],
        BeforeValidator(_listed),
        _LISTED_SCHEMA,
        Option(metavar="CODE[,CODE...]", parse=partial(_listed_option, "--only-error")),
    ] = Field(
        default_factory=list,
        description="Re-run a report: send only its rows whose error is one of these codes (with --only: rows matching both).",
    )
    allow_unknown_reactions: Annotated[bool, Option()] = Field(
        False,
        description="Send reaction codes that are not in the documented list (the portal's list may grow).",
    )
    absent_as_failed: Annotated[bool, Option()] = Field(
        False,
        description=(
            "Report a reaction the portal says is not there (REACTION_NOT_FOUND at the first"
            " attempt) as failed, not absent; the run then exits 1 for it."
        ),
    )
    mode: Annotated[Mode, Option()] = Field(
        "auto",
        description="batch, single calls, or auto: batch, falling back to single on ERROR_BATCH_METHOD_NOT_ALLOWED.",
    )
    batch_size: Annotated[int, Option()] = Field(
        MAX_BATCH, ge=1, le=MAX_BATCH, description="Commands per batch request."
    )
    plan: Annotated[PlanName | None, Option(shown_default="standard")] = Field(
        None,
        description="Preset rate/burst: standard 2/s burst 50, enterprise 5/s burst 250.",
    )
    rate: Annotated[float | None, Option()] = Field(
        None,
        ge=0.01,
        description="Requests per second the client allows itself (overrides --plan).",
    )
    burst: Annotated[int | None, Option()] = Field(
        None, ge=1, description="Bucket size: requests allowed in a burst (overrides --plan)."
    )
    concurrency: Annotated[
        int | None, Option(shown_default="from the rate and observed latency")
    ] = Field(None, ge=1, le=64, description="Requests in flight at once.")
    max_retries: Annotated[int, Option()] = Field(
        5,
        ge=0,
        description="Re-sends of each row after network errors, 5xx and garbled answers (its own budget; an outage does not use it up).",
    )
    max_wait: Annotated[float, Option()] = Field(
        900.0,
        ge=0,
        description="Seconds a row may spend waiting (backoff and limits, including the hold before sending while the operating-time budget is spent) before it fails, and seconds an outage is waited out before the run aborts (exit 3).",
    )
    timeout: Annotated[float, Option()] = Field(
        75.0, ge=1, description="Seconds to wait for an answer."
    )
    stop_timeout: Annotated[float, Option()] = Field(
        30.0,
        ge=0,
        description="On Ctrl-C/SIGTERM, seconds to let requests in flight finish before their rows are reported skipped.",
    )
    share: Annotated[float, Option(metavar="FRACTION")] = Field(
        1.0,
        gt=0,
        le=1,
        description="The part of the portal's request rate and burst this run may use (0.5: half), leaving the rest to the other applications on the portal; 1: what the others leave.",
    )
    max_duration: Annotated[
        float | None,
        BeforeValidator(_duration),
        WithJsonSchema({"type": ["string", "number"], "examples": ["90m", "2h"]}),
        Option(metavar="DURATION", cli_type=str),
    ] = Field(
        None,
        gt=0,
        description="Stop sending after this long (90m, 2h, 15s): requests in flight finish, the rows not reached are reported skipped and the run exits 75 (paused); run again, or --resume, to continue.",
    )
    window: Annotated[str | None, _checked_by(Window.parse), Option(cli=False)] = Field(
        None,
        description='Daily hours a job file may send in, such as "22:00-06:00" (across midnight allowed): a run-job started outside it does nothing, one inside stops at its end (paused, exit 75).',
        json_schema_extra={"pattern": r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$"},
    )
    timezone: Annotated[str | None, _checked_by(timezone_of), Option(cli=False)] = Field(
        None,
        description="IANA timezone of window, such as Europe/Berlin. Default: the machine's.",
    )
    # 0 means off: here, once, for the command line, job files and Python alike.
    operating_limit: Annotated[float | None, AfterValidator(_zero_is_off), Option()] = Field(
        480.0,
        ge=0,
        description="The portal's operating-time budget per method, seconds per 10 min (cloud 480; on-premise 0 when off, 420 when on); 0 assumes none, and a refusal teaches the limit.",
    )
    dry_run: Annotated[bool, Option()] = Field(
        False,
        description="Validate and plan only: no calls to the portal. `run` given --report also writes there the report the run would start from (each row to_send, invalid or duplicate).",
    )
    resume: Annotated[bool, Option()] = Field(
        False,
        description="Continue a stopped run: keep the report's final rows and send the rest.",
    )
    allow_insecure_http: Annotated[bool, Option()] = Field(
        False,
        description="Allow plain http:// to a non-loopback host (an on-premise test portal).",
    )
    progress: Annotated[
        ProgressMode, Option(shown_default="auto: a bar on a terminal, log lines otherwise")
    ] = Field("auto", description="Progress display.")
    chunk_rows: Annotated[int, Option(cli=False)] = Field(
        200_000,
        ge=1,
        description="Rows read and validated at a time (memory vs. speed; rarely worth changing).",
    )
    # How a run that finished with only row failures exits: 1 by default; 0 lets a
    # scheduler that retries every non-zero code (Kubernetes) tell them from a crash.
    # Only the code 1 is mapped (cleanup.exits.run_exit_code): an abort stays 3.
    failed_rows_exit_code: Annotated[int, Option(metavar="0|1")] = Field(
        1,
        ge=0,
        le=1,
        description="Exit code of a run that finished with only row failures (failed, invalid or skipped rows): 1, or 0 for a scheduler that would retry it as a crash. Aborts and errors keep their codes.",
    )
    retry_runs: Annotated[int, Option(cli=False)] = Field(
        3,
        ge=0,
        description="run-job: how many later runs re-send a file's rows that failed for a transient reason (network, timeout, 5xx, a limit that never lifted) before the file is archived with what is left; 0 archives it at once.",
    )
    metrics_file: Annotated[Path | None, Option(metavar="PATH")] = Field(
        None,
        description="Write the run's figures in the Prometheus text format to this file (atomically; for node_exporter's textfile collector, name it *.prom). Its folder is created when missing.",
    )
    pushgateway: Annotated[str | None, Option(metavar="URL")] = Field(
        None,
        description="Also push the run's figures to this Prometheus Pushgateway (grouped by job).",
    )
    notify: Annotated[
        str | None,
        BeforeValidator(_dialog_text),
        AfterValidator(_dialog),
        Option(metavar="DIALOG"),
    ] = Field(
        None,
        description="When the run ends, a bot posts its result to this Bitrix24 dialog: chat123 for a group chat, a user id for a private chat (needs --notify-bot).",
        json_schema_extra={"type": ["string", "integer"], "pattern": DIALOG_PATTERN},
    )
    notify_bot: Annotated[int | None, Option(metavar="BOT_ID")] = Field(
        None,
        ge=1,
        description="The bot that posts the run's result (webhook mode: its botToken from the bot tokens file).",
    )
    notify_attach: Annotated[NotifyAttach, Option()] = Field(
        "page",
        description="What the result's message carries: page (the HTML page when one is written, else the report), report, or none.",
    )
    notify_when: Annotated[NotifyWhen, Option()] = Field(
        "always",
        description="always, or problems: post only when the run's exit code is not 0.",
    )
    run_id: str | None = None
    label: str | None = None  # shown in logs/HTML (a job file's name)
    # Where the webhook was read from when not typed (never its value): ("env", NAME) or
    # ("file", PATH), as a job file names it; the HTML page's commands read it from there.
    webhook_source: tuple[Literal["env", "file"], str] | None = None
    # Not options of `run`: an undo chooses rows by number (--rows), and continues its
    # report with some rows sent again, their lines replaced (--only-error); see run.undo.
    rows: tuple[RowRanges, ...] = ()
    redo_rows: frozenset[int] = frozenset()
    # run-job's retry run (1, 2 ...; 0: not one): continues the report, re-sending exactly
    # `redo_rows` (its rows that failed transiently) and keeping every other line.
    retry_run: int = 0

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(problems_of(exc)) from None

    @property
    def report_path(self) -> Path:
        return self.report or default_report_path(self.input)

    @property
    def choice(self) -> RowChoice:
        return RowChoice(tuple(self.only), tuple(self.only_error), self.rows)

    @property
    def effective_rate(self) -> tuple[float, int]:
        return _rate_and_burst(self.plan, self.rate, self.burst)

    @property
    def time_window(self) -> Window | None:
        return Window.parse(self.window, self.timezone) if self.window else None

    @classmethod
    def pacing_limits(cls, options: Mapping[str, Any]) -> tuple[float, int, float | None]:
        """The rate, burst and operating-time limit (None: off) that these RunConfig fields
        give, before a RunConfig exists (a portal is paced for all its job files first);
        a field not given has its declared default."""
        limit = options.get("operating_limit", cls.model_fields["operating_limit"].default)
        rate, burst = _rate_and_burst(
            options.get("plan"), options.get("rate"), options.get("burst")
        )
        return rate, burst, _zero_is_off(limit)

    def check(self) -> None:
        """What a run needs beyond each option's own rules, checked when constructed:
        credentials of one kind, a report format, the rows a re-run chooses, a report that is
        not the input. Raises ConfigError listing every problem."""
        problems: list[str] = []
        if self.webhook and (self.portal or self.oauth_file):
            problems.append("give either a webhook or OAuth (portal + token file), not both")
        if not self.dry_run and not (self.webhook or self.portal):
            problems.append(NO_CREDENTIALS)
        try:
            report_format(self.report_path)
        except ConfigError as exc:
            problems.extend(exc.problems)
        problems.extend(self.choice.problems())
        if (self.notify is None) != (self.notify_bot is None):
            problems.append(NOTIFY_NEEDS_BOTH)
        writes_report = not self.dry_run or self.report is not None  # a dry run's too
        if writes_report and _writes_over(self.report_path, self.input):
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
        out: dict[str, Any] = self.model_dump(mode="json", exclude={"webhook"})
        out["auth"] = "webhook" if self.webhook else "oauth" if self.portal else "none"
        out["rate"], out["burst"] = rate, burst
        out["report"] = str(self.report_path)
        out["rows"] = [str(r) for r in self.rows]
        out["redo_rows"] = len(self.redo_rows)  # how many: the rows are in the report
        return out


def _writes_over(report: Path, input_path: Path) -> bool:
    """Whether the report, or a file written beside it, is the input (a report re-run
    with --report set to its own name)."""
    written = [
        report,
        *(report.with_name(report.name + s) for s in SIDECARS),
        *(state_file(report, s) for s in STATE_FILES),
    ]
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
        norm = {normalise_name(h or ""): h for h in reader.fieldnames or []}
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
