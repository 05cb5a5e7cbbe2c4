"""The per-row report, its journal, and reading both back for --resume.

Files next to the report `R`:
- `R` itself: one line per input row, in input order, appended and flushed as rows finish
  (CSV or JSONL; a Parquet report is written from `R.partial.jsonl` when the run ends,
  because a Parquet file is unreadable until it is closed).
- `R.journal`: which input it belongs to (SHA-256 and size); before each request, the rows
  it carries (fsynced before the request leaves); the rows of a request that never ran
  (stopped, or refused for a limit); and each row's final result as soon as it is known,
  before `R` can take it in input order. After a crash, a row that was sent but has no
  result may already have been removed by the portal.
- `R.summary.json`: the run's summary; `R.lock`: held while a run works on `R`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from cleanup.errors import ConfigError, ReportMismatchError
from cleanup.results import FINAL_STATUSES, GAVE_UP, REPORT_COLUMNS, RowResult, Status

REPORT_FORMATS = (".csv", ".jsonl", ".parquet")
JOURNAL_VERSION = 1


def report_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in REPORT_FORMATS:
        raise ConfigError(
            f"report {path}: the format follows the extension; use one of {', '.join(REPORT_FORMATS)}"
        )
    return suffix[1:]


def default_report_path(input_path: Path) -> Path:
    name = input_path.name
    for ext in (
        ".csv.gz",
        ".tsv.gz",
        ".csv",
        ".tsv",
        ".xlsx",
        ".xlsm",
        ".parquet",
        ".pq",
        ".jsonl",
        ".gz",
    ):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return input_path.with_name(f"{name}.report.csv")


def sidecar(report: Path, suffix: str) -> Path:
    return report.with_name(report.name + suffix)


def fingerprint(path: Path) -> dict[str, Any]:
    """Identifies an input by content: a renamed copy matches, an edited file does not."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "size": size}


