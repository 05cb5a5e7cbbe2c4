"""Read CSV, TSV, XLSX and Parquet into chunks of raw text, each row with its number.

Readers stream: CSV and Parquet are read a chunk at a time, never whole. Every value is
kept as the text the user typed (validation happens in `validate.py`), so the report can
show it as given. Input quirks (BOM, `;`, cp1251, gzip, a title row above the header) are
handled here, once, and what was detected is reported back in `Table.detected`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import queue
import re
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cleanup.errors import InputError
from cleanup.inputs.columns import FIELDS, normalise_name

# What reading a damaged file raises (a gzip stream cut short or corrupt included).
_READ_ERRORS = (OSError, EOFError, zlib.error)

DEFAULT_CHUNK_ROWS = 200_000
_SNIFF_BYTES = 256 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_HEADER_SEARCH_ROWS = 20
_SEP_LINE = re.compile(r'"?sep=([^\r\n"])"?[ \t]*(?:\r\n|\n|\r)', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RawChunk:
    """Rows `first_row .. first_row + len - 1`, as text: botId, messageId, reaction."""

    first_row: int
    bot_id: pa.Array
    message_id: pa.Array
    reaction: pa.Array
    # Why a row cannot be trusted as read (e.g. more fields than the header), or null.
    problem: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.bot_id)


@dataclass
class Table:
    """An opened input: its columns and how to stream its rows."""

    path: Path
    format: str
    columns: list[str]
    mapping: dict[str, str]
    detected: dict[str, Any] = field(default_factory=dict)
    _chunks: Iterator[RawChunk] | None = None

    def chunks(self) -> Iterator[RawChunk]:
        """The rows, chunk by chunk; blank rows are dropped and not numbered."""
        if self._chunks is None:
            raise RuntimeError("chunks() can be read once")
        chunks, self._chunks = self._chunks, None
        return _read_ahead(_number_rows(chunks))


def open_table(
    path: str | Path,
    *,
    column_overrides: Mapping[str, str] | None = None,
    sheet: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Table:
    """Open `path`, find its three columns and return a `Table` ready to stream.

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
        return _open_parquet(path, overrides, chunk_rows)
    if fmt == "xlsx":
        return _open_xlsx(path, overrides, sheet)
    return _open_csv(path, fmt, overrides, chunk_rows)


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
        return "tsv.gz" if ".tsv" in suffixes else "csv.gz"
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        raise InputError(
            str(path), "is not a Parquet file (no PAR1 magic bytes; truncated or misnamed?)"
        )
    if last in (".xlsx", ".xlsm"):
        raise InputError(
            str(path), "is not an XLSX workbook (not a zip archive; an old .xls? save it as .xlsx)"
        )
    if last == ".xls":
        raise InputError(
            str(path), "old binary .xls workbooks are not supported; save it as .xlsx or .csv"
        )
    return "tsv" if last == ".tsv" else "csv"


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

    thread = threading.Thread(target=produce, name="cleanup-read-ahead", daemon=True)
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
    """Drop rows whose three fields are all blank and number the rest 1, 2, 3 …"""
    next_row = 1
    for chunk in chunks:
        if len(chunk) == 0:
            continue
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
        keep = pc.invert(blank)
        arrays = [chunk.bot_id, chunk.message_id, chunk.reaction, chunk.problem]
        if not pc.all(keep).as_py():
            arrays = [None if a is None else pc.filter(a, keep) for a in arrays]
        if len(arrays[0]) == 0:
            continue
        yield RawChunk(next_row, *arrays)
        next_row += len(arrays[0])


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


