"""Issue 4, "Input": every file format and header spelling a user may bring, and the row
rules (ids, reactions, duplicates), checked end to end through the CLI against the sandbox.

Where a row is said to be removed, the sandbox's state is checked too: the reaction is gone.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import Result

from cleanup.sandbox import SandboxPortal
from tests.helpers.cli import portal_args, read_report, write_rows

BOT, BOT2 = 456, 457
FAST = ("--rate", "1000", "--burst", "1000")
PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


def reactions_left(portal: SandboxPortal) -> set[tuple[int, int, str]]:
    """(botId, messageId, reaction) still set on the portal."""
    return {(b, m, r) for m, b, r in portal.state.snapshot()}


def run(run_cli: RunCli, portal: SandboxPortal, path: Path, *extra: Any) -> Result:
    return run_cli("run", path, *portal_args(portal, path.parent, *FAST), *extra)


def default_report(path: Path) -> list[dict[str, str]]:
    name = path.name
    for ext in (".csv.gz", ".csv", ".tsv", ".xlsx", ".parquet"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return read_report(path.with_name(name + ".report.csv"))


THREE = [(BOT, 1001, "like"), (BOT, 1002, "fire"), (BOT2, 1003, "redHeart")]


# ------------------------------------------------------------------------- CSV dialects


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
@pytest.mark.parametrize("bom", [False, True], ids=["no-bom", "bom"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_csv_as_excel_exports_it(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    delimiter: str,
    bom: bool,
    newline: str,
) -> None:
    portal = portal_factory(THREE)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_ALL)
    writer.writerow(["botId", "messageId", "reaction", "comment"])
    for bot, msg, reaction in THREE:
        # The comment holds every delimiter, a quote and a line break: quoting must hold.
        writer.writerow([bot, msg, reaction, f'a, b; c\td "quoted"{newline}next line'])
    path = tmp_path / "in.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + buf.getvalue().encode("utf-8"))

    result = run(run_cli, portal, path)

    assert result.exit_code == 0, result.stderr
    report = default_report(path)
    assert [(r["row"], r["botId"], r["status"]) for r in report] == [
        ("1", "456", "removed"),
        ("2", "456", "removed"),
        ("3", "457", "removed"),
    ]
    assert reactions_left(portal) == set()


def test_csv_unquoted_and_quoted_cells_with_spaces(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(THREE)
    path = tmp_path / "in.csv"
    path.write_text(
        'botId;messageId;reaction\n" 456 ";1001;" like "\n456; 1002 ;fire\n457;1003;redHeart\n',
        encoding="utf-8",
    )
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    report = default_report(path)
    assert [r["status"] for r in report] == ["removed"] * 3
    # The report shows the values as given, spaces and all.
    assert report[0]["botId"] == " 456 " and report[0]["reaction"] == " like "


ODD_EXPORTS: dict[str, bytes] = {
    # Excel's "Unicode Text": UTF-16 LE with a BOM, tab-separated, CRLF.
    "utf16-tab": codecs.BOM_UTF16_LE
    + "botId\tmessageId\treaction\r\n456\t1001\tlike\r\n456\t1002\tfire\r\n".encode("utf-16-le"),
    # A trailing delimiter on data rows: empty extra fields shift nothing.
    "trailing-delimiter": b"botId,messageId,reaction\n456,1001,like,\n456,1002,fire,,\n",
    # Russian Excel: cp1251 and semicolons.
    "cp1251": "botId;messageId;reaction;комментарий\n456;1001;like;удалить\n456;1002;fire;тест\n".encode(
        "cp1251"
    ),
    # Old Mac line ends.
    "cr-only": b"botId,messageId,reaction\r456,1001,like\r456,1002,fire\r",
    # Excel's delimiter hint line above the header.
    "sep-line": b"sep=;\nbotId;messageId;reaction\n456;1001;like\n456;1002;fire\n",
    "sep-line-bom": codecs.BOM_UTF8
    + b"sep=,\r\nbotId,messageId,reaction\r\n456,1001,like\r\n456,1002,fire\r\n",
    "pipe": b"botId|messageId|reaction\n456|1001|like\n456|1002|fire\n",
}


@pytest.mark.parametrize("kind", list(ODD_EXPORTS))
def test_odd_but_common_exports(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, kind: str
) -> None:
    portal = portal_factory([(BOT, 1001, "like"), (BOT, 1002, "fire")])
    path = tmp_path / "in.csv"
    path.write_bytes(ODD_EXPORTS[kind])
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert [(r["row"], r["status"]) for r in default_report(path)] == [
        ("1", "removed"),
        ("2", "removed"),
    ]
    assert reactions_left(portal) == set()


def test_header_only_file_is_an_empty_successful_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like")])
    path = write_rows(tmp_path / "in.csv", [])
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert default_report(path) == []
    assert (tmp_path / "in.report.csv").read_text().startswith("row,botId,messageId,reaction")
    assert portal.stats.requests == 0


@pytest.mark.parametrize("kind", ["csv.gz", "tsv", "tsv-named-csv"])
def test_gzip_and_tsv(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, kind: str
) -> None:
    portal = portal_factory(THREE)
    if kind == "csv.gz":
        path = tmp_path / "in.csv.gz"
        text = "botId,messageId,reaction\n" + "".join(f"{b},{m},{r}\n" for b, m, r in THREE)
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path = write_rows(
            tmp_path / ("in.tsv" if kind == "tsv" else "in.csv"), THREE, delimiter="\t"
        )
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in default_report(path)] == ["removed"] * 3
    assert reactions_left(portal) == set()


def test_xlsx_with_numeric_and_text_cells(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(THREE)
    path = tmp_path / "in.xlsx"
    frame = pd.DataFrame(
        {
            "Bot ID": [BOT, BOT, BOT2, BOT],  # numeric cells
            "Message ID": ["1001", 1002, 1003.0, 1004.5],  # text, int and float cells
            "Reaction": ["like", " FIRE ", "redHeart", "like"],
            "Note": ["x", "y", "z", "w"],
        }
    )
    frame.to_excel(path, index=False, sheet_name="to delete")
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    report = default_report(path)
    assert [r["status"] for r in report] == ["removed", "removed", "removed", "invalid"]
    assert "messageId" in report[3]["error_description"]
    # A whole number in a numeric cell shows as Excel shows it, not as a float.
    assert report[0]["botId"] == "456"
    assert reactions_left(portal) == set()


def test_parquet_with_typed_columns(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(THREE)
    path = tmp_path / "in.parquet"
    table = pa.table(
        {
            "bot_id": pa.array([BOT, BOT, BOT2, None], pa.int64()),
            "message_id": pa.array([1001.0, 1002.0, 1003.0, 1004.0], pa.float64()),
            "reaction": ["like", "fire", "REDHEART", "like"],
            "extra": [1, 2, 3, 4],
        }
    )
    pq.write_table(table, path)
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    report = default_report(path)
    assert [r["status"] for r in report] == ["removed", "removed", "removed", "invalid"]
    assert report[3]["error"] == "INVALID_BOT_ID"
    assert "botId" in report[3]["error_description"]
    assert reactions_left(portal) == set()


# ------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "header",
    [
        ("bot_id", "message_id", "reaction"),
        ("Bot ID", "Message ID", "Reaction"),
        ("BOTID", "MESSAGEID", "REACTION"),
        ("bot-id", " message-Id ", "reaction "),
        ("reaction", "messageId", "botId"),  # any order
    ],
    ids=["snake", "spaced", "upper", "dashed", "reordered"],
)
def test_header_matching_ignores_case_space_underscore_dash(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    header: Sequence[str],
) -> None:
    portal = portal_factory(THREE)
    order = {"bot": 0, "message": 1, "reaction": 2}
    rows = []
    for values in THREE:
        row = []
        for name in header:
            key = next(k for k in order if name.strip().lower().startswith(k))
            row.append(values[order[key]])
        rows.append(row)
    path = write_rows(tmp_path / "in.csv", rows, header=header)
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in default_report(path)] == ["removed"] * 3


def test_column_overrides_and_extra_columns(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(THREE)
    # "botId" exists but holds something else: the override must win over the name match.
    header = ("Chat", "Bot", "Msg", "Emoji", "botId")
    rows = [("c", b, m, r, "not-an-id") for b, m, r in THREE]
    path = write_rows(tmp_path / "in.csv", rows, header=header)
    result = run(
        run_cli,
        portal,
        path,
        "--column",
        "botId=Bot",
        "--column",
        "messageId=msg",
        "--column",
        "reaction=Emoji",
    )
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in default_report(path)] == ["removed"] * 3


def test_bad_column_override_is_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "in.csv", THREE)
    result = run_cli("run", path, "--dry-run", "--column", "botid")
    assert result.exit_code == 2
    assert "--column" in result.stderr


def test_two_spellings_of_one_column_are_refused_until_one_is_picked(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory(THREE)
    # botId and bot_id disagree: which one is meant is the user's call, not a guess.
    header = ("botId", "messageId", "reaction", "bot_id")
    rows = [(b, m, r, b + 1) for b, m, r in THREE]
    path = write_rows(tmp_path / "in.csv", rows, header=header)
    result = run(run_cli, portal, path)
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert "'botId' and 'bot_id' both match botId" in result.stderr
    assert "--column botId=NAME" in result.stderr
    assert portal.stats.requests == 0

    result = run(run_cli, portal, path, "--column", "botId=botId")
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in default_report(path)] == ["removed"] * 3


def _missing_columns_file(tmp_path: Path, fmt: str) -> Path:
    frame = pd.DataFrame({"bot": [BOT], "message": [1001], "reaction": ["like"]})
    path = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_file_without_needed_columns_exits_2_naming_file_and_columns(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, fmt: str
) -> None:
    portal = portal_factory(THREE)
    path = _missing_columns_file(tmp_path, fmt)
    result = run(run_cli, portal, path)
    assert result.exit_code == 2
    message = result.stderr
    assert str(path) in message
    assert "botId" in message and "messageId" in message
    # ... and says what the file does have, so the user can map them with --column.
    assert "'bot'" in message and "'message'" in message and "'reaction'" in message
    assert portal.stats.requests == 0


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "binary"),
    ],
    ids=["empty", "binary"],
)
def test_unreadable_files_exit_2(
    run_cli: RunCli, tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    result = run_cli("run", path, "--dry-run")
    assert result.exit_code == 2
    assert str(path) in result.stderr and expected in result.stderr


def test_missing_input_file_exits_2(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("run", tmp_path / "nope.csv", "--dry-run")
    assert result.exit_code == 2
    assert "nope.csv" in result.stderr


# ------------------------------------------------------------------------- id rules

GOOD_IDS = ["12", " 12 ", "12.0", "0012", "12.00"]
BAD_IDS = ["12.5", "abc", "-3", "", "   ", "0", "0.0", "1e3", "12,0", "+12", "99999999999999999999"]


@pytest.mark.parametrize("column", ["botId", "messageId"])
def test_id_rules(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, column: str
) -> None:
    values = GOOD_IDS + BAD_IDS
    # Each good value names bot 12 / message 12 on its own line: a distinct message per row
    # (or bot) keeps them from being duplicates of each other.
    rows: list[tuple[object, ...]] = []
    reactions = []
    for i, value in enumerate(values):
        other = 2000 + i
        if column == "botId":
            rows.append((value, other, "like"))
            reactions.append((12, other, "like"))
        else:
            rows.append((other, value, "like"))
            reactions.append((other, 12, "like"))
    portal = portal_factory(reactions)
    # Good rows target the same message 12 with different bots, or bot 12 on different messages.
    path = write_rows(tmp_path / "in.csv", rows)
    result = run(run_cli, portal, path)
    assert result.exit_code == 1, result.stderr
    report = default_report(path)
    assert len(report) == len(values)
    for value, line in zip(values, report, strict=True):
        if value in GOOD_IDS:
            assert line["status"] == "removed", (value, line)
        else:
            assert line["status"] == "invalid", (value, line)
            assert line["error_description"].startswith(f"{column}:"), line
            assert line["attempts"] == "0"
    assert len(reactions_left(portal)) == len(BAD_IDS)


def test_invalid_rows_are_never_sent_and_never_stop_the_job(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like"), (BOT, 1002, "like")])
    rows = [("abc", 1001, "like"), (BOT, 1001, "like"), (BOT, "x", "like"), (BOT, 1002, "like")]
    path = write_rows(tmp_path / "in.csv", rows)
    result = run(run_cli, portal, path)
    assert result.exit_code == 1
    report = default_report(path)
    assert [r["status"] for r in report] == ["invalid", "removed", "invalid", "removed"]
    assert [r["error"] for r in report] == ["INVALID_BOT_ID", "", "INVALID_MESSAGE_ID", ""]
    assert portal.stats.commands_executed == 2


def test_a_row_with_several_problems_names_each_column(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like")])
    path = write_rows(tmp_path / "in.csv", [("x", "-1", "nope")])
    run(run_cli, portal, path)
    (line,) = default_report(path)
    assert line["status"] == "invalid"
    for column in ("botId", "messageId", "reaction"):
        assert column in line["error_description"]


# ------------------------------------------------------------------------- reactions


def test_reaction_trimmed_matched_without_case_and_sent_canonically(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # The sandbox, like the portal, only knows camelCase: LIKE or redheart would not match.
    state = [
        (BOT, 1001, "like"),
        (BOT, 1002, "redHeart"),
        (BOT, 1003, "faceWithStuckOutTongueAndWinkingEye"),
        (BOT, 1004, "okHand"),
    ]
    portal = portal_factory(state)
    rows = [
        (BOT, 1001, "  LIKE "),
        (BOT, 1002, "redheart"),
        (BOT, 1003, "FaceWithStuckOutTongueAndWinkingEye"),
        (BOT, 1004, "\tokhand\t"),
    ]
    path = write_rows(tmp_path / "in.csv", rows)
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    report = default_report(path)
    assert [r["status"] for r in report] == ["removed"] * 4
    assert report[0]["reaction"] == "  LIKE "  # the report shows it as given
    assert reactions_left(portal) == set()


def test_unknown_reaction_is_invalid_with_a_hint(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like")])
    path = write_rows(tmp_path / "in.csv", [(BOT, 1001, "lik"), (BOT, 1001, "thumbsup")])
    result = run(run_cli, portal, path)
    assert result.exit_code == 1
    report = default_report(path)
    assert [r["status"] for r in report] == ["invalid", "invalid"]
    assert [r["error"] for r in report] == ["INVALID_REACTION"] * 2
    assert report[0]["error_description"].startswith("reaction:")
    assert "'like'" in report[0]["error_description"]  # did you mean
    assert "--allow-unknown-reactions" in report[1]["error_description"]
    assert portal.stats.requests == 0


def test_allow_unknown_reactions_sends_them(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like"), (BOT, 1002, "fire")])
    rows = [(BOT, 1001, "like"), (BOT, 1001, "newEmoji2027"), (BOT, 1002, "fire")]
    path = write_rows(tmp_path / "in.csv", rows)
    result = run(run_cli, portal, path, "--allow-unknown-reactions")
    assert result.exit_code == 1
    report = default_report(path)
    assert [r["status"] for r in report] == ["removed", "failed", "removed"]
    # The portal's own answer for a code it does not know.
    assert report[1]["error"] == "REACTION_NOT_FOUND"
    assert report[1]["error_description"] == "Reaction not found"


@pytest.mark.parametrize("mode", ["batch", "single"])
@pytest.mark.parametrize(
    "odd",
    [
        "like&botId=1#x+y",
        "like&botToken=stolen",
        "like#",
        "like+fire",
        "like%26botId%3D1",
        "like;botId=1",
        "like\nbotId=1",
        "лайк=1&reaction=like",
    ],
)
def test_odd_reaction_codes_cannot_change_other_parameters(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path, odd: str, mode: str
) -> None:
    # Bot 1 exists and has a like there too: a split query would remove it, or hit it.
    portal = portal_factory([(BOT, 1001, "like"), (1, 1001, "like"), (BOT, 1002, "fire")])
    rows = [(BOT, 1001, "fire"), (BOT, 1001, odd), (BOT, 1002, "fire")]
    path = write_rows(tmp_path / "in.csv", rows)
    result = run(run_cli, portal, path, "--allow-unknown-reactions", "--mode", mode)
    assert result.exit_code == 1, result.stderr
    report = default_report(path)
    assert [r["status"] for r in report] == ["failed", "failed", "removed"]
    assert report[0]["error"] == "REACTION_NOT_FOUND"  # bot 456 has no fire on 1001
    assert report[1]["error"] == "REACTION_NOT_FOUND", report[1]
    assert report[1]["reaction"] == odd
    # Nothing else was touched: both likes on message 1001 are still there.
    assert reactions_left(portal) == {(BOT, 1001, "like"), (1, 1001, "like")}


def test_batch_placeholder_in_a_reaction_is_invalid(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like")])
    path = write_rows(tmp_path / "in.csv", [(BOT, 1001, "$result[r1]"), (BOT, 1001, "like")])
    result = run(run_cli, portal, path, "--allow-unknown-reactions")
    report = default_report(path)
    assert [r["status"] for r in report] == ["invalid", "removed"], result.stderr
    assert report[0]["error_description"].startswith("reaction:")


# ------------------------------------------------------------------------- duplicates


def test_exact_duplicates_after_normalising_are_sent_once(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like"), (BOT, 1002, "fire")])
    rows = [
        (BOT, 1001, "like"),
        (BOT, 1002, "fire"),
        (f" {BOT}.0", "1001", " LIKE"),  # same after normalising: duplicate of row 1
        (BOT, 1001, "fire"),  # another reaction: not a duplicate
        (BOT, "1002.0", "Fire"),  # duplicate of row 2
        (BOT, 1001, "like"),  # duplicate of row 1 again
    ]
    path = write_rows(tmp_path / "in.csv", rows)
    result = run(run_cli, portal, path)
    assert result.exit_code == 1  # row 4: REACTION_NOT_FOUND
    report = default_report(path)
    assert [r["status"] for r in report] == [
        "removed",
        "removed",
        "duplicate",
        "failed",
        "duplicate",
        "duplicate",
    ]
    assert "row 1" in report[2]["error_description"]
    assert "row 2" in report[4]["error_description"]
    assert "row 1" in report[5]["error_description"]
    assert portal.stats.commands_executed == 3


def test_duplicates_only_exit_0(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like")])
    path = write_rows(tmp_path / "in.csv", [(BOT, 1001, "like"), (BOT, 1001, "like")])
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert [r["status"] for r in default_report(path)] == ["removed", "duplicate"]


def test_invalid_row_is_not_the_first_of_a_duplicate(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Row 1 has too many fields (an unquoted delimiter): it is invalid, so row 2, with
    # the same values, is the first real request and not its "duplicate".
    portal = portal_factory([(BOT, 1001, "like")])
    path = tmp_path / "in.csv"
    path.write_text("botId,messageId,reaction\n456,1001,like,oops\n456,1001,like\n")
    run(run_cli, portal, path)
    report = default_report(path)
    assert [r["status"] for r in report] == ["invalid", "removed"]
    assert report[0]["error"] == "INVALID_ROW"


def test_blank_lines_get_no_line_but_keep_their_place(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Issue 12: the row after two blank ones is row 4, as the spreadsheet shows it.
    portal = portal_factory([(BOT, 1001, "like"), (BOT, 1002, "like")])
    path = tmp_path / "in.csv"
    path.write_text("botId,messageId,reaction\n456,1001,like\n\n,,\n456,1002,like\n")
    result = run(run_cli, portal, path)
    assert result.exit_code == 0, result.stderr
    assert [(r["row"], r["status"]) for r in default_report(path)] == [
        ("1", "removed"),
        ("4", "removed"),
    ]


def test_jsonl_report_keeps_text_as_given(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    portal = portal_factory([(BOT, 1001, "like")])
    path = write_rows(tmp_path / "in.csv", [(BOT, 1001, "LIKE"), ("0012x", 1, "like")])
    report = tmp_path / "out.jsonl"
    run(run_cli, portal, path, "--report", report)
    lines = [json.loads(x) for x in report.read_text().splitlines()]
    assert lines[0]["reaction"] == "LIKE" and lines[0]["status"] == "removed"
    assert lines[1]["botId"] == "0012x" and lines[1]["status"] == "invalid"


def test_sep_line_with_a_shifted_row(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # The shifted row sends the reader down its slow path, which must skip "sep=" too.
    portal = portal_factory([(BOT, 1001, "like"), (BOT, 1002, "fire")])
    path = tmp_path / "in.csv"
    path.write_text("sep=;\nbotId;messageId;reaction\n456;1001;like;x\n456;1002;fire\n")
    result = run(run_cli, portal, path)
    assert result.exit_code == 1
    report = default_report(path)
    assert [(r["status"], r["error"]) for r in report] == [
        ("invalid", "INVALID_ROW"),
        ("removed", ""),
    ]
    assert report[0]["error_description"] == "the row has 4 fields but the header has 3"


def test_spaced_header_keeps_the_fast_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # " messageId " must not send a million-row file down the csv module's slow path.
    from cleanup.inputs import readers as inputs

    def slow_path(*_: object, **__: object) -> None:
        raise AssertionError("fell back to the csv module")

    monkeypatch.setattr(inputs._CsvReader, "_python_chunks", slow_path)
    path = tmp_path / "in.csv"
    path.write_bytes(codecs.BOM_UTF8 + b'" botId ", messageId ,reaction\n456,1001,like\n')
    (chunk,) = inputs.open_table(path).chunks()
    assert chunk.bot_id.to_pylist() == ["456"] and chunk.message_id.to_pylist() == ["1001"]
