"""Read CSV, TSV, XLSX and Parquet into chunks of raw text, each row with its number.

Readers stream: CSV and Parquet are read a chunk at a time, never whole. Every value is
kept as the text the user typed (validation happens in `validate.py`), so the report can
show it as given. Input quirks (BOM, `;`, cp1251, gzip, a title row above the header) are
handled here, once, and what was detected is reported back in `Table.detected`.
"""

from __future__ import annotations

import codecs
import contextvars
import csv
import gzip
import io
import json
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cleanup.errors import InputError
from cleanup.inputs.columns import FIELDS, normalise_name
from cleanup.inputs.formats import INPUT_SUFFIXES

# What reading a damaged file raises (a gzip stream cut short or corrupt included).
_READ_ERRORS = (OSError, EOFError, zlib.error)

DEFAULT_CHUNK_ROWS = 200_000
_SNIFF_BYTES = 256 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_HEADER_SEARCH_ROWS = 20
_SEP_LINE = re.compile(r'"?sep=([^\r\n"])"?[ \t]*(?:\r\n|\n|\r)', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RawChunk:
    """Rows as text: botId, messageId, reaction, numbered `first_row, first_row + 1 …`
    unless `rows` gives each row's number (rows left out before it: blank, or filtered)."""

    first_row: int
    bot_id: pa.Array
    message_id: pa.Array
    reaction: pa.Array
    # Why a row cannot be trusted as read (e.g. more fields than the header), or null.
    problem: pa.Array | None = None
    # Each row's number (ascending), where they are not consecutive from `first_row`.
    rows: np.ndarray | None = None
    # Other columns asked for with `open_table(extra=...)`, as text, by their field name.
    extra: Mapping[str, pa.Array] | None = None

    def __len__(self) -> int:
        return len(self.bot_id)

    def row_numbers(self) -> np.ndarray:
        if self.rows is not None:
            return self.rows
        return np.arange(self.first_row, self.first_row + len(self), dtype=np.int64)

    def arrays(self) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array | None]:
        """botId, messageId, reaction and problem: the arrays a new chunk is built from."""
        return self.bot_id, self.message_id, self.reaction, self.problem

    def take(self, keep: pa.Array, rows: np.ndarray) -> RawChunk:
        """The rows where `keep` is true, numbered `rows` (one number per kept row)."""
        arrays = list(self.arrays())
        if not pc.all(keep).as_py():
            arrays = [None if a is None else pc.filter(a, keep) for a in arrays]
            extra = {k: pc.filter(v, keep) for k, v in (self.extra or {}).items()}
        else:
            extra = dict(self.extra or {})
        first = int(rows[0]) if len(rows) else self.first_row
        contiguous = len(rows) == 0 or int(rows[-1]) - first + 1 == len(rows)
        bot_id, message_id, reaction, problem = arrays
        return RawChunk(
            first, bot_id, message_id, reaction, problem,
            rows=None if contiguous else rows, extra=extra or None,
        )  # fmt: skip


@dataclass
class Table:
    """An opened input: its columns and how to stream its rows."""

    path: Path
    format: str
    columns: list[str]
    mapping: dict[str, str]
    detected: dict[str, Any] = field(default_factory=dict)
    _chunks: Iterator[RawChunk] | None = None
    # Columns asked for with `open_table(extra=...)` that the file has: field -> column.
    extra: dict[str, str] = field(default_factory=dict)
    # Replaces the dropping of blank rows (see cleanup.inputs.select): which rows to keep.
    select: Callable[[Iterator[RawChunk]], Iterator[RawChunk]] | None = None

    def chunks(self) -> Iterator[RawChunk]:
        """The rows, chunk by chunk, numbered by their place in the file (the first row
        under the header is 1). Blank rows are dropped, but keep their numbers: the rows
        after them have the number a spreadsheet shows."""
        if self._chunks is None:
            raise RuntimeError("chunks() can be read once")
        chunks, self._chunks = self._chunks, None
        numbered = _number_rows(chunks)
        select = self.select or drop_blank_rows
        return _read_ahead(select(numbered))