class ReportWriter:
    """Appends result lines in the order given; `flush()` makes them durable."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self.format = report_format(path)
        self.target = sidecar(path, ".partial.jsonl") if self.format == "parquet" else path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet" and append and not self.target.exists() and path.exists():
            # A finished Parquet report being resumed: continue from its rows. (Read them
            # before the JSONL exists: read_report prefers it to the Parquet file.)
            kept = read_report(path).values()
            with self.target.open("w", encoding="utf-8") as fh:
                for result in kept:
                    fh.write(json.dumps(result.as_record(), ensure_ascii=False) + "\n")
        existing = append and self.target.exists() and self.target.stat().st_size > 0
        if existing:
            _drop_cut_line(self.target, csv_quotes=self.format == "csv")
            existing = self.target.stat().st_size > 0  # a cut header is written again
        self._fh: IO[str] = self.target.open("a" if existing else "w", encoding="utf-8", newline="")
        self._csv = None
        if self.format == "csv":
            self._csv = csv.writer(self._fh)
            if not existing:
                self._csv.writerow(REPORT_COLUMNS)
        self.count = 0

    def write(self, results: Iterable[RowResult]) -> None:
        for result in results:
            record = result.as_record()
            if self._csv is not None:
                self._csv.writerow([record[c] for c in REPORT_COLUMNS])
            else:
                self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.count += 1

    def flush(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, *, complete: bool) -> None:
        self.flush()
        self._fh.close()
        if self.format == "parquet":
            compact(self.path)
            _jsonl_to_parquet(self.target, self.path)
            if complete:  # an unfinished run keeps the JSONL: --resume reads it
                self.target.unlink()


_CSV_MARKS = re.compile(rb'["\n]')


def _drop_cut_line(path: Path, *, csv_quotes: bool = False) -> None:
    """A crash can leave half a record at the end; appending after it would glue two rows."""
    keep = _whole_records(path, csv_quotes=csv_quotes)
    with path.open("rb+") as fh:
        fh.truncate(keep)


def _whole_records(path: Path, *, csv_quotes: bool = False) -> int:
    """Bytes up to the end of the last whole record.

    A record ends at a newline; in CSV only at one outside quotes (an even number of `"`
    before it), since a value the user typed may hold a newline.
    """
    keep = 0
    with path.open("rb") as fh:
        if not csv_quotes:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            while size > 0 and keep == 0:
                start = max(0, size - (1 << 20))
                fh.seek(start)
                cut = fh.read(size - start).rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                size = start
        else:
            inside, offset = False, 0
            while block := fh.read(1 << 20):
                for mark in _CSV_MARKS.finditer(block):
                    if mark.group() == b'"':
                        inside = not inside
                    elif not inside:
                        keep = offset + mark.end()
                offset += len(block)
    return keep


def _jsonl_to_parquet(source: Path, dest: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("row", pa.int64()), ("botId", pa.string()), ("messageId", pa.string()),
         ("reaction", pa.string()), ("status", pa.string()), ("error", pa.string()),
         ("error_description", pa.string()), ("attempts", pa.int64())]
    )  # fmt: skip
    tmp = sidecar(dest, ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in _read_jsonl(source):
            batch.append(record)
            if len(batch) >= 100_000:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema))
    os.replace(tmp, dest)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # a line cut by a crash is not a result
            try:
                record = json.loads(line)
            except ValueError:
                continue  # one damaged line must not hide the lines after it
            if isinstance(record, dict):
                yield record


def read_report(path: Path) -> dict[int, RowResult]:
    """Final results in an existing report (any format, complete or cut short by a crash)."""
    fmt = report_format(path)
    records: Iterable[dict[str, Any]]
    if fmt == "parquet":
        partial = sidecar(path, ".partial.jsonl")
        if partial.exists():
            records = _read_jsonl(partial)
        elif path.exists():
            import pyarrow.parquet as pq

            records = pq.read_table(path).to_pylist()
        else:
            return {}
    elif not path.exists():
        return {}
    elif fmt == "jsonl":
        records = _read_jsonl(path)
    else:
        records = _read_csv_report(path)
    out: dict[int, RowResult] = {}
    for rec in records:
        try:
            status = Status(str(rec["status"]))
            result = RowResult(
                int(rec["row"]), str(rec["botId"] or ""), str(rec["messageId"] or ""),
                str(rec["reaction"] or ""), status, str(rec.get("error") or ""),
                str(rec.get("error_description") or ""), int(rec.get("attempts") or 0),
            )  # fmt: skip
        except (KeyError, ValueError, TypeError):
            continue
        if status in FINAL_STATUSES and not resend_on_resume(
            status, result.error, result.error_description
        ):
            out[result.row] = result
    return out


def resend_on_resume(status: Status, error: str, description: str) -> bool:
    """Whether --resume sends the row again instead of keeping its line.

    Skipped rows, and failed rows whose failure was not the portal's answer about the row:
    the job gave up retrying (the portal was unreachable, kept failing or kept refusing
    for its limits; the engine marks these with results.gave_up) or a bug in the job itself.
    """
    if status is Status.SKIPPED:
        return True
    return status is Status.FAILED and (GAVE_UP in description or error == "CLIENT_ERROR")


def _read_csv_report(path: Path) -> Iterator[dict[str, Any]]:
    # A crash can cut the last record; only whole ones count (as for appending after them).
    size = _whole_records(path, csv_quotes=True)
    with path.open("rb") as fh:
        text = fh.read(size).decode("utf-8", errors="replace")
    yield from csv.DictReader(io.StringIO(text, newline=""))


class Journal:
    """Records the input's identity, the rows each request carries, and final results."""

    def __init__(self, path: Path, identity: dict[str, Any], *, resume: bool) -> None:
        self.path = path
        self.identity = identity
        # From an earlier run, on --resume: row -> requests that carried it and may have
        # run; row -> (status, error, description, attempts) of its final result.
        self.previously_sent: dict[int, int] = {}
        self.outcomes: dict[int, tuple[Status, str, str, int]] = {}
        self._lock = threading.Lock()
        header = self._load() if resume and path.exists() else {}
        # An empty journal: the earlier run died before its first line was on disk, so
        # before it sent anything. That is a fresh start, not another input.
        if header or self.previously_sent or self.outcomes:
            report = path.name.removesuffix(".journal")
            if "sha256" not in header:
                raise ReportMismatchError(
                    f"cannot resume {report}: its journal {path.name} is damaged (no header),"
                    " so it cannot be matched to this input; run without --resume to start over"
                )
            if header.get("sha256") != identity["sha256"] or header.get("size") != identity["size"]:
                was = str(header.get("input") or "?")
                why = (
                    f"{was} has changed since that run started"
                    if was == identity.get("input")
                    else f"it was made from {was}, whose content differs from this input"
                )
                raise ReportMismatchError(
                    f"cannot resume {report}: {why}. Resuming would mix two inputs' rows; give"
                    " another --report, or run without --resume to start over"
                )
            if header.get("only") != identity.get("only"):
                raise ReportMismatchError(
                    f"cannot resume {report}: that run chose its rows with"
                    f" {_choice_text(header.get('only'))}, this one with"
                    f" {_choice_text(identity.get('only'))}; give the same --only and"
                    " --only-error, or run without --resume to start over"
                )
            _drop_cut_line(path)  # else the next record would be glued to a cut one
            self._fh = path.open("a", encoding="utf-8")
            self._write({"resumed": True})
        else:
            self._fh = path.open("w", encoding="utf-8")
            self._write({"version": JOURNAL_VERSION, **identity})

    def _load(self) -> dict[str, Any]:
        header: dict[str, Any] = {}
        sent = self.previously_sent
        for i, record in enumerate(_read_jsonl(self.path)):
            try:
                if i == 0 and "sha256" in record:
                    header = record
                elif "sent" in record:
                    for r in record["sent"]:
                        sent[int(r)] = sent.get(int(r), 0) + 1
                elif "unsent" in record:
                    for r in record["unsent"]:
                        if sent.get(int(r), 0) > 1:
                            sent[int(r)] -= 1
                        else:
                            sent.pop(int(r), None)
                elif "done" in record:
                    for row, status, error, description, attempts in record["done"]:
                        if resend_on_resume(Status(status), str(error), str(description)):
                            self.outcomes.pop(int(row), None)
                            continue
                        self.outcomes[int(row)] = (
                            Status(status), str(error), str(description), int(attempts)
                        )  # fmt: skip
            except (TypeError, ValueError):
                continue  # a damaged record: the rows it named are simply re-sent
        return header

    def _write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def sent(self, rows: Iterable[int]) -> None:
        """Durable before the request goes out: after a crash, these rows may be done."""
        with self._lock:
            self._write({"sent": list(rows)})

    def unsent(self, rows: Iterable[int]) -> None:
        """The last request that carried these rows never ran (stopped, or refused unrun)."""
        rows = list(rows)
        if rows:
            with self._lock:
                self._write({"unsent": rows})

    def done(self, results: Iterable[RowResult]) -> None:
        """Final results as soon as they are known: the report holds them back until the
        rows before them are done, and a crash must not turn them back into guesses."""
        records = [
            [r.row, str(r.status), r.error, r.error_description, r.attempts]
            for r in results
            if r.status in FINAL_STATUSES
        ]
        if records:
            with self._lock:
                self._write({"done": records})

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _choice_text(choice: Any) -> str:
    """[only, only_error] as recorded in a journal, as the options that give them."""
    if not choice:
        return "no --only"
    only, only_error = choice
    parts = [
        f"--only {','.join(only)}" if only else "",
        f"--only-error {','.join(only_error)}" if only_error else "",
    ]
    return " ".join(p for p in parts if p)


