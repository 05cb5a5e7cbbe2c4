"""Authentication over real HTTP against the sandbox portal: webhook and OAuth modes, token
refresh in the middle of a run with several workers, failed refreshes, credential errors
that stop the run, and the plain-http refusal."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import Result

from cleanup.errors import ConfigError
from cleanup.portal.auth import OAuthAuth, TokenStore, WebhookAuth, oauth_base
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.cli import bot_tokens_file, portal_args, read_report, statuses, write_rows

APP = "local.5f3a9c2e1b7d40.81726354"
SECRET = "client-secret-Vb7Qz2Lm9Xc4Rt8Wn3Ks6Jd1Hf5Gp0Ya"
BOT, BOT2 = 456, 457
FAST = ("--rate", "1000", "--burst", "1000", "--progress", "none")
OAUTH_ENV = ("B24_CLIENT_ID", "B24_CLIENT_SECRET", "B24_ACCESS_TOKEN", "B24_REFRESH_TOKEN")

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_oauth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real OAuth variables must not fill gaps in a test's token file.
    for name in OAUTH_ENV:
        monkeypatch.delenv(name, raising=False)


def reactions(n: int, bot: int = BOT, start: int = 1) -> list[tuple[int, int, str]]:
    return [(bot, m, "like") for m in range(start, start + n)]


def oauth_portal(
    portal_factory: PortalFactory, rows: list[tuple[int, int, str]], **config: Any
) -> SandboxPortal:
    """A portal whose bots belong to the OAuth app APP."""
    bots = {bot for bot, _, _ in rows}
    return portal_factory(
        rows,
        config=PortalConfig(**config),
        oauth_apps={APP: SECRET},
        bot_client_ids=dict.fromkeys(bots, APP),
    )


def token_file(folder: Path, portal: SandboxPortal, **override: Any) -> Path:
    """A token file as a user keeps it: the four credentials plus keys of their own."""
    issued = portal.issue_tokens(APP)
    data = {
        "client_id": APP,
        "client_secret": SECRET,
        "access_token": issued["access_token"],
        "refresh_token": issued["refresh_token"],
        "note": "reaction-cleanup on ops-runner-1",
        **override,
    }
    path = folder / "b24-tokens.json"
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return path


def oauth_args(portal: SandboxPortal, tokens: Path, *extra: str) -> list[str]:
    return [
        "--portal",
        portal.url,
        "--oauth-file",
        str(tokens),
        "--oauth-server",
        portal.url,
        *FAST,
        *extra,
    ]


def summary_of(report: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(
        report.with_name(report.name + ".summary.json").read_text()
    )
    return summary


def portal_accepts(portal: SandboxPortal, access_token: str) -> bool:
    answer = requests.post(
        portal.url + "/rest/profile.json", json={"auth": access_token}, timeout=10
    )
    return answer.status_code == 200


def refresh_directly(portal: SandboxPortal, refresh_token: str) -> requests.Response:
    return requests.get(
        portal.url + "/oauth/token/",
        params={
            "grant_type": "refresh_token",
            "client_id": APP,
            "client_secret": SECRET,
            "refresh_token": refresh_token,
        },
        timeout=10,
    )


# --- the two modes -----------------------------------------------------------------------------


def test_oauth_mode_end_to_end(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(12) + reactions(8, bot=BOT2)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal)
    before = tokens.read_text()
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, tokens, "--batch-size", "5"))

    assert result.exit_code == 0, result.stderr
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 20
    assert portal.state.snapshot() == set()
    # Calls went to PORTAL/rest/METHOD with `auth` (the sandbox's OAuth path), no botToken.
    assert {r.path_method for r in portal.stats.log} == {"batch"}
    assert portal.stats.commands_executed == 20
    assert portal.stats.bot_tokens_seen == 0
    assert portal.stats.refreshes == 0
    assert tokens.read_text() == before  # nothing to rewrite without a refresh
    assert "oauth auth" in result.stderr


def test_a_mode_typed_on_the_command_line_sets_aside_the_other_modes_variables(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """A B24_WEBHOOK_URL left in the shell must not block --portal/--oauth-file (and
    B24_PORTAL/B24_OAUTH_FILE must not block --webhook): the command line wins."""
    rows = reactions(3)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal)
    webhook_env = {"B24_WEBHOOK_URL": portal.webhook_url()}

    oauth_run = run_cli(
        "run", write_rows(tmp_path / "a.csv", rows), *oauth_args(portal, tokens), env=webhook_env
    )
    assert oauth_run.exit_code == 0, oauth_run.stderr
    assert statuses(tmp_path / "a.report.csv") == ["removed"] * 3
    assert "oauth auth" in oauth_run.stderr

    hook_portal = portal_factory(rows)  # bots of no app: a webhook's with their botTokens
    oauth_env = {"B24_PORTAL": portal.url, "B24_OAUTH_FILE": str(tokens)}
    webhook_run = run_cli(
        "run",
        write_rows(tmp_path / "b.csv", rows),
        *portal_args(hook_portal, tmp_path),
        env=oauth_env,
    )
    assert webhook_run.exit_code == 0, webhook_run.stderr
    assert statuses(tmp_path / "b.report.csv") == ["removed"] * 3
    assert "webhook auth" in webhook_run.stderr

    # Both modes from the environment alone stay ambiguous: refused, nothing sent.
    both = run_cli("run", tmp_path / "b.csv", "--progress", "none", env=webhook_env | oauth_env)
    assert both.exit_code == 2
    assert "not both" in both.stderr


def test_oauth_mode_ignores_a_bot_tokens_file(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(3)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal)
    csv_path = write_rows(tmp_path / "in.csv", rows)
    extra = ("--bot-tokens", str(bot_tokens_file(tmp_path, portal)), "--mode", "single")

    result = run_cli("run", csv_path, *oauth_args(portal, tokens, *extra))

    assert result.exit_code == 0, result.stderr
    assert portal.stats.single_calls == 3
    assert portal.stats.bot_tokens_seen == 0


def test_webhook_mode_sends_each_bots_token(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(4) + reactions(3, bot=BOT2)
    portal = portal_factory(rows)
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *portal_args(portal, tmp_path), *FAST)

    assert result.exit_code == 0, result.stderr
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 7
    assert portal.stats.bot_tokens_seen == 7


def test_webhook_mode_bot_without_token_is_invalid_before_sending(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(3) + reactions(2, bot=BOT2)
    portal = portal_factory(rows)
    only_first = tmp_path / "tokens.json"
    only_first.write_text(json.dumps({str(BOT): portal.state.bots[BOT].token}))
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = ["--webhook", portal.webhook_url(), "--bot-tokens", str(only_first), *FAST]

    result = run_cli("run", csv_path, *args)

    assert result.exit_code == 1
    report = read_report(tmp_path / "in.report.csv")
    assert [r["status"] for r in report] == ["removed"] * 3 + ["invalid"] * 2
    assert {r["error"] for r in report[3:]} == {"NO_BOT_TOKEN"}
    assert str(BOT2) in report[3]["error_description"]
    # Only the bot with a token reached the portal; BOT2's reactions are untouched.
    assert portal.stats.commands_executed == 3
    assert portal.state.has_reaction(BOT2, 1, "like")


def test_webhook_mode_no_token_for_any_bot_sends_nothing(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(4, bot=BOT2)
    portal = portal_factory(rows + reactions(1))
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"botId,botToken\n{BOT},{portal.state.bots[BOT].token}\n")
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = ["--webhook", portal.webhook_url(), "--bot-tokens", str(tokens), *FAST]

    result = run_cli("run", csv_path, *args)

    assert result.exit_code == 1
    assert statuses(tmp_path / "in.report.csv") == ["invalid"] * 4
    assert portal.stats.requests == 0


def test_webhook_mode_without_a_bot_tokens_file_is_a_usage_error(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(reactions(1))
    csv_path = write_rows(tmp_path / "in.csv", reactions(1))

    result = run_cli("run", csv_path, "--webhook", portal.webhook_url(), *FAST)

    assert result.exit_code == 2
    assert "--bot-tokens" in result.stderr
    assert portal.stats.requests == 0


# --- refresh in the middle of a run ------------------------------------------------------------


class Expirer:
    """Expires every access token once the portal has removed `at` reactions, for each
    threshold in turn, each only after the previous expiry was refreshed: so every expiry
    happens mid-run and is counted apart."""

    def __init__(self, portal: SandboxPortal, thresholds: list[int]) -> None:
        self.portal, self.thresholds = portal, thresholds
        self.done: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i, at in enumerate(self.thresholds):
            while self.portal.stats.removed < at or self.portal.stats.refreshes < i:
                if self._stop.wait(0.001):
                    return
            self.portal.expire_access_tokens()
            self.done.append(self.portal.stats.removed)

    def __enter__(self) -> Expirer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_refresh_mid_run_with_four_workers(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(400)
    portal = oauth_portal(portal_factory, rows, latency=0.03)
    tokens = token_file(tmp_path, portal)
    first = json.loads(tokens.read_text())
    # Held open so the original inode stays allocated: once freed, the kernel may hand its
    # number to the second replacement and an inode comparison would prove nothing.
    original = tokens.open("rb")
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = oauth_args(portal, tokens, "--batch-size", "5", "--concurrency", "4")

    with original, Expirer(portal, [60, 220]) as expirer:
        result = run_cli("run", csv_path, *args)
        replaced = not os.path.samestat(os.fstat(original.fileno()), tokens.stat())

    assert result.exit_code == 0, result.stderr
    assert len(expirer.done) == 2 and max(expirer.done) < 400, "the expiries came too late"
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 400
    assert portal.state.snapshot() == set()
    # Exactly one refresh per expiry, although four workers hit each one.
    assert portal.stats.refreshes == 2
    assert summary_of(tmp_path / "in.report.csv")["token_refreshes"] == 2
    assert result.stderr.count("OAuth access token refreshed") == 2

    # The file was replaced (not rewritten in place), is private, holds the new pair and
    # keeps the user's own key; no temporary file is left behind.
    saved = json.loads(tokens.read_text())
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert replaced
    assert sorted(p.name for p in tmp_path.glob("*tokens*")) == ["b24-tokens.json"]
    assert saved["note"] == first["note"]
    assert (saved["client_id"], saved["client_secret"]) == (APP, SECRET)
    assert saved["access_token"] != first["access_token"]
    assert saved["refresh_token"] != first["refresh_token"]
    assert saved["client_endpoint"] == portal.url + "/rest/"
    assert portal_accepts(portal, saved["access_token"])
    assert not portal_accepts(portal, first["access_token"])
    # Rotation: the refresh token the run started with is dead now.
    assert refresh_directly(portal, first["refresh_token"]).json()["error"] == "invalid_grant"

    # The next scheduled run starts with the saved pair: no refresh needed.
    more = reactions(30, start=1000)
    for bot, message, reaction in more:
        portal.state.add_message(message, message, members=[bot])
        portal.state.add_reaction(bot, message, reaction)
    portal.reset_stats()
    second = write_rows(tmp_path / "second.csv", more)
    result = run_cli("run", second, *oauth_args(portal, tokens))
    assert result.exit_code == 0, result.stderr
    assert statuses(tmp_path / "second.report.csv") == ["removed"] * 30
    assert portal.stats.refreshes == 0


def test_next_run_refreshes_through_the_saved_server_endpoint(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """A token file rewritten by a refresh holds the OAuth answer's server_endpoint, so a
    later run finds the OAuth server without --oauth-server."""
    rows = reactions(6)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal, server_endpoint=portal.server_endpoint)
    portal.expire_access_tokens()
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = ["--portal", portal.url, "--oauth-file", str(tokens), *FAST]

    result = run_cli("run", csv_path, *args)

    assert result.exit_code == 0, result.stderr
    assert portal.stats.refreshes == 1
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 6


def test_tokens_from_environment_refresh_and_warn(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(20)
    portal = oauth_portal(portal_factory, rows)
    issued = portal.issue_tokens(APP)
    env = {
        "B24_PORTAL": portal.url,
        "B24_OAUTH_SERVER": portal.url,
        "B24_CLIENT_ID": APP,
        "B24_CLIENT_SECRET": SECRET,
        "B24_ACCESS_TOKEN": issued["access_token"],
        "B24_REFRESH_TOKEN": issued["refresh_token"],
    }
    portal.inject("expired")
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *FAST, "--batch-size", "5", "--concurrency", "2", env=env)

    assert result.exit_code == 0, result.stderr
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 20
    assert portal.stats.refreshes == 1
    assert "not saved" in result.stderr and "--oauth-file" in result.stderr
    assert list(tmp_path.glob("*.json")) == [tmp_path / "in.report.csv.summary.json"]


def test_secret_from_environment_is_not_written_to_the_token_file(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(3)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal)
    data = json.loads(tokens.read_text())
    del data["client_secret"]
    tokens.write_text(json.dumps(data))
    portal.inject("expired")
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli(
        "run", csv_path, *oauth_args(portal, tokens), env={"B24_CLIENT_SECRET": SECRET}
    )

    assert result.exit_code == 0, result.stderr
    saved = json.loads(tokens.read_text())
    assert "client_secret" not in saved
    assert saved["refresh_token"] != data["refresh_token"]


def test_group_readable_token_file_is_warned_about(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(2)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal)
    tokens.chmod(0o644)
    portal.inject("expired")
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, tokens))

    assert result.exit_code == 0, result.stderr
    assert "chmod 600" in result.stderr
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600  # the rewrite fixed it


def test_symlinked_token_file_keeps_its_link(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(2)
    portal = oauth_portal(portal_factory, rows)
    real = token_file(tmp_path, portal)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    portal.inject("expired")
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, link))

    assert result.exit_code == 0, result.stderr
    assert link.is_symlink()
    assert portal_accepts(portal, json.loads(real.read_text())["access_token"])


def test_portal_expiring_every_token_aborts_after_one_refresh(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """Tokens that are expired as soon as they are issued (a clock far off, say) must not
    make the job refresh forever."""
    rows = reactions(10)
    portal = oauth_portal(portal_factory, rows, token_ttl=-1.0)
    tokens = token_file(tmp_path, portal)
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, tokens, "--concurrency", "1"))

    assert result.exit_code == 3
    assert "expired_token" in result.stderr
    # Refresh once and repeat; a fresh token refused as expired again is final.
    assert portal.stats.refreshes == 1
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 10
    # The last pair it got is saved: its refresh token is the one the OAuth server honours.
    assert refresh_directly(portal, json.loads(tokens.read_text())["refresh_token"]).ok


# --- a refresh that fails ----------------------------------------------------------------------


def test_expired_token_per_command_refreshes_once_per_batch(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """expired_token inside a batch's result_error (the token expired while the batch ran):
    one refresh for the whole answer, not one per command, then the rows are re-sent."""
    rows = reactions(20)
    portal = oauth_portal(portal_factory, rows, expire_during_batches=1)
    tokens = token_file(tmp_path, portal)
    first = json.loads(tokens.read_text())
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, tokens, "--concurrency", "1"))

    assert result.exit_code == 0, result.stderr
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 20
    assert portal.stats.refreshes == 1
    assert portal.stats.batch_calls == 2
    assert [r["attempts"] for r in read_report(tmp_path / "in.report.csv")] == ["1"] * 20
    assert json.loads(tokens.read_text())["refresh_token"] != first["refresh_token"]


def test_expired_token_per_command_every_time_aborts_after_one_refresh(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """A portal whose commands always answer expired_token must not make the job refresh
    (and re-send) forever: one refresh, then exit 3 with every row skipped."""
    rows = reactions(20)
    portal = oauth_portal(
        portal_factory,
        rows,
        command_error=("expired_token", "The access token provided has expired."),
    )
    tokens = token_file(tmp_path, portal)
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, tokens, "--concurrency", "1"))

    assert result.exit_code == 3
    assert "expired_token" in result.stderr and "expired.." not in result.stderr
    assert portal.stats.refreshes == 1
    assert portal.stats.batch_calls == 2
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 20


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "code", "advice"),
    [
        ("refresh token rotated away", "invalid_grant", "authorise the application again"),
        ("wrong client secret", "invalid_client", "Check client_id and client_secret"),
        ("OAuth server unreachable", "REFRESH_FAILED", "Check --oauth-server"),
    ],
)
def test_failed_refresh_aborts_and_skips_unsent_rows(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    case: str,
    code: str,
    advice: str,
) -> None:
    rows = reactions(40)
    portal = oauth_portal(portal_factory, rows)
    override: dict[str, str] = {}
    server = portal.url
    if case == "refresh token rotated away":
        # Another copy of the token file refreshed first: ours holds a dead refresh token.
        issued = portal.issue_tokens(APP)
        assert refresh_directly(portal, issued["refresh_token"]).status_code == 200
        override["refresh_token"] = issued["refresh_token"]
        portal.reset_stats()
    elif case == "wrong client secret":
        override["client_secret"] = "not-the-secret-of-this-application"
    else:
        server = f"http://127.0.0.1:{closed_port()}"
    tokens = token_file(tmp_path, portal, **override)
    before = tokens.read_text()
    portal.expire_access_tokens()
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = [*oauth_args(portal, tokens, "--batch-size", "5", "--concurrency", "4")]
    args[args.index("--oauth-server") + 1] = server

    result = run_cli("run", csv_path, *args)

    assert result.exit_code == 3, result.stderr
    assert code in result.stderr
    assert advice.casefold() in result.stderr.casefold()
    report = read_report(tmp_path / "in.report.csv")
    assert [r["status"] for r in report] == ["skipped"] * 40
    assert all(r["error_description"].startswith("not sent") for r in report)
    assert portal.stats.removed == 0 and portal.stats.refreshes == 0
    assert tokens.read_text() == before  # nothing to save
    assert summary_of(tmp_path / "in.report.csv")["aborted"].startswith(code)


def test_failed_refresh_is_not_repeated_by_each_worker(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """Four workers hit the expiry; the first refresh fails; the others take its answer
    instead of asking the OAuth server again with the same dead refresh token."""
    rows = reactions(40)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal, client_secret="wrong-secret-wrong-secret")
    portal.expire_access_tokens()
    csv_path = write_rows(tmp_path / "in.csv", rows)

    extra = ("--batch-size", "5", "--concurrency", "4", "--verbose")
    result = run_cli("run", csv_path, *oauth_args(portal, tokens, *extra))

    assert result.exit_code == 3
    assert portal.stats.requests >= 2  # more than one worker met the expiry
    # urllib3's request lines (under --verbose) show each call to the OAuth server.
    assert result.stderr.count('"GET /oauth/token/?') == 1
    assert result.stderr.count("aborting:") == 1


# --- credential and portal errors that stop the run --------------------------------------------

PLAN_TEXT = "REST API is available only on commercial plans"
FATAL_CASES = [
    # code, status, description, words of the advice
    ("NO_AUTH_FOUND", 401, "Wrong authorization data", "webhook URL"),
    ("NO_AUTH_FOUND", 403, "Wrong authorization data", "webhook URL"),
    ("INVALID_CREDENTIALS", 401, "Invalid request credentials", "rights"),
    ("INVALID_CREDENTIALS", 403, "Invalid request credentials", "rights"),
    ("invalid_token", 401, "The access token provided is invalid", "authorise"),
    ("insufficient_scope", 401, "The request requires higher privileges", "'imbot' scope"),
    ("insufficient_scope", 403, "The request requires higher privileges", "'imbot' scope"),
    ("ACCESS_DENIED", 401, PLAN_TEXT, "subscription"),
    ("ACCESS_DENIED", 403, PLAN_TEXT, "subscription"),
    ("PORTAL_DELETED", 403, "Portal was deleted", "portal address"),
    ("PORTAL_DELETED", 500, "Portal was deleted", "portal address"),
    ("OVERLOAD_LIMIT", 401, "REST API is blocked due to overload", "support"),
    ("OVERLOAD_LIMIT", 503, "REST API is blocked due to overload", "support"),
    ("INVALID_REQUEST", 401, "Https required.", "https://"),
    ("INVALID_REQUEST", 400, "Https required.", "https://"),
    ("user_access_error", 401, "The user does not have access to the application", "restricted"),
    ("authorization_error", 401, "Unable to authorize user", "credentials"),
    ("ERROR_METHOD_NOT_FOUND", 404, "Method not found!", "imbot.v2"),
]


@pytest.mark.parametrize("mode", ["batch", "single"])
@pytest.mark.parametrize(
    ("code", "status", "description", "advice"),
    FATAL_CASES,
    ids=[f"{c[0]}-{c[1]}" for c in FATAL_CASES],
)
def test_credential_error_stops_the_run_at_once(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    mode: str,
    code: str,
    status: int,
    description: str,
    advice: str,
) -> None:
    rows = reactions(20)
    portal = portal_factory(rows, config=PortalConfig(force_error=(status, code, description)))
    csv_path = write_rows(tmp_path / "in.csv", rows)
    extra = ("--mode", mode, "--batch-size", "5", "--concurrency", "1")

    result = run_cli("run", csv_path, *portal_args(portal, tmp_path), *FAST, *extra)

    assert result.exit_code == 3, result.stderr
    # One request, then nothing more: every row is skipped, none failed the same way.
    assert portal.stats.requests == 1
    report = read_report(tmp_path / "in.report.csv")
    assert [r["status"] for r in report] == ["skipped"] * 20
    assert {r["error_description"] for r in report} == {f"not sent: run aborted ({code})"}
    assert f"aborted: {code}: {description}" in result.stderr
    assert advice in result.stderr
    assert summary_of(tmp_path / "in.report.csv")["aborted"].startswith(code)


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_http_401_without_a_json_body_stops_the_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, mode: str
) -> None:
    """A plain-text 401 (a proxy, or a portal that sends no JSON) is refused credentials,
    not a transient fault: no retries, exit 3, every row skipped."""
    rows = reactions(10)
    portal = portal_factory(rows, config=PortalConfig(force_raw=(401, "Unauthorized")))
    csv_path = write_rows(tmp_path / "in.csv", rows)
    extra = ("--mode", mode, "--batch-size", "5", "--concurrency", "1")

    result = run_cli("run", csv_path, *portal_args(portal, tmp_path), *FAST, *extra)

    assert result.exit_code == 3, result.stderr
    assert portal.stats.requests == 1
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 10
    assert "HTTP_401" in result.stderr and "check the webhook or tokens" in result.stderr


def test_wrong_webhook_code_stops_the_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(10)
    portal = portal_factory(rows)
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = portal_args(portal, tmp_path)
    args[1] = portal.url + "/rest/1/not-the-code/"

    result = run_cli("run", csv_path, *args, *FAST, "--concurrency", "1", "--batch-size", "5")

    assert result.exit_code == 3
    assert "NO_AUTH_FOUND" in result.stderr and "Check the webhook URL" in result.stderr
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 10
    assert portal.stats.requests == 1


def test_dead_oauth_tokens_stop_the_run_as_invalid_token(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """A copy of the token file whose pair another run already rotated: invalid_token,
    not a refresh."""
    rows = reactions(10)
    portal = oauth_portal(portal_factory, rows)
    tokens = token_file(tmp_path, portal)
    assert refresh_directly(portal, json.loads(tokens.read_text())["refresh_token"]).ok
    portal.reset_stats()
    csv_path = write_rows(tmp_path / "in.csv", rows)

    result = run_cli("run", csv_path, *oauth_args(portal, tokens, "--concurrency", "1"))

    assert result.exit_code == 3
    assert "invalid_token" in result.stderr and "authorise the application" in result.stderr
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 10
    assert portal.stats.refreshes == 0


def test_insufficient_scope_per_command_stops_the_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(20)
    config = PortalConfig(
        command_error=("insufficient_scope", "The request requires higher privileges")
    )
    portal = portal_factory(rows, config=config)
    csv_path = write_rows(tmp_path / "in.csv", rows)
    extra = ("--batch-size", "5", "--concurrency", "1")

    result = run_cli("run", csv_path, *portal_args(portal, tmp_path), *FAST, *extra)

    assert result.exit_code == 3
    assert "insufficient_scope" in result.stderr and "'imbot' scope" in result.stderr
    assert portal.stats.batch_calls == 1
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 20


def test_access_denied_per_command_is_only_a_row_failure(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    """The bot is not in the message's chat: "Access denied" for that row, the run goes on."""
    rows = reactions(6)
    portal = portal_factory(rows)
    portal.state.add_message(500, 500, members=[])  # a chat BOT is not in
    portal.state.add_reaction(BOT, 500, "like")
    csv_path = write_rows(tmp_path / "in.csv", [*rows[:3], (BOT, 500, "like"), *rows[3:]])

    for mode in ("batch", "single"):
        report = tmp_path / f"{mode}.report.csv"
        result = run_cli(
            "run", csv_path, *portal_args(portal, tmp_path), *FAST, "--mode", mode,
            "--report", report,
        )  # fmt: skip
        assert result.exit_code == 1, result.stderr
        got = read_report(report)
        assert got[3]["status"] == "failed" and got[3]["error"] == "ACCESS_DENIED"
        assert got[3]["error_description"] == "Access denied"
        if mode == "batch":
            assert [r["status"] for r in got] == ["removed"] * 3 + ["failed"] + ["removed"] * 3
        assert "aborted" not in result.stderr


