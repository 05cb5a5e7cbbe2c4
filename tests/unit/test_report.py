"""cleanup.outputs.report: the report written in input order and read back, the same way
for --resume and for the HTML page, whatever a crash left at its end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanup.errors import ConfigError
from cleanup.inputs.formats import INPUT_SUFFIXES
from cleanup.outputs.report import (
    ReportWriter,
    compact,
    default_report_path,
    iter_records,
    read_report,
    report_format,
)
from cleanup.results import RowResult, Status, gave_up

RESULTS = [
    RowResult(1, "7", "11", "like", Status.REMOVED, attempts=1),
    RowResult(2, "7", "12", 'a "quoted",\nmulti-line <b>', Status.INVALID, "INVALID_REACTION", "bad"),
    RowResult(3, "7", "13", "like", Status.FAILED, "ACCESS_DENIED", "not a member", 1),
    RowResult(4, "7", "14", "like", Status.FAILED, "TIMEOUT", gave_up("timed out", " after 3"), 3, True),
    RowResult(5, "7", "15", "like", Status.SKIPPED, "", "not sent"),
]  # fmt: skip
FORMATS = ["csv", "jsonl", "parquet"]


def write(path: Path, results: list[RowResult], *, complete: bool = True) -> Path:
    writer = ReportWriter(path)
    writer.write(results)
    writer.close(complete=complete)
    return path


def test_the_format_follows_the_extension(tmp_path: Path) -> None:
    assert [report_format(tmp_path / f"r.{f.upper()}") for f in FORMATS] == FORMATS
    with pytest.raises(ConfigError, match=r"use one of \.csv, \.jsonl, \.parquet"):
        report_format(tmp_path / "r.xlsx")
    assert default_report_path(Path("in/rows.csv.gz")) == Path("in/rows.report.csv")


@pytest.mark.parametrize("ext", sorted(INPUT_SUFFIXES))
def test_every_input_ending_is_dropped_from_the_default_report_name(ext: str) -> None:
    # One table (cleanup/inputs/formats.py): what the readers take, the name drops.
    assert default_report_path(Path(f"in/rows{ext.upper()}")) == Path("in/rows.report.csv")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_line_reads_back_as_written(tmp_path: Path, fmt: str) -> None:
    report = write(tmp_path / f"r.{fmt}", RESULTS)
    records = list(iter_records(report))
    assert [str(r["row"]) for r in records] == ["1", "2", "3", "4", "5"]
    assert records[1]["reaction"] == 'a "quoted",\nmulti-line <b>'
    # --resume keeps the final results the portal gave; it sends the rest again: the
    # skipped row, and the row given up (its journal says which: the report cannot).
    assert read_report(report, to_retry={4}) == {r.row: r for r in RESULTS[:3]}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_line_cut_by_a_crash_is_not_a_result(tmp_path: Path, fmt: str) -> None:
    report = write(tmp_path / f"r.{fmt}", RESULTS[:2])
    whole = report.read_bytes()
    cut = write(tmp_path / f"cut.{fmt}", RESULTS[:3]).read_bytes()
    # Killed while writing row 3: half of its line is on disk.
    report.write_bytes(cut[: len(whole) + (len(cut) - len(whole)) // 2])
    assert [str(r["row"]) for r in iter_records(report)] == ["1", "2"]
    assert sorted(read_report(report)) == [1, 2]


def test_a_csv_line_cut_inside_a_quoted_newline_is_not_a_result(tmp_path: Path) -> None:
    report = write(tmp_path / "r.csv", RESULTS[:1])
    with report.open("a", encoding="utf-8") as fh:
        fh.write('2,7,12,"first line\n')  # the value's newline is not the record's end
    assert [r["row"] for r in iter_records(report)] == ["1"]


def test_appending_after_a_cut_line_does_not_glue_rows(tmp_path: Path) -> None:
    report = write(tmp_path / "r.jsonl", RESULTS[:1])
    with report.open("a") as fh:
        fh.write('{"row": 2, "sta')
    writer = ReportWriter(report, append=True)
    writer.write(RESULTS[2:3])
    writer.close(complete=True)
    assert [json.loads(line)["row"] for line in report.read_text().splitlines()] == [1, 3]


def test_an_unfinished_parquet_report_is_read_from_its_lines(tmp_path: Path) -> None:
    report = write(tmp_path / "r.parquet", RESULTS[:2], complete=False)
    partial = tmp_path / "r.parquet.partial.jsonl"
    assert partial.exists()  # kept for --resume
    with partial.open("a") as fh:
        fh.write(json.dumps(RESULTS[2].as_record()) + "\n" + '{"row": 4')
    assert [r["row"] for r in iter_records(report)] == [1, 2, 3]


def test_a_missing_report_has_no_lines(tmp_path: Path) -> None:
    for fmt in FORMATS:
        assert list(iter_records(tmp_path / f"none.{fmt}")) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_compact_keeps_one_line_per_row_in_order(tmp_path: Path, fmt: str) -> None:
    report = write(tmp_path / f"r.{fmt}", [RESULTS[2], RESULTS[0], RESULTS[4]])
    writer = ReportWriter(report, append=True)  # a resumed run appends its lines
    resent = RowResult(5, "7", "15", "like", Status.REMOVED, attempts=1)
    late_skip = RowResult(1, "7", "11", "like", Status.SKIPPED)
    writer.write([resent, late_skip])
    writer.close(complete=True)
    compact(report)
    records = list(iter_records(report))
    assert [str(r["row"]) for r in records] == ["1", "3", "5"]
    # A row's last line wins, but a final status is never replaced by `skipped`.
    assert [r["status"] for r in records] == ["removed", "failed", "removed"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