def check_resumable(report: Path) -> None:
    """A report without its journal cannot be matched to an input: refuse to resume it."""
    journal = sidecar(report, ".journal")
    has_report = report.exists() or sidecar(report, ".partial.jsonl").exists()
    if has_report and not journal.exists():
        raise ReportMismatchError(
            f"{report} has no journal ({journal.name}), so it cannot be matched to this input;"
            " run without --resume to start over"
        )


def compact(path: Path) -> None:
    """After a resume: one line per row, in row order; a row's last line wins.

    A resumed run appends its new lines after the old ones, so a crash at any moment
    leaves a report that the next --resume reads correctly; this puts it in order.
    """
    fmt = report_format(path)
    target = sidecar(path, ".partial.jsonl") if fmt == "parquet" else path
    if not target.exists():
        return
    records = _read_jsonl(target) if fmt != "csv" else _read_csv_report(target)
    by_row: dict[int, dict[str, Any]] = {}
    for rec in records:
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
    tmp = sidecar(target, ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            writer = csv.writer(fh)
            writer.writerow(REPORT_COLUMNS)
            for row in sorted(by_row):
                writer.writerow([by_row[row].get(c, "") for c in REPORT_COLUMNS])
        else:
            for row in sorted(by_row):
                fh.write(json.dumps(by_row[row], ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