# --- plain http ----------------------------------------------------------------------------------


def test_http_webhook_to_a_remote_host_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    csv_path = write_rows(tmp_path / "in.csv", reactions(2))
    tokens = tmp_path / "bots.json"
    tokens.write_text(json.dumps({str(BOT): "t"}))
    url = "http://portal.example.com/rest/1/abcdefghijklmnop/"

    result = run_cli("run", csv_path, "--webhook", url, "--bot-tokens", tokens, *FAST)

    assert result.exit_code == 2
    assert "plain http:// to portal.example.com" in result.stderr
    assert "--allow-insecure-http" in result.stderr
    assert "abcdefghijklmnop" not in result.stderr
    assert not (tmp_path / "in.report.csv").exists()  # refused before anything was sent


def test_http_portal_and_oauth_server_are_refused(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = oauth_portal(portal_factory, reactions(2))
    tokens = token_file(tmp_path, portal)
    csv_path = write_rows(tmp_path / "in.csv", reactions(2))

    remote_portal = ["--portal", "http://example.bitrix24.com", "--oauth-file", tokens, *FAST]
    result = run_cli("run", csv_path, *remote_portal)
    assert result.exit_code == 2
    assert "portal: plain http:// to example.bitrix24.com" in result.stderr

    remote_oauth = oauth_args(portal, tokens)
    remote_oauth[remote_oauth.index("--oauth-server") + 1] = "http://oauth.example.com"
    result = run_cli("run", csv_path, *remote_oauth)
    assert result.exit_code == 2
    assert "OAuth server: plain http:// to oauth.example.com" in result.stderr

    # The same comes from a token file's server_endpoint.
    tokens = token_file(tmp_path, portal, server_endpoint="http://oauth.example.com/rest/")
    result = run_cli("run", csv_path, "--portal", portal.url, "--oauth-file", tokens, *FAST)
    assert result.exit_code == 2
    assert "OAuth server: plain http:// to oauth.example.com" in result.stderr
    assert portal.stats.requests == 0
    assert not (tmp_path / "in.report.csv").exists()


def test_redirect_to_plain_http_is_refused(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = reactions(10)
    portal = portal_factory(rows, config=PortalConfig(redirect_to="http://new-name.example.com"))
    csv_path = write_rows(tmp_path / "in.csv", rows)
    extra = ("--concurrency", "1", "--batch-size", "5")

    result = run_cli("run", csv_path, *portal_args(portal, tmp_path), *FAST, *extra)

    assert result.exit_code == 2, result.stderr
    assert "INSECURE_REDIRECT" in result.stderr
    assert "plain http:// to new-name.example.com" in result.stderr
    assert portal.stats.requests == 1  # the one that was answered with the redirect
    assert statuses(tmp_path / "in.report.csv") == ["skipped"] * 10


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/rest/1/code/",
        "http://[::1]/rest/1/code/",
        "http://localhost/rest/1/code/",
        "https://portal.example.com/rest/1/code/",
    ],
)
def test_loopback_and_https_are_accepted(url: str) -> None:
    assert WebhookAuth(url).base.endswith("/rest/1/code/")


