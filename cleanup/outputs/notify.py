"""Tell a Bitrix24 chat how a run ended: one message from a bot, and the run's page or report.

`notify_run(summary, config, page=...)` is called by `cleanup.outputs.after.write_outputs`,
the one place that follows a run (`run`, `undo`, and each file of `run-job`), once the page
is written. The bot posts one message with
`imbot.v2.Chat.Message.send` (the input file, the portal's host, how the run ended, its
counts, its top error codes with what to do, how long it took, the rows left and the command
to re-run the failed ones), then the file with `imbot.v2.File.upload`. Both calls go through
the deletes' transport, pacing, retry policy and credentials (the bot's botToken in webhook
mode; an OAuth application's bot needs none).

A notification never changes the run's result: what became of it (a `Notification`) goes on a
copy of the summary (`notification`) and into the summary file, is counted in the metrics
(`cleanup.outputs.metrics.notification_failures`) and, when it failed, logged as one line
naming the notification and the portal's code. Nothing secret is posted: the text names the
portal by its host and is masked again; a file that still shows a secret is not attached.
"""

from __future__ import annotations

import base64
import logging
import math
import random
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cleanup.clock import Clock, SystemClock
from cleanup.errors import CleanupError, ConfigError
from cleanup.exits import EXIT_OK
from cleanup.outputs.commands import next_commands
from cleanup.outputs.html import advice
from cleanup.outputs.summary import write_summary
from cleanup.pacing.retry import RetryPolicy
from cleanup.portal.classify import OK, Kind, Outcome, classify_answer
from cleanup.redact import redact
from cleanup.results import Notification, RunSummary, counts_by_status
from cleanup.run.config import NOTIFY_NEEDS_BOTH, RunConfig, load_bot_tokens
from cleanup.run.portals import PortalPacing

log = logging.getLogger("cleanup")

SEND_METHOD = "imbot.v2.Chat.Message.send"
UPLOAD_METHOD = "imbot.v2.File.upload"
# The documented limit of File.upload's `content`: "100 MB". Whether of the file or of its
# base64 text is not said, so the base64 text is held to it (the stricter reading).
UPLOAD_LIMIT = 100 * 1024 * 1024
MESSAGE_LIMIT = 20_000  # characters; the portal cuts a longer text with " (...)"
TOP_ERRORS = 3
# A notification waits less than a run's rows may: a stopped run should end soon. Its
# message's answer is awaited 30 s at most (less if --timeout says so); an upload's, 1 s
# more per MB it carries (a 133 MB body: about 2.5 minutes).
NOTIFY_RETRY = RetryPolicy(max_retries=3, max_wait=60.0)
SEND_TIMEOUT = 30.0
UPLOAD_BYTES_PER_SECOND = 1024 * 1024
# The error when the webhook mode's tokens file has no token for the notifying bot.
NO_BOT_TOKEN = "NO_BOT_TOKEN"
NETWORK_ERROR = "NETWORK_ERROR"
STOPPED = "STOPPED"


# ---------------------------------------------------------------------- when and what


def wanted(config: RunConfig, summary: RunSummary) -> bool:
    """Whether this run posts: a notification asked for, a run that sent (not a dry run),
    and with --notify-when problems, an exit code other than 0."""
    if config.notify is None or config.notify_bot is None or summary.dry_run:
        return False
    return config.notify_when == "always" or summary.exit_code != EXIT_OK


def chosen_file(config: RunConfig, summary: RunSummary, page: Path | None) -> Path | None:
    """The file that goes with the message: the page when one was written (else the
    report) for `page`, the report for `report`, nothing for `none`."""
    report = Path(summary.report) if summary.report else None
    if config.notify_attach == "none":
        return None
    if config.notify_attach == "page" and page is not None:
        return page
    return report