def open_table(
    path: str | Path,
    *,
    column_overrides: Mapping[str, str] | None = None,
    sheet: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: tuple[str, ...] = (),
) -> Table:
    """Open `path`, find its three columns and return a `Table` ready to stream.

    `extra` names other columns to read too where the file has them (matched like the
    three, e.g. a report's `row`, `status`, `error`); each chunk carries them as text.
    Raises InputError (one line, naming the file) when the file cannot be read at all
    or lacks a needed column.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise InputError(name, "no such file")
    if path.is_dir():
        raise InputError(name, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise InputError(
            name, "the file is empty (expected a header row with botId, messageId, reaction)"
        )
    fmt = detect_format(path)
    overrides = dict(column_overrides or {})
    if fmt == "parquet":
        return _open_parquet(path, overrides, chunk_rows, extra)
    if fmt == "xlsx":
        return _open_xlsx(path, overrides, sheet, extra)
    if fmt == "jsonl":
        return _open_jsonl(path, overrides, chunk_rows, extra)
    return _open_csv(path, fmt, overrides, chunk_rows, extra)


def detect_format(path: Path) -> str:
    """By content first (a misnamed file still opens), then by extension."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    suffixes = [s.lower() for s in path.suffixes]
    if head.startswith(b"\x1f\x8b"):
        # Compressed: the name says which text inside (rows.tsv.gz), CSV otherwise.
        return "tsv.gz" if INPUT_SUFFIXES.get("".join(suffixes[-2:])) == "tsv.gz" else "csv.gz"
    last = suffixes[-1] if suffixes else ""
    named = INPUT_SUFFIXES.get(last)
    if named == "parquet":
        raise InputError(
            str(path), "is not a Parquet file (no PAR1 magic bytes; truncated or misnamed?)"
        )
    if named == "xlsx":
        raise InputError(
            str(path), "is not an XLSX workbook (not a zip archive; an old .xls? save it as .xlsx)"
        )
    if named == "jsonl":
        return "jsonl"
    if last == ".xls":
        raise InputError(
            str(path), "old binary .xls workbooks are not supported; save it as .xlsx or .csv"
        )
    return "tsv" if named == "tsv" else "csv"


