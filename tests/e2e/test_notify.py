"""Issue 19, part 1: a bot tells the chat how a run ended.

Each test drives the real CLI (`run`, `undo`, `run-job`, `check-job`) against the sandbox
portal over HTTP, and reads what the bot posted from the sandbox (its state, and once over
its debug endpoint GET /_sandbox/posts).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import Result

from cleanup.outputs import notify
from cleanup.results import RunSummary
from cleanup.run.config import RunConfig
from cleanup.sandbox import PortalState, SandboxPortal
from cleanup.sandbox.server import POSTS_PATH
from tests.helpers.cli import portal_args, write_rows
from tests.helpers.clock import FakeClock
from tests.helpers.processes import lines_of, sigterm_when

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]

BOT = 456  # the bot whose reactions go
NOTIFIER = 700  # the bot that posts
CHAT = 50  # a group chat the notifier is in
OTHER_CHAT = 51  # a group chat it is not in
FAST = ("--rate", "1000", "--burst", "1000")


def make_portal(portal_factory: PortalFactory, n: int = 6) -> SandboxPortal:
    """Reactions of bot 456 on messages 1..n; message 99 sits in a chat bot 456 is not in
    (its row fails with ACCESS_DENIED). The notifier is a member of chat 50 only."""
    state = PortalState.build([(BOT, m, "like") for m in range(1, n + 1)])
    state.add_message(99, 99, members=[])
    state.add_reaction(BOT, 99, "like")
    state.add_bot(NOTIFIER)
    state.add_chat(CHAT, [NOTIFIER, 1])
    state.add_chat(OTHER_CHAT, [1])
    return portal_factory(state=state)


def rows(n: int = 6, *, failing: bool = True) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [(BOT, m, "like") for m in range(1, n + 1)]
    return [*out, (BOT, 99, "like")] if failing else out


def notify_args(dialog: str = f"chat{CHAT}", *extra: str) -> list[str]:
    return ["--notify", dialog, "--notify-bot", str(NOTIFIER), *extra]


def summary_of(report: Path) -> dict[str, Any]:
    return dict(json.loads(report.with_name(report.name + ".summary.json").read_text()))


def messages(portal: SandboxPortal) -> list[dict[str, Any]]:
    return [p for p in portal.state.posted() if p["kind"] == "message"]


def files(portal: SandboxPortal) -> list[dict[str, Any]]:
    return [p for p in portal.state.posted() if p["kind"] == "file"]


# --------------------------------------------------------------------------- run


def test_the_message_tells_the_run_and_the_page_goes_with_it(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "cleanup-list.csv", rows())
    page = tmp_path / "review.html"
    result = run_cli(
        "run", src, *portal_args(portal, tmp_path), *FAST, "--html", page, *notify_args()
    )
    assert result.exit_code == 1, result.stderr
    [message] = messages(portal)
    assert message["dialogId"] == f"chat{CHAT}" and message["botId"] == NOTIFIER
    text = message["message"]
    assert "cleanup-list.csv" in text
    assert f"Portal: 127.0.0.1:{portal.url.rsplit(':', 1)[1].strip('/')}" in text
    assert "Ended: failed (exit code 1)" in text
    assert "Rows: 7 — removed 6, absent 0, failed 1, invalid 0, duplicate 0, skipped 0" in text
    assert "• ACCESS_DENIED × 1: The bot is not a member of the chat" in text
    assert "What to do: Add the bot to that chat" in text  # the HTML page's advice
    assert "Rows left: 1" in text
    report = tmp_path / "cleanup-list.report.csv"
    rerun = (
        f'reaction-cleanup run {report} --only failed --webhook "$B24_WEBHOOK_URL"'
        f" --bot-tokens {tmp_path / 'bot_tokens.json'}"
    )
    assert "Re-run the failed rows:\n" + rerun in text  # never the webhook itself
    assert "Took: " in text
    [file] = files(portal)
    assert file["name"] == "review.html" and file["dialogId"] == f"chat{CHAT}"
    assert file["content"] == page.read_bytes()
    outcome = summary_of(report)["notification"]
    assert outcome["status"] == "sent" and outcome["attachment"] == "sent"
    assert outcome["message_id"] == message["id"]
    assert "notification: posted to chat50 (bot 700) with review.html" in result.stderr
    # The sandbox's debug endpoint shows the same posts, the file as base64.
    over_http = requests.get(portal.url.rstrip("/") + POSTS_PATH, timeout=10).json()
    assert [p["kind"] for p in over_http] == ["message", "file"]
    assert base64.b64decode(over_http[1]["content"]) == page.read_bytes()


def test_the_report_goes_when_asked_and_without_a_page(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows())
    args = ["run", src, *portal_args(portal, tmp_path), *FAST]
    result = run_cli(
        *args, *notify_args(), "--html", tmp_path / "p.html", "--notify-attach", "report"
    )
    assert result.exit_code == 1, result.stderr
    report = tmp_path / "in.report.csv"
    [file] = files(portal)
    assert file["name"] == "in.report.csv" and file["content"] == report.read_bytes()
    # page (the default) without --html: the report goes.
    other = tmp_path / "second.report.csv"
    result = run_cli(*args, "--report", other, *notify_args())
    assert result.exit_code == 1, result.stderr
    assert files(portal)[-1]["content"] == other.read_bytes()
    # none: the message only.
    result = run_cli(
        *args, "--report", tmp_path / "3.report.csv", *notify_args(), "--notify-attach", "none"
    )
    assert len(files(portal)) == 2 and len(messages(portal)) == 3


def test_problems_only_posts_nothing_after_a_clean_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows(failing=False))
    result = run_cli(
        "run", src, *portal_args(portal, tmp_path), *FAST,
        *notify_args(), "--notify-when", "problems",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert portal.state.posted() == []
    assert summary_of(tmp_path / "in.report.csv")["notification"]["status"] == "not_needed"
    # The same option after a run with a failed row: it posts.
    src = write_rows(tmp_path / "again.csv", rows(failing=True))
    result = run_cli(
        "run", src, *portal_args(portal, tmp_path), *FAST,
        *notify_args(), "--notify-when", "problems",
    )  # fmt: skip
    assert result.exit_code == 1
    assert len(messages(portal)) == 1


def test_a_bot_outside_the_chat_leaves_the_exit_code_and_says_so(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows(failing=False))
    metrics = tmp_path / "m.prom"
    result = run_cli(
        "run", src, *portal_args(portal, tmp_path), *FAST,
        *notify_args(f"chat{OTHER_CHAT}"), "--metrics-file", metrics,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr  # the run's own result
    assert "notification to chat51 by bot 700 failed: ACCESS_DENIED" in result.stderr
    assert portal.state.posted() == []
    outcome = summary_of(tmp_path / "in.report.csv")["notification"]
    assert outcome["status"] == "failed" and outcome["error"] == "ACCESS_DENIED"
    assert outcome["attachment"] == "not_sent"
    assert 'reaction_cleanup_notification_failures{job="in"} 1.0' in metrics.read_text()


def test_a_bot_that_does_not_exist_is_a_failed_notification_too(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows())
    result = run_cli(
        "run", src, *portal_args(portal, tmp_path), *FAST,
        "--notify", f"chat{CHAT}", "--notify-bot", "4242",
    )  # fmt: skip
    assert result.exit_code == 1  # as without the notification: a row failed
    # No token for bot 4242 in the tokens file: nothing is sent for it.
    assert "notification to chat50 by bot 4242 failed: NO_BOT_TOKEN" in result.stderr


def test_a_file_over_the_limit_is_named_instead_of_sent(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows())
    monkeypatch.setattr(notify, "UPLOAD_LIMIT", 64)  # bytes of base64: the report is larger
    result = run_cli("run", src, *portal_args(portal, tmp_path), *FAST, *notify_args())
    assert result.exit_code == 1, result.stderr
    assert files(portal) == []
    [message] = messages(portal)
    report = tmp_path / "in.report.csv"
    assert f"The file is too large to attach (0.0 MB); it is at {report}" in message["message"]
    assert summary_of(report)["notification"]["attachment"] == "too_large"


def test_the_portal_refusing_a_large_file_leaves_the_message_and_the_exit_code(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    portal.state.upload_limit = 10  # the portal's own check: FILE_TOO_LARGE
    src = write_rows(tmp_path / "in.csv", rows())
    result = run_cli("run", src, *portal_args(portal, tmp_path), *FAST, *notify_args())
    assert result.exit_code == 1, result.stderr
    assert len(messages(portal)) == 1 and files(portal) == []
    assert "the file in.report.csv was not attached: FILE_TOO_LARGE" in result.stderr
    outcome = summary_of(tmp_path / "in.report.csv")["notification"]
    assert outcome["status"] == "sent" and outcome["attachment_error"] == "FILE_TOO_LARGE"


def test_an_aborted_run_still_posts(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows())
    portal.config.force_error = (401, "NO_AUTH_FOUND", "Wrong authorization data")
    args = ["run", src, *portal_args(portal, tmp_path), *FAST, *notify_args()]
    result = run_cli(*args, "--max-retries", "0")
    assert result.exit_code == 3, result.stderr
    # The portal refused everything, the notification too: said, and the code stays 3.
    assert "notification to chat50 by bot 700 failed: NO_AUTH_FOUND" in result.stderr
    portal.config.force_error = None
    # A run aborted by the portal's refusal of its bot is told in the chat.
    portal.state.bots.pop(BOT)
    result = run_cli(*args, "--report", tmp_path / "b.report.csv")
    [message] = messages(portal)
    assert "BOT_NOT_FOUND" in message["message"]
    assert f"(exit code {result.exit_code})" in message["message"]


def test_a_run_stopped_by_sigterm_posts_how_it_ended(
    portal_factory: PortalFactory, tmp_path: Path
) -> None:
    from cleanup.sandbox import PortalConfig

    state = PortalState.build([(BOT, m, "like") for m in range(1, 31)])
    state.add_bot(NOTIFIER)
    state.add_chat(CHAT, [NOTIFIER])
    portal = portal_factory(state=state, config=PortalConfig(latency=0.15))
    src = write_rows(tmp_path / "in.csv", [(BOT, m, "like") for m in range(1, 31)])
    args = [*portal_args(portal, tmp_path), "--mode", "single", "--concurrency", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleanup", "run", str(src), *args, *notify_args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    report = tmp_path / "in.report.csv"
    err = sigterm_when(proc, lambda: lines_of(report) >= 4)
    assert proc.returncode == 143, err
    [message] = messages(portal)
    assert "Ended: interrupted (exit code 143): stopped by SIGTERM" in message["message"]
    assert "Rows left: " in message["message"]
    assert files(portal)[0]["content"] == report.read_bytes()


# --------------------------------------------------------------------------- undo, run-job


def test_undo_posts_too(portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows(failing=False))
    assert run_cli("run", src, *portal_args(portal, tmp_path), *FAST).exit_code == 0
    result = run_cli(
        "undo", tmp_path / "in.report.csv", *portal_args(portal, tmp_path), *FAST, "--yes",
        *notify_args(),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    [message] = messages(portal)
    assert "undo of in.report.csv" in message["message"]
    assert "restored 6, failed 0, skipped 0" in message["message"]
    [file] = files(portal)
    assert file["content"] == (tmp_path / "in.report.undo.csv").read_bytes()
    assert summary_of(tmp_path / "in.report.undo.csv")["notification"]["status"] == "sent"


def test_run_job_posts_one_message_per_file(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory, n=8)
    root = tmp_path / "job"
    (root / "inbox").mkdir(parents=True)
    tokens = {str(b.id): b.token for b in portal.state.bots.values()}
    (root / "bot_tokens.json").write_text(json.dumps(tokens))
    (root / "job.toml").write_text(
        'name = "nightly"\nwebhook_env = "B24_NOTIFY_TEST_WEBHOOK"\n'
        'bot_tokens_file = "bot_tokens.json"\ninbox = "inbox"\nreports = "reports"\n'
        'min_age = 0\nrate = 1000\nburst = 1000\nprogress = "none"\n'
        f'notify = "chat{CHAT}"\nnotify_bot = {NOTIFIER}\nmetrics_file = "m.prom"\n'
    )
    write_rows(root / "inbox" / "a.csv", [(BOT, m, "like") for m in range(1, 5)])
    write_rows(
        root / "inbox" / "b.csv", [(BOT, m, "like") for m in range(5, 9)] + [(BOT, 99, "like")]
    )
    env = {"B24_NOTIFY_TEST_WEBHOOK": portal.webhook_url()}
    result = run_cli("run-job", root / "job.toml", env=env)
    assert result.exit_code == 1, result.stderr
    texts = [m["message"] for m in messages(portal)]
    assert len(texts) == 2
    assert all(t.startswith("reaction-cleanup: nightly – ") for t in texts)
    assert any("a.csv" in t and "exit code 0" in t for t in texts)
    assert any("b.csv" in t and "ACCESS_DENIED" in t for t in texts)
    pages = sorted((root / "reports").glob("*.html"))
    sent = {f["name"]: f["content"] for f in files(portal)}
    for page in pages:
        if page.name != "index.html":
            assert sent[page.name] == page.read_bytes()
    assert len(sent) == 2
    metrics = (root / "m.prom").read_text()
    assert 'reaction_cleanup_notification_failures{job="nightly"} 0.0' in metrics


def test_check_job_checks_the_notifying_bot_without_posting(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    root = tmp_path / "job"
    (root / "inbox").mkdir(parents=True)
    tokens = {str(b.id): b.token for b in portal.state.bots.values()}
    (root / "bot_tokens.json").write_text(json.dumps(tokens))
    env = {"B24_NOTIFY_TEST_WEBHOOK": portal.webhook_url()}

    def check(dialog: str, bot: int) -> Result:
        (root / "job.toml").write_text(
            'webhook_env = "B24_NOTIFY_TEST_WEBHOOK"\nbot_tokens_file = "bot_tokens.json"\n'
            f'inbox = "inbox"\nreports = "reports"\nnotify = "{dialog}"\nnotify_bot = {bot}\n'
        )
        return run_cli("check-job", root / "job.toml", env=env)

    result = check(f"chat{CHAT}", NOTIFIER)
    assert result.exit_code == 0, result.stderr
    assert "ok: notify_bot 700 (notify chat50) exists and owns its token" in result.stdout
    result = check(f"chat{OTHER_CHAT}", NOTIFIER)
    assert result.exit_code == 2 and "ACCESS_DENIED: it is not a member" in result.stderr
    portal.state.add_bot(NOTIFIER, token="another-token")  # the file's token is now wrong
    result = check(f"chat{CHAT}", NOTIFIER)
    assert result.exit_code == 2 and "BOT_OWNERSHIP_ERROR" in result.stderr
    portal.state.bots.pop(NOTIFIER)
    result = check(f"chat{CHAT}", NOTIFIER)
    assert result.exit_code == 2 and "BOT_NOT_FOUND" in result.stderr
    assert portal.state.posted() == []


def test_notify_and_notify_bot_go_together(run_cli: RunCli, tmp_path: Path) -> None:
    src = write_rows(tmp_path / "in.csv", rows())
    result = run_cli("run", src, "--dry-run", "--notify", "chat5")
    assert result.exit_code == 2 and "--notify and --notify-bot go together" in result.stderr
    result = run_cli("run", src, "--dry-run", "--notify", "chat0", "--notify-bot", "7")
    assert result.exit_code == 2 and "notify must be chat123" in result.stderr


# --------------------------------------------------------------------------- retries


def finished_run(portal: SandboxPortal, tmp_path: Path) -> tuple[RunSummary, RunConfig]:
    """A run of the rows (one fails), done from Python: its summary and config."""
    from cleanup.run.runner import run_file

    src = write_rows(tmp_path / "in.csv", rows())
    tokens = {str(b.id): b.token for b in portal.state.bots.values()}
    (tmp_path / "tokens.json").write_text(json.dumps(tokens))
    config = RunConfig(
        input=src,
        webhook=portal.webhook_url(),
        bot_tokens=tmp_path / "tokens.json",
        rate=1000,
        burst=1000,
        progress="none",
        notify=f"chat{CHAT}",
        notify_bot=NOTIFIER,
    )
    return run_file(config), config


def test_limits_and_server_errors_are_waited_out_through_the_retry_policy(
    portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    summary, config = finished_run(portal, tmp_path)
    portal.inject("limit", "http500", "operating")
    clock = FakeClock()
    told = notify.notify_run(summary, config, clock=clock).notification
    assert told is not None and told.status == "sent"
    assert told.attachment == "sent"
    assert len(messages(portal)) == 1 and len(files(portal)) == 1
    assert len(clock.sleeps) >= 3  # one wait per refusal or error, on the injected clock
    assert summary.exit_code == 1  # unchanged


def test_a_network_fault_after_the_retries_is_a_failed_notification(
    portal_factory: PortalFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    portal = make_portal(portal_factory)
    summary, config = finished_run(portal, tmp_path)
    portal.inject(*["reset"] * (notify.NOTIFY_RETRY.max_retries + 1))
    clock = FakeClock()
    with caplog.at_level("ERROR", logger="cleanup"):
        told = notify.notify_run(summary, config, clock=clock).notification
    assert told is not None and told.status == "failed"
    assert told.error == notify.NETWORK_ERROR
    assert portal.state.posted() == []
    assert summary.exit_code == 1
    [line] = [r.getMessage() for r in caplog.records if "notification" in r.getMessage()]
    assert line == (
        "notification to chat50 by bot 700 failed: NETWORK_ERROR; the run's result stands"
    )
    saved = summary_of(tmp_path / "in.report.csv")["notification"]
    assert saved["status"] == "failed" and saved["error"] == "NETWORK_ERROR"


def test_a_user_id_is_a_private_chat(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = make_portal(portal_factory)
    src = write_rows(tmp_path / "in.csv", rows(failing=False))
    args = ["run", src, *portal_args(portal, tmp_path), *FAST, "--notify-attach", "none"]
    result = run_cli(*args, "--notify", "12", "--notify-bot", str(NOTIFIER))
    assert result.exit_code == 0, result.stderr
    [message] = messages(portal)
    assert message["dialogId"] == "12" and "Ended: ok (exit code 0)" in message["message"]
    assert "Rows left" not in message["message"] and "Re-run" not in message["message"]