def test_allow_insecure_http_is_decided_at_configuration(tmp_path: Path) -> None:
    url = "http://onprem.example.com/rest/1/code/"
    with pytest.raises(ConfigError, match="--allow-insecure-http"):
        WebhookAuth(url)
    assert WebhookAuth(url, allow_insecure_http=True).base == url

    tokens = tmp_path / "t.json"
    tokens.write_text(
        json.dumps(
            {"client_id": "a", "client_secret": "b", "access_token": "c", "refresh_token": "d"}
        )
    )
    for portal, server in [("http://onprem.example.com", None), ("https://x", "http://o.example")]:
        with pytest.raises(ConfigError, match="plain http://"):
            OAuthAuth(portal, TokenStore(tokens), oauth_server=server)
        auth = OAuthAuth(portal, TokenStore(tokens), oauth_server=server, allow_insecure_http=True)
        assert auth.base.startswith(portal)


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("https://oauth.bitrix.info", "https://oauth.bitrix.info"),
        ("https://oauth.bitrix.info/", "https://oauth.bitrix.info"),
        ("https://oauth.bitrix.info/rest/", "https://oauth.bitrix.info"),  # server_endpoint
        ("https://oauth.bitrix24.tech/oauth/token/", "https://oauth.bitrix24.tech"),
        ("oauth.bitrix24.tech", "https://oauth.bitrix24.tech"),
        ("http://127.0.0.1:8024/oauth/", "http://127.0.0.1:8024"),  # the sandbox's endpoint
    ],
)
def test_oauth_server_forms(given: str, base: str) -> None:
    assert oauth_base(given) == base


