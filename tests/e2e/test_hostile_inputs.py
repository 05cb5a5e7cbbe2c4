"""Issue 6, "hostile input": whatever spreadsheet someone exported, each file gives either
per-row statuses (its good rows done, only the bad ones `invalid`) or one clear line and
exit code 2. Never a traceback.

Runs go through the real CLI against the sandbox portal; where a row is said to be removed,
the sandbox's state is checked too. The last tests fuzz the input reader with hypothesis.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanup.errors import InputError
from cleanup.inputs.readers import open_table
from cleanup.inputs.validate import Validator
from cleanup.sandbox import SandboxPortal

BOT = 456
FAST = ("--rate", "1000", "--burst", "1000", "--progress", "none")
HEADER = "botId,messageId,reaction\n"
PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


# ----------------------------------------------------------------------------- helpers


def tokens_file(folder: Path, portal: SandboxPortal) -> Path:
    path = folder / "bot_tokens.json"
    path.write_text(json.dumps({str(b.id): b.token for b in portal.state.bots.values()}))
    return path


def run(run_cli: RunCli, portal: SandboxPortal, path: Path, *extra: Any) -> Result:
    report = path.parent / "report.csv"
    return run_cli(
        "run",
        path,
        "--webhook",
        portal.webhook_url(),
        "--bot-tokens",
        tokens_file(path.parent, portal),
        "--report",
        report,
        *FAST,
        *extra,
    )


def report_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "report.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def left(portal: SandboxPortal) -> set[tuple[int, int, str]]:
    """(botId, messageId, reaction) still on the portal."""
    return {(b, m, r) for m, b, r in portal.state.snapshot()}


def assert_one_line_error(result: Result, path: Path, *words: str) -> None:
    """Exit 2, one line on stderr naming the file, no traceback, nothing sent."""
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reaction-cleanup: error: ") and path.name in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def likes(*messages: int) -> list[tuple[int, int, str]]:
    return [(BOT, m, "like") for m in messages]


# ----------------------------------------------------------------------------- whole-file errors


def test_empty_file(run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path) -> None:
    portal = portal_factory(likes(1))
    path = tmp_path / "in.csv"
    path.write_bytes(b"")
    result = run(run_cli, portal, path)
    assert_one_line_error(result, path, "empty", "botId, messageId, reaction")
    assert portal.stats.requests == 0


def test_only_blank_lines_has_no_header(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(1))
    path = tmp_path / "in.csv"
    path.write_bytes(b"\n\r\n  \n" * 1000)
    assert_one_line_error(run(run_cli, portal, path), path, "no header row")


def test_header_only_is_an_empty_job(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    # A header and nothing else: nothing to do, nothing wrong; the report has its header.
    portal = portal_factory(likes(1))
    path = tmp_path / "in.csv"
    path.write_text(HEADER)
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert report_rows(tmp_path) == []
    assert "rows=0" in result.stderr
    assert portal.stats.requests == 0


@pytest.mark.parametrize("name", ["in.csv", "in.tsv", "in.csv.gz", "in"])
def test_binary_garbage(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path, name: str
) -> None:
    portal = portal_factory(likes(1))
    path = tmp_path / name
    path.write_bytes(random.Random(6).randbytes(20_000))
    result = run(run_cli, portal, path)
    assert_one_line_error(result, path)
    assert portal.stats.requests == 0


def test_garbage_without_nul_bytes_names_what_it_found(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(1))
    path = tmp_path / "in.csv"
    path.write_bytes(bytes(range(1, 256)) * 40)
    assert_one_line_error(run(run_cli, portal, path), path, "missing column")


def test_parquet_named_csv_still_opens(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(11, 12))
    path = tmp_path / "export.csv"
    pq.write_table(
        pa.table({"botId": [BOT, BOT], "messageId": [11, 12], "reaction": ["like", "like"]}), path
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in report_rows(tmp_path)] == ["removed", "removed"]
    assert left(portal) == set()


def test_xlsx_named_csv_still_opens(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(11))
    book = openpyxl.Workbook()
    book.active.append(["botId", "messageId", "reaction"])
    book.active.append([BOT, 11, "like"])
    path = tmp_path / "export.csv"
    book.save(path)
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert left(portal) == set()


def test_csv_named_xlsx_is_a_clear_error(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(11))
    path = tmp_path / "export.xlsx"
    path.write_text(HEADER + f"{BOT},11,like\n")
    assert_one_line_error(run(run_cli, portal, path), path, "not an XLSX workbook")


def test_old_xls_is_a_clear_error(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(11))
    path = tmp_path / "export.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)  # an OLE2 header
    assert_one_line_error(run(run_cli, portal, path), path)


@pytest.mark.parametrize(
    "keep", [4, 100, -12, -1], ids=["magic-only", "head", "no-footer", "cut-1"]
)
def test_truncated_parquet(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path, keep: int
) -> None:
    portal = portal_factory(likes(11))
    buf = io.BytesIO()
    table = pa.table({"botId": [BOT] * 500, "messageId": range(500), "reaction": ["like"] * 500})
    pq.write_table(table, buf)
    path = tmp_path / "in.parquet"
    path.write_bytes(buf.getvalue()[:keep])
    assert_one_line_error(run(run_cli, portal, path), path, "Parquet")
    assert portal.stats.requests == 0


def test_truncated_gzip(run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path) -> None:
    portal = portal_factory(likes(11))
    data = gzip.compress((HEADER + f"{BOT},11,like\n" * 2000).encode())
    path = tmp_path / "in.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run(run_cli, portal, path), path, "cannot read")


# ----------------------------------------------------------------------------- XLSX


def _workbook(path: Path, sheets: dict[str, list[list[Any]]], merges: dict[str, list[str]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
        for cells in merges.get(name, []):
            sheet.merge_cells(cells)
    book.save(path)
    return path


def _cache_formula_values(path: Path, values: dict[str, str]) -> None:
    """openpyxl writes formulas without the value Excel caches; add it, as Excel would."""
    with zipfile.ZipFile(path) as zin:
        parts = {name: zin.read(name) for name in zin.namelist()}
    for name, data in parts.items():
        if name.startswith("xl/worksheets/"):
            text = data.decode()
            for formula, value in values.items():
                text = text.replace(f"<f>{formula}</f><v />", f"<f>{formula}</f><v>{value}</v>")
            parts[name] = text.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in parts.items():
            zout.writestr(name, data)


@pytest.fixture
def several_sheets(tmp_path: Path) -> Path:
    # A notes sheet first (no columns), then two data sheets; the first data sheet has a
    # merged title row above its header, a merged header cell and a formula.
    path = _workbook(
        tmp_path / "book.xlsx",
        {
            "Notes": [["Export of bot reactions, do not edit"], ["made by ops"]],
            "Data": [
                ["Reactions to remove (Q3)"],
                ["botId", "messageId", "reaction", "Comment", None],
                [None, None, None, "who", "when"],
                [BOT, 21, "like", "ann", "monday"],
                [BOT, "=20+2", "like", "bob", "tuesday"],
                [BOT, "not a number", "like", "cy", "friday"],
            ],
            "Other": [["botId", "messageId", "reaction"], [BOT, 31, "like"]],
        },
        {"Data": ["A1:E1", "D2:E2", "A2:A3", "B2:B3", "C2:C3"]},
    )
    _cache_formula_values(path, {"20+2": "22"})
    return path


def test_xlsx_first_sheet_with_the_columns(
    run_cli: RunCli, portal_factory: PortalFactory, several_sheets: Path, tmp_path: Path
) -> None:
    portal = portal_factory(likes(21, 22, 31))
    result = run(run_cli, portal, several_sheets)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    # The title row, the merged header and the sub-header row are not data; the formula's
    # cached value is the message id; the one bad cell is the only invalid row.
    assert [(r["messageId"], r["status"]) for r in rows] == [
        ("21", "removed"),
        ("22", "removed"),
        ("not a number", "invalid"),
    ]
    assert rows[2]["error"] == "INVALID_MESSAGE_ID"
    assert left(portal) == set(likes(31))  # the other sheet was not touched


@pytest.mark.parametrize("sheet", ["Other", "3"], ids=["by-name", "by-number"])
def test_xlsx_sheet_option(
    run_cli: RunCli, portal_factory: PortalFactory, several_sheets: Path, tmp_path: Path, sheet: str
) -> None:
    portal = portal_factory(likes(21, 22, 31))
    result = run(run_cli, portal, several_sheets, "--sheet", sheet)
    assert result.exit_code == 0, result.stderr
    assert [(r["messageId"], r["status"]) for r in report_rows(tmp_path)] == [("31", "removed")]
    assert left(portal) == set(likes(21, 22))


@pytest.mark.parametrize(
    "sheet, words",
    [("Nope", ["no sheet 'Nope'", "Notes, Data, Other"]), ("9", ["no sheet '9'"]),
     ("1", ["sheet 'Notes'", "missing column"])],
    ids=["unknown-name", "number-too-big", "sheet-without-columns"],
)  # fmt: skip
def test_xlsx_bad_sheet_option(
    run_cli: RunCli,
    portal_factory: PortalFactory,
    several_sheets: Path,
    sheet: str,
    words: list[str],
) -> None:
    portal = portal_factory(likes(21))
    assert_one_line_error(
        run(run_cli, portal, several_sheets, "--sheet", sheet), several_sheets, *words
    )


def test_xlsx_without_any_sheet_with_the_columns(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(21))
    path = _workbook(tmp_path / "book.xlsx", {"A": [["x", "y"]], "B": [["nothing"]]}, {})
    assert_one_line_error(run(run_cli, portal, path), path, "no sheet has the columns", "A, B")


def test_xlsx_formula_without_cached_value_is_one_invalid_row(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    # Written by a tool that does not compute formulas: the cell has no value to read.
    portal = portal_factory(likes(21, 22))
    path = _workbook(
        tmp_path / "book.xlsx",
        {"S": [["botId", "messageId", "reaction"], [BOT, 21, "like"], [BOT, "=20+2", "like"]]},
        {},
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    assert [r["status"] for r in report_rows(tmp_path)] == ["removed", "invalid"]


# ----------------------------------------------------------------------------- readable CSVs


def test_huge_cells(run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path) -> None:
    portal = portal_factory(likes(41, 42, 43))
    path = tmp_path / "in.csv"
    huge = "x" * 10_000
    path.write_text(
        "botId,messageId,reaction,note\n"
        f"{BOT},41,like,{huge}\n"  # a huge cell in an extra column: fine
        f'{BOT},42,{huge},"{huge}"\n'  # a huge reaction: invalid
        f"{BOT},{'9' * 10_000},like,\n"  # a huge id: invalid
        f"{BOT},43,like,{huge}\n"
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert [r["status"] for r in rows] == ["removed", "invalid", "invalid", "removed"]
    assert [r["error"] for r in rows] == ["", "INVALID_REACTION", "INVALID_MESSAGE_ID", ""]
    assert left(portal) == set(likes(42))


def test_millions_of_blank_lines(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(51, 52, 53))
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as fh:
        fh.write(HEADER + f"{BOT},51,like\n")
        fh.write("\n" * 1_000_000)
        fh.write(f"{BOT},52,like\n")
        fh.write("\r\n" * 500_000 + ",,\n" * 1000 + " , , \n" * 1000)
        fh.write(f"{BOT},53,like\n{BOT},oops,like\n")
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    # Blank lines get no report line but are rows of the sheet: each real row keeps its place.
    assert [(r["row"], r["messageId"], r["status"]) for r in rows] == [
        ("1", "51", "removed"),
        ("1000002", "52", "removed"),
        ("1502003", "53", "removed"),
        ("1502004", "oops", "invalid"),
    ]
    assert left(portal) == set()


def test_cp1251_csv(run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path) -> None:
    # A Russian-language Excel export: cp1251, `;`, Cyrillic in an extra column and in a
    # misspelt reaction. The good rows are removed; the bad reaction is reported as typed.
    portal = portal_factory(likes(61, 62))
    path = tmp_path / "выгрузка.csv"
    text = (
        "botId;messageId;reaction;Комментарий\n"
        f"{BOT};61;like;Убрать реакцию бота\n"
        f"{BOT};62;лайк;реакция написана по-русски\n"
        f"{BOT};62;like;ещё раз, правильно\n"
    )
    path.write_bytes(text.encode("cp1251"))
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert [(r["reaction"], r["status"]) for r in rows] == [
        ("like", "removed"),
        ("лайк", "invalid"),
        ("like", "removed"),
    ]
    assert "лайк" in rows[1]["error_description"]
    assert left(portal) == set()


def test_cp1251_long_export(run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path) -> None:
    # Longer than the sniffed head, with Cyrillic only far down: decoded the same way.
    portal = portal_factory(likes(*range(1000, 1200)))
    path = tmp_path / "in.csv"
    lines = [f"{BOT};{m};like;Удалить" for m in range(1000, 1200)]
    lines[150] = f"{BOT};1150;сердце;Удалить"
    path.write_bytes(
        ("botId;messageId;reaction;Заметка\n" + "\n".join(lines) + "\n").encode("cp1251")
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert [r["status"] for r in rows].count("removed") == 199
    assert rows[150]["reaction"] == "сердце" and rows[150]["status"] == "invalid"


def test_rows_with_more_fields_than_the_header(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    # pyarrow refuses such rows; the csv-module fallback reads on from there, and only the
    # row with the unquoted comma (its fields are shifted, so untrustworthy) is invalid.
    portal = portal_factory(likes(71, 72, 73, 74))
    path = tmp_path / "in.csv"
    path.write_text(
        HEADER
        + f"{BOT},71,like\n"
        + f"{BOT},72,like,a note, with a comma\n"
        + f"{BOT},73,like\n"
        + f"{BOT},74\n"  # too few fields: the reaction is missing
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert [(r["messageId"], r["status"], r["error"]) for r in rows] == [
        ("71", "removed", ""),
        ("72", "invalid", "INVALID_ROW"),
        ("73", "removed", ""),
        ("74", "invalid", "INVALID_REACTION"),
    ]
    assert "5 fields but the header has 3" in rows[1]["error_description"]
    assert left(portal) == set(likes(72, 74))


def test_quoted_newlines(run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path) -> None:
    portal = portal_factory(likes(81, 82, 83))
    path = tmp_path / "in.csv"
    path.write_text(
        "botId,messageId,reaction,note\n"
        f'{BOT},81,like,"first line\nsecond line"\n'
        f'"{BOT}","82","li\nke",""\n'  # a line break inside the reaction: invalid, shown as is
        f'{BOT},83,like,"a ""quoted"" word\r\nand more"\n',
        newline="",
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert [(r["row"], r["status"]) for r in rows] == [
        ("1", "removed"),
        ("2", "invalid"),
        ("3", "removed"),
    ]
    assert rows[1]["reaction"] == "li\nke"
    assert left(portal) == set(likes(82))


def test_invalid_utf8_far_down_a_utf8_file(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    # The head sniffs as UTF-8; a broken byte far past it is one bad row, not a stopped job
    # (pyarrow refuses the block; the csv module reads on with the byte replaced).
    n = 1500
    portal = portal_factory(likes(*range(1, n + 1)))
    path = tmp_path / "in.csv"
    note = "n" * 300  # pushes the bad byte past the sniffed head
    lines = [f"{BOT},{m},like,{note}".encode() for m in range(1, n + 1)]
    lines[n - 6] = f"{BOT},{n - 5},like".encode() + b"\xff," + note.encode()
    path.write_bytes(b"botId,messageId,reaction,note\n" + b"\n".join(lines) + b"\n")
    assert path.stat().st_size > 300_000
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert len(rows) == n
    bad_rows = [r for r in rows if r["status"] != "removed"]
    assert [(r["messageId"], r["reaction"], r["status"]) for r in bad_rows] == [
        (str(n - 5), "like\ufffd", "invalid")
    ]
    assert left(portal) == set(likes(n - 5))


def test_parquet_string_column_with_bytes_that_are_not_utf8(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    portal = portal_factory(likes(91, 92))
    data = b"like" + b"li\xffe" + b"like"
    offsets = pa.array([0, 4, 8, 12], pa.int32()).buffers()[1]
    reaction = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(data)])
    path = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"botId": [BOT] * 3, "messageId": [91, 93, 92], "reaction": reaction}), path
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(tmp_path)
    assert [(r["reaction"], r["status"]) for r in rows] == [
        ("like", "removed"),
        ("li\ufffde", "invalid"),
        ("like", "removed"),
    ]


# ----------------------------------------------------------------------------- fuzzing

_GOOD_CSV = (HEADER + f'{BOT},1,like\n{BOT},2,fire\n"{BOT}","3","redHeart"\n').encode()


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(
        pa.table({"botId": [BOT, BOT], "messageId": [1, 2], "reaction": ["a", "b"]}), buf
    )
    return buf.getvalue()


def _xlsx_bytes() -> bytes:
    book = openpyxl.Workbook()
    book.active.append(["botId", "messageId", "reaction"])
    book.active.append([BOT, 1, "like"])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


SEEDS = [
    _GOOD_CSV,
    _GOOD_CSV.replace(b",", b";"),
    b"\xef\xbb\xbf" + _GOOD_CSV,
    _GOOD_CSV.decode().encode("utf-16"),
    "botId;messageId;reaction;Заметка\n456;1;лайк;привет\n".encode("cp1251"),
    gzip.compress(_GOOD_CSV),
    _parquet_bytes(),
    _xlsx_bytes(),
]
NAMES = ["in.csv", "in.tsv", "in.csv.gz", "in.xlsx", "in.parquet", "in.txt", "in"]
SPLICES = [b'"', b"\n", b"\r", b",", b";", b"\t", b"\x00", b"\xff", b"\xd0", b"PK\x03\x04", b"PAR1"]


@st.composite
def malformed_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid file of some format, damaged: bytes flipped, cut, spliced, or dropped."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "splice", "drop", "garbage"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "splice":
            data[at:at] = b"".join(draw(st.lists(st.sampled_from(SPLICES), min_size=1, max_size=6)))
        elif op == "drop":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return draw(st.sampled_from(NAMES)), bytes(data)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(malformed_files(), st.sampled_from([1, 3, 1000]))
def test_fuzz_the_reader_never_raises_anything_but_input_error(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes], chunk_rows: int
) -> None:
    name, data = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    try:
        table = open_table(path, chunk_rows=chunk_rows)
        validator = Validator(allow_unknown_reactions=False, bot_tokens=None)
        last_row = 0
        for chunk in table.chunks():
            # Rows are numbered by their place (ascending, blank ones skipped), each gets a verdict.
            rows = chunk.row_numbers()
            assert len(rows) == len(chunk) and rows[0] == chunk.first_row
            assert rows[0] > last_row and (len(rows) < 2 or (rows[1:] > rows[:-1]).all())
            checked = validator.check(chunk)
            assert len(checked) == len(chunk)
            assert [item.row for item in checked.items()] == rows.tolist()
            last_row = int(rows[-1])
    except InputError as exc:
        text = str(exc)
        assert text.startswith(str(path)) and "\n" not in text


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(malformed_files())
def test_fuzz_the_cli_answers_in_one_line_or_a_report(
    tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli, case: tuple[str, bytes]
) -> None:
    # Through the whole job (a dry run: the reader and validation, no portal needed).
    name, data = case
    path = tmp_path_factory.mktemp("fuzzcli") / name
    path.write_bytes(data)
    result = run_cli("run", path, "--dry-run", "--progress", "none")
    out = result.stderr + result.stdout
    assert "Traceback" not in out and "internal error" not in out
    assert result.exit_code in (0, 1, 2), out
    if result.exit_code == 2:
        errors = [
            ln for ln in result.stderr.splitlines() if ln.startswith("reaction-cleanup: error:")
        ]
        assert len(errors) == 1, out


def test_fuzz_seeds_are_readable(tmp_path: Path) -> None:
    # The undamaged seeds read cleanly, so the fuzzer starts from real files.
    for i, data in enumerate(SEEDS):
        name = ["a.csv", "a.csv", "a.csv", "a.csv", "a.csv", "a.csv.gz", "a.parquet", "a.xlsx"][i]
        path = tmp_path / f"{i}{name}"
        path.write_bytes(data)
        chunks = list(open_table(path).chunks())
        assert sum(len(c) for c in chunks) >= 1, name


def test_unreadable_file_is_a_clear_error(
    run_cli: RunCli, portal_factory: PortalFactory, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    portal = portal_factory(likes(1))
    path = tmp_path / "in.csv"
    path.write_text(HEADER)
    path.chmod(0)
    assert_one_line_error(run(run_cli, portal, path), path)
