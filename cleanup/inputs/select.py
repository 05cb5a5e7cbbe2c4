"""Re-run rows of a report: `--only STATUS,...` and `--only-error CODE,...` choose them
(and an undo's `--rows 12,40-55`, by row number).

A report written by `run` is an input like any other: it has botId, messageId and
reaction. With a choice, only the rows whose `status` (and `error`) is one of those given
are read. Each row of a report keeps the number in its `row` column (with a choice or
without), so the new report still points at the original spreadsheet. Rows left out get
no report line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cleanup.errors import ConfigError, InputError
from cleanup.inputs.readers import RawChunk, Table, drop_blank_rows, open_table
from cleanup.results import Status

STATUSES = tuple(s.value for s in Status)
# Columns every report has (and a spreadsheet rarely): a file with them all is a report.
REPORT_MARKERS = ("row", "status", "error")
_ROW_NUMBER = re.compile(r"^0*(\d{1,18})(\.0*)?$")  # 12, or 12.0 from a float column


def split_values(values: Iterable[str]) -> list[str]:
    """`--only failed,invalid --only skipped` -> [failed, invalid, skipped]."""
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in str(value).split(",") if v.strip())
    return out


_SPAN = re.compile(r"^\s*(\d{1,18})\s*(?:-\s*(\d{1,18})\s*)?$")


@dataclass(frozen=True)
class RowRanges:
    """Row numbers as sorted, disjoint spans (first, last), both ends included."""

    spans: tuple[tuple[int, int], ...]

    @classmethod
    def parse(cls, text: str, option: str = "--rows") -> RowRanges:
        """`12,40-55` -> rows 12 and 40 to 55. Raises ConfigError naming what is wrong."""
        spans = []
        for part in split_values([text]):
            found = _SPAN.match(part)
            first = int(found.group(1)) if found else 0
            last = int(found.group(2) or first) if found else 0
            if first < 1 or last < first:
                raise ConfigError(
                    f"{option}: {part!r} is not a row number or a range such as 40-55"
                )
            spans.append((first, last))
        if not spans:
            raise ConfigError(f"{option}: give row numbers such as 12,40-55")
        return cls._merged(spans)

    @classmethod
    def of(cls, rows: Iterable[int]) -> RowRanges:
        """Exactly these rows."""
        return cls._merged((r, r) for r in rows)

    @classmethod
    def _merged(cls, spans: Iterable[tuple[int, int]]) -> RowRanges:
        out: list[tuple[int, int]] = []
        for first, last in sorted(spans):
            if out and first <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            else:
                out.append((first, last))
        return cls(tuple(out))

    def contains(self, rows: np.ndarray) -> np.ndarray:
        """True for each row number inside a span."""
        if not self.spans:
            return np.zeros(len(rows), dtype=bool)
        firsts = np.array([f for f, _ in self.spans], dtype=np.int64)
        lasts = np.array([last for _, last in self.spans], dtype=np.int64)
        at = np.searchsorted(firsts, rows, side="right") - 1
        return (at >= 0) & (rows <= lasts[np.maximum(at, 0)])

    def __str__(self) -> str:
        return ",".join(str(f) if f == last else f"{f}-{last}" for f, last in self.spans)


@dataclass(frozen=True)
class RowChoice:
    """Which input rows to run: those whose status is in `statuses` (if any are given),
    whose error is in `errors` (if any are given) and whose number is in each of `rows`."""

    statuses: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    rows: tuple[RowRanges, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.statuses or self.errors or self.rows)

    def problems(self) -> list[str]:
        """What is wrong with the values as given (unknown statuses), for RunConfig.check."""
        out = []
        for value in self.statuses:
            if value.casefold() not in STATUSES:
                near = difflib.get_close_matches(value.casefold(), STATUSES, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                out.append(
                    f"--only: {value!r} is not a report status{hint}; the statuses are "
                    + ", ".join(STATUSES)
                )
        return out

    def keep(self, extra: dict[str, pa.Array], n: int) -> pa.Array:
        """True for each of the `n` rows whose status and error the choice keeps; case and
        spaces around a value do not matter."""
        keep: pa.Array = pa.array(np.ones(n, dtype=bool))
        for column, wanted in (("status", self.statuses), ("error", self.errors)):
            if not wanted:
                continue
            values = pc.utf8_lower(pc.utf8_trim_whitespace(extra[column]))
            hit = pc.is_in(values, value_set=pa.array([w.casefold() for w in wanted]))
            keep = pc.and_(keep, hit)
        return pc.fill_null(keep, False)

    def numbered(self, rows: np.ndarray) -> np.ndarray:
        """True for each row number that `rows` keeps."""
        inside = np.ones(len(rows), dtype=bool)
        for ranges in self.rows:
            inside &= ranges.contains(rows)
        return inside


def open_rows(path: str | Path, *, choice: RowChoice | None = None, **options: Any) -> Table:
    """`open_table`, keeping only the rows `choice` names (all rows without one).

    A report of reaction-cleanup (the `row`, `status` and `error` columns every report
    has) keeps the numbers in its `row` column, with a choice or without: they point at
    the original spreadsheet. `table.detected["report_rows"]` says so.

    Raises InputError (exit 2, naming the file) when the file has no column the choice
    reads: `status` for --only, `error` for --only-error.
    """
    table = open_table(path, extra=REPORT_MARKERS, **options)
    is_report = all(column in table.extra for column in REPORT_MARKERS)
    chosen = choice or RowChoice()
    if not chosen and not is_report:
        return table
    for column, option, wanted in (
        ("status", "--only", chosen.statuses),
        ("error", "--only-error", chosen.errors),
    ):
        if wanted and column not in table.extra:
            raise InputError(
                str(table.path),
                f"has no {column} column, so {option} cannot choose rows (it reads a report"
                " written by reaction-cleanup run)",
            )
    table.detected["left_out"] = 0
    table.detected["report_rows"] = is_report

    def select(chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
        # Without a choice every row is kept but the blank ones (an edited report's empty
        # lines), as for any input.
        return _select(chunks if chosen else drop_blank_rows(chunks), table, chosen)

    table.select = select
    return table


def _select(chunks: Iterator[RawChunk], table: Table, choice: RowChoice) -> Iterator[RawChunk]:
    last = 0  # the previous kept row's number: numbers must ascend
    for chunk in chunks:
        extra = dict(chunk.extra or {})
        keep = choice.keep(extra, len(chunk))
        mask = keep.to_numpy(zero_copy_only=False)
        places = chunk.row_numbers()[mask]
        rows = places
        if "row" in extra and len(places):
            rows = _report_rows(str(table.path), pc.filter(extra["row"], keep), places, last)
        if len(rows):
            last = int(rows[-1])
        if choice.rows:  # by number, once the numbers are known
            inside = choice.numbered(rows)
            mask[np.flatnonzero(mask)[~inside]] = False
            keep, rows = pa.array(mask), rows[inside]
        table.detected["left_out"] += len(chunk) - len(rows)
        if len(rows) == 0:
            continue
        yield RawChunk(chunk.first_row, *chunk.arrays()).take(keep, rows)


def _report_rows(file: str, text: pa.Array, places: np.ndarray, last: int) -> np.ndarray:
    """The numbers in a report's `row` column: the rows' places in the original input."""
    text = pc.utf8_trim_whitespace(text)
    plain = pc.and_(pc.ascii_is_decimal(text), pc.less_equal(pc.binary_length(text), 18))
    if pc.all(plain).as_py():  # nearly always: the column as the job wrote it
        rows: np.ndarray = pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)
        if rows[0] > last and (rows[0] > 0) and (len(rows) < 2 or (np.diff(rows) > 0).all()):
            return rows
    # Find the first value that is not a row number, or not after the one before it.
    rows = np.zeros(len(places), dtype=np.int64)
    for i, value in enumerate(text.to_pylist()):
        found = _ROW_NUMBER.match(value.strip())
        number = int(found.group(1)) if found else 0
        if number <= 0:
            raise InputError(
                file,
                f"{value[:40]!r} is not a row number (a re-run keeps each row's number from"
                " the report's row column)",
                row=int(places[i]),
                column="row",
            )
        if number <= last:
            raise InputError(
                file,
                f"row number {number} comes after row {last}: a report lists its rows in"
                " order once its run is complete (finish that run with --resume first)",
                row=int(places[i]),
                column="row",
            )
        rows[i] = last = number
    return rows