@pytest.fixture
def loopback_name() -> Iterator[str]:
    """A host name that resolves to 127.0.0.1 but is not a loopback literal, so the job
    treats it as remote; skips where the machine has none."""
    name = socket.gethostname()
    try:
        resolved = socket.gethostbyname(name)
    except OSError:
        resolved = ""
    if name in ("localhost", "") or not resolved.startswith("127."):
        pytest.skip("no host name resolving to 127.0.0.1 here")
    yield name


def test_allow_insecure_http_end_to_end(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, loopback_name: str
) -> None:
    rows = reactions(6)
    portal = portal_factory(rows)
    webhook = portal.webhook_url().replace("127.0.0.1", loopback_name)
    csv_path = write_rows(tmp_path / "in.csv", rows)
    args = ["--webhook", webhook, "--bot-tokens", str(bot_tokens_file(tmp_path, portal)), *FAST]

    refused = run_cli("run", csv_path, *args)
    assert refused.exit_code == 2
    assert f"plain http:// to {loopback_name}" in refused.stderr
    assert portal.stats.requests == 0

    allowed = run_cli("run", csv_path, *args, "--allow-insecure-http")
    assert allowed.exit_code == 0, allowed.stderr
    assert f"over plain http:// to {loopback_name}" in allowed.stderr  # a warning remains
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 6


