"""The notification's pure parts: when it posts, what it says, which file goes; and the
sandbox's two methods, called directly (their checks, in the documented order)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cleanup.outputs import notify
from cleanup.redact import MASK, register_secret
from cleanup.results import RunSummary
from cleanup.run.config import RunConfig
from cleanup.sandbox.methods import Caller, post_call
from cleanup.sandbox.state import PortalState

CODE = "unitWebhookCode4f9a2b7c1d"
WEBHOOK = f"https://portal.example.com/rest/1/{CODE}/"


def config(**changes: object) -> RunConfig:
    values: dict[str, object] = {
        "input": Path("/data/sheet.csv"),
        "webhook": WEBHOOK,
        "bot_tokens": Path("tokens.json"),
        "notify": "chat5",
        "notify_bot": 7,
    }
    values.update(changes)
    return RunConfig(**values)


def summary(exit_code: int = 1, **changes: object) -> RunSummary:
    values: dict[str, object] = {
        "run_id": "r1",
        "input": "/data/sheet.csv",
        "report": "/data/sheet.report.csv",
        "mode": "batch",
        "auth_mode": "webhook",
        "rows": 10,
        "by_status": {"removed": 6, "failed": 3, "invalid": 1},
        "by_error": {"ACCESS_DENIED": 2, "REACTION_NOT_FOUND": 1, "INVALID_REACTION": 1},
        "elapsed_s": 125.0,
        "exit_code": exit_code,
        "settings": config().settings(),
    }
    values.update(changes)
    return RunSummary.model_validate(values)


def test_it_posts_always_or_only_after_problems_and_never_for_a_dry_run() -> None:
    assert notify.wanted(config(), summary(0))
    assert not notify.wanted(config(notify_when="problems"), summary(0))
    assert notify.wanted(config(notify_when="problems"), summary(1))
    assert not notify.wanted(config(), summary(1, dry_run=True))
    assert not notify.wanted(config(notify=None, notify_bot=None), summary(1))


def test_the_file_is_the_page_else_the_report() -> None:
    page = Path("/data/page.html")
    assert notify.chosen_file(config(), summary(), page) == page
    assert notify.chosen_file(config(), summary(), None) == Path("/data/sheet.report.csv")
    assert notify.chosen_file(config(notify_attach="report"), summary(), page) == Path(
        "/data/sheet.report.csv"
    )
    assert notify.chosen_file(config(notify_attach="none"), summary(), page) is None


def test_the_portal_is_its_host_only() -> None:
    assert notify.portal_host(config()) == "portal.example.com"
    assert notify.portal_host(config(webhook="https://b24.example.com:8443/rest/1/abc/")) == (
        "b24.example.com:8443"
    )


def test_the_message_lists_counts_codes_advice_time_rows_left_and_the_rerun() -> None:
    labelled = summary(settings={**config().settings(), "label": "nightly"})
    text = notify.compose(labelled, config())
    lines = text.splitlines()
    assert lines[0] == "reaction-cleanup: nightly – sheet.csv"
    assert lines[1] == "Portal: portal.example.com"
    assert lines[2] == "Ended: failed (exit code 1)"
    assert lines[3] == "Rows: 10 — removed 6, absent 0, failed 3, invalid 1, duplicate 0, skipped 0"
    assert lines[4] == "Top errors:"
    assert lines[5].startswith("• ACCESS_DENIED × 2: The bot is not a member")
    assert len([line for line in lines if line.startswith("• ")]) == notify.TOP_ERRORS
    assert "Took: 2 min 05 s" in lines
    assert "Rows left: 4" in lines
    rerun = lines[lines.index("Re-run the failed rows:") + 1]
    assert rerun.startswith("reaction-cleanup run /data/sheet.report.csv --only failed")
    assert CODE not in text


def test_the_message_masks_a_secret_and_keeps_the_portals_length_limit() -> None:
    register_secret(CODE)
    text = notify.compose(summary(aborted=f"NO_AUTH_FOUND: bad {CODE}"), config())
    assert CODE not in text and MASK in text
    long = notify.compose(summary(aborted="x" * 30_000), config())
    assert len(long) == notify.MESSAGE_LIMIT and long.endswith(" (...)")


@pytest.mark.parametrize(("size", "limit", "expected"), [(3, 4, "pending"), (4, 4, "too_large")])
def test_the_limit_is_on_the_base64_text(
    tmp_path: Path, size: int, limit: int, expected: str
) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"a" * size)
    content, state = notify._attachment(file, limit)
    assert state == expected
    if content is not None:
        assert base64.b64decode(content) == file.read_bytes()


def test_a_file_that_shows_a_secret_is_withheld(tmp_path: Path) -> None:
    register_secret(CODE)
    file = tmp_path / "r.csv"
    file.write_text(f"row,{CODE}\n")
    assert notify._attachment(file, notify.UPLOAD_LIMIT) == (None, "withheld")


# --------------------------------------------------------------------------- the sandbox


def portal() -> PortalState:
    state = PortalState()
    state.add_bot(7, token="tok-7")
    state.add_chat(5, [7])
    state.add_chat(6, [])
    return state


WEBHOOK_CALLER = Caller("webhook", 1)


def call(state: PortalState, *, upload: bool = False, **params: object) -> tuple[object, object]:
    base: dict[str, object] = {"botId": 7, "botToken": "tok-7", "dialogId": "chat5"}
    base.update(params)
    with state.lock:
        return post_call(state, WEBHOOK_CALLER, base, upload=upload)


def test_sandbox_send_checks_the_bot_then_the_chat_then_the_text() -> None:
    state = portal()
    cases: dict[str, dict[str, object]] = {
        "BOT_TOKEN_NOT_SPECIFIED": {"botToken": ""},
        "BOT_NOT_FOUND": {"botId": 8},
        "BOT_OWNERSHIP_ERROR": {"botToken": "wrong"},
        "ACCESS_DENIED": {"dialogId": "chat6", "fields": {"message": "hi"}},
        "EMPTY_MESSAGE": {"fields": {"message": "  "}},
    }
    for code, params in cases.items():
        error, _ = call(state, upload=False, **params)
        assert getattr(error, "code", None) == code, code
    error, result = call(state, fields={"message": "x" * 20_001})
    assert error is None and isinstance(result, dict) and result["id"] > 0
    [post] = state.posted()
    assert post["message"] == "x" * 20_000 + " (...)"
    error, _ = call(state, dialogId="12", fields={"message": "private"})
    assert error is None and state.posted("12")[0]["message"] == "private"


def test_sandbox_upload_checks_name_content_and_size() -> None:
    state = portal()
    state.upload_limit = 4
    good = base64.b64encode(b"abcd").decode()
    cases = {
        "FILE_EMPTY": {"name": "a.txt", "content": ""},
        "FILE_INVALID_CONTENT": {"name": "a.txt", "content": "not base64!"},
        "FILE_TOO_LARGE": {"name": "a.txt", "content": base64.b64encode(b"abcde").decode()},
    }
    for code, fields in cases.items():
        error, _ = call(state, upload=True, fields=fields)
        assert getattr(error, "code", None) == code, code
    error, result = call(state, upload=True, fields={"name": "a.txt", "content": good})
    assert error is None and isinstance(result, dict)
    assert result["file"]["size"] == 4 and result["dialogId"] == "chat5"
    assert state.posted()[0]["content"] == b"abcd"


@pytest.mark.parametrize(
    ("result", "delivered"),
    [({"id": 789, "uuidMap": {}}, True), (True, True), (False, False), (None, False)],
)
def test_an_answer_of_false_or_nothing_is_not_delivered(result: object, delivered: bool) -> None:
    _value, outcome = notify._delivered(result)
    assert (outcome.error == "") is delivered
    assert notify._message_id(result) == (789 if isinstance(result, dict) else None)


def test_a_paused_run_says_why_and_that_the_next_run_continues() -> None:
    # QA round 2: "skipped 233" with no reason read like a problem in the chat.
    paused = summary(
        75,
        by_status={"removed": 67, "skipped": 233},
        by_error={},
        rows=300,
        paused="--max-duration 10s",
    )
    text = notify.compose(paused, config())
    assert "Ended: paused (exit code 75)" in text
    assert (
        "Paused: time is up (--max-duration 10s); the 233 skipped row(s) were not sent yet,"
        " and the next run continues with them"
    ) in text.splitlines()
    assert "Paused:" not in notify.compose(summary(), config())
