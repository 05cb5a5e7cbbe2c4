"""Issue 12 §4, one page for all runs: run-job keeps `index.html` in its reports folder,
rewritten after each file from the summaries on disk: every run newest first, with its
input, exit code, counts and relative links; runs that need attention marked. Checked by
reading the page as a browser parses it (the browser test is in test_html_report.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from click.testing import Result

from cleanup.jobs.credentials import resolve_run_options
from cleanup.jobs.process import FileOutcome, run_job_file
from cleanup.jobs.schema import load_job_file
from cleanup.outputs.index import collect_runs, write_index
from cleanup.sandbox import PortalConfig, SandboxPortal
from tests.helpers.jobs import BOT, Setup, likes
from tests.helpers.processes import kill9, wait_until

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


class Rows(HTMLParser):
    """The index's run rows: their data attributes, links and text, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._in_row = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "data-report" in a:
            self.rows.append({**a, "links": {}, "counts": {}, "text": ""})
            self._in_row = True
        elif self._in_row and tag == "a" and a.get("data-link"):
            self.rows[-1]["links"][a["data-link"]] = a["href"]
        elif self._in_row and tag == "td" and a.get("data-status"):
            self.rows[-1]["counts"][a["data-status"]] = int(a["data-count"] or 0)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._in_row = False

    def handle_data(self, data: str) -> None:
        if self._in_row:
            self.rows[-1]["text"] += data


def listed(reports: Path) -> list[dict[str, Any]]:
    parser = Rows()
    parser.feed((reports / "index.html").read_text(encoding="utf-8"))
    return parser.rows


def drop_at(s: Setup, name: str, rows: list[tuple[Any, ...]], age: float) -> None:
    path = s.drop(name, rows)
    then = time.time() - age
    os.utime(path, (then, then))  # the inbox takes the oldest first


def test_the_index_lists_each_files_run_after_each_file_newest_first(
    portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory([*likes(6), (BOT, 2001, "like")])
    s = Setup(tmp_path, portal)
    drop_at(s, "clean.csv", likes(3), age=300)
    drop_at(s, "some-failed.csv", [*likes(3, first=1004), (BOT, 1999, "fire")], age=200)
    drop_at(s, "some-invalid.csv", [(BOT, 2001, "like"), ("abc", 2002, "like")], age=100)
    job = load_job_file(s.job)
    base = resolve_run_options(job, {}, {}, environ=s.env)
    seen: list[list[dict[str, Any]]] = []

    def on_file(outcome: FileOutcome) -> None:
        seen.append(listed(s.reports))  # the page as it is right after this file

    result = run_job_file(job, base, run_id="r1", on_file=on_file)
    assert result.exit_code == 1
    inputs = [[r["data-input"] for r in page] for page in seen]
    assert inputs == [
        ["clean.csv"],
        ["some-failed.csv", "clean.csv"],
        ["some-invalid.csv", "some-failed.csv", "clean.csv"],
    ]
    page = seen[-1]
    # Relative links to the files beside the page, every one of them there.
    for row, outcome in zip(page, reversed(result.files), strict=True):
        assert outcome.report is not None and outcome.summary is not None
        assert row["data-report"] == outcome.report.name
        assert row["links"]["report"] == outcome.report.name
        assert row["links"]["html"] == outcome.report.with_suffix(".html").name
        assert all((s.reports / href).is_file() for href in row["links"].values())
        assert row["counts"] == dict(outcome.summary.by_status)
        assert row["data-exit"] == str(outcome.exit_code)
    # The runs that need attention stand out, saying why; the clean one does not.
    assert [r["data-level"] for r in page] == ["warn", "warn", "good"]
    assert "1 invalid row(s)" in page[0]["text"] and "1 failed row(s)" in page[1]["text"]
    assert "attention" not in page[2]["class"] and "attention" in page[0]["class"]


def test_after_a_kill_the_rebuilt_page_shows_the_unfinished_run_and_the_next_run_finishes_it(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(likes(400), PortalConfig(latency=0.02))
    s = Setup(tmp_path, portal, batch_size=10, concurrency=1)
    drop_at(s, "first.csv", likes(5), age=300)
    drop_at(s, "big.csv", likes(395, first=1006), age=200)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleanup", "run-job", str(s.job)],
        cwd=tmp_path, env={**os.environ, **s.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_until(lambda: len(s.reports_of()) == 2 and portal.stats.requests >= 3, proc)
    kill9(proc)
    # The page on disk is from after the first file; rebuilt from the files on disk, it
    # shows the killed run as unfinished (it has a report and no summary).
    assert [r["data-input"] for r in listed(s.reports)] == ["first.csv"]
    write_index(s.reports)
    killed, first = listed(s.reports)
    assert killed["data-level"] == "bad" and killed["data-exit"] == "–"
    assert "unfinished: no summary" in killed["text"] and "--resume" in killed["text"]
    assert first["data-level"] == "good"

    result = run_cli("run-job", s.job, env=s.env)
    assert result.exit_code == 0, result.stderr
    resumed, first = listed(s.reports)
    assert resumed["data-level"] == "good" and resumed["data-exit"] == "0"
    assert resumed["counts"]["removed"] == 395 and "big.csv" in resumed["text"]


def test_an_undo_shows_on_its_runs_line(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(likes(4))
    s = Setup(tmp_path, portal)
    s.drop("rows.csv", likes(4))
    assert run_cli("run-job", s.job, env=s.env).exit_code == 0
    [report] = s.reports_of()
    [row] = listed(s.reports)
    assert "undo" not in row["links"]

    tokens = tmp_path / "bot_tokens.json"
    undone = run_cli(
        "undo", report, "--webhook", portal.webhook_url(), "--bot-tokens", tokens, "--yes",
        "--progress", "none",
    )  # fmt: skip
    assert undone.exit_code == 0, undone.stderr
    [row] = listed(s.reports)  # rebuilt by the undo: still one run, now with its undo
    assert row["links"]["undo"] == report.name.removesuffix(".csv") + ".undo.csv"
    assert (s.reports / row["links"]["undo"]).is_file()
    assert "(4 restored)" in row["text"]
    assert portal.state.snapshot()  # the reactions are back


def test_only_the_newest_runs_are_read_in_a_huge_folder(tmp_path: Path) -> None:
    for i in range(7):
        report = tmp_path / f"2026-01-0{i + 1}T000000Z_in{i}_0000000{i}.report.csv"
        report.write_text("row,botId,messageId,reaction,status,error,error_description,attempts\n")
        summary = {
            "input": f"/inbox/in{i}.csv", "report": str(report), "rows": 0, "exit_code": 0,
            "by_status": {"removed": 0}, "started_at": 1_770_000_000 + i,
        }  # fmt: skip
        path = report.with_name(report.name + ".summary.json")
        path.write_text(json.dumps(summary))
        os.utime(path, (1_770_000_000 + i, 1_770_000_000 + i))
    runs, older = collect_runs(tmp_path, limit=5)
    assert [r.input for r in runs] == [f"in{i}.csv" for i in (6, 5, 4, 3, 2)]
    assert older == 2
    write_index(tmp_path, limit=5)
    assert len(listed(tmp_path)) == 5
    assert (
        'data-testid="older">2</span> older runs not shown' in (tmp_path / "index.html").read_text()
    )