def resolve_columns(file: str, columns: list[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Map each needed field to the file's column name, or fail naming what the file has."""
    by_norm: dict[str, list[str]] = {}
    for col in columns:
        by_norm.setdefault(normalise_name(col), []).append(col)
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for wanted in FIELDS:
        given = overrides.get(wanted)
        if given is not None:
            matches = [given] if given in columns else by_norm.get(normalise_name(given), [])
            if not matches:
                missing.append(f"{wanted} (given as {given!r} with --column)")
                continue
        else:
            matches = by_norm.get(normalise_name(wanted), [])
            if not matches:
                missing.append(wanted)
                continue
        if len(set(matches)) > 1:
            # Two spellings of one field (botId and bot_id) may hold different values:
            # guessing could send the wrong ids.
            both = " and ".join(repr(c) for c in matches)
            raise InputError(
                file, f"columns {both} both match {wanted}; pick one with --column {wanted}=NAME"
            )
        mapping[wanted] = matches[0]
    if missing:
        shown = ", ".join(repr(c) for c in columns[:30]) or "none"
        raise InputError(
            file,
            f"missing column(s) {', '.join(missing)}; the file has columns: {shown}"
            " (use --column botId=NAME to map one)",
        )
    return mapping


def find_extra(columns: list[str], wanted: tuple[str, ...]) -> dict[str, str]:
    """The columns named like `wanted` (exactly, else as normalise_name matches)."""
    found: dict[str, str] = {}
    for name in wanted:
        exact = [c for c in columns if c == name]
        loose = [c for c in columns if normalise_name(c) == normalise_name(name)]
        if exact or loose:
            found[name] = (exact or loose)[0]
    return found


def _read_ahead(chunks: Iterator[RawChunk], depth: int = 1) -> Iterator[RawChunk]:
    """Read and parse the next chunk in a thread while the caller validates this one (on
    two cores a million-row dry run takes about a third less). At most `depth` chunks wait,
    so memory stays bounded by the chunk size; errors reach the caller in order."""
    done = object()
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    break
            else:
                put(done)
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the caller left early: release the file now

    # In the caller's context: its log lines name the same job.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(produce,), name="cleanup-read-ahead", daemon=True
    )
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()


def _number_rows(chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
    """Number every record the reader gives 1, 2, 3 …, blank ones included."""
    next_row = 1
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        yield RawChunk(next_row, *chunk.arrays(), extra=chunk.extra)
        next_row += len(chunk)


def drop_blank_rows(chunks: Iterator[RawChunk]) -> Iterator[RawChunk]:
    """Rows whose three fields are all blank are not sent and get no report line."""
    for chunk in chunks:
        blank = None
        for arr in (chunk.bot_id, chunk.message_id, chunk.reaction):
            # Empty or only whitespace (utf8_is_space is false for ""): cheaper than trimming.
            empty = pc.or_(pc.equal(pc.binary_length(arr), 0), pc.utf8_is_space(arr))
            empty = pc.fill_null(empty, True)
            blank = empty if blank is None else pc.and_(blank, empty)
            if not pc.any(blank).as_py():
                break  # no row is blank in this column: none can be blank in all three
        if chunk.problem is not None:
            blank = pc.and_(blank, pc.is_null(chunk.problem))
        if not pc.any(blank).as_py():
            yield chunk
            continue
        keep = pc.invert(blank)
        rows = chunk.row_numbers()[keep.to_numpy(zero_copy_only=False)]
        if len(rows):
            yield chunk.take(keep, rows)


def _as_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as text: nulls become '', numbers their usual spelling."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_floating(arr.type):
        # 12.0 from a float column is text "12.0" so the id check sees what Excel meant.
        text = pa.array([_float_text(v) for v in arr.to_pylist()], type=pa.string())
    elif (
        pa.types.is_string(arr.type)
        or pa.types.is_large_string(arr.type)
        or pa.types.is_dictionary(arr.type)
    ):
        text = arr.cast(pa.string())
        try:
            text.validate(full=True)
        except pa.ArrowInvalid:
            # Bytes that are not UTF-8 in a string column: keep the rows, mark the bad bytes.
            raw = text.cast(pa.binary()).to_pylist()
            text = pa.array(
                [None if v is None else v.decode("utf-8", "replace") for v in raw], pa.string()
            )
    else:
        try:
            text = arr.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = pa.array([None if v is None else str(v) for v in arr.to_pylist()], pa.string())
    return pc.fill_null(text, "")


def _float_text(value: float | None) -> str:
    if value is None or value != value:  # NaN is an empty cell
        return ""
    return repr(float(value))


# ---------------------------------------------------------------- Parquet


def _open_parquet(
    path: Path, overrides: dict[str, str], chunk_rows: int, extra: tuple[str, ...]
) -> Table:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
    except Exception as exc:  # damaged metadata surfaces as any type, UnicodeDecodeError too
        raise InputError(str(path), f"cannot read as Parquet ({_short(exc)})") from None
    mapping = resolve_columns(str(path), columns, overrides)
    extras = find_extra(columns, extra)
    wanted = [mapping[f] for f in FIELDS] + list(extras.values())

    def chunks() -> Iterator[RawChunk]:
        try:
            for batch in pf.iter_batches(
                batch_size=chunk_rows, columns=list(dict.fromkeys(wanted))
            ):
                cols = {name: batch.column(name) for name in batch.schema.names}
                yield _text_chunk(
                    [_as_text(cols[mapping[f]]) for f in FIELDS],
                    {k: _as_text(cols[c]) for k, c in extras.items()},
                )
        except Exception as exc:  # a damaged page: any type, as above
            raise InputError(str(path), f"cannot read as Parquet ({_short(exc)})") from None

    detected = {"rows": pf.metadata.num_rows}
    return Table(path, "parquet", columns, mapping, detected, chunks(), extras)


# ---------------------------------------------------------------- XLSX


def _open_xlsx(
    path: Path, overrides: dict[str, str], sheet: str | None, extra: tuple[str, ...]
) -> Table:
    # XLSX is a zip of XML: it cannot be streamed by rows cheaply, and spreadsheets that
    # ops export stay far below CSV sizes, so the sheet is read whole (calamine is fast).
    try:
        from python_calamine import CalamineWorkbook

        book = CalamineWorkbook.from_path(str(path))
        names = list(book.sheet_names)
    except Exception as exc:  # calamine raises its own types for every kind of damage
        raise InputError(str(path), f"cannot read as XLSX ({_short(exc)})") from None
    if not names:
        raise InputError(str(path), "the workbook has no sheets")
    if sheet is not None:
        chosen = _pick_sheet(path, names, sheet)
        candidates = [chosen]
    else:
        candidates = names
    first_error: InputError | None = None
    for name in candidates:
        try:
            rows = book.get_sheet_by_name(name).to_python(skip_empty_area=False)
        except Exception as exc:
            raise InputError(str(path), f"cannot read sheet {name!r} ({_short(exc)})") from None
        try:
            header_at, mapping, columns = _find_header(path, name, rows, overrides)
        except InputError as exc:
            first_error = first_error or exc
            continue  # without --sheet, the first sheet that has the columns is used
        body = rows[header_at + 1 :]
        extras = find_extra(columns, extra)

        def column(
            name: str, body: list[list[Any]] = body, columns: list[str] = columns
        ) -> pa.Array:
            i = columns.index(name)
            return pa.array([_cell_text(r[i]) if i < len(r) else "" for r in body], pa.string())

        chunk = _text_chunk(
            [column(mapping[f]) for f in FIELDS], {k: column(c) for k, c in extras.items()}
        )
        detected = {"sheet": name, "sheets": names, "header_row": header_at + 1}
        return Table(path, "xlsx", columns, mapping, detected, iter([chunk]), extras)
    if first_error is None:  # every sheet either returned or set it: not reached
        raise InputError(str(path), "no sheet could be read")
    if len(names) > 1 and sheet is None:
        raise InputError(
            str(path),
            f"no sheet has the columns botId, messageId, reaction (sheets: {', '.join(names)});"
            f" first sheet: {first_error.args[0].split(': ', 1)[-1]}",
        )
    raise first_error


def _pick_sheet(path: Path, names: list[str], sheet: str) -> str:
    if sheet in names:
        return sheet
    if sheet.isdigit() and 1 <= int(sheet) <= len(names):
        return names[int(sheet) - 1]
    raise InputError(str(path), f"no sheet {sheet!r}; the workbook has: {', '.join(names)}")


def _find_header(
    path: Path, sheet: str, rows: list[list[Any]], overrides: Mapping[str, str]
) -> tuple[int, dict[str, str], list[str]]:
    """The header is the first row that names all three columns (a title row may sit above)."""
    first_columns: list[str] | None = None
    for i, row in enumerate(rows[:_HEADER_SEARCH_ROWS]):
        columns = [_cell_text(c) or f"column {j + 1}" for j, c in enumerate(row)]
        if not any(_cell_text(c) for c in row):
            continue
        if first_columns is None:
            first_columns = columns
        try:
            return i, resolve_columns(str(path), columns, overrides), columns
        except InputError:
            continue
    if first_columns is None:
        raise InputError(str(path), f"sheet {sheet!r} is empty")
    resolve_columns(f"{path} (sheet {sheet!r})", first_columns, overrides)
    raise AssertionError("unreachable")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        # Excel stores every number as a float: show 456 as the sheet does, not 456.0.
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    return str(value)


# ---------------------------------------------------------------- JSONL


_JSONL_HEAD_LINES = 100


def _open_jsonl(
    path: Path, overrides: dict[str, str], chunk_rows: int, extra: tuple[str, ...]
) -> Table:
    """One JSON object per line (a report written as .jsonl): no header, so line N is row N;
    the columns are the keys of the first objects."""
    columns: list[str] = []
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            for _, line in zip(range(_JSONL_HEAD_LINES), fh, strict=False):
                record = _json_object(line)
                for key in record or {}:
                    if key not in columns:
                        columns.append(key)
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({_short(exc)})") from None
    if not columns:
        raise InputError(
            str(path), "has no JSON object with botId, messageId, reaction in its first lines"
        )
    mapping = resolve_columns(str(path), columns, overrides)
    extras = find_extra(columns, extra)
    names = [mapping[f] for f in FIELDS] + list(extras.values())

    def chunks() -> Iterator[RawChunk]:
        cols: list[list[str]] = [[] for _ in names]
        problems: list[str | None] = []
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            for line in fh:
                record = _json_object(line)
                problems.append(
                    None
                    if record is not None or not line.strip()
                    else "the line is not a JSON object"
                )
                for out, name in zip(cols, names, strict=True):
                    out.append(_json_text(record.get(name)) if record else "")
                if len(problems) >= chunk_rows:
                    yield _chunk_of(cols, problems, extras)
                    cols, problems = [[] for _ in names], []
        if problems:
            yield _chunk_of(cols, problems, extras)

    return Table(path, "jsonl", columns, mapping, {"encoding": "utf-8"}, chunks(), extras)


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _cell_text(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- CSV / TSV


def _open_csv(
    path: Path, fmt: str, overrides: dict[str, str], chunk_rows: int, extra: tuple[str, ...]
) -> Table:
    compressed = fmt.endswith(".gz")
    raw = _read_head(path, compressed)
    # Excel's "Unicode Text" export is UTF-16 (NUL bytes and all), with a BOM.
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\x00" in raw[:65536]:
        raise InputError(
            str(path), "looks binary, not a text CSV (NUL bytes); is it the right file?"
        )
    encoding = _detect_encoding(raw)
    text = _decode_head(raw, encoding)
    delimiter = "\t" if fmt.startswith("tsv") else _sniff_delimiter(text)
    # A first line "sep=;" (written for Excel) names the delimiter and is not the header.
    sep_line = _SEP_LINE.match(text)
    skip_lines = 0
    if sep_line:
        delimiter = sep_line.group(1) if not fmt.startswith("tsv") else delimiter
        text, skip_lines = text[sep_line.end() :], 1
    found = _first_record(text, delimiter)
    if found is None:
        raise InputError(str(path), "has no header row (expected botId, messageId, reaction)")
    above, header = found
    columns = [c.strip() for c in header]
    mapping = resolve_columns(str(path), columns, overrides)
    extras = find_extra(columns, extra)
    detected = {"encoding": encoding, "delimiter": delimiter, "compressed": compressed}
    reader = _CsvReader(
        path, compressed, encoding, delimiter, columns, mapping, chunk_rows, skip_lines, header
    )
    reader.skip_records = above
    reader.extras = extras
    return Table(path, fmt, columns, mapping, detected, reader.chunks(), extras)


def _read_head(path: Path, compressed: bool) -> bytes:
    try:
        if compressed:
            with gzip.open(path, "rb") as fh:
                return fh.read(_SNIFF_BYTES)
        with path.open("rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except _READ_ERRORS as exc:
        raise InputError(str(path), f"cannot read ({_short(exc)})") from None


def _detect_encoding(raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        # The sample may end inside a multi-byte character: decode incrementally.
        codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    if _looks_cp1251(raw):
        return "cp1251"
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    # Russian-language Excel exports are cp1251; it is the likeliest non-UTF-8 guess.
    return best.encoding if best is not None else "cp1251"


_CYRILLIC_WORD = re.compile(r"(?<![A-Za-z])[\u0400-\u04ff]{2,}(?![A-Za-z])")


def _looks_cp1251(raw: bytes) -> bool:
    """Russian text in cp1251: its non-ASCII bytes read as whole Cyrillic words.

    charset-normalizer alone guesses cp1250 or big5 for a short Russian export. A Western
    cp1252 file read as cp1251 gives single Cyrillic letters inside Latin words (caf\u0439),
    not whole words, so it fails this test and is left to charset-normalizer.
    """
    text = raw.decode("cp1251", errors="replace")
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    if non_ascii == 0:
        return False
    in_words = sum(len(m.group()) for m in _CYRILLIC_WORD.finditer(text))
    return in_words >= 0.8 * non_ascii


def _decode_head(raw: bytes, encoding: str) -> str:
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw, final=False)


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same, largest number of fields."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", (-1, -1)
    for delim in _DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(lines[:20], delimiter=delim)]
        except csv.Error:
            continue
        if not counts or counts[0] < 2:
            continue
        consistent = sum(1 for c in counts if c == counts[0])
        score = (consistent, counts[0])
        if score > best_score:
            best, best_score = delim, score
    return best


def _first_record(text: str, delimiter: str) -> tuple[int, list[str]] | None:
    """The header (the first record that is not blank) and how many records are above it."""
    # newline="": a lone \r is a line end to the csv module as to pyarrow, not an error.
    try:
        records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for above, record in enumerate(records):
            if any(f.strip() for f in record):
                return above, record
    except csv.Error:
        return None
    return None


class _CsvReader:
    """Streams a CSV in chunks: pyarrow's fast reader, and the csv module where it balks.

    pyarrow stops on a row with too many fields or on bytes that are not valid in the
    encoding. Rather than lose such rows, the reader carries on from the same record with
    the tolerant csv module, so every record still gets its row number and a status.
    """

    def __init__(
        self,
        path: Path,
        compressed: bool,
        encoding: str,
        delimiter: str,
        columns: list[str],
        mapping: dict[str, str],
        chunk_rows: int,
        skip_lines: int = 0,
        raw_columns: list[str] | None = None,
    ) -> None:
        self.path, self.compressed, self.encoding = path, compressed, encoding
        self.delimiter, self.columns, self.mapping = delimiter, columns, mapping
        self.chunk_rows = chunk_rows
        self.skip_lines = skip_lines  # lines before the header (a "sep=;" line)
        # The header as written (" messageId "): pyarrow names columns so, untrimmed.
        self.raw_columns = raw_columns if raw_columns is not None else columns
        self.skip_records = 0  # blank records above the header, after skip_lines
        self.extras: dict[str, str] = {}  # other columns to read: field -> column

    def chunks(self) -> Iterator[RawChunk]:
        done = 0
        try:
            for chunk in self._arrow_chunks():
                done += len(chunk)
                yield chunk
            return
        except (pa.ArrowException, KeyError, UnicodeDecodeError, ValueError):
            pass  # carry on with the csv module from the first record pyarrow did not give
        except _READ_ERRORS as exc:
            raise InputError(str(self.path), f"cannot read ({_short(exc)})") from None
        yield from self._python_chunks(skip=done)

    def _open_binary(self) -> Any:
        return gzip.open(self.path, "rb") if self.compressed else self.path.open("rb")

    def _arrow_chunks(self) -> Iterator[RawChunk]:
        import pyarrow.csv as pacsv

        if len(set(self.columns)) != len(self.columns) or self.encoding == "utf-16":
            raise ValueError("duplicate column names: use the csv module")
        raw_of = dict(zip(self.columns, self.raw_columns, strict=True))
        if len(set(self.raw_columns)) != len(self.raw_columns):
            raise ValueError("duplicate column names: use the csv module")
        wanted = [raw_of[self.mapping[f]] for f in FIELDS]
        extras = {k: raw_of[c] for k, c in self.extras.items()}
        fh = self._open_binary()
        try:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(
                    encoding="utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding,
                    block_size=8 << 20,
                    skip_rows=self.skip_lines + self.skip_records,
                ),
                # An empty line is a row of the sheet: it keeps the rows after it in place.
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter, newlines_in_values=True, ignore_empty_lines=False
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.raw_columns},
                    include_columns=list(dict.fromkeys(wanted + list(extras.values()))),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                cols = {n: batch.column(n) for n in batch.schema.names}
                yield _text_chunk(
                    [pc.fill_null(cols[name], "") for name in wanted],
                    {k: pc.fill_null(cols[c], "") for k, c in extras.items()},
                )
        finally:
            fh.close()

    def _python_chunks(self, skip: int) -> Iterator[RawChunk]:
        index = {c: i for i, c in reversed(list(enumerate(self.columns)))}
        positions = [index[self.mapping[f]] for f in FIELDS]
        positions += [index[c] for c in self.extras.values()]
        width = len(self.columns)
        csv.field_size_limit(1 << 30)  # a 10,000-character cell is data, not an attack
        with self._open_binary() as raw:
            text = io.TextIOWrapper(raw, encoding=self.encoding, errors="replace", newline="")
            records = csv.reader(text, delimiter=self.delimiter)
            header_seen = False
            seen = 0
            for _ in range(self.skip_lines):
                next(records, None)
            cols: list[list[str]] = [[] for _ in positions]
            problems: list[str | None] = []
            try:
                for record in records:
                    if not header_seen:
                        header_seen = any(f.strip() for f in record)
                        continue
                    # An empty line is a record (a blank row), for pyarrow too.
                    if seen < skip:
                        seen += 1
                        continue
                    for out, pos in zip(cols, positions, strict=True):
                        out.append(record[pos] if pos < len(record) else "")
                    # An unquoted delimiter inside a value shifts every field after it.
                    problems.append(
                        f"the row has {len(record)} fields but the header has {width}"
                        # Empty trailing fields ("456,789,like,") shift nothing.
                        if len(record) > width and any(f.strip() for f in record[width:])
                        else None
                    )
                    if len(problems) >= self.chunk_rows:
                        yield _chunk_of(cols, problems, self.extras)
                        cols, problems = [[] for _ in positions], []
            except csv.Error as exc:
                raise InputError(
                    str(self.path), f"malformed CSV near line {records.line_num} ({exc})"
                ) from None
            except _READ_ERRORS as exc:
                raise InputError(
                    str(self.path), f"cannot read past line {records.line_num} ({_short(exc)})"
                ) from None
            if problems:
                yield _chunk_of(cols, problems, self.extras)


def _chunk_of(
    cols: list[list[str]], problems: list[str | None], extras: Mapping[str, str]
) -> RawChunk:
    problem = pa.array(problems, pa.string()) if any(problems) else None
    arrays = [pa.array(c, pa.string()) for c in cols]
    return _text_chunk(arrays[:3], dict(zip(extras, arrays[3:], strict=True)), problem)


def _text_chunk(
    fields: list[pa.Array], extra: dict[str, pa.Array], problem: pa.Array | None = None
) -> RawChunk:
    """A chunk as a reader gives it (numbered later): the three fields, then the others."""
    bot_id, message_id, reaction = fields
    return RawChunk(0, bot_id, message_id, reaction, problem, extra=extra or None)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
