"""cleanup.results.RunSummary: a frozen value, written to summary.json and read back by the
same model; a summary.json of the previous version still reads, and its pages render."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from cleanup.outputs.html import write_html
from cleanup.outputs.index import collect_runs
from cleanup.outputs.report import ReportWriter
from cleanup.outputs.summary import load_summary, summary_fields, summary_path, write_summary
from cleanup.results import RowResult, RunSummary, Status, TimeBucket, read_summary

# A summary.json as the version before the typed result wrote it (RunSummary.as_dict plus
# settings), with every key it had.
PREVIOUS = {
    "run_id": "0a1b2c3d4e5f",
    "input": "in/rows.csv",
    "report": "REPORT",
    "mode": "batch",
    "auth_mode": "webhook",
    "dry_run": False,
    "rows": 4,
    "by_status": {"removed": 2, "failed": 1, "invalid": 1, "duplicate": 0, "skipped": 0},
    "by_error": {"ACCESS_DENIED": 1, "INVALID_REACTION": 1},
    "started_at": 1765000000.25,
    "elapsed_s": 1.234,
    "requests": 2,
    "batch_requests": 1,
    "single_requests": 1,
    "limit_refusals": 0,
    "operating_refusals": 0,
    "limit_wait_s": 0.0,
    "ideal_s": 0.5,
    "retries": 0,
    "token_refreshes": 0,
    "fallback_to_single": None,
    "rate": 2.0,
    "burst": 50,
    "concurrency": 4,
    "batch_size": 50,
    "to_send": 0,
    "planned_calls": 0,
    "estimated_s": 0.0,
    "aborted": None,
    "interrupted": None,
    "resumed_rows": 0,
    "source_report": None,
    "left_out": 0,
    "undo_of": None,
    "timeline": [{"t": 0.0, "width": 1.0, "requests": 2, "refused": 0, "latency": 0.12}],
    "examples": [],
    "exit_code": 1,
    "rows_per_s": 2.431,
    "ideal_rows_per_s": 6.0,
    "settings": {"label": "night", "mode": "auto", "rate": 2.0, "report": "REPORT"},
}


def test_the_summary_is_frozen() -> None:
    summary = RunSummary(run_id="r", rows=1, by_status={"removed": 1})
    with pytest.raises(pydantic.ValidationError):
        summary.rows = 2  # type: ignore[misc]


def test_summary_json_round_trips_through_the_model(tmp_path: Path) -> None:
    summary = RunSummary(
        run_id="r",
        input="rows.csv",
        report=str(tmp_path / "r.csv"),
        rows=3,
        by_status={"removed": 2, "failed": 1, "invalid": 0, "duplicate": 0, "skipped": 0},
        by_error={"ACCESS_DENIED": 1},
        elapsed_s=1.23456,
        timeline=(TimeBucket(t=0.0, width=1.0, requests=1, latency=0.25),),
        exit_code=1,
        settings={"label": "night"},
    )
    path = write_summary(tmp_path / "r.csv", summary)
    data = json.loads(path.read_text())
    # The keys pages and tools read: the figures, the derived rates, the settings.
    assert data["elapsed_s"] == 1.235 and data["rows_per_s"] == round(3 / 1.23456, 3)
    assert data["settings"] == {"label": "night"} and data["by_error"] == {"ACCESS_DENIED": 1}
    back = load_summary(path)
    assert back is not None
    # Seconds are kept to the millisecond; the rest reads back as it was.
    exact = {"elapsed_s", "rows_per_s"}
    assert back.model_dump(exclude=exact) == summary.model_dump(exclude=exact)
    assert back.elapsed_s == 1.235
    assert read_summary(back.model_dump_json()) == back
    assert (back.state, back.complete, back.label) == ("failed", True, "night")
    assert "settings" not in summary_fields(summary) and "timeline" not in summary_fields(summary)


def test_a_summary_json_of_the_previous_version_reads(tmp_path: Path) -> None:
    report = tmp_path / "old.report.csv"
    writer = ReportWriter(report)
    writer.write(
        [
            RowResult(1, "7", "11", "like", Status.REMOVED, attempts=1),
            RowResult(2, "7", "12", "like", Status.REMOVED, attempts=1),
            RowResult(3, "7", "13", "like", Status.FAILED, "ACCESS_DENIED", "no", 1),
            RowResult(4, "7", "14", "??", Status.INVALID, "INVALID_REACTION", "bad"),
        ]
    )
    writer.close(complete=True)
    text = json.dumps({**PREVIOUS, "report": str(report)}, indent=2)
    summary_path(report).write_text(text)
    summary = read_summary(text)
    assert (summary.rows, summary.exit_code, summary.state) == (4, 1, "failed")
    assert summary.timeline[0].requests == 2 and summary.label == "night"
    # The index page and the review page read it.
    runs, _ = collect_runs(tmp_path)
    assert [(r.report, r.state, r.counts["failed"]) for r in runs] == [(report.name, "failed", 1)]
    page = write_html(summary, report, tmp_path / "old.report.html").read_text()
    assert "ACCESS_DENIED" in page and "night" in page


def test_a_damaged_summary_json_is_none(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.summary.json"
    path.write_text('{"rows": "many"')
    assert load_summary(path) is None
    path.write_text("[1, 2]")
    assert load_summary(path) is None