def _open_parquet(path: Path, overrides: dict[str, str], chunk_rows: int) -> Table:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
    except Exception as exc:  # damaged metadata surfaces as any type, UnicodeDecodeError too
        raise InputError(str(path), f"cannot read as Parquet ({_short(exc)})") from None
    mapping = resolve_columns(str(path), columns, overrides)
    wanted = [mapping[f] for f in FIELDS]

    def chunks() -> Iterator[RawChunk]:
        try:
            for batch in pf.iter_batches(
                batch_size=chunk_rows, columns=list(dict.fromkeys(wanted))
            ):
                cols = {name: batch.column(name) for name in batch.schema.names}
                yield RawChunk(0, *(_as_text(cols[mapping[f]]) for f in FIELDS))
        except Exception as exc:  # a damaged page: any type, as above
            raise InputError(str(path), f"cannot read as Parquet ({_short(exc)})") from None

    return Table(path, "parquet", columns, mapping, {"rows": pf.metadata.num_rows}, chunks())


# ---------------------------------------------------------------- XLSX


def _open_xlsx(path: Path, overrides: dict[str, str], sheet: str | None) -> Table:
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
        positions = [columns.index(mapping[f]) for f in FIELDS]
        arrays = [
            pa.array([_cell_text(r[i]) if i < len(r) else "" for r in body], pa.string())
            for i in positions
        ]
        detected = {"sheet": name, "sheets": names, "header_row": header_at + 1}
        return Table(path, "xlsx", columns, mapping, detected, iter([RawChunk(0, *arrays)]))
    assert first_error is not None
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


# ---------------------------------------------------------------- CSV / TSV


def _open_csv(path: Path, fmt: str, overrides: dict[str, str], chunk_rows: int) -> Table:
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
    header = _first_record(text, delimiter)
    if header is None:
        raise InputError(str(path), "has no header row (expected botId, messageId, reaction)")
    columns = [c.strip() for c in header]
    mapping = resolve_columns(str(path), columns, overrides)
    detected = {"encoding": encoding, "delimiter": delimiter, "compressed": compressed}
    reader = _CsvReader(
        path, compressed, encoding, delimiter, columns, mapping, chunk_rows, skip_lines, header
    )
    return Table(path, fmt, columns, mapping, detected, reader.chunks())


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


def _first_record(text: str, delimiter: str) -> list[str] | None:
    # newline="": a lone \r is a line end to the csv module as to pyarrow, not an error.
    try:
        for record in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if any(f.strip() for f in record):
                return record
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
        fh = self._open_binary()
        try:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(
                    encoding="utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding,
                    block_size=8 << 20,
                    skip_rows=self.skip_lines,
                ),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.raw_columns},
                    include_columns=list(dict.fromkeys(wanted)),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                cols = {n: batch.column(n) for n in batch.schema.names}
                yield RawChunk(0, *(pc.fill_null(cols[name], "") for name in wanted))
        finally:
            fh.close()

    def _python_chunks(self, skip: int) -> Iterator[RawChunk]:
        index = {c: i for i, c in reversed(list(enumerate(self.columns)))}
        positions = [index[self.mapping[f]] for f in FIELDS]
        width = len(self.columns)
        csv.field_size_limit(1 << 30)  # a 10,000-character cell is data, not an attack
        with self._open_binary() as raw:
            text = io.TextIOWrapper(raw, encoding=self.encoding, errors="replace", newline="")
            records = csv.reader(text, delimiter=self.delimiter)
            header_seen = False
            seen = 0
            for _ in range(self.skip_lines):
                next(records, None)
            cols: list[list[str]] = [[], [], []]
            problems: list[str | None] = []
            try:
                for record in records:
                    if not header_seen:
                        header_seen = any(f.strip() for f in record)
                        continue
                    if not record:
                        continue  # empty lines are not records, for pyarrow either
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
                        yield _chunk_of(cols, problems)
                        cols, problems = [[], [], []], []
            except csv.Error as exc:
                raise InputError(
                    str(self.path), f"malformed CSV near line {records.line_num} ({exc})"
                ) from None
            except _READ_ERRORS as exc:
                raise InputError(
                    str(self.path), f"cannot read past line {records.line_num} ({_short(exc)})"
                ) from None
            if problems:
                yield _chunk_of(cols, problems)


def _chunk_of(cols: list[list[str]], problems: list[str | None]) -> RawChunk:
    problem = pa.array(problems, pa.string()) if any(problems) else None
    return RawChunk(0, *(pa.array(c, pa.string()) for c in cols), problem)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
