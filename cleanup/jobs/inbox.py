"""Finding a job file's input files: an inbox folder or a glob, each file once it has
stopped changing, oldest first; and the names of the files a run writes for each."""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cleanup.errors import ConfigError
from cleanup.inputs.formats import input_suffix, split_input_suffix
from cleanup.jobs.schema import JobFile

log = logging.getLogger("cleanup")

# Spreadsheets it cannot read: worth a warning, unlike a README someone left there.
_UNSUPPORTED_SHEETS = (".xls", ".ods", ".numbers", ".xlsb")
# Names of files still being written by a copy tool or editor.
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".swp", ".lock")


@dataclass(frozen=True)
class Source:
    path: Path
    mtime: float
    size: int


NOTHING_TO_DO = "; nothing to do"
# A file younger than min_age is waited for, within the run, when it reaches that age
# within this many seconds: a file dropped in just before the run is still taken.
MAX_SETTLE_WAIT = 15.0


def list_sources(
    job: JobFile, *, now: float | None = None, settle: Callable[[float], bool] | None = None
) -> tuple[list[Source], list[str]]:
    """Files to consider, oldest first, and notes about files left for a later run.

    `settle(seconds)` waits (False: the job is stopping). With it, files younger than
    `min_age` that reach it within MAX_SETTLE_WAIT are waited for and taken if they did
    not change meanwhile; without it (check-job) they are only noted."""
    now = time.time() if now is None else now
    paths, notes = _candidates(job)
    sources: list[Source] = []
    young: list[tuple[Source, float]] = []  # (file, seconds until it is min_age old)
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue  # taken away while we looked
        age = now - st.st_mtime
        if age < job.min_age:
            left = job.min_age - max(age, 0.0)
            if settle is not None and left <= MAX_SETTLE_WAIT:
                young.append((Source(p, st.st_mtime, st.st_size), left))
                continue
            notes.append(_too_new(p, age, job.min_age))
            continue
        sources.append(Source(p, st.st_mtime, st.st_size))
    if young and settle is not None:
        sources += _settled(young, settle, job.min_age, notes)
    sources.sort(key=lambda s: (s.mtime, s.path.name))
    return sources, notes


def _candidates(job: JobFile) -> tuple[list[Path], list[str]]:
    """The spreadsheets in the inbox, or the files the input glob matches; and notes."""
    notes: list[str] = []
    paths: list[Path] = []
    if job.inbox is not None:
        if not job.inbox.is_dir():
            raise ConfigError(f"inbox: {job.inbox} is not a folder")
        for entry in job.inbox.iterdir():
            name = entry.name.lower()
            if _is_temporary(entry.name) or not entry.is_file():
                continue
            if input_suffix(name) is not None:  # what the readers take; the rest is left alone
                paths.append(entry)
            elif name.endswith(_UNSUPPORTED_SHEETS):
                notes.append(
                    f"ignoring {entry}: this kind of spreadsheet is not read; save it as .xlsx or .csv"
                )
            else:
                log.debug("ignoring %s: not a spreadsheet the inbox reads", entry)
        return paths, notes
    if job.input is None:  # load_job_file requires input or inbox
        return paths, notes
    skip = [p for p in (job.reports, job.archive) if p is not None]
    for match in glob.glob(job.input, recursive=True):
        p = Path(match)
        if p.is_file() and not _is_temporary(p.name) and not any(_inside(p, s) for s in skip):
            paths.append(p)
    if not paths and not glob.has_magic(job.input):
        notes.append(f"input {job.input} does not exist (yet){NOTHING_TO_DO}")
    return paths, notes


def _settled(
    young: list[tuple[Source, float]],
    settle: Callable[[float], bool],
    min_age: float,
    notes: list[str],
) -> list[Source]:
    """Wait until the young files are `min_age` old; those that did not change meanwhile."""
    wait = max(left for _, left in young)
    names = ", ".join(y.path.name for y, _ in young)
    log.info("waiting %.0f s for %s to stay unchanged (min_age = %g s)", wait, names, min_age)
    stopping = not settle(wait)
    taken = []
    for y, _ in young:
        try:
            st = y.path.stat()
        except FileNotFoundError:
            continue
        if stopping or (st.st_mtime, st.st_size) != (y.mtime, y.size):
            notes.append(_too_new(y.path, time.time() - st.st_mtime, min_age))
        else:
            taken.append(y)
    return taken


def _too_new(path: Path, age: float, min_age: float) -> str:
    return (
        f"leaving {path.name} for the next run: it changed {max(age, 0):.0f} s ago and may "
        f"still be being copied in (min_age = {min_age:g} s)"
    )


def _is_temporary(name: str) -> bool:
    lower = name.lower()
    return name.startswith((".", "~$")) or lower.endswith(_TEMP_SUFFIXES)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _stem(name: str) -> str:
    name = split_input_suffix(name)[0]
    return re.sub(r"[^\w.-]+", "-", name).strip("-.")[:60] or "input"


def report_name(source: Path, sha256: str, started: float, fmt: str) -> str:
    """`2026-11-25T183000Z_<stem>_<sha8>.report.csv`: sorts by time, names the input."""
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(started))
    return f"{stamp}_{_stem(source.name)}_{sha256[:8]}.report.{fmt}"


def html_path(report: Path) -> Path:
    """The HTML review report next to a report: `x.report.csv` -> `x.report.html`."""
    from cleanup.outputs.index import page_path  # the index links to it by the same rule

    return page_path(report)


def folder_problems(job: JobFile) -> list[str]:
    """Folders that must exist or be creatable, checked without changing anything."""
    problems = []
    if job.inbox is not None and not job.inbox.is_dir():
        problems.append(f"inbox: {job.inbox} is not a folder")
    for key, folder in (("reports", job.reports), ("archive", job.archive)):
        if folder is None:
            continue
        probe = folder
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            problems.append(f"{key}: {folder} is not a folder")
        elif not os.access(probe, os.W_OK):
            problems.append(f"{key}: {probe} is not writable")
    return problems
