"""Issue 12 §3, undo: `reaction-cleanup undo REPORT` adds back, with Reaction.add, every
reaction the report shows removed, through the same machinery as `run` (batches, fallback,
retries, lost replies, journal, lock, --resume). Checked against the sandbox over real
HTTP: after a run and its undo the portal holds exactly what it held before, for every
row, also through lost replies, a kill -9 and --resume, and a portal that refuses .add in
a batch. Also: consent (--yes, a terminal's question), the lock, nothing to restore,
--rows, --only-error, --dry-run, and the commands on the HTML page.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from cleanup.run.actions import ADD_METHOD, ALREADY_ABSENT, ALREADY_SET, ALREADY_SET_ON_RETRY
from cleanup.sandbox import PortalConfig
from tests.helpers.faults import CountingPortal, Key, args, left, start, workload, write_input
from tests.helpers.processes import kill9, spawn, wait_until

RunCli = Callable[..., Result]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def removed_rows(report: Path) -> dict[int, Key]:
    """Row number -> key, for each line the run reported removed."""
    return {
        int(r["row"]): (int(r["botId"]), int(r["messageId"]), r["reaction"])
        for r in read_csv(report)
        if r["status"] == "removed"
    }


def run_first(
    run_cli: RunCli, tmp_path: Path, n: int = 60, config: PortalConfig | None = None
) -> tuple[CountingPortal, list[Key], list[Key], Path]:
    """A portal, a run over `n` rows of it (every 10th names a reaction never set), and
    that run's report."""
    rows, existing = workload(n)
    portal = start(existing, config)
    path = write_input(tmp_path / "in.csv", rows)
    result = run_cli("run", path, *args(portal, tmp_path), "--batch-size", "10")
    assert result.exit_code == 1, result.stderr  # the never-set reactions fail
    return portal, rows, existing, tmp_path / "in.report.csv"


def undo(
    run_cli: RunCli,
    portal: CountingPortal,
    tmp_path: Path,
    *extra: object,
    input: str | None = None,
) -> Result:
    report = tmp_path / "in.report.csv"
    cli = ["undo", report, *args(portal, tmp_path), "--batch-size", "10", *extra]
    return run_cli(*cli, input=input)


def assert_restored(
    undo_report: Path, removed: dict[int, Key], existing: list[Key], portal: CountingPortal
) -> list[dict[str, str]]:
    """The portal holds what it held before the run, and the undo report has one
    `restored` line per removed row, with its original number."""
    assert left(portal) == set(existing)
    lines = read_csv(undo_report)
    assert [int(r["row"]) for r in lines] == sorted(removed)
    for line in lines:
        key = (int(line["botId"]), int(line["messageId"]), line["reaction"])
        assert key == removed[int(line["row"])]
        assert line["status"] == "restored", line
    return lines


def adds_sent(portal: CountingPortal) -> int:
    return portal.stats.commands_executed


# ------------------------------------------------------------------ restores exactly


def test_undo_restores_exactly_the_removed_rows(run_cli: RunCli, tmp_path: Path) -> None:
    portal, rows, existing, report = run_first(run_cli, tmp_path)
    removed = removed_rows(report)
    assert len(removed) == 54 and left(portal) == {k for k in existing if k not in rows}

    result = undo(run_cli, portal, tmp_path, "--yes")

    assert result.exit_code == 0, result.stderr
    lines = assert_restored(tmp_path / "in.report.undo.csv", removed, existing, portal)
    assert {(r["error"], r["error_description"], r["attempts"]) for r in lines} == {("", "", "1")}
    summary = json.loads((tmp_path / "in.report.undo.csv.summary.json").read_text())
    assert summary["by_status"] == {"restored": 54, "failed": 0, "skipped": 0}
    assert summary["undo_of"] == str(report)
    assert summary["left_out"] == 6  # the failed rows get no line
    assert "undo of" in result.stderr and "restored" in result.stderr
    # Issue 18 item 3 (run, undo and run-job alike); QA round 2: undo said none.
    assert "estimate: 54 row(s) in " in result.stderr, result.stderr
    assert summary["estimate"]["rows"] == 54


