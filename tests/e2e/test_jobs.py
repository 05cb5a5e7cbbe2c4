"""Issue 8: job files, the inbox, check-job and the logs of scheduled runs.

Every test drives the real CLI (`run-job`, `check-job`) against the sandbox portal over
HTTP and asserts what an operator sees: exit codes, messages, which files are where, the
reports and what the portal really did.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import Result
from filelock import FileLock

from cleanup.cli import main
from cleanup.exits import worst
from cleanup.jobs.credentials import resolve_run_options
from cleanup.jobs.inbox import list_sources
from cleanup.jobs.process import run_job_file
from cleanup.jobs.schema import JOB_KEYS, job_keys, load_job_file
from cleanup.run.runner import StopSignal
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.cli import read_report, write_rows
from tests.helpers.jobs import BOT, ENV, Setup, likes
from tests.helpers.processes import lines_of, sigterm_when

DELETE = "imbot.v2.Chat.Message.Reaction.delete"
PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]
EXAMPLES = Path(__file__).resolve().parents[2] / "jobs"


@pytest.fixture
def setup(portal_factory: PortalFactory, tmp_path: Path) -> Callable[..., Setup]:
    def make(reactions: list[tuple[int, int, str]] | None = None, **keys: Any) -> Setup:
        portal = portal_factory(likes(10) if reactions is None else reactions)
        return Setup(tmp_path, portal, **keys)

    return make


def run_file(run_cli: RunCli, s: Setup, *extra: Any, env: dict[str, str] | None = None) -> Result:
    return run_cli("run-job", s.job, *extra, env=s.env if env is None else env)


def deletes(portal: SandboxPortal) -> int:
    """Requests that reached the portal for the delete method (batch or single)."""
    return sum(1 for r in portal.stats.log if r.path_method in ("batch", DELETE))


# --------------------------------------------------------------------------- the inbox


def test_inbox_run_twice_second_run_does_nothing(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("cleanup.csv", [(BOT, 1001 + i, "like") for i in range(10)])

    first = run_file(run_cli, s)
    assert first.exit_code == 0, first.output
    [report] = s.reports_of()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z_cleanup_[0-9a-f]{8}\.report\.csv", report.name)
    assert [r["status"] for r in read_report(report)] == ["removed"] * 10
    assert report.with_name(report.name + ".summary.json").exists()
    assert report.with_suffix(".html").exists()
    assert not (s.inbox / "cleanup.csv").exists()
    assert (s.archive / "cleanup.csv").exists()
    assert s.portal.state.snapshot() == set()
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("SUMMARY job=test-job ") and "exit=0" in last and "removed=10" in last
    code = s.portal.webhook_url().rstrip("/").rsplit("/", 1)[1]
    tokens = [b.token for b in s.portal.state.bots.values()]
    for written in s.reports.rglob("*"):  # report, summary, HTML, journal, state, index
        if not written.is_file():
            continue
        text = written.read_text(errors="replace")
        assert code not in text and not any(t in text for t in tokens), written.name
    assert code not in first.output

    sent = deletes(s.portal)
    second = run_file(run_cli, s)
    assert second.exit_code == 0
    assert second.output == ""  # quiet: nothing for cron to mail
    assert deletes(s.portal) == sent
    assert len(s.reports_of()) == 1


def test_renamed_copy_is_not_processed_again_but_an_edited_file_is(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(likes(12))
    rows = [(BOT, 1001 + i, "like") for i in range(10)]
    s.drop("monday.csv", rows)
    assert run_file(run_cli, s).exit_code == 0
    sent = deletes(s.portal)

    # The same content under another name: already done, so it only goes to the archive.
    shutil.copy(s.archive / "monday.csv", s.inbox / "monday (copy).csv")
    again = run_file(run_cli, s)
    assert again.exit_code == 0, again.output
    assert deletes(s.portal) == sent
    assert len(s.reports_of()) == 1
    assert (s.archive / "monday (copy).csv").exists()
    assert "already processed" in again.stderr

    # Edited: two rows more, so another content: processed, with its own report.
    s.drop("monday.csv", [*rows, (BOT, 1011, "like"), (BOT, 1012, "like")])
    edited = run_file(run_cli, s)
    # The first ten were removed last time, so the portal answers REACTION_NOT_FOUND: they
    # are absent (not there: nothing to remove), not failures: exit 0.
    assert edited.exit_code == 0, edited.output
    reports = s.reports_of()
    assert len(reports) == 2
    newest = max(reports, key=lambda p: p.stat().st_mtime)
    assert [r["status"] for r in read_report(newest)] == ["absent"] * 10 + ["removed"] * 2
    assert s.portal.state.snapshot() == set()
    # The archive already has a monday.csv: the new one is kept beside it, not over it.
    assert len(list(s.archive.glob("monday*.csv"))) == 3


def test_nothing_in_the_inbox_exits_0_quietly(run_cli: RunCli, setup: Callable[..., Setup]) -> None:
    s = setup()
    result = run_file(run_cli, s)
    assert result.exit_code == 0
    assert result.output == ""
    assert s.portal.stats.requests == 0


def test_unfinished_file_stays_in_the_inbox_and_the_next_run_resumes_it(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(likes(6))
    s.drop("rows.csv", likes(6))
    rejected = run_file(run_cli, s, env={ENV: s.portal.webhook_url().replace("sandbox", "wrong")})
    assert rejected.exit_code == 3, rejected.output
    assert "NO_AUTH_FOUND" in rejected.stderr
    assert (s.inbox / "rows.csv").exists()  # not complete: not archived
    assert not s.archive.exists() or not any(s.archive.iterdir())
    [report] = s.reports_of()
    assert {r["status"] for r in read_report(report)} == {"skipped"}
    assert "next run resumes" in rejected.stderr

    resumed = run_file(run_cli, s)
    assert resumed.exit_code == 0, resumed.output
    assert "(resumed)" in resumed.stderr
    assert s.reports_of() == [report]  # the same report, completed
    rows = read_report(report)
    assert [r["row"] for r in rows] == [str(i) for i in range(1, 7)]
    assert [r["status"] for r in rows] == ["removed"] * 6
    assert (s.archive / "rows.csv").exists()
    assert not (s.inbox / "rows.csv").exists()


def test_sigterm_leaves_the_file_for_the_next_run_which_finishes_it(
    portal_factory: PortalFactory, tmp_path: Path, run_cli: RunCli
) -> None:
    portal = portal_factory(likes(30) + likes(2, first=2001), PortalConfig(latency=0.15))
    s = Setup(tmp_path, portal, mode="single", concurrency=1)
    s.drop("slow.csv", likes(30))
    s.drop("later.csv", likes(2, first=2001))
    past = time.time() - 100
    os.utime(s.inbox / "slow.csv", (past, past))  # the oldest is taken first
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleanup", "run-job", str(s.job)],
        env={**os.environ, **s.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = sigterm_when(proc, lambda: any(lines_of(r) >= 4 for r in s.reports_of()[:1]))
    assert proc.returncode == 143, err
    assert (s.inbox / "slow.csv").exists()
    assert (s.inbox / "later.csv").exists()  # the loop stopped: not even started
    [report] = s.reports_of()
    assert "skipped" in {r["status"] for r in read_report(report)}
    assert "SUMMARY job=test-job" in err and "status=interrupted exit=143" in err

    portal.config.latency = 0.0
    s.write_job(mode="single")
    result = run_file(run_cli, s)
    assert result.exit_code == 0, result.output
    rows = read_report(report)
    assert len(rows) == 30 and {r["status"] for r in rows} == {"removed"}
    assert len(s.reports_of()) == 2  # slow.csv's, completed, and later.csv's
    assert sorted(p.name for p in s.archive.iterdir()) == ["later.csv", "slow.csv"]
    assert portal.state.snapshot() == set()


def test_exit_code_is_the_worst_of_the_files(run_cli: RunCli, setup: Callable[..., Setup]) -> None:
    s = setup(likes(3))
    s.drop("good.csv", likes(3))
    s.drop("failing.csv", [(BOT, 9999, "like")])  # no such message: failed (exit 1)
    (s.inbox / "broken.csv").write_text("id;text\n1;hello\n")  # no botId column: exit 2
    result = run_file(run_cli, s)
    assert result.exit_code == 2, result.output
    assert "broken.csv" in result.stderr and "botId" in result.stderr
    assert (s.archive / "good.csv").exists() and (s.archive / "failing.csv").exists()
    assert (s.inbox / "broken.csv").exists()  # never processed: stays, and is tried again
    assert "exit=2" in result.stderr.strip().splitlines()[-1]


def test_worst_exit_code_order() -> None:
    assert worst([]) == 0
    assert worst([0, 1, 0]) == 1
    assert worst([1, 4]) == 4
    assert worst([4, 2, 1]) == 2
    assert worst([2, 3, 1]) == 3
    assert worst([3, 143, 1]) == 143


def test_a_second_run_of_the_job_is_refused_while_one_holds_its_lock(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("rows.csv", likes(3))
    s.reports.mkdir()
    with FileLock(str(s.reports / ".reaction-cleanup" / "test-job.job.lock"), timeout=0):
        result = run_file(run_cli, s)
    assert result.exit_code == 4
    assert "another run of job 'test-job' is still working" in result.stderr
    assert (s.inbox / "rows.csv").exists()
    assert s.portal.stats.requests == 0


def test_a_file_still_being_copied_in_waits_for_the_next_run(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(min_age=3600)
    s.drop("fresh.csv", likes(3))
    (s.inbox / ".hidden.csv").write_text("botId,messageId,reaction\n456,1001,like\n")
    (s.inbox / "upload.csv.part").write_text("botId,messageId,reaction\n456,1001,like\n")
    result = run_file(run_cli, s)
    assert result.exit_code == 0
    assert "leaving fresh.csv for the next run" in result.stderr
    assert s.portal.stats.requests == 0


def test_a_file_dropped_in_just_before_the_run_is_waited_for_and_taken(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    """Copy a file into the inbox and run at once: the run waits until the file is min_age
    old (it stayed unchanged) and processes it, instead of leaving it for the next run."""
    s = setup(min_age=1)
    s.drop("fresh.csv", likes(3))
    os.utime(s.inbox / "fresh.csv")  # changed just now
    result = run_file(run_cli, s)
    assert result.exit_code == 0, result.output
    assert "to stay unchanged" in result.stderr
    assert "leaving fresh.csv" not in result.stderr
    assert [r["status"] for r in read_report(s.reports_of()[0])] == ["removed"] * 3
    assert (s.archive / "fresh.csv").exists()


def test_check_job_counts_a_file_dropped_in_just_now_as_new(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(min_age=5)
    s.drop("fresh.csv", likes(3))
    result = run_cli("check-job", s.job, env=s.env)
    assert result.exit_code == 0, result.output
    assert "1 spreadsheet(s): 1 new" in result.stdout
    assert "leaving" not in result.output


def test_a_file_that_changes_while_waited_for_is_left_for_the_next_run(
    setup: Callable[..., Setup],
) -> None:
    s = setup(min_age=5)
    path = s.drop("growing.csv", likes(3))
    job = load_job_file(s.job)

    def still_copying(seconds: float) -> bool:
        assert seconds <= 5
        with path.open("a") as fh:
            fh.write("456,1999,like\n")
        return True

    sources, notes = list_sources(job, now=time.time(), settle=still_copying)
    assert sources == []
    assert any("leaving growing.csv for the next run" in n for n in notes)
    # Without a way to wait (check-job), a young file is only noted.
    sources, notes = list_sources(job, now=path.stat().st_mtime)
    assert sources == [] and "leaving growing.csv" in notes[0]


def test_a_signal_before_any_file_is_taken_still_exits_as_interrupted(
    setup: Callable[..., Setup],
) -> None:
    """SIGTERM while the run waits for a young file (or between files) must not end as a
    quiet success: the files not reached wait for the next run, and the exit code says so."""
    s = setup(min_age=5)
    s.drop("fresh.csv", likes(3))
    job = load_job_file(s.job)
    stop = StopSignal()
    stop.stop("SIGTERM")
    base = resolve_run_options(job, {}, {}, environ=s.env)
    result = run_job_file(job, base, run_id="r1", stop=stop)
    assert result.files == []
    assert result.stopped == "SIGTERM"
    assert result.exit_code == 143
    assert (s.inbox / "fresh.csv").exists()
    assert s.portal.stats.requests == 0


def test_input_glob_without_archive_processes_each_file_once(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(likes(4), inbox=None, archive=None, input="exports/*.csv")
    exports = s.root / "exports"
    exports.mkdir()
    write_rows(exports / "a.csv", likes(2))
    write_rows(exports / "b.csv", likes(2, first=1003))
    first = run_file(run_cli, s)
    assert first.exit_code == 0, first.output
    assert len(s.reports_of()) == 2
    assert (exports / "a.csv").exists() and (exports / "b.csv").exists()  # no archive: left
    sent = deletes(s.portal)
    second = run_file(run_cli, s)
    assert second.exit_code == 0 and second.output == ""
    assert deletes(s.portal) == sent


def test_one_named_input_run_twice_second_run_is_quiet(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(likes(3), inbox=None, input="exports/one.csv")
    (s.root / "exports").mkdir()
    write_rows(s.root / "exports" / "one.csv", likes(3))
    first = run_file(run_cli, s)
    assert first.exit_code == 0, first.output
    assert (s.archive / "one.csv").exists()
    second = run_file(run_cli, s)
    assert second.exit_code == 0
    assert second.output == ""


def test_json_logs_carry_one_run_id_and_end_with_the_summary_event(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("rows.csv", likes(3))
    result = run_file(run_cli, s, "--log-format", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert len({e["run_id"] for e in events}) == 1
    assert events[-1]["event"] == "job_summary"
    assert events[-1]["removed"] == 3 and events[-1]["exit_code"] == 0
    assert events[-1]["message"].startswith("SUMMARY job=test-job ")
    [file_event] = [e for e in events if e.get("event") == "file"]
    assert file_event["by_status"]["removed"] == 3 and file_event["archived_to"]


def test_run_html_option_writes_the_review_page(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(2))
    path = write_rows(tmp_path / "in.csv", likes(2))
    tokens = tmp_path / "t.json"
    tokens.write_text(json.dumps({str(b.id): b.token for b in portal.state.bots.values()}))
    html = tmp_path / "review.html"
    result = run_cli(
        "run", path, "--webhook", portal.webhook_url(), "--bot-tokens", tokens,
        "--progress", "none", "--html", html,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"html: {html}" in result.stderr
    assert 'data-count="2"' in html.read_text()
    assert result.stderr.strip().splitlines()[-1].startswith("SUMMARY run=")


# --------------------------------------------------------------------------- job files


def test_check_job_names_a_missing_environment_variable(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(webhook_env="B24_JOB_TEST_NOT_SET")
    result = run_cli("check-job", s.job, env={"B24_JOB_TEST_NOT_SET": None})
    assert result.exit_code == 2
    assert "the environment variable B24_JOB_TEST_NOT_SET is not set" in result.stderr
    assert s.portal.stats.requests == 0
    # run-job refuses the same way, before touching the inbox.
    s.drop("rows.csv", likes(2))
    refused = run_cli("run-job", s.job)
    assert refused.exit_code == 2 and "B24_JOB_TEST_NOT_SET" in refused.stderr
    assert (s.inbox / "rows.csv").exists()


def test_check_job_names_a_missing_file_and_every_other_problem(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(bot_tokens_file="nowhere/tokens.json", inbox="no-such-inbox")
    result = run_cli("check-job", s.job, env=s.env)
    assert result.exit_code == 2
    assert f"{s.root / 'nowhere' / 'tokens.json'} does not exist" in result.stderr
    assert "no-such-inbox is not a folder" in result.stderr


def test_check_job_accepts_good_credentials_and_removes_nothing(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("rows.csv", likes(3))
    result = run_cli("check-job", s.job, env=s.env)
    assert result.exit_code == 0, result.output
    assert "webhook credentials accepted" in result.stdout
    assert "1 spreadsheet(s): 1 new" in result.stdout
    assert len(s.portal.state.snapshot()) == 10
    assert not any(r.path_method in ("batch", DELETE) for r in s.portal.stats.log)
    assert (s.inbox / "rows.csv").exists()
    assert s.portal.webhook_url() not in result.output


def test_check_job_on_a_portal_without_profile_checks_with_an_empty_batch(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.portal.config.missing_methods = ("profile", "scope")
    good = run_cli("check-job", s.job, env=s.env)
    assert good.exit_code == 0, good.output
    assert "webhook credentials accepted" in good.stdout
    assert [r.path_method for r in s.portal.stats.log][:2] == ["profile", "batch"]
    assert len(s.portal.state.snapshot()) == 10  # nothing removed

    bad = s.portal.webhook_url().replace("/rest/1/", "/rest/1/x")
    refused = run_cli("check-job", s.job, env={ENV: bad})
    assert refused.exit_code == 3
    assert "NO_AUTH_FOUND" in refused.stderr


def test_check_job_under_json_logs_writes_only_json_lines(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("rows.csv", likes(3))
    result = run_cli("check-job", s.job, "--log-format", "json", env=s.env)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert len({e["run_id"] for e in events}) == 1
    assert any("webhook credentials accepted" in e["message"] for e in events)
    assert events[-1]["event"] == "check_job" and events[-1]["exit_code"] == 0
    assert "ready to run" in events[-1]["message"]


def test_check_job_exits_3_when_the_portal_rejects_the_credentials(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    code = s.portal.webhook_url().rstrip("/").rsplit("/", 1)[1]
    bad = s.portal.webhook_url().replace(code, "not-the-code")
    result = run_cli("check-job", s.job, env={ENV: bad})
    assert result.exit_code == 3
    assert "NO_AUTH_FOUND" in result.stderr
    assert "not-the-code" not in result.output


def test_unknown_keys_are_refused_by_name(run_cli: RunCli, setup: Callable[..., Setup]) -> None:
    s = setup(max_retry=3, colums={"botId": "Bot"}, mode="fast")
    for command in ("check-job", "run-job"):
        result = run_cli(command, s.job, env=s.env)
        assert result.exit_code == 2
        assert "unknown key 'max_retry' (did you mean 'max_retries'?)" in result.stderr
        assert "unknown key 'colums' (did you mean 'columns'?)" in result.stderr
        assert "mode must be one of" in result.stderr
    assert s.portal.stats.requests == 0


def test_a_secret_in_the_job_file_is_refused_and_not_echoed(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    # Put together here so that no webhook-shaped literal sits in the repository.
    code = "s3cr3t" + "c0de"
    url = "https://portal.example/rest/1/" + code + "/"
    s = setup(webhook_env=None, webhook=url)
    result = run_cli("check-job", s.job)
    assert result.exit_code == 2
    assert "'webhook' would put a secret in the job file" in result.stderr
    assert "webhook_env" in result.stderr
    assert code not in result.output
    s.write_job(webhook_env=url)
    result = run_cli("check-job", s.job)
    assert result.exit_code == 2 and "NAME of an environment variable" in result.stderr
    assert code not in result.output


def test_command_line_overrides_the_job_file(run_cli: RunCli, setup: Callable[..., Setup]) -> None:
    s = setup(likes(20), batch_size=50, mode="batch", columns={"botId": "Bot"})
    write_rows(s.inbox / "rows.csv", likes(20), header=("Bot", "messageId", "reaction"))
    result = run_file(run_cli, s, "--batch-size", "7", "--max-retries", "2")
    assert result.exit_code == 0, result.output
    [report] = s.reports_of()
    settings = json.loads(report.with_name(report.name + ".summary.json").read_text())["settings"]
    assert settings["batch_size"] == 7 and settings["max_retries"] == 2  # command line
    assert settings["mode"] == "batch" and settings["columns"] == {"botId": "Bot"}  # job file
    assert settings["label"] == "test-job"
    batches = [r.n_commands for r in s.portal.stats.log if r.path_method == "batch"]
    assert sorted(batches) == [6, 7, 7]


def test_the_job_files_webhook_wins_over_the_usual_environment_variable(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("rows.csv", likes(2))
    env = {**s.env, "B24_WEBHOOK_URL": "https://elsewhere.example/rest/9/other/"}
    result = run_file(run_cli, s, env=env)
    assert result.exit_code == 0, result.output


def test_every_run_option_has_a_job_file_key() -> None:
    run = main.get_command(click.Context(main), "run")
    assert run is not None
    keys = set(job_keys())
    renamed = {"webhook": "webhook_env", "bot_tokens": "bot_tokens_file", "report": "reports"}
    for param in run.params:
        if param.name in ("input_file", "quiet", "verbose", "log_format", "html_path"):
            continue
        assert renamed.get(param.name, param.name) in keys, param.name


def test_example_job_file_loads_and_documents_every_key() -> None:
    job = load_job_file(EXAMPLES / "example.toml")
    assert job.name == "nightly-cleanup" and job.webhook_env == "B24_WEBHOOK_URL"
    text = (EXAMPLES / "example.toml").read_text()
    for key in [*JOB_KEYS, *job_keys()]:
        assert re.search(rf"^#? ?{key} = ", text, re.M), f"{key} is not documented"


def test_oauth_job_with_a_token_file_next_to_it(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = likes(4)
    portal = portal_factory(
        rows, oauth_apps={"app.test": "app-secret"}, bot_client_ids={BOT: "app.test"}
    )
    issued = portal.issue_tokens("app.test")
    tokens = {
        "client_id": "app.test",
        "client_secret": "app-secret",
        "access_token": issued["access_token"],
        "refresh_token": issued["refresh_token"],
    }
    s = Setup(tmp_path, portal, webhook_env=None, bot_tokens_file=None)
    (tmp_path / "oauth.json").write_text(json.dumps(tokens))
    s.write_job(
        webhook_env=None,
        bot_tokens_file=None,
        portal=portal.url,
        oauth_file="oauth.json",
        oauth_server=portal.url,
    )
    s.drop("rows.csv", rows)
    checked = run_cli("check-job", s.job)
    assert checked.exit_code == 0, checked.output
    assert "oauth credentials accepted" in checked.stdout
    portal.expire_access_tokens()  # the run refreshes once and saves the new pair
    result = run_cli("run-job", s.job)
    assert result.exit_code == 0, result.output
    assert portal.state.snapshot() == set()
    saved = json.loads((tmp_path / "oauth.json").read_text())
    assert saved["refresh_token"] != tokens["refresh_token"]
    assert tokens["access_token"] not in result.output


def test_json_log_format_keeps_problems_parseable(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup(max_retry=3)
    result = run_cli("run-job", s.job, "--log-format", "json", env=s.env)
    assert result.exit_code == 2
    [event] = [json.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "error" and "max_retry" in event["message"]


def test_dry_run_plans_each_new_file_and_changes_nothing(
    run_cli: RunCli, setup: Callable[..., Setup]
) -> None:
    s = setup()
    s.drop("rows.csv", [*likes(3), ("abc", 1, "like")])
    result = run_file(run_cli, s, "--dry-run")
    assert result.exit_code == 1, result.output  # one invalid row
    assert "dry run of" in result.stderr and "3 to send, 1 invalid" in result.stderr
    assert s.portal.stats.requests == 0
    assert (s.inbox / "rows.csv").exists()
    assert not s.reports.exists() or not any(s.reports.iterdir())
