"""`check-job`: what a job file's next run would use, checked without removing anything,
and one cheap authenticated question to the portal."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanup.clock import Clock, SystemClock
from cleanup.errors import ConfigError, FatalAPIError
from cleanup.jobs.inbox import list_sources
from cleanup.jobs.schema import JobFile
from cleanup.jobs.state import JobState
from cleanup.outputs.journal import fingerprint
from cleanup.pacing.retry import RetryPolicy
from cleanup.redact import redact
from cleanup.run.config import NO_CREDENTIALS, RunConfig, load_bot_tokens

if TYPE_CHECKING:
    from cleanup.portal.classify import Outcome
    from cleanup.portal.transport import Answer, Transport

# After a limit refusal the probe asks again, twice at most and waiting 10 s at most each
# time (a Retry-After beyond is cut short): a scheduler's check must not hang.
PROBE_RETRY = RetryPolicy(max_retries=2)
PROBE_LONGEST_WAIT = 10.0


@dataclass
class CheckResult:
    lines: list[str] = field(default_factory=list)


def check_job_file(
    job: JobFile, base: dict[str, Any], *, clock: Clock | None = None
) -> CheckResult:
    """Validate what a run would use and ask the portal one cheap question. Sends no delete,
    moves and writes nothing (an OAuth refresh may rewrite the token file, as a run would).

    Raises ConfigError (exit 2) for configuration problems, FatalAPIError (exit 3) when the
    portal rejects the credentials or cannot be reached.
    """
    out = CheckResult()
    problems: list[str] = []
    # The config a run would get, for a stand-in input: the checks and the credentials.
    config = RunConfig(input=Path("check.csv"), report=job.reports / "check.report.csv", **base)
    try:
        config.check()
    except ConfigError as exc:
        problems.extend(exc.problems)
    tokens: dict[int, str] | None = None
    if config.bot_tokens is not None:
        try:
            tokens = load_bot_tokens(Path(config.bot_tokens))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    out.lines.append(f"ok: job file {job.path} (job {job.name!r})")
    if tokens is not None:
        out.lines.append(f"ok: bot tokens for {len(tokens)} bot(s) in {config.bot_tokens}")
    if not config.dry_run or config.webhook or config.portal:
        out.lines.extend(check_portal(config, clock or SystemClock()))
    out.lines.extend(_describe_sources(job))
    return out


def check_portal(config: RunConfig, clock: Clock) -> list[str]:
    """Ask `profile` (or an empty batch), then `scope`: the credentials and the imbot scope."""
    from cleanup.pacing.throttle import Throttle
    from cleanup.portal.transport import HTTPTransport

    auth = config.make_auth()
    if auth is None:
        raise ConfigError(NO_CREDENTIALS)
    rate, burst = config.effective_rate
    transport = HTTPTransport(
        auth,
        Throttle(rate, burst),
        timeout=min(config.timeout, 30.0),
        pool_size=1,
        allow_insecure_http=config.allow_insecure_http,
    )
    try:
        answer = _ask_credentials(transport, clock)
        user = answer.body.get("result") if isinstance(answer.body, dict) else None
        user_id = user.get("ID") if isinstance(user, dict) else None
        who = f" (user {user_id})" if user_id else ""
        lines = [f"ok: {auth.mode} credentials accepted by {auth.host}{who}"]
        lines.append(_check_scope(transport, auth.mode))
    finally:
        transport.close()
    if config.notify is not None and config.notify_bot is not None:
        from cleanup.outputs.notify import check_notifier

        line, problem = check_notifier(config, clock=clock)
        if problem is not None:
            raise ConfigError([problem])
        lines.append(line)
    return lines


def _ask_credentials(transport: Transport, clock: Clock) -> Answer:
    from cleanup.portal.classify import OK, Kind

    answer, outcome = _call(transport, "profile", clock)
    if outcome.error == "ERROR_METHOD_NOT_FOUND":
        # A portal without `profile` (checked before auth, so it proves nothing): ask an
        # empty batch instead, which every portal the job can use must take.
        answer, outcome = _call(transport, "batch", clock)
        refused = (Kind.FATAL, Kind.EXPIRED_TOKEN, Kind.TRANSIENT, Kind.RATE_LIMITED)
        if outcome.kind not in refused:
            outcome = OK  # past the credentials check, even if it disliked the empty batch
    if outcome.kind is not Kind.OK:
        raise FatalAPIError(
            outcome.error or f"HTTP_{answer.status}",
            outcome.description,
            outcome.hint or "the credentials were not accepted",
        )
    return answer


def _call(transport: Transport, method: str, clock: Clock) -> tuple[Answer, Outcome]:
    """One question, asked again after a limit refusal (PROBE_RETRY)."""
    from cleanup.errors import NetworkError
    from cleanup.portal.classify import Kind, classify_answer

    refusals = 0
    while True:
        try:
            answer = transport.batch({}) if method == "batch" else transport.call(method, {})
        except NetworkError as exc:
            raise FatalAPIError(
                "PORTAL_UNREACHABLE", redact(exc), "check the address and the network"
            ) from None
        outcome = classify_answer(answer.status, answer.body, context="batch")
        if outcome.kind is not Kind.RATE_LIMITED or refusals >= PROBE_RETRY.max_retries:
            return answer, outcome
        refusals += 1
        wait = min(PROBE_RETRY.limit_wait(refusals, answer.retry_after), PROBE_LONGEST_WAIT)
        if not clock.sleep(wait):
            return answer, outcome  # stopped meanwhile


def _check_scope(transport: Transport, mode: str) -> str:
    """The imbot scope: without it every delete fails. Judged only when `scope` answers a list."""
    from cleanup.errors import NetworkError

    try:
        scope = transport.call("scope", {})
    except NetworkError:
        scope = None
    scopes = (
        scope.body.get("result") if scope is not None and isinstance(scope.body, dict) else None
    )
    if not (isinstance(scopes, list) and all(isinstance(s, str) for s in scopes)):
        return "note: the scope list was not available; imbot not checked"
    if "imbot" not in scopes:
        raise FatalAPIError(
            "insufficient_scope",
            f"the {mode} has the scopes {', '.join(scopes) or '(none)'}",
            "Add the 'imbot' scope to the webhook or application",
        )
    return "ok: scope imbot granted"


def _describe_sources(job: JobFile) -> list[str]:
    state = JobState(job.state_path) if job.state_path.exists() else None
    # A file that comes of age within the wait a run allows is one the next run takes.
    sources, notes = list_sources(job, settle=lambda _seconds: True)
    new = resume = done = 0
    for source in sources:
        sha = fingerprint(source.path)["sha256"]
        entry = state.files.get(sha) if state else None
        if entry is None:
            new += 1
        elif entry.get("status") == "running":
            resume += 1
        else:
            done += 1
    where = f"inbox {job.inbox}" if job.inbox is not None else f"input {job.input}"
    lines = [
        f"ok: {where}: {len(sources)} spreadsheet(s): {new} new, {resume} to resume, "
        f"{done} already processed"
    ]
    lines += [f"note: {n}" for n in notes]
    lines.append(
        f"ok: reports go to {job.reports}" + (f", inputs to {job.archive}" if job.archive else "")
    )
    return lines