def test_allow_insecure_http_follows_a_redirect_to_http(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, loopback_name: str
) -> None:
    rows = reactions(6)
    new = portal_factory(rows)
    old = portal_factory(
        rows, config=PortalConfig(redirect_to=new.url.replace("127.0.0.1", loopback_name))
    )
    csv_path = write_rows(tmp_path / "in.csv", rows)

    refused = run_cli("run", csv_path, *portal_args(old, tmp_path), *FAST)
    assert refused.exit_code == 2 and "INSECURE_REDIRECT" in refused.stderr
    assert new.stats.requests == 0

    allowed = run_cli("run", csv_path, *portal_args(old, tmp_path), *FAST, "--allow-insecure-http")
    assert allowed.exit_code == 0, allowed.stderr
    assert statuses(tmp_path / "in.report.csv") == ["removed"] * 6
    assert new.stats.removed == 6


def test_token_file_problems_are_usage_errors(run_cli: RunCli, tmp_path: Path) -> None:
    csv_path = write_rows(tmp_path / "in.csv", reactions(1))
    base = ["run", csv_path, "--portal", "https://example.bitrix24.com", *FAST]

    result = run_cli(*base, "--oauth-file", tmp_path / "missing.json")
    assert result.exit_code == 2 and "does not exist" in result.stderr

    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"client_id": APP, "access_token": "x" * 40}))
    result = run_cli(*base, "--oauth-file", partial)
    assert result.exit_code == 2
    assert "lack: client_secret, refresh_token" in result.stderr

    result = run_cli(*base)  # neither a file nor variables
    assert result.exit_code == 2
    assert "B24_CLIENT_ID" in result.stderr and "B24_REFRESH_TOKEN" in result.stderr


def test_sandbox_force_error_switch(portal_factory: PortalFactory) -> None:
    """The switch the tests above rely on answers any /rest/ call, before auth."""
    portal = portal_factory([], config=PortalConfig(force_error=(503, "OVERLOAD_LIMIT", "x")))
    answer = requests.post(portal.url + "/rest/1/wrong/profile.json", json={}, timeout=10)
    assert (answer.status_code, answer.json()["error"]) == (503, "OVERLOAD_LIMIT")
    portal.config.force_error = None
    answer = requests.post(portal.url + "/rest/1/wrong/profile.json", json={}, timeout=10)
    assert answer.json()["error"] == "NO_AUTH_FOUND"
