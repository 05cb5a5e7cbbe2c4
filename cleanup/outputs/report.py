"""The per-row report: written in input order as rows finish, read back by --resume and
by the HTML page.

Files next to the report `R` (what people read):
- `R` itself: one line per input row, in input order, appended and flushed as rows finish
  (CSV or JSONL; a Parquet report is written from `R.partial.jsonl` when the run ends,
  because a Parquet file is unreadable until it is closed).
- `R.summary.json` (cleanup.outputs.summary): the run's summary.
In the hidden state folder beside it, `.reaction-cleanup/` (the job's own files):
- `R.journal` (cleanup.outputs.journal): the input's identity and what each request carried.
- `R.lock` (`lock_path`): held while a run works on `R`.
A crash can cut the last line of `R`; readers stop before it (cleanup.outputs.files).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Collection, Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from cleanup.errors import ConfigError, OutputError
from cleanup.inputs.formats import input_suffix
from cleanup.outputs.files import (
    PARTIAL,
    drop_cut_line,
    open_replacing,
    read_csv_lines,
    read_jsonl,
    replacing,
    sidecar,
    state_file,
    writing,
)
from cleanup.outputs.journal import Journal, find_journal, rows_to_retry
from cleanup.results import DRY_RUN_STATUSES, FINAL_STATUSES, REPORT_COLUMNS, RowResult

REPORT_FORMATS = ("csv", "jsonl", "parquet")  # the report's format follows its extension


def report_format(path: Path) -> str:
    fmt = path.suffix.lower()[1:]
    if fmt not in REPORT_FORMATS:
        raise ConfigError(
            f"report {path}: the format follows the extension; use one of"
            f" {', '.join('.' + f for f in REPORT_FORMATS)}"
        )
    return fmt


def lock_path(report: Path) -> Path:
    """The lock a run holds while it writes `report` (an flock: released when its holder
    dies): `reports/.reaction-cleanup/R.lock`. An undo of `report` takes it too."""
    return state_file(report, ".lock")


def default_report_path(input_path: Path) -> Path:
    name = input_path.name
    ext = input_suffix(name) or (".gz" if name.lower().endswith(".gz") else "")
    return input_path.with_name(f"{name[: len(name) - len(ext)]}.report.csv")


class ReportWriter:
    """Appends result lines in the order given; `flush()` makes them durable.

    A write the disk refuses (full, read-only) raises OutputError naming the file, and the
    report is left with whole lines only (`abandon`), for --resume to continue from."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self.format = report_format(path)
        self.target = sidecar(path, PARTIAL) if self.format == "parquet" else path
        with writing(self.target):
            self._open(append)
        self.count = 0

    def _open(self, append: bool) -> None:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet" and append and not self.target.exists() and path.exists():
            # A finished Parquet report being resumed: continue from its rows. (Read them
            # before the JSONL exists: read_report prefers it to the Parquet file.)
            kept = read_report(path).values()
            with open_replacing(self.target) as fh:
                for result in kept:
                    fh.write(json.dumps(result.as_record(), ensure_ascii=False) + "\n")
        existing = append and self.target.exists() and self.target.stat().st_size > 0
        if existing:
            drop_cut_line(self.target, csv_quotes=self.format == "csv")
            existing = self.target.stat().st_size > 0  # a cut header is written again
        self._fh: IO[str] = self.target.open("a" if existing else "w", encoding="utf-8", newline="")
        self._csv = None
        if self.format == "csv":
            self._csv = csv.writer(self._fh)
            if not existing:
                self._csv.writerow(REPORT_COLUMNS)

    def write(self, results: Iterable[RowResult]) -> None:
        with writing(self.target):
            for result in results:
                record = result.as_record()
                if self._csv is not None:
                    self._csv.writerow([record[c] for c in REPORT_COLUMNS])
                else:
                    self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.count += 1

    def flush(self) -> None:
        with writing(self.target):
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self, *, complete: bool) -> None:
        try:
            self.flush()
            with writing(self.target):
                self._fh.close()
            if self.format == "parquet":
                compact(self.path)
                with writing(self.path):
                    _jsonl_to_parquet(self.target, self.path)
                if complete:  # an unfinished run keeps the JSONL: --resume reads it
                    self.target.unlink()
        except OutputError:
            self.abandon()
            raise

    def abandon(self) -> None:
        """After a write the disk refused: close without caring whether the rest reaches
        the disk, and cut a line the refusal left half-written (it would be glued to the
        next line a --resume appends; readers skip it anyway). Never raises."""
        with suppress(OSError):
            self._fh.close()  # its flush may fail again; the file is closed all the same
        with suppress(OSError):
            if self.target.is_file():  # not a device or a pipe the report was sent to
                drop_cut_line(self.target, csv_quotes=self.format == "csv")


