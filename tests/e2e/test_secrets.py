"""Nothing the job writes or prints holds a secret: webhook code, bot tokens, OAuth access
and refresh tokens, client secret. The job runs under --verbose with known, distinctive
secret values, forced errors and tracebacks, in both log formats; then every byte of its
output and of every file it wrote is searched for each value."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import Result

from cleanup.logs import setup_logging
from cleanup.portal.transport import HTTPTransport
from cleanup.redact import MASK, redact, register_secret
from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal
from tests.helpers.cli import read_report, write_rows

CODE = "whk7Q2xLm9PzR4sTv8WcY3bNd6FgJ1hK"  # webhook code
BOT_TOKENS = {
    456: "bottok-A5c8E1g4I7k0M3o6Q9s2U5w8Y1a4C7e0",
    457: "bottok-Z9x6V3t0R7p4N1l8J5h2F9d6B3z0X7v4",
}
APP = "local.66aa77bb88cc99.12345678"
CLIENT_SECRET = "csec-Hq4Wd8Lx2Pz6Tb0Nf3Jr7Vm1Ck5Gs9Ya"
FAST = ("--rate", "1000", "--burst", "1000")

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_oauth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("B24_CLIENT_ID", "B24_CLIENT_SECRET", "B24_ACCESS_TOKEN", "B24_REFRESH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    setup_logging()  # later tests get the ordinary handlers back


def webhook_state(n: int) -> PortalState:
    rows = [(456, m, "like") for m in range(1, n + 1)] + [(457, m, "fire") for m in range(1, 6)]
    state = PortalState.build(rows, webhook_code=CODE, bot_tokens=BOT_TOKENS)
    state.add_message(999, 999, members=[])  # a chat bot 456 is not in: ACCESS_DENIED
    state.add_reaction(456, 999, "like")
    return state


def webhook_input(folder: Path, n: int) -> tuple[Path, Path]:
    rows: list[tuple[Any, ...]] = [(456, m, "like") for m in range(1, n + 1)]
    rows += [(457, m, "fire") for m in range(1, 6)]
    rows += [(456, 999, "like"), (456, 1, "eyes"), (458, 1, "like")]  # denied, absent, no token
    csv_path = write_rows(folder / "in.csv", rows)
    tokens = folder / "bot-tokens.json"
    tokens.write_text(json.dumps({str(k): v for k, v in BOT_TOKENS.items()}))
    return csv_path, tokens


class Leaks:
    """Collects everything the job printed and wrote, then looks for each secret."""

    def __init__(self, folder: Path, secret_inputs: set[str]) -> None:
        self.folder = folder
        self.secret_inputs = secret_inputs  # the user's own credential files
        self.texts: dict[str, str] = {}

    def add_result(self, name: str, result: Result) -> None:
        self.texts[f"{name}: stdout"] = result.stdout
        self.texts[f"{name}: stderr"] = result.stderr

    def scan_files(self) -> list[str]:
        seen = []
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and path.name not in self.secret_inputs:
                # Bytes as latin-1: a secret shows in a binary file (Parquet) as the same bytes.
                self.texts[str(path.relative_to(self.folder))] = path.read_bytes().decode("latin-1")
                seen.append(path.name)
        return seen

    def check(self, secrets: list[str]) -> None:
        found = [
            f"{secret[:10]}… in {where}"
            for where, text in self.texts.items()
            for secret in secrets
            if secret in text
        ]
        assert not found, "secrets leaked:\n" + "\n".join(found)


def leak_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def post_bug(message_id: int) -> Callable[..., Any]:
    """HTTPTransport._post with a bug whose message quotes the request: URL and payload (the
    webhook code, botTokens, the access token). Raised once, for the request that carries
    message `message_id`."""
    real = HTTPTransport._post
    marker = f"messageId={message_id}&"
    raised: list[bool] = []

    def post(
        transport: HTTPTransport, url: str, payload: dict[str, Any], kind: str, *rest: Any
    ) -> Any:
        if not raised and marker in json.dumps(payload):
            raised.append(True)
            raise RuntimeError(
                f"bug while posting to {url} with {payload!r} / {json.dumps(payload)}"
            )
        return real(transport, url, payload, kind, *rest)

    return post


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_webhook_secrets_never_leak(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_format: str,
) -> None:
    portal = portal_factory(state=webhook_state(40))
    folder = leak_folder(tmp_path, "run")
    csv_path, tokens = webhook_input(folder, 40)
    leaks = Leaks(folder, {"in.csv", "bot-tokens.json"})
    common = [
        "--bot-tokens", tokens, *FAST, "--verbose", "--log-format", log_format,
        "--progress", "bar", "--batch-size", "5", "--concurrency", "2", "--max-retries", "3",
    ]  # fmt: skip

    # 1. A run with faults (5xx, a dropped connection, a proxy page), row failures and an
    #    internal error whose message quotes the request; --html if the job offers it.
    portal.inject("http500", "reset", "html502")
    html = ["--html", folder / "review.html"] if "--html" in _run_help(run_cli) else []
    with monkeypatch.context() as patch:
        patch.setattr(HTTPTransport, "_post", post_bug(message_id=20))
        result = run_cli("run", csv_path, "--webhook", portal.webhook_url(), *common, *html)
    leaks.add_result("faulty run", result)
    assert result.exit_code == 1, result.stderr
    report = read_report(folder / "in.report.csv")
    errors = {r["error"] for r in report}
    assert {"ACCESS_DENIED", "REACTION_NOT_FOUND", "NO_BOT_TOKEN", "CLIENT_ERROR"} <= errors
    bug_rows = [r for r in report if r["error"] == "CLIENT_ERROR"]
    assert MASK in bug_rows[0]["error_description"]  # the message is there, masked
    assert "Traceback" in result.stderr and "RuntimeError: bug while posting" in result.stderr
    # urllib3's request lines are logged, with the code masked.
    assert f"/rest/1/{MASK}/batch.json" in result.stderr

    # 2. The portal unreachable: requests' exception messages carry the whole URL.
    dead = f"http://127.0.0.1:{_closed_port()}/rest/1/{CODE}/"
    args = ["run", csv_path, "--webhook", dead, *common, "--report", folder / "dead.report.csv"]
    args[args.index("--max-retries") + 1] = "0"
    result = run_cli(*args)
    leaks.add_result("unreachable", result)
    assert result.exit_code == 3, result.stderr
    assert "PORTAL_UNREACHABLE" in result.stderr
    assert f"url: /rest/1/{MASK}/batch.json" in result.stderr  # requests' message, masked

    # 3. A bug outside the workers: the CLI's last-resort boundary prints it, masked.
    with monkeypatch.context() as patch:
        patch.setattr(HTTPTransport, "close", _close_bug)
        result = run_cli(
            "run", csv_path, "--webhook", portal.webhook_url(), *common,
            "--report", folder / "bug.report.csv",
        )  # fmt: skip
    leaks.add_result("internal error", result)
    assert result.exit_code == 70
    assert "internal error" in result.stderr and "Traceback" in result.stderr

    # 4. Configuration errors that quote the URL.
    for bad in (
        f"http://portal.example.com/rest/1/{CODE}/",
        f"https://portal.example.com/rest/x/{CODE}/",
    ):
        result = run_cli("run", csv_path, "--webhook", bad, *common)
        leaks.add_result(f"config {bad[:12]}", result)
        assert result.exit_code == 2

    # 5. A portal that echoes the secrets in its error text (a bot rejected as a whole,
    #    then a plain row failure): the report and the log mask them.
    portal.config.command_error = ("BOT_OWNERSHIP_ERROR", f"botToken {BOT_TOKENS[456]} of {CODE}")
    result = run_cli(
        "run", csv_path, "--webhook", portal.webhook_url(), *common,
        "--report", folder / "echo.report.csv",
    )  # fmt: skip
    leaks.add_result("echoing portal", result)
    echoed = read_report(folder / "echo.report.csv")
    assert {r["error"] for r in echoed} >= {"BOT_OWNERSHIP_ERROR"}
    portal.config.command_error = ("SOME_NEW_ERROR", f"auth failed for {BOT_TOKENS[457]}")
    result = run_cli(
        "run", csv_path, "--webhook", portal.webhook_url(), *common,
        "--report", folder / "echo2.report.csv", "--mode", "single",
    )  # fmt: skip
    leaks.add_result("echoing portal, single", result)
    assert {r["error"] for r in read_report(folder / "echo2.report.csv")} >= {"SOME_NEW_ERROR"}

    written = leaks.scan_files()
    assert {"in.report.csv", "in.report.csv.summary.json", "in.report.csv.journal"} <= set(written)
    if html:
        assert "review.html" in written
    leaks.check([CODE, *BOT_TOKENS.values()])


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_oauth_secrets_never_leak(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_format: str,
) -> None:
    rows = [(456, m, "like") for m in range(1, 31)]
    state = PortalState.build(rows, oauth_apps={APP: CLIENT_SECRET}, bot_client_ids={456: APP})
    portal = portal_factory(state=state, config=PortalConfig(latency=0.005))
    issued = portal.issue_tokens(APP)
    folder = leak_folder(tmp_path, "run")
    tokens = folder / "b24-tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "client_id": APP,
                "client_secret": CLIENT_SECRET,
                "access_token": issued["access_token"],
                "refresh_token": issued["refresh_token"],
            }
        )
    )
    csv_path = write_rows(folder / "in.csv", rows)
    leaks = Leaks(folder, {"in.csv", "b24-tokens.json"})
    secrets = [CLIENT_SECRET, issued["access_token"], issued["refresh_token"]]
    common = [
        "--portal", portal.url, "--oauth-file", tokens, "--oauth-server", portal.url, *FAST,
        "--verbose", "--log-format", log_format, "--progress", "log",
        "--batch-size", "5", "--concurrency", "2",
    ]  # fmt: skip

    # 1. An expiry mid-run (the refresh's GET carries the secret and refresh token in its
    #    query, logged by urllib3) and a bug quoting a request that holds the access token.
    portal.inject("http500", "expired")
    with monkeypatch.context() as patch:
        patch.setattr(HTTPTransport, "_post", post_bug(message_id=20))
        result = run_cli("run", csv_path, *common)
    leaks.add_result("refresh run", result)
    assert result.exit_code == 1, result.stderr  # the bug's rows failed
    assert portal.stats.refreshes == 1
    assert f"client_secret={MASK}&refresh_token={MASK}" in result.stderr
    saved = json.loads(tokens.read_text())
    secrets += [saved["access_token"], saved["refresh_token"]]

    # 2. The refresh fails: the tokens expire and the client secret is wrong.
    portal.expire_access_tokens()
    wrong = dict(saved, client_secret=CLIENT_SECRET[::-1])
    tokens.write_text(json.dumps(wrong))
    secrets.append(wrong["client_secret"])
    result = run_cli("run", csv_path, *common, "--report", folder / "refresh.report.csv")
    leaks.add_result("failed refresh", result)
    assert result.exit_code == 3 and "invalid_client" in result.stderr

    # 3. The OAuth server unreachable: the refresh URL with its query is in requests' error.
    tokens.write_text(json.dumps(saved))
    args = [*common, "--report", folder / "dead.report.csv"]
    args[args.index("--oauth-server") + 1] = f"http://127.0.0.1:{_closed_port()}"
    result = run_cli("run", csv_path, *args)
    leaks.add_result("oauth server down", result)
    assert result.exit_code == 3 and "REFRESH_FAILED" in result.stderr

    # 4. A bug outside the workers.
    with monkeypatch.context() as patch:
        patch.setattr(HTTPTransport, "close", _close_bug)
        result = run_cli("run", csv_path, *common, "--report", folder / "bug.report.csv")
    leaks.add_result("internal error", result)
    assert result.exit_code == 70 and "Traceback" in result.stderr

    leaks.scan_files()
    leaks.check(secrets)


NOTIFIER = 700
NOTIFIER_TOKEN = "bottok-N0t1fY3rP8q5L2m9K6j3H0g7F4d1S8a5"


def posted_texts(portal: SandboxPortal) -> list[str]:
    """Everything the bots posted, as the sandbox kept it and as its debug endpoint shows
    it: each message's text, each file's name, caption and bytes."""
    out: list[str] = []
    for post in portal.state.posted():
        out += [str(post.get("message", "")), str(post.get("name", ""))]
        content = post.get("content")
        if isinstance(content, bytes):
            out.append(content.decode("latin-1"))
    over_http = requests.get(portal.url.rstrip("/") + "/_sandbox/posts", timeout=10).text
    return [*out, over_http]


def test_notifications_post_no_secret(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """Webhook mode: the message and the attached page, report and undo report hold neither
    the webhook code nor any botToken (the notifier's own included), even when the portal
    echoes them in its errors."""
    state = webhook_state(10)
    state.add_bot(NOTIFIER, token=NOTIFIER_TOKEN)
    state.add_chat(50, [NOTIFIER])
    portal = portal_factory(state=state)
    folder = leak_folder(tmp_path, "notify")
    csv_path, tokens = webhook_input(folder, 10)
    tokens.write_text(
        json.dumps({**{str(k): v for k, v in BOT_TOKENS.items()}, str(NOTIFIER): NOTIFIER_TOKEN})
    )
    leaks = Leaks(folder, {"in.csv", "bot-tokens.json"})
    common = [
        "--webhook", portal.webhook_url(), "--bot-tokens", tokens, *FAST, "--verbose",
        "--notify", "chat50", "--notify-bot", str(NOTIFIER),
    ]  # fmt: skip
    result = run_cli("run", csv_path, *common, "--html", folder / "page.html")
    leaks.add_result("run", result)
    assert result.exit_code == 1, result.stderr
    portal.config.command_error = ("BOT_OWNERSHIP_ERROR", f"botToken {BOT_TOKENS[456]} of {CODE}")
    result = run_cli(
        "run",
        csv_path,
        *common,
        "--report",
        folder / "echo.report.csv",
        "--notify-attach",
        "report",
    )
    leaks.add_result("echoing portal", result)
    portal.config.command_error = None
    result = run_cli("undo", folder / "in.report.csv", *common, "--yes")
    leaks.add_result("undo", result)
    assert result.exit_code in (0, 1), result.stderr
    kinds = [p["kind"] for p in portal.state.posted()]
    assert kinds.count("message") == 3 and kinds.count("file") == 3
    for i, text in enumerate(posted_texts(portal)):
        leaks.texts[f"post {i}"] = text
    leaks.scan_files()
    leaks.check([CODE, NOTIFIER_TOKEN, *BOT_TOKENS.values()])


def test_oauth_notifications_post_no_token(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """OAuth: an application's bot posts with the access token only (no botToken); neither
    it, the refresh token nor the client secret is in a post."""
    rows = [(456, m, "like") for m in range(1, 6)]
    state = PortalState.build(
        rows, oauth_apps={APP: CLIENT_SECRET}, bot_client_ids={456: APP, NOTIFIER: APP}
    )
    state.add_chat(50, [NOTIFIER])
    portal = portal_factory(state=state)
    issued = portal.issue_tokens(APP)
    folder = leak_folder(tmp_path, "notify-oauth")
    tokens = folder / "b24-tokens.json"
    tokens.write_text(json.dumps({"client_id": APP, "client_secret": CLIENT_SECRET, **issued}))
    csv_path = write_rows(folder / "in.csv", rows)
    leaks = Leaks(folder, {"in.csv", "b24-tokens.json"})
    portal.inject("expired")  # a refresh on the way: both token pairs must stay out
    result = run_cli(
        "run", csv_path, "--portal", portal.url, "--oauth-file", tokens,
        "--oauth-server", portal.url, *FAST, "--verbose", "--html", folder / "page.html",
        "--notify", "chat50", "--notify-bot", str(NOTIFIER),
    )  # fmt: skip
    leaks.add_result("run", result)
    assert result.exit_code == 0, result.stderr
    assert [p["kind"] for p in portal.state.posted()] == ["message", "file"]
    saved = json.loads(tokens.read_text())
    for i, text in enumerate(posted_texts(portal)):
        leaks.texts[f"post {i}"] = text
    leaks.scan_files()
    leaks.check(
        [
            CLIENT_SECRET,
            issued["access_token"],
            issued["refresh_token"],
            saved["access_token"],
            saved["refresh_token"],
        ]
    )


def test_requests_exception_text_is_masked_in_logs(capsys: pytest.CaptureFixture[str]) -> None:
    """A requests exception logged with its traceback: the URL in its message (webhook
    code in the path, tokens in the query) is masked, in both formats."""
    register_secret(CODE)
    url = f"http://127.0.0.1:{_closed_port()}/rest/1/{CODE}/batch.json"
    for fmt in ("text", "json"):
        setup_logging(verbose=True, fmt=fmt)
        try:
            requests.get(url, params={"auth": "unregistered-access-token-1234"}, timeout=5)
        except requests.RequestException:
            logging.getLogger("cleanup").exception("request failed: %s", url)
        err = capsys.readouterr().err
        assert "Max retries exceeded with url" in err  # requests' own message is there
        assert CODE not in err and "unregistered-access-token-1234" not in err
        assert f"/rest/1/{MASK}/batch.json" in err


def test_library_warnings_go_through_the_mask(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --verbose, a warning from urllib3 still passes our masking handler (not
    Python's last-resort one)."""
    register_secret(CODE)
    setup_logging(verbose=False)
    logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", f"/rest/1/{CODE}/")
    logging.getLogger("urllib3.connectionpool").debug("not shown %s", CODE)
    err = capsys.readouterr().err
    assert "Retrying after /rest/1/***/" in err and CODE not in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://b24.example.com/rest/1/abc123def/profile.json",
            "https://b24.example.com/rest/1/***/profile.json",
        ),
        ("...&botToken=tok%2Fen&x=1", "...&botToken=***&x=1"),
        ("botId=1&bot_token=t0k", "botId=1&bot_token=***"),
        ("cmd=a%3Fauth%3Dsecret%26b", "cmd=a%3Fauth%3D***"),
        ('{"auth": "tok", "refresh_token":"r1"}', '{"auth": "***", "refresh_token":"***"}'),
        (
            "{'client_secret': 'cs', 'access_token': 'at'}",
            "{'client_secret': '***', 'access_token': '***'}",
        ),
        (
            "grant_type=refresh_token&client_secret=s&refresh_token=r",
            "grant_type=refresh_token&client_secret=***&refresh_token=***",
        ),
        ("an ordinary message about auth and tokens", "an ordinary message about auth and tokens"),
    ],
)
def test_patterns_mask_secrets_never_seen(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_values_are_masked_anywhere() -> None:
    register_secret("s3cr3t-value-xyz", "abc")  # too short to mask safely: ignored
    assert redact("a s3cr3t-value-xyz b abc") == f"a {MASK} b abc"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _close_bug(transport: HTTPTransport) -> None:
    auth = transport.auth
    raise RuntimeError(f"bug closing {auth.endpoint('batch')} signed as {auth.sign({})!r}")


def _run_help(run_cli: RunCli) -> str:
    return run_cli("run", "--help").stdout
