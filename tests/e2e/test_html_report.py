"""The HTML review report: self-contained, escaped, grouped by cause, and (in a real
headless Chromium) showing the same numbers as the summary JSON."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from cleanup.outputs.html import ROWS_PER_CAUSE, advice, collect_causes, render_html, write_html
from cleanup.results import REPORT_COLUMNS, RunSummary
from cleanup.sandbox import SandboxPortal
from tests.helpers.jobs import BOT, Setup, likes

SCRIPT = "<script>alert(1)</script>"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def write_report(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    """rows: (botId, messageId, reaction, status, error, description)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        for i, (bot, message, reaction, status, error, description) in enumerate(rows, 1):
            writer.writerow([i, bot, message, reaction, status, error, description, 1])
    return path


def summary_for(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    by_status: dict[str, int] = {
        s: 0 for s in ("removed", "failed", "invalid", "duplicate", "skipped")
    }
    by_error: dict[str, int] = {}
    for row in rows:
        by_status[row[3]] += 1
        if row[4]:
            by_error[row[4]] = by_error.get(row[4], 0) + 1
    return {
        "run_id": "abc123",
        "input": "rows.csv",
        "rows": len(rows),
        "by_status": by_status,
        "by_error": by_error,
        "timeline": [{"t": 0, "width": 1, "requests": 3, "refused": 1, "latency": 0.2}],
        "requests": 3,
        "exit_code": 1,
        "settings": {"mode": "auto", "rate": 2.0, "label": "night"},
    }


def test_values_from_the_spreadsheet_are_escaped(tmp_path: Path) -> None:
    rows = [
        ("456", "1", SCRIPT, "invalid", "INVALID_REACTION", f"reaction: {SCRIPT!r} is unknown"),
        ('"><img src=x onerror=alert(2)>', "2", "like", "invalid", "INVALID_BOT_ID", "bad"),
        ("456", "3", "like", "removed", "", ""),
    ]
    report = write_report(tmp_path / "r.report.csv", rows)
    page = write_html(
        RunSummary.model_validate(summary_for(rows)), report, tmp_path / "r.html"
    ).read_text()
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page  # markupsafe's &#34;


def test_the_page_needs_no_network(tmp_path: Path) -> None:
    rows = [("456", "1", "like", "failed", "ACCESS_DENIED", "Access denied")]
    page = render_html(
        RunSummary.model_validate(summary_for(rows)),
        collect_causes(write_report(tmp_path / "r.csv", rows)),
    )
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for marker in ("src=", "href=", "@import", "url(", "<link", "<script"):
        assert marker not in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_failed_rows_are_grouped_by_cause_with_what_to_do(tmp_path: Path) -> None:
    rows = [
        ("456", str(i), "like", "failed", "ACCESS_DENIED", "Access denied")
        for i in range(ROWS_PER_CAUSE + 50)
    ]
    rows += [("456", "9", "fire", "failed", "REACTION_NOT_FOUND", "Reaction not found")] * 3
    rows += [
        (
            "457",
            "9",
            "fire",
            "failed",
            "BOT_OWNERSHIP_ERROR",
            "Bot was installed by another rest application",
        )
    ]
    rows += [("458", "9", "fire", "skipped", "", "not sent: run aborted (NO_AUTH_FOUND)")]
    report = write_report(tmp_path / "r.report.csv", rows)
    causes = collect_causes(report)
    assert [(c.status, c.code, c.count) for c in causes] == [
        ("failed", "ACCESS_DENIED", ROWS_PER_CAUSE + 50),
        ("failed", "REACTION_NOT_FOUND", 3),
        ("failed", "BOT_OWNERSHIP_ERROR", 1),
        ("skipped", "", 1),
    ]
    assert len(causes[0].rows) == ROWS_PER_CAUSE
    page = render_html(RunSummary.model_validate(summary_for(rows)), causes, report=report)
    assert "the bot is not a member of the chat" in page.lower()
    # REACTION_NOT_FOUND is failed only with --absent-as-failed or for an undocumented code
    # (issue 17): its advice names both, not a bare "usually nothing to do".
    assert "already removed or never set" in page and "--absent-as-failed" in page
    assert "--allow-unknown-reactions" in page and "Usually nothing to do" not in page
    assert "botToken does not match" in page
    assert "… and 50 more rows with this cause" in page
    assert page.count('<details class="cause"') == 4


def test_advice_for_codes_seen_and_unseen() -> None:
    assert advice("failed", "HTTP_502") == advice("failed", "NETWORK_ERROR")
    assert "gave no usable answer" in advice("failed", "TIMEOUT")[0]
    assert "does not know" in advice("failed", "SOMETHING_NEW")[0]
    assert "run stopped early" in advice("skipped", "")[0]
    assert "bot tokens file" in advice("invalid", "NO_BOT_TOKEN")[1]


def test_a_jsonl_report_is_read_too(tmp_path: Path) -> None:
    report = tmp_path / "r.report.jsonl"
    record = dict(
        zip(REPORT_COLUMNS, [1, "456", "1", "like", "failed", "ACCESS_DENIED", "x", 1], strict=True)
    )
    report.write_text(json.dumps(record) + "\n" + '{"row": 2, "status": "fai')  # a cut last line
    [cause] = collect_causes(report)
    assert (cause.code, cause.count) == ("ACCESS_DENIED", 1)


def test_a_csv_line_cut_by_a_crash_is_left_out_as_for_resume(tmp_path: Path) -> None:
    rows = [("456", "1", "like", "failed", "ACCESS_DENIED", "x")] * 2
    report = write_report(tmp_path / "r.report.csv", rows)
    text = report.read_text()
    report.write_text(text[: text.rindex("ACCESS_DENIED")])  # row 2's line cut half way
    [cause] = collect_causes(report)
    assert (cause.code, cause.count) == ("ACCESS_DENIED", 1)


class _Elements(HTMLParser):
    """The page as a browser parses it: its elements, attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


HOSTILE = [
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(2)>",
    "</textarea><svg onload=alert(3)>",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_spreadsheet_text_is_text_everywhere_on_the_page(
    tmp_path: Path, hostile: str
) -> None:
    # In a reaction, a description, a botId, an error code the portal sent back, the
    # portal's abort message, the run's label and the job's context: never markup.
    rows = [
        ("456", "1", hostile, "invalid", "INVALID_REACTION", f"reaction {hostile} is unknown"),
        (hostile, "2", "like", "failed", hostile, hostile),
    ]
    summary = summary_for(rows)
    summary["aborted"] = hostile
    summary["settings"]["label"] = hostile
    summary["settings"][hostile] = hostile
    report = write_report(tmp_path / "r.report.csv", rows)
    page = write_html(
        RunSummary.model_validate(summary), report, tmp_path / "r.html", context={hostile: hostile}
    )
    parsed = _Elements()
    parsed.feed(page.read_text(encoding="utf-8"))
    assert not parsed.tags & {"script", "img", "textarea"}
    assert not {a for a in parsed.attributes if a.startswith("on")}
    text = "".join(parsed.text)
    assert text.count(hostile) >= 8  # shown as typed, where it was typed
    assert f"reaction {hostile} is unknown" in text


# --------------------------------------------------------------------------- in a browser


@pytest.mark.slow
@pytest.mark.browser
def test_the_html_report_renders_in_chromium_with_the_summarys_numbers(
    portal_factory: Callable[..., SandboxPortal],
    run_cli: Callable[..., Result],
    tmp_path: Path,
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")

    # A portal where rows fail for several causes: 457 is not in message 2001's chat,
    # 458's token in the tokens file is wrong, 456 never set "fire" on 1001/1002, and
    # message 3001 does not exist.
    reactions = [*likes(6), (457, 1999, "like"), (458, 2501, "like"), (BOT, 2001, "eyes")]
    reactions += [(999, 2001, "fire")]  # message 2001 lives in a chat 457 is not in
    portal = portal_factory(reactions)
    s = Setup(tmp_path, portal, batch_size=4)
    tokens = json.loads((tmp_path / "bot_tokens.json").read_text())
    tokens["458"] = "not-the-token"
    (tmp_path / "bot_tokens.json").write_text(json.dumps(tokens))
    rows: list[tuple[object, ...]] = [
        *likes(6),
        (457, 2001, "fire"),
        (458, 2501, "like"),
        (BOT, 1001, "fire"),
        (BOT, 1002, "fire"),
        (BOT, 3001, "like"),
    ]
    rows += [(BOT, 1001, "like"), (BOT, 1002, SCRIPT), ("abc", 1003, "like")]
    s.drop("mixed.csv", rows)
    result = run_cli("run-job", s.job, env=s.env)
    assert result.exit_code == 1, result.output
    [report] = s.reports_of()
    summary = json.loads(report.with_name(report.name + ".summary.json").read_text())
    html = report.with_suffix(".html")

    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri())
            assert page.title().startswith("reaction-cleanup: test-job")

            def count(selector: str) -> int:
                return int(page.locator(selector).first.get_attribute("data-count") or -1)

            assert count('[data-testid="tile-rows"] .n') == summary["rows"] == len(rows)
            for status, n in summary["by_status"].items():
                assert count(f'[data-testid="tile-{status}"] .n') == n, status
                assert count(f'[data-testid="by-status"] tr[data-status="{status}"] td.num') == n
                visible = page.locator(f'[data-testid="tile-{status}"] .n').inner_text()
                assert int(visible.replace("\u2009", "")) == n
            assert summary["by_error"], "the run should have failed rows"
            for code, n in summary["by_error"].items():
                assert count(f'[data-testid="by-error"] tr[data-error="{code}"] td.num') == n, code
            for code in (
                "ACCESS_DENIED",
                "BOT_OWNERSHIP_ERROR",
                "MESSAGE_NOT_FOUND",
                "INVALID_REACTION",
                "INVALID_BOT_ID",
            ):
                assert page.locator(f'details[data-cause="{code}"]').count() == 1, code
            assert (
                "not a member of the chat"
                in page.locator('details[data-cause="ACCESS_DENIED"]').inner_text()
            )
            assert count('[data-testid="requests"] b') == summary["requests"]
            assert page.locator('[data-testid="exit-code"]').inner_text() == str(
                summary["exit_code"]
            )

            # The <script> typed into a reaction cell is shown as text, never run.
            assert page.locator("script").count() == 0
            assert page.get_by_text(SCRIPT, exact=True).count() >= 1
            # The chart: one bar group per time bucket of the summary's timeline.
            assert page.locator('svg[data-testid="chart"] g').count() == len(summary["timeline"])
            assert page.locator('svg[data-testid="chart"]').bounding_box()["height"] > 50  # type: ignore[index,unused-ignore]
            assert page.locator('[data-setting="batch_size"] code').inner_text() == "4"
            shot = tmp_path / "review.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert requests == [html.as_uri()]  # nothing fetched but the page itself


@pytest.mark.browser
def test_the_index_of_all_runs_in_chromium_links_and_marks_what_needs_attention(
    portal_factory: Callable[..., SandboxPortal],
    run_cli: Callable[..., Result],
    tmp_path: Path,
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    portal = portal_factory(likes(6))
    s = Setup(tmp_path, portal)
    s.drop("clean.csv", likes(3))
    assert run_cli("run-job", s.job, env=s.env).exit_code == 0
    s.drop("with-failures.csv", [*likes(3, first=1004), (BOT, 1999, "fire"), (BOT, 1001, SCRIPT)])
    assert run_cli("run-job", s.job, env=s.env).exit_code == 1
    failed_report, clean_report = sorted(s.reports_of(), key=lambda p: "clean" in p.name)
    index = s.reports / "index.html"

    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(index.as_uri())
            assert page.title() == "reaction-cleanup: test-job"
            rows = page.locator("tr.run")
            assert rows.count() == 2
            # Newest first: the second file's run on top.
            assert rows.nth(0).get_attribute("data-input") == "with-failures.csv"
            assert rows.nth(1).get_attribute("data-input") == "clean.csv"
            failed, clean = rows.nth(0), rows.nth(1)
            assert failed.locator('td[data-status="failed"]').inner_text() == "1"
            assert failed.locator('td[data-status="invalid"]').inner_text() == "1"

            def background(row: Any) -> str:
                return str(row.evaluate("e => getComputedStyle(e).backgroundColor"))

            # The run that needs attention stands out: tinted, with a coloured edge and its
            # reason; the clean run is plain.
            assert background(failed) == "rgb(255, 243, 224)"
            assert background(clean) == "rgba(0, 0, 0, 0)"
            edge = failed.locator("td").first.evaluate("e => getComputedStyle(e).boxShadow")
            assert "inset" in edge or "5px" in edge
            assert "1 failed and 1 invalid row(s)" in failed.locator(".why").inner_text()
            assert clean.locator(".why").count() == 0
            assert (
                page.locator('[data-testid="attention-count"]')
                .inner_text()
                .startswith("1 run needs attention")
            )
            assert page.locator("script").count() == 0

            # The links are relative: following one opens that run's own page.
            failed.locator('a[data-link="html"]').click()
            page.wait_for_load_state()
            assert page.url == failed_report.with_suffix(".html").as_uri()
            assert "with-failures.csv" in page.title()
            assert page.get_by_text(SCRIPT, exact=True).count() >= 1  # shown, not run
            page.go_back()
            href = page.locator('tr.run[data-input="clean.csv"] a[data-link="report"]')
            assert href.get_attribute("href") == clean_report.name
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
        finally:
            browser.close()
    assert set(requests) <= {index.as_uri(), failed_report.with_suffix(".html").as_uri()}
