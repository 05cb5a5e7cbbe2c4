"""Re-run rows of a report: `--only STATUS,...` and `--only-error CODE,...` choose them.

A report written by `run` is an input like any other: it has botId, messageId and
reaction. With a choice, only the rows whose `status` (and `error`) is one of those given
are read, and each keeps the number in the report's `row` column, so the new report
still points at the original spreadsheet. Rows left out get no report line.
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

from cleanup.errors import InputError
from cleanup.inputs.readers import RawChunk, Table, open_table
from cleanup.results import Status

STATUSES = tuple(s.value for s in Status)
_ROW_NUMBER = re.compile(r"^0*(\d{1,18})(\.0*)?$")  # 12, or 12.0 from a float column


def split_values(values: Iterable[str]) -> list[str]:
    """`--only failed,invalid --only skipped` -> [failed, invalid, skipped]."""
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in str(value).split(",") if v.strip())
    return out


@dataclass(frozen=True)
class RowChoice:
    """Which input rows to run: those whose status is in `statuses` (if any are given)
    and whose error is in `errors` (if any are given)."""

    statuses: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.statuses or self.errors)

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

    def keep(self, extra: dict[str, pa.Array]) -> pa.Array:
        """True for each row the choice keeps; case and spaces around a value do not matter."""
        keep: pa.Array | None = None
        for column, wanted in (("status", self.statuses), ("error", self.errors)):
            if not wanted:
                continue
            values = pc.utf8_lower(pc.utf8_trim_whitespace(extra[column]))
            hit = pc.is_in(values, value_set=pa.array([w.casefold() for w in wanted]))
            keep = hit if keep is None else pc.and_(keep, hit)
        assert keep is not None
        return pc.fill_null(keep, False)


def open_rows(path: str | Path, *, choice: RowChoice | None = None, **options: Any) -> Table:
    """`open_table`, keeping only the rows `choice` names (all rows without one).

    Raises InputError (exit 2, naming the file) when the file has no column the choice
    reads: `status` for --only, `error` for --only-error.
    """
    if not choice:
        return open_table(path, **options)
    table = open_table(path, extra=("row", "status", "error"), **options)
    for column, option, wanted in (
        ("status", "--only", choice.statuses),
        ("error", "--only-error", choice.errors),
    ):
        if wanted and column not in table.extra:
            raise InputError(
                str(table.path),
                f"has no {column} column, so {option} cannot choose rows (it reads a report"
                " written by reaction-cleanup run)",
            )
    table.detected["left_out"] = 0

    def select(chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
        return _select(chunks, table, choice)

    table.select = select
    return table


def _select(chunks: Iterator[RawChunk], table: Table, choice: RowChoice) -> Iterator[RawChunk]:
    last = 0  # the previous kept row's number: numbers must ascend
    for chunk in chunks:
        extra = dict(chunk.extra or {})
        keep = choice.keep(extra)
        mask = keep.to_numpy(zero_copy_only=False)
        places = chunk.row_numbers()[mask]
        table.detected["left_out"] += len(chunk) - len(places)
        if len(places) == 0:
            continue
        rows = places
        if "row" in extra:
            rows = _report_rows(str(table.path), pc.filter(extra["row"], keep), places, last)
        last = int(rows[-1])
        yield RawChunk(chunk.first_row, *_arrays(chunk)).take(keep, rows)


def _arrays(chunk: RawChunk) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array | None]:
    return chunk.bot_id, chunk.message_id, chunk.reaction, chunk.problem


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
