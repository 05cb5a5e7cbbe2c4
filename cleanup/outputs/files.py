"""How the job's files reach the disk and are read back after a crash.

Two ways to write, one rule to read:
- A file that is replaced as a whole (summary, HTML page, a compacted or Parquet report,
  the job state file, the OAuth token store) is written to a temporary file in the same
  folder, fsynced, renamed over the old one, and the folder is fsynced: a crash leaves
  the old file or the new one, never an empty or half-written one.
- A file that grows (report, journal) is appended to and flushed; a crash can cut its
  last line. Such a cut line is never a record: readers stop before it and a writer
  that appends again first truncates it (else the next line would be glued to it).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from cleanup.errors import OutputError

_BLOCK = 1 << 20

# The hidden folder beside the reports that holds the job's own files (a report's journal and
# lock, a job file's lock): a reports folder shows only what people read.
STATE_FOLDER = ".reaction-cleanup"
# Files beside a report, named after it (`sidecar`): the run's summary, and the lines of a
# Parquet report until it is closed (a Parquet file is unreadable until then).
SUMMARY = ".summary.json"
PARTIAL = ".partial.jsonl"


def sidecar(path: Path, suffix: str) -> Path:
    """A file beside `path` named after it: `r.csv` + `.summary.json` -> `r.csv.summary.json`."""
    return path.with_name(path.name + suffix)


def state_file(report: Path, suffix: str) -> Path:
    """The job's own file about `report`, out of sight in the state folder beside it:
    `reports/r.csv` + `.journal` -> `reports/.reaction-cleanup/r.csv.journal`."""
    return report.parent / STATE_FOLDER / (report.name + suffix)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError while writing `path` (a full disk, a read-only folder) is an OutputError
    that names it: not a bug, and --resume continues once there is room."""
    try:
        yield
    except TimeoutError:
        raise  # a lock held by another run (filelock's Timeout), not a refused write
    except OSError as exc:
        raise OutputError(path, exc) from exc


def fsync_folder(folder: Path) -> None:
    """Makes a rename or a new file in `folder` survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write the new content to; when the block
    ends without an error, that file replaces `path` durably, else it is removed.

    For writers that want a path of their own (a Parquet writer); `mode` (such as 0o600)
    is set before any content is written.
    """
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own (two writers never share a temporary file), hidden; created with
        # the umask's permissions like any new file (mkstemp's would be 0600), or with `mode`.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            os.close(fd)
            yield tmp
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):  # e.g. the folder just became read-only
                tmp.unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)


@contextmanager
def open_replacing(
    path: Path, *, newline: str | None = None, mode: int | None = None
) -> Iterator[IO[str]]:
    """A text file (UTF-8) that replaces `path` durably when the block ends without an
    error: for content written piece by piece."""
    with replacing(path, mode=mode) as tmp, tmp.open("w", encoding="utf-8", newline=newline) as fh:
        yield fh


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` (text is written as UTF-8): all of it or none of it,
    even across a crash or a power cut."""
    with replacing(path, mode=mode) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


# --------------------------------------------------------------------------- appended files


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of an appended file, one a line, up to a line cut by a crash."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # a line cut by a crash is not a record
            try:
                record = json.loads(line)
            except ValueError:
                continue  # one damaged line must not hide the lines after it
            if isinstance(record, dict):
                yield record


def read_csv_lines(path: Path) -> Iterator[str]:
    """The lines of an appended CSV file (for `csv.reader`) up to a record cut by a crash."""
    left = whole_records(path, csv_quotes=True)
    with path.open("rb") as fh:
        while left > 0 and (line := fh.readline(left)):
            left -= len(line)
            # A line ends at b"\n", which is never inside a UTF-8 character.
            yield line.decode("utf-8", errors="replace")


def drop_cut_line(path: Path, *, csv_quotes: bool = False) -> None:
    """Truncate a record cut by a crash, before appending after it."""
    keep = whole_records(path, csv_quotes=csv_quotes)
    with path.open("rb+") as fh:
        fh.truncate(keep)


_CSV_MARKS = re.compile(rb'["\n]')


def whole_records(path: Path, *, csv_quotes: bool = False) -> int:
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
                start = max(0, size - _BLOCK)
                fh.seek(start)
                cut = fh.read(size - start).rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                size = start
        else:
            inside, offset = False, 0
            while block := fh.read(_BLOCK):
                for mark in _CSV_MARKS.finditer(block):
                    if mark.group() == b'"':
                        inside = not inside
                    elif not inside:
                        keep = offset + mark.end()
                offset += len(block)
    return keep


__all__ = [
    "STATE_FOLDER",
    "drop_cut_line",
    "fsync_folder",
    "open_replacing",
    "read_csv_lines",
    "read_jsonl",
    "replacing",
    "sidecar",
    "state_file",
    "whole_records",
    "write_atomic",
    "writing",
]