def test_undo_through_lost_replies_on_both_sides(run_cli: RunCli, tmp_path: Path) -> None:
    # The run loses a reply (those rows are "removed, already absent on retry": it removed
    # them, so the undo adds them back); the undo loses one too, and its re-send answers
    # REACTION_ALREADY_SET: restored, saying so.
    rows, existing = workload(40)
    # Row 4 names a reaction that is set: after a lost reply, a never-set one would read
    # "already absent" too (REACTION_NOT_FOUND cannot tell them apart), and the undo would
    # add a reaction that was never there.
    rows[3] = existing[3]
    portal = start(existing)
    portal.inject("lost_reply")
    path = write_input(tmp_path / "in.csv", rows)
    run = run_cli("run", path, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "1")
    assert run.exit_code == 1, run.stderr
    report = tmp_path / "in.report.csv"
    absent = [r for r in read_csv(report) if r["error_description"] == ALREADY_ABSENT]
    assert len(absent) == 10  # the first batch
    removed = removed_rows(report)

    portal.inject("lost_reply")
    result = undo(run_cli, portal, tmp_path, "--yes", "--concurrency", "1")

    assert result.exit_code == 0, result.stderr
    lines = assert_restored(tmp_path / "in.report.undo.csv", removed, existing, portal)
    first_batch = lines[:10]
    assert {(r["error_description"], r["attempts"]) for r in first_batch} == {
        (ALREADY_SET_ON_RETRY, "2")
    }
    assert {r["error_description"] for r in lines[10:]} == {""}