def portal_host(config: RunConfig) -> str:
    """The portal's host (and port, if given): never a webhook's path, which holds its code."""
    address = config.webhook or config.portal or ""
    parts = urlsplit(address if "//" in address else "//" + address)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def compose(summary: RunSummary, config: RunConfig, *, file_note: str = "") -> str:
    """The message's text: plain lines, the names as given, nothing secret (masked again).
    A job file's run is named first (the summary's label)."""
    by_status = counts_by_status(summary.by_status, summary.statuses)
    lines = [
        summary.title(),
        f"Portal: {portal_host(config)}",
        f"Ended: {summary.state} (exit code {summary.exit_code}){_why(summary)}",
        f"Rows: {summary.rows} — "
        + ", ".join(f"{status} {count}" for status, count in by_status.items()),
    ]
    lines += _top_errors(summary.by_error)
    lines.append(f"Took: {_duration(summary.elapsed_s)}")
    if summary.rows_not_done:
        lines.append(f"Rows left: {summary.rows_not_done}")
    if summary.paused:  # skipped rows here are not a problem: the next run sends them
        lines.append(
            f"Paused: time is up ({summary.paused}); the {summary.rows_left} skipped row(s)"
            " were not sent yet, and the next run continues with them"
        )
    for command in next_commands(summary):
        if command.key in ("rerun", "undo-again"):
            lines += [f"{command.title}:", command.line]
    if summary.report:
        lines.append(f"Report: {summary.report}")
    if file_note:
        lines.append(file_note)
    text = redact("\n".join(lines))
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 6] + " (...)"


def _why(summary: RunSummary) -> str:
    if summary.aborted:
        return f": {summary.aborted}"
    if summary.interrupted:
        return f": stopped by {summary.interrupted}"
    return ""


def _top_errors(counts: Mapping[str, int]) -> list[str]:
    """The most frequent error codes with what to do: the HTML page's advice, one table."""
    by_error = dict(Counter(counts).most_common())
    if not by_error:
        return []
    lines = ["Top errors:"]
    for code, count in list(by_error.items())[:TOP_ERRORS]:
        meaning, todo = advice("failed", str(code))
        lines.append(f"• {code} × {count}: {meaning} What to do: {todo}")
    if len(by_error) > TOP_ERRORS:
        lines.append(f"(and {len(by_error) - TOP_ERRORS} more codes: see the report)")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ---------------------------------------------------------------------- posting


class Poster:
    """Posts as one bot to one dialog, through the deletes' transport and pacing: each call
    retried by the retry policy (limit refusals waited for, unknown outcomes re-sent a few
    times), its answer read by the one classifier."""

    def __init__(
        self,
        config: RunConfig,
        *,
        pacing: PortalPacing | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy = NOTIFY_RETRY,
    ) -> None:
        from cleanup.portal.transport import HTTPTransport

        auth = config.make_auth()
        if auth is None or config.notify is None or config.notify_bot is None:
            raise CleanupError("a notification needs portal credentials, --notify and --notify-bot")
        self.clock = clock or SystemClock()
        if pacing is None:
            rate, burst = config.effective_rate
            pacing = PortalPacing.new(rate, burst, config.operating_limit, self.clock)
        self.timeout = min(config.timeout, SEND_TIMEOUT)
        self.transport = HTTPTransport(
            auth,
            pacing.throttle,
            pacing.budget,
            timeout=self.timeout,
            pool_size=1,
            allow_insecure_http=config.allow_insecure_http,
        )
        self.policy = policy
        self.base: dict[str, Any] = {"botId": config.notify_bot, "dialogId": config.notify}
        if auth.needs_bot_tokens:
            token = _bot_token(config, config.notify_bot)
            if token is not None:
                self.base["botToken"] = token
        self.rng = random.Random()

    def post(self, method: str, fields: Mapping[str, Any], *, size: int = 0) -> tuple[Any, Outcome]:
        """(the answer's `result`, the outcome) of one call, after its retries. `size`: the
        bytes the call carries (an upload), which give the portal more time to answer."""
        if "botToken" not in self.base and self.transport.auth.needs_bot_tokens:
            return None, Outcome(Kind.BOT_FAILED, NO_BOT_TOKEN, "no botToken for the bot")
        connect, _read = self.transport.timeout
        self.transport.timeout = (connect, self.timeout + size / UPLOAD_BYTES_PER_SECOND)
        return self._with_retries(method, {**self.base, "fields": dict(fields)})

    def close(self) -> None:
        self.transport.close()

    def _with_retries(self, method: str, params: dict[str, Any]) -> tuple[Any, Outcome]:
        from cleanup.errors import NetworkError, Stopped

        retries = refusals = blocked = 0
        waited = 0.0
        while True:
            try:
                answer = self.transport.call(method, params)
            except NetworkError as exc:
                outcome = Outcome(Kind.TRANSIENT, NETWORK_ERROR, str(exc))
                retry_after = None
            except Stopped:
                return None, Outcome(Kind.FATAL, STOPPED, "the run was stopped")
            else:
                outcome = classify_answer(answer.status, answer.body, context="single")
                retry_after = answer.retry_after
                if outcome.kind is Kind.OK:
                    return _delivered(answer.body.get("result"))
            if outcome.kind is Kind.RATE_LIMITED:
                refusals += 1
                wait = self.policy.limit_wait(refusals, retry_after)
            elif outcome.kind is Kind.OPERATING_LIMIT:
                blocked += 1
                wait = self.policy.operating_wait(blocked, None, retry_after)
            elif outcome.kind is Kind.TRANSIENT and retries < self.policy.max_retries:
                retries += 1
                wait = self.policy.backoff(retries, self.rng)
            else:
                return None, outcome
            waited += wait
            if waited > self.policy.max_wait or not self.clock.sleep(wait):
                return None, outcome