def _jsonl_to_parquet(source: Path, dest: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = RowResult.arrow_schema()
    with replacing(dest) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in read_jsonl(source):
            batch.append(record)
            if len(batch) >= 100_000:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema))


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every line of a report as a dict (any format, complete or cut short by a crash:
    a line cut by a crash is left out), streamed. Values are as stored: text from CSV."""
    fmt = report_format(path)
    if fmt == "parquet":
        partial = sidecar(path, PARTIAL)
        if partial.exists():  # an unfinished run's lines: newer than any Parquet file
            yield from read_jsonl(partial)
        elif path.exists():
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
                yield from batch.to_pylist()
    elif not path.exists():
        return
    elif fmt == "jsonl":
        yield from read_jsonl(path)
    else:
        yield from csv.DictReader(read_csv_lines(path))


def read_report(path: Path, to_retry: Collection[int] | None = None) -> dict[int, RowResult]:
    """The final results in an existing report that --resume keeps, by row. `to_retry`: the
    rows whose result --resume sends again although the report's columns do not say so (a
    row the run gave up on); by default, as the report's journal has them."""
    if to_retry is None:
        to_retry = rows_to_retry(path)
    out: dict[int, RowResult] = {}
    for rec in iter_records(path):
        try:
            result = RowResult.from_record(rec)
        except (KeyError, ValueError, TypeError):
            continue
        if (
            result.status in FINAL_STATUSES
            and result.row not in to_retry
            and not result.settled.retry_on_resume
        ):
            out[result.row] = result
    return out


def written_by_dry_run(path: Path) -> bool:
    """Whether `path` is the report of a dry run (`--dry-run --report`): there is no journal
    (nothing was ever sent for it) and every line has a status only a dry run writes all of
    (`to_send`, `invalid`, `duplicate`). A --resume of it starts from the first row."""
    if find_journal(path).exists() or not (path.exists() or sidecar(path, PARTIAL).exists()):
        return False
    dry = {s.value for s in DRY_RUN_STATUSES}
    return all(str(rec.get("status")) in dry for rec in iter_records(path))


def compact(path: Path) -> None:
    """After a resume: one line per row, in row order; a row's last line wins.

    A resumed run appends its new lines after the old ones, so a crash at any moment
    leaves a report that the next --resume reads correctly; this puts it in order.
    """
    fmt = report_format(path)
    target = sidecar(path, PARTIAL) if fmt == "parquet" else path
    if not target.exists():
        return
    by_row: dict[int, dict[str, Any]] = {}
    for rec in iter_records(path):  # the same lines as `target` holds
        try:
            row = int(rec["row"])
        except (KeyError, ValueError, TypeError):
            continue
        old = by_row.get(row)
        # A final status is never replaced by `skipped`.
        if (
            old is None
            or rec.get("status") in FINAL_STATUSES
            or old.get("status") not in FINAL_STATUSES
        ):
            by_row[row] = rec
    with open_replacing(target, newline="") as fh:
        if fmt == "csv":
            writer = csv.writer(fh)
            writer.writerow(REPORT_COLUMNS)
            for row in sorted(by_row):
                writer.writerow([by_row[row].get(c, "") for c in REPORT_COLUMNS])
        else:
            for row in sorted(by_row):
                fh.write(json.dumps(by_row[row], ensure_ascii=False) + "\n")


# `Journal` is imported from here by cleanup.run.engine (for a type); it lives in journal.py.
__all__ = [
    "REPORT_FORMATS",
    "Journal",
    "ReportWriter",
    "compact",
    "default_report_path",
    "iter_records",
    "lock_path",
    "read_report",
    "report_format",
    "sidecar",
    "written_by_dry_run",
]