def test_reaction_already_set_is_restored_with_that_note(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, existing, report = run_first(run_cli, tmp_path, n=20)
    removed = removed_rows(report)
    bot, message, reaction = removed[2]
    portal.state.add_reaction(bot, message, reaction)  # someone put it back meanwhile

    result = undo(run_cli, portal, tmp_path, "--yes")

    assert result.exit_code == 0, result.stderr
    lines = assert_restored(tmp_path / "in.report.undo.csv", removed, existing, portal)
    by_row = {int(r["row"]): r for r in lines}
    assert (by_row[2]["status"], by_row[2]["error"], by_row[2]["error_description"]) == (
        "restored",
        "",
        ALREADY_SET,
    )
    assert "REACTION_ALREADY_SET" in ALREADY_SET


@pytest.mark.parametrize("refusal", ["call", "command"])
def test_batch_refusal_falls_back_to_single_adds(
    run_cli: RunCli, tmp_path: Path, refusal: str
) -> None:
    portal, _, existing, report = run_first(run_cli, tmp_path, n=30)
    removed = removed_rows(report)
    portal.config.batch_not_allowed = refusal  # this portal refuses .add inside batch
    executed = adds_sent(portal)

    result = undo(run_cli, portal, tmp_path, "--yes")

    assert result.exit_code == 0, result.stderr
    assert_restored(tmp_path / "in.report.undo.csv", removed, existing, portal)
    summary = json.loads((tmp_path / "in.report.undo.csv.summary.json").read_text())
    assert summary["fallback_to_single"].startswith("ERROR_BATCH_METHOD_NOT_ALLOWED")
    assert summary["single_requests"] == len(removed)
    assert adds_sent(portal) - executed == len(removed)  # each add ran once
    assert ADD_METHOD in result.stderr  # the warning names the method refused


def test_undo_of_a_run_that_fell_back_estimates_single_calls(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # QA round 3: the undo of a run whose portal refused batch estimated batches ("1 s" for
    # a 249 s undo); the undone report's summary says the portal refused batch.
    portal, _, _, report = run_first(
        run_cli, tmp_path, n=30, config=PortalConfig(batch_not_allowed="call")
    )
    assert json.loads(Path(f"{report}.summary.json").read_text())["fallback_to_single"]

    result = undo(run_cli, portal, tmp_path, "--yes")

    assert result.exit_code == 0, result.stderr
    assert "single calls (the portal refused batch in the run of in.report.csv)" in result.stderr
    summary = json.loads((tmp_path / "in.report.undo.csv.summary.json").read_text())
    assert summary["estimate"]["mode"] == "single"


@pytest.mark.slow
def test_kill9_during_undo_then_resume(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, existing, report = run_first(run_cli, tmp_path, n=400)
    removed = removed_rows(report)
    portal.config.latency = 0.02
    portal.config.fault_rates = {"lost_reply": 0.03}
    cli = ["undo", report, *args(portal, tmp_path), "--batch-size", "10", "--concurrency", "2",
           "--yes"]  # fmt: skip
    requests_before = portal.stats.requests
    proc = spawn(cli, tmp_path)
    wait_until(lambda: portal.stats.requests >= requests_before + 8, proc)
    kill9(proc)
    wait_until(lambda: portal.stats.in_flight == 0)
    assert left(portal) != set(existing)  # killed half-way

    result = run_cli(*cli, "--resume")

    assert result.exit_code == 0, result.stderr
    lines = assert_restored(tmp_path / "in.report.undo.csv", removed, existing, portal)
    assert "kept from the earlier run" in result.stderr
    noted = {r["error_description"] for r in lines} - {""}
    assert noted <= {ALREADY_SET, ALREADY_SET_ON_RETRY}


# ------------------------------------------------------------------ consent, lock, nothing


def test_without_a_terminal_undo_needs_yes(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, _, _ = run_first(run_cli, tmp_path, n=20)
    state = left(portal)
    executed = adds_sent(portal)

    result = undo(run_cli, portal, tmp_path)

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "give --yes" in result.stderr and "18 reaction(s)" in result.stderr
    assert left(portal) == state and adds_sent(portal) == executed
    assert not (tmp_path / "in.report.undo.csv").exists()


@pytest.mark.parametrize("answer, restored", [("n\n", False), ("y\n", True)])
def test_on_a_terminal_undo_asks_first(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, restored: bool
) -> None:
    monkeypatch.setattr("cleanup.cli.undo.stdin_is_terminal", lambda: True)
    portal, _, existing, _ = run_first(run_cli, tmp_path, n=20)
    state = left(portal)

    result = undo(run_cli, portal, tmp_path, input=answer)

    assert result.exit_code == 0, result.stderr
    assert "Add back 18 reaction(s)" in result.stderr
    assert "on 127.0.0.1?" in result.stderr  # the host only: the webhook's code is a secret
    assert "sandbox-webhook-code" not in result.stderr
    if restored:
        assert left(portal) == set(existing)
    else:
        assert left(portal) == state and "nothing was sent" in result.stderr


def test_a_report_still_being_written_is_refused_with_4(run_cli: RunCli, tmp_path: Path) -> None:
    rows, existing = workload(300)
    portal = start(existing, PortalConfig(latency=0.03))
    path = write_input(tmp_path / "in.csv", rows)
    running = spawn(["run", path, *args(portal, tmp_path), "--batch-size", "10",
                     "--concurrency", "1"], tmp_path)  # fmt: skip
    wait_until(lambda: portal.stats.requests >= 2, running)

    result = undo(run_cli, portal, tmp_path, "--yes")

    assert result.exit_code == 4, result.stderr
    assert "another reaction-cleanup run is working on" in result.stderr
    assert str(tmp_path / "in.report.csv") in result.stderr
    assert running.poll() is None
    _, err = running.communicate(timeout=60)
    assert running.returncode == 1, err.decode()
    assert not (tmp_path / "in.report.undo.csv").exists()


def test_nothing_to_restore_exits_0_and_says_so(run_cli: RunCli, tmp_path: Path) -> None:
    # Every row names a reaction that was never set: the report has no removed row.
    portal = start([(101, 10_000, "like")])
    path = write_input(tmp_path / "in.csv", [(101, 10_000, "fire"), (101, 10_000, "cry")])
    assert run_cli("run", path, *args(portal, tmp_path)).exit_code == 1
    requests = portal.stats.requests

    result = undo(run_cli, portal, tmp_path)  # no --yes needed to do nothing

    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"reaction-cleanup: nothing to restore: {tmp_path / 'in.report.csv'} shows no removed row\n"
    )
    assert portal.stats.requests == requests
    assert not (tmp_path / "in.report.undo.csv").exists()


# ------------------------------------------------------------------ choosing rows


def test_rows_limits_what_is_restored(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, _, report = run_first(run_cli, tmp_path, n=30)
    removed = removed_rows(report)
    before = left(portal)

    result = undo(run_cli, portal, tmp_path, "--yes", "--rows", "2,4-8,29")

    assert result.exit_code == 0, result.stderr
    chosen = [r for r in (2, 5, 6, 7, 8, 29)]  # row 4 failed in the run: nothing to restore
    lines = read_csv(tmp_path / "in.report.undo.csv")
    assert [(int(r["row"]), r["status"]) for r in lines] == [(r, "restored") for r in chosen]
    assert left(portal) == before | {removed[r] for r in chosen}


def test_bad_rows_value_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, _, _ = run_first(run_cli, tmp_path, n=10)
    result = undo(run_cli, portal, tmp_path, "--yes", "--rows", "5-2")
    assert result.exit_code == 2
    assert "--rows: '5-2' is not a row number or a range" in result.stderr


def test_only_error_sends_again_the_restores_that_failed(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, existing, report = run_first(run_cli, tmp_path, n=30)
    removed = removed_rows(report)
    # The first undo is given a tokens file without bot 103: its rows cannot be sent.
    tokens = {str(b.id): b.token for b in portal.state.bots.values() if b.id != 103}
    partial = tmp_path / "partial_tokens.json"
    partial.write_text(json.dumps(tokens))
    first = run_cli("undo", report, *args(portal, tmp_path), "--bot-tokens", partial, "--yes")
    assert first.exit_code == 1, first.stderr
    undo_report = tmp_path / "in.report.undo.csv"
    failed = {int(r["row"]) for r in read_csv(undo_report) if r["status"] == "failed"}
    assert failed == {r for r, k in removed.items() if k[0] == 103} and failed
    assert {r["error"] for r in read_csv(undo_report) if r["status"] == "failed"} == {
        "NO_BOT_TOKEN"
    }
    executed = adds_sent(portal)

    result = undo(run_cli, portal, tmp_path, "--yes", "--only-error", "NO_BOT_TOKEN")

    assert result.exit_code == 0, result.stderr
    assert adds_sent(portal) - executed == len(failed)  # only those rows were sent again
    assert_restored(undo_report, removed, existing, portal)
    again = undo(run_cli, portal, tmp_path, "--yes", "--only-error", "NO_BOT_TOKEN")
    assert again.exit_code == 0 and "nothing to restore" in again.stderr


def test_only_error_without_an_undo_report_is_a_usage_error(
    run_cli: RunCli, tmp_path: Path
) -> None:
    portal, _, _, _ = run_first(run_cli, tmp_path, n=10)
    result = undo(run_cli, portal, tmp_path, "--yes", "--only-error", "ACCESS_DENIED")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "in.report.undo.csv" in result.stderr


def test_dry_run_counts_the_adds_and_the_time(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, _, _ = run_first(run_cli, tmp_path, n=120)
    requests = portal.stats.requests

    result = run_cli("undo", tmp_path / "in.report.csv", "--dry-run", "--plan", "standard")

    assert result.exit_code == 0, result.stderr
    assert "would send 108 add(s)" in result.stderr
    assert re.search(r"would make 3 batch call\(s\) of up to 50 rows: about \d+ s", result.stderr)
    assert portal.stats.requests == requests
    assert not (tmp_path / "in.report.undo.csv").exists()


def test_undo_report_in_another_format(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, existing, report = run_first(run_cli, tmp_path, n=20)
    out = tmp_path / "undo.jsonl"
    result = undo(run_cli, portal, tmp_path, "--yes", "--report", out)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["row"] for x in lines] == sorted(removed_rows(report))
    assert {x["status"] for x in lines} == {"restored"}
    assert left(portal) == set(existing)


# ------------------------------------------------------------------ the HTML page's commands


def page_commands(page: Path) -> dict[str, str]:
    text = page.read_text(encoding="utf-8")
    found = re.findall(r'data-command="([\w-]+)">.*?<code class="cmd">(.*?)</code>', text, re.S)
    return {key: html.unescape(line) for key, line in found}


def test_html_page_shows_the_commands_to_rerun_and_undo(run_cli: RunCli, tmp_path: Path) -> None:
    folder = tmp_path / "ops reports"  # a space: the paths must be quoted
    folder.mkdir()
    rows, existing = workload(30)
    portal = start(existing)
    path = write_input(folder / "in.csv", rows)
    page = folder / "in.html"
    run = run_cli("run", path, *args(portal, folder), "--html", page)
    assert run.exit_code == 1, run.stderr
    report = folder / "in.report.csv"
    tokens = folder / "bot_tokens.json"

    commands = page_commands(page)

    assert commands == {
        "rerun": f"reaction-cleanup run {shlex.quote(str(report))} --only failed"
        f' --webhook "$B24_WEBHOOK_URL" --bot-tokens {shlex.quote(str(tokens))}',
        "undo": f"reaction-cleanup undo {shlex.quote(str(report))}"
        f' --webhook "$B24_WEBHOOK_URL" --bot-tokens {shlex.quote(str(tokens))}',
    }
    assert "'" in commands["undo"]  # quoted for the space
    text = page.read_text(encoding="utf-8")
    assert portal.webhook_url() not in text and "sandbox-webhook-code" not in text

    # The command works as shown, once the shell has the webhook.
    webhook = portal.webhook_url()
    argv = [webhook if w == "$B24_WEBHOOK_URL" else w for w in shlex.split(commands["undo"])]
    done = run_cli(*argv[1:], "--yes", "--progress", "none")
    assert done.exit_code == 0, done.stderr
    assert left(portal) == set(existing)


def test_undo_page_shows_how_to_send_failed_restores_again(run_cli: RunCli, tmp_path: Path) -> None:
    portal, _, _, report = run_first(run_cli, tmp_path, n=30)
    tokens = {str(b.id): b.token for b in portal.state.bots.values() if b.id != 103}
    partial = tmp_path / "partial_tokens.json"
    partial.write_text(json.dumps(tokens))
    page = tmp_path / "undo.html"
    result = run_cli("undo", report, *args(portal, tmp_path), "--bot-tokens", partial, "--yes",
                     "--html", page)  # fmt: skip
    assert result.exit_code == 1, result.stderr

    commands = page_commands(page)

    undo_report = tmp_path / "in.report.undo.csv"
    assert commands == {
        "undo-again": f"reaction-cleanup undo {report} --report {undo_report}"
        f' --only-error NO_BOT_TOKEN --webhook "$B24_WEBHOOK_URL" --bot-tokens {partial}'
    }
    text = page.read_text(encoding="utf-8")
    assert "undo of in.report.csv" in text and 'data-testid="tile-restored"' in text
    assert 'data-testid="tile-removed"' not in text


@pytest.mark.parametrize("source", ["env", "file"])
def test_run_job_page_commands_read_the_webhook_where_the_job_file_does(
    run_cli: RunCli, tmp_path: Path, source: str
) -> None:
    # A run-job run took its webhook from the variable or file its job file names, not from
    # B24_WEBHOOK_URL: the page's commands must read it from there, and work as shown in a
    # shell that has only what the job's host has.
    rows, existing = workload(30)
    portal = start(existing)
    (tmp_path / "inbox").mkdir()
    write_input(tmp_path / "inbox" / "march.csv", rows)
    tokens = args(portal, tmp_path)[3]
    (tmp_path / "hook.url").write_text(portal.webhook_url() + "\n")
    key = 'webhook_env = "OPS_HOOK"' if source == "env" else 'webhook_file = "hook.url"'
    job = tmp_path / "job.toml"
    job.write_text(
        f'name = "march"\n{key}\nbot_tokens_file = "bot_tokens.json"\ninbox = "inbox"\n'
        'reports = "reports"\nmin_age = 0\nrate = 1000\nburst = 1000\nprogress = "none"\n'
        "absent_as_failed = true\n"
    )
    env = {"OPS_HOOK": portal.webhook_url()} if source == "env" else {}
    assert run_cli("run-job", job, env=env).exit_code == 1
    (page,) = (tmp_path / "reports").glob("*.report.html")

    commands = page_commands(page)

    shown = '"$OPS_HOOK"' if source == "env" else f'"$(cat {tmp_path / "hook.url"})"'
    assert f"--webhook {shown} --bot-tokens {tokens}" in commands["undo"]
    assert "B24_WEBHOOK_URL" not in page.read_text(encoding="utf-8")
    shell_env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **env}
    program = f"{shlex.quote(sys.executable)} -m cleanup"
    line = commands["undo"].replace("reaction-cleanup", program, 1) + " --yes --progress none"
    done = subprocess.run(["bash", "-c", line], env=shell_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert left(portal) == set(existing)


def test_a_second_undo_is_refused_and_keeps_the_first_ones_report(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # Sending every add again would overwrite the first undo's record, and an add replaces a
    # reaction the bot may have put on that message since (one per bot and message).
    portal, _, existing, _ = run_first(run_cli, tmp_path, n=30)
    assert undo(run_cli, portal, tmp_path, "--yes").exit_code == 0
    undo_report = tmp_path / "in.report.undo.csv"
    first = undo_report.read_bytes()
    executed = adds_sent(portal)

    again = undo(run_cli, portal, tmp_path, "--yes")

    assert again.exit_code == 2
    assert again.stderr.count("\n") == 1, again.stderr
    assert f"was undone before, into {undo_report} (27 restored)" in again.stderr
    assert "--resume" in again.stderr and "--only-error" in again.stderr
    assert adds_sent(portal) == executed and undo_report.read_bytes() == first
    # Continuing it is allowed, and finds nothing left to send.
    resumed = undo(run_cli, portal, tmp_path, "--yes", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "nothing to restore" in resumed.stderr and adds_sent(portal) == executed
    assert left(portal) == set(existing)