def _delivered(result: Any) -> tuple[Any, Outcome]:
    """Both methods answer an object (`{"id": ...}`, `{"file": ..., "messageId": ...}`); a
    portal answering `true` is taken as done too, `false` or nothing as not delivered."""
    if result is None or result is False:
        return result, Outcome(
            Kind.ROW_FAILED, "UNEXPECTED_RESULT", f"the portal answered {result!r}"
        )
    return result, OK


def _bot_token(config: RunConfig, bot_id: int) -> str | None:
    if config.bot_tokens is None:
        return None
    return load_bot_tokens(config.bot_tokens).get(bot_id)


# ---------------------------------------------------------------------- the one call


def notify_run(
    summary: RunSummary,
    config: RunConfig,
    *,
    page: Path | None = None,
    pacing: PortalPacing | None = None,
    clock: Clock | None = None,
    upload_limit: int | None = None,
) -> RunSummary:
    """Post the run's result if asked for. Returns the summary with what became of it
    (`notification`, also written to the summary file); the same summary when none was
    asked for. Never raises for the notification's own problems, and never changes the exit
    code. `upload_limit`: bytes of base64 text a file may take (default UPLOAD_LIMIT, read
    when called: tests lower it to use a small file)."""
    if config.notify is None or config.notify_bot is None or summary.dry_run:
        return summary
    if not wanted(config, summary):
        delivery = Notification(dialog=config.notify, bot_id=config.notify_bot, status="not_needed")
    else:
        try:
            delivery = _deliver(
                summary,
                config,
                chosen_file(config, summary, page),
                pacing,
                clock,
                UPLOAD_LIMIT if upload_limit is None else upload_limit,
            )
        except CleanupError as exc:  # the bot tokens file unreadable now, say
            delivery = Notification(
                dialog=config.notify,
                bot_id=config.notify_bot,
                status="failed",
                error=redact(exc)[:200],
            )
    summary = summary.model_copy(update={"notification": delivery})
    _log(delivery)
    if summary.report:  # the summary file records it too
        try:
            write_summary(Path(summary.report), summary)
        except OSError as exc:
            log.error("could not record the notification in the summary: %s", redact(exc))
    return summary


def delivery_line(summary: RunSummary) -> str | None:
    """The notification's outcome as one line of the printed summary."""
    n = summary.notification
    if not n:
        return None
    where = f"{n.dialog} (bot {n.bot_id})"
    if n.status == "not_needed":
        return f"notification: not posted to {where}: the run ended with 0 (--notify-when problems)"
    if n.status == "failed":
        return f"notification: FAILED to post to {where}: {n.error}"
    if n.attachment == "sent":
        file = "with"
    elif n.attachment == "failed":
        file = f"WITHOUT (upload failed: {n.attachment_error})"
    else:
        file = f"without a file ({n.attachment})"
    name = f" {n.attachment_name}" if n.attachment_name else ""
    return f"notification: posted to {where} {file}{name}".rstrip()


def _deliver(
    summary: RunSummary,
    config: RunConfig,
    file: Path | None,
    pacing: PortalPacing | None,
    clock: Clock | None,
    upload_limit: int,
) -> Notification:
    if config.notify is None or config.notify_bot is None:
        raise ConfigError(NOTIFY_NEEDS_BOTH)
    content, attach = _attachment(file, upload_limit)
    note = ""
    if attach == "too_large" and file is not None:
        note = f"The file is too large to attach ({_size(file)}); it is at {file}"
    elif attach in ("missing", "withheld") and file is not None:
        note = f"The file {file.name} could not be attached ({attach}); see {file}"
    base = Notification(
        dialog=config.notify, bot_id=config.notify_bot, status="failed", attachment=attach
    )
    if file is not None:
        base = base.model_copy(update={"attachment_name": file.name})
    poster = Poster(config, pacing=pacing, clock=clock)
    try:
        text = compose(summary, config, file_note=note)
        result, outcome = poster.post(SEND_METHOD, {"message": text})
        if outcome.kind is not Kind.OK:
            unsent = "not_sent" if base.attachment == "pending" else base.attachment
            return base.model_copy(
                update={"error": outcome.error or "UNKNOWN_ERROR", "attachment": unsent}
            )
        sent = base.model_copy(update={"status": "sent", "message_id": _message_id(result)})
        if content is None or file is None:
            return sent
        caption = f"reaction-cleanup: {file.name}"
        fields = {"name": file.name, "content": content, "message": caption}
        _result, outcome = poster.post(UPLOAD_METHOD, fields, size=len(content))
        if outcome.kind is not Kind.OK:
            return sent.model_copy(
                update={"attachment": "failed", "attachment_error": outcome.error}
            )
        return sent.model_copy(update={"attachment": "sent"})
    finally:
        poster.close()


def _attachment(file: Path | None, limit: int) -> tuple[str | None, str]:
    """(the file's base64 text, or None; what becomes of the attachment)."""
    if file is None:
        return None, "none"
    try:
        size = file.stat().st_size
        if 4 * math.ceil(size / 3) > limit:
            return None, "too_large"
        data = file.read_bytes()
    except OSError:
        return None, "missing"
    if _holds_secret(data):
        return None, "withheld"
    return base64.b64encode(data).decode("ascii"), "pending"


def _holds_secret(data: bytes) -> bool:
    """Belt and braces: the page and the report are masked when written; a file that still
    shows a known secret (or a secret's pattern) is not posted."""
    text = data.decode("utf-8", errors="replace")
    return redact(text) != text


def _message_id(result: Any) -> int | None:
    """`{"id": 789, ...}` as documented; a bare number as some methods answer."""
    value = result.get("id") if isinstance(result, dict) else result
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _size(file: Path) -> str:
    return f"{file.stat().st_size / (1024 * 1024):.1f} MB"


def _log(delivery: Notification) -> None:
    """One line for a failure, naming the notification and the portal's code."""
    where = f"notification to {delivery.dialog} by bot {delivery.bot_id}"
    if delivery.status == "failed":
        log.error("%s failed: %s; the run's result stands", where, delivery.error)
    elif delivery.attachment == "failed":
        log.error(
            "%s: the file %s was not attached: %s; the message was posted",
            where,
            delivery.attachment_name,
            delivery.attachment_error,
        )
    elif delivery.status == "sent":
        log.info("%s: posted (message %s)", where, delivery.message_id)


# ---------------------------------------------------------------------- check-job

# What an empty message's answer says about the notifying bot (check-job posts nothing: the
# portal refuses an empty message with EMPTY_MESSAGE once the bot's checks have passed).
_BOT_PROBLEMS = {
    "BOT_NOT_FOUND": "there is no such bot on the portal",
    "BOT_OWNERSHIP_ERROR": "its botToken is wrong, or another application registered it",
    "BOT_TOKEN_NOT_SPECIFIED": "the portal got no botToken for it",
    "BOT_ID_REQUIRED": "the portal did not accept the bot id",
    NO_BOT_TOKEN: "the bot tokens file has no token for it",
    "ACCESS_DENIED": "it is not a member of the dialog: add the bot to the chat",
}


def check_notifier(config: RunConfig, *, clock: Clock | None = None) -> tuple[str, str | None]:
    """(a line for check-job, a problem or None): whether the notifying bot exists and owns
    its token, asked with an empty message that the portal refuses, so nothing is posted."""
    if config.notify is None or config.notify_bot is None:
        raise ConfigError(NOTIFY_NEEDS_BOTH)
    who = f"notify_bot {config.notify_bot} (notify {config.notify})"
    poster = Poster(config, clock=clock, policy=RetryPolicy(max_retries=2, max_wait=20.0))
    try:
        _result, outcome = poster.post(SEND_METHOD, {})
    finally:
        poster.close()
    if outcome.error == "EMPTY_MESSAGE":
        return f"ok: {who} exists and owns its token (nothing posted)", None
    if outcome.error in _BOT_PROBLEMS:
        return "", f"{who}: {outcome.error}: {_BOT_PROBLEMS[outcome.error]}"
    if outcome.kind is Kind.OK:
        return f"note: {who}: the portal took an empty message", None
    return f"note: {who} not checked: {outcome.error} {redact(outcome.description)}".rstrip(), None
