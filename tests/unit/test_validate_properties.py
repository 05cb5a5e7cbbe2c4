"""The input validator (cleanup.inputs.validate), property-tested with hypothesis: id and
reaction verdicts, and duplicates across chunks, row-number gaps and a file read in chunks.

Each property is checked against a plain reference written from the issue's rules, not
from the code, so a disagreement is a bug in one or the other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import assume, given
from hypothesis import strategies as st

from cleanup.inputs.reactions import REACTION_CODES, from_emoji, looks_like_emoji
from cleanup.inputs.readers import RawChunk, open_table
from cleanup.inputs.validate import Row, Validator
from cleanup.results import RowResult, Status


def reference_id(text: str) -> int | None:
    """The issue's rule: a positive integer, spaces around allowed, Excel's `12.0` allowed."""
    m = re.fullmatch(r"([0-9]+)(?:\.0*)?", text.strip())
    if not m:
        return None
    value = int(m.group(1))
    # Ids are int64 on the portal; the job documents 18 digits as its upper bound.
    return value if 0 < value < 10**18 else None


id_text = st.one_of(
    st.text(alphabet="0123456789.-+e, \t\xa0a", max_size=8),
    st.integers(-5, 10**19).map(str),
    st.integers(0, 10**6).map(lambda n: f" {n}.0 "),
    st.integers(0, 10**6).map(lambda n: f"{n}.5"),
    st.integers(0, 99).map(lambda n: "0" * 20 + str(n)),
    st.sampled_from(["12", " 12 ", "12.0", "12.5", "abc", "-3", "", "0", "٣", "１２", "12."]),
)


def check_chunks(chunks: Sequence[RawChunk], **kwargs: object) -> list[Row | RowResult]:
    validator = Validator(**kwargs)  # type: ignore[arg-type]
    out: list[Row | RowResult] = []
    for chunk in chunks:
        out.extend(validator.check(chunk).items())
    return out


def one_chunk(bots: list[str], messages: list[str], reactions: list[str]) -> RawChunk:
    return RawChunk(
        1, pa.array(bots, pa.string()), pa.array(messages, pa.string()), pa.array(reactions)
    )


@given(values=st.lists(id_text, min_size=1, max_size=30))
def test_id_verdicts_match_the_reference(values: list[str]) -> None:
    # The same values as botId and as messageId, each row a different message or bot so
    # that no row is a duplicate of another.
    n = len(values)
    as_bot = check_chunks([one_chunk(values, [str(i + 1) for i in range(n)], ["like"] * n)])
    as_msg = check_chunks([one_chunk([str(i + 1) for i in range(n)], values, ["like"] * n)])
    for value, bot_item, msg_item in zip(values, as_bot, as_msg, strict=True):
        expected = reference_id(value)
        for item, column, field in (
            (bot_item, "botId", "bot_id"),
            (msg_item, "messageId", "message_id"),
        ):
            if expected is None:
                assert isinstance(item, RowResult), (value, item)
                assert item.status is Status.INVALID
                assert item.error_description.startswith(f"{column}:")
            else:
                assert isinstance(item, Row), (value, item)
                assert getattr(item, field) == expected


canonical_by_fold = {c.lower(): c for c in REACTION_CODES}
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
reaction_text = st.one_of(
    st.sampled_from(REACTION_CODES),
    st.sampled_from(REACTION_CODES).map(str.upper),
    st.sampled_from(REACTION_CODES).map(lambda c: f" \t{c.swapcase()} "),
    st.text(alphabet="likeLIKEfr $[]", max_size=8),
    any_text,
)


@given(reactions=st.lists(reaction_text, min_size=1, max_size=20), allow=st.booleans())
def test_reaction_verdicts_match_the_reference(reactions: list[str], allow: bool) -> None:
    n = len(reactions)
    items = check_chunks(
        [one_chunk(["1"] * n, [str(i + 1) for i in range(n)], reactions)],
        allow_unknown_reactions=allow,
    )
    for given_text, item in zip(reactions, items, strict=True):
        text = given_text.strip()
        # An emoji of the table reads as its code (tests/unit/test_reactions.py); any other
        # emoji or symbol is never a code, even with --allow-unknown-reactions.
        known = canonical_by_fold.get(text.lower()) or from_emoji(text)
        if known is not None:
            assert isinstance(item, Row) and item.reaction == known
        elif allow and text and len(text) <= 100 and "$" not in text and not looks_like_emoji(text):
            assert isinstance(item, Row) and item.reaction == text
        elif not allow or not text:
            assert isinstance(item, RowResult) and item.status is Status.INVALID
            assert item.error_description.startswith("reaction:")
        # (with --allow-unknown-reactions a `$` is only refused for the batch placeholders)
        if isinstance(item, RowResult):
            assert item.reaction == given_text  # shown as given


small_rows = st.lists(
    st.tuples(
        st.sampled_from(["1", " 1", "1.0", "2", "x", "0"]),
        st.sampled_from(["7", "07", "7.00", "8", ""]),
        st.sampled_from(["like", "LIKE ", "fire", "Fire", "nope"]),
    ),
    min_size=1,
    max_size=60,
)


def reference_statuses(rows: list[tuple[str, str, str]]) -> list[tuple[str, int]]:
    """(status, first row for duplicates) per row, from the issue's rules."""
    first: dict[tuple[int, int, str], int] = {}
    out = []
    for i, (bot, msg, reaction) in enumerate(rows, start=1):
        b, m = reference_id(bot), reference_id(msg)
        r = canonical_by_fold.get(reaction.strip().lower())
        if b is None or m is None or r is None:
            out.append(("invalid", 0))
        elif (b, m, r) in first:
            out.append(("duplicate", first[(b, m, r)]))
        else:
            first[(b, m, r)] = i
            out.append(("send", 0))
    return out


def verdicts(items: list[Row | RowResult]) -> list[tuple[str, int]]:
    out = []
    for item in items:
        if isinstance(item, Row):
            out.append(("send", 0))
        elif item.status is Status.DUPLICATE:
            found = re.search(r"row (\d+)", item.error_description)
            assert found, item
            out.append(("duplicate", int(found.group(1))))
        else:
            out.append((str(item.status), 0))
    return out


@given(rows=small_rows, chunk=st.integers(1, 7))
def test_duplicates_across_chunk_boundaries(rows: list[tuple[str, str, str]], chunk: int) -> None:
    chunks = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        chunks.append(
            RawChunk(
                start + 1,
                pa.array([r[0] for r in part]),
                pa.array([r[1] for r in part]),
                pa.array([r[2] for r in part]),
            )
        )
    assert verdicts(check_chunks(chunks)) == reference_statuses(rows)


@given(rows=small_rows, chunk=st.integers(1, 7), gaps=st.lists(st.integers(0, 3), max_size=60))
def test_duplicates_name_row_numbers_with_gaps(
    rows: list[tuple[str, str, str]], chunk: int, gaps: list[int]
) -> None:
    # Rows left out (blank, or not chosen by --only) leave gaps in the numbering: a
    # duplicate still names the first row's own number, and every row keeps its number.
    numbers, n = [], 0
    for i in range(len(rows)):
        n += 1 + (gaps[i] if i < len(gaps) else 0)
        numbers.append(n)
    chunks = []
    for start in range(0, len(rows), chunk):
        part, nums = rows[start : start + chunk], np.array(numbers[start : start + chunk])
        arrays = [pa.array([r[k] for r in part]) for k in range(3)]
        contiguous = nums[-1] - nums[0] + 1 == len(nums)
        bots, messages, reactions = arrays
        chunks.append(
            RawChunk(int(nums[0]), bots, messages, reactions, rows=None if contiguous else nums)
        )
    items = check_chunks(chunks)
    assert [item.row for item in items] == numbers
    expected = [(s, numbers[d - 1] if d else 0) for s, d in reference_statuses(rows)]
    assert verdicts(items) == expected


@given(rows=small_rows, chunk=st.integers(1, 7))
def test_duplicates_across_chunks_read_from_a_file(
    tmp_path_factory: object, rows: list[tuple[str, str, str]], chunk: int
) -> None:
    folder: Path = tmp_path_factory.mktemp("parquet")  # type: ignore[attr-defined]
    path = folder / "rows.parquet"
    pq.write_table(
        pa.table(
            {
                "botId": [r[0] for r in rows],
                "messageId": [r[1] for r in rows],
                "reaction": [r[2] for r in rows],
            }
        ),
        path,
    )
    table = open_table(path, chunk_rows=chunk)
    chunks = list(table.chunks())
    # Blank rows (all three cells empty) are not rows; these samples never are blank.
    assume(sum(len(c) for c in chunks) == len(rows))
    assert len(chunks) == -(-len(rows) // chunk)
    assert [c.first_row for c in chunks] == list(range(1, len(rows) + 1, chunk))
    assert verdicts(check_chunks(chunks)) == reference_statuses(rows)


# ------------------------------------------------------------------- emoji and links


def written_forms(code: str, message: int) -> st.SearchStrategy[tuple[str, str]]:
    """The ways people write one reaction on one message: the code in any case or its
    emoji decorated, the id or a link to the message."""
    from cleanup.inputs.reactions import REACTIONS

    reaction = st.sampled_from(
        [code, code.upper(), f" {code} ", REACTIONS[code], REACTIONS[code] + "\ufe0f",
         REACTIONS[code] + "\U0001f3fe"]
    )  # fmt: skip
    link = st.sampled_from(
        [f"https://p.example/online/?IM_DIALOG=chat5&IM_MESSAGE={message}",
         f"https://p.example/im/#IM_DIALOG=chat5&IM_MESSAGE={message}",
         f"/online/?IM_MESSAGE={message}&a=1#x", str(message), f"{message}.0"]
    )  # fmt: skip
    return st.tuples(link, reaction)


keys = st.tuples(st.sampled_from(REACTION_CODES[:6]), st.integers(1, 4))
sheets = st.lists(
    keys.flatmap(lambda k: written_forms(*k).map(lambda w: (k, w))), min_size=1, max_size=40
)


@given(rows=sheets, size=st.integers(1, 7))
def test_any_written_form_reads_as_its_key_and_duplicates_are_found_on_it(
    rows: list[tuple[tuple[str, int], tuple[str, str]]], size: int
) -> None:
    chunks = [
        RawChunk(
            start + 1,
            pa.array(["7"] * len(part)),
            pa.array([w[0] for _, w in part]),
            pa.array([w[1] for _, w in part]),
        )
        for start in range(0, len(rows), size)
        for part in [rows[start : start + size]]
    ]
    first: dict[tuple[str, int], int] = {}
    for item, (key, (message_text, reaction_text)) in zip(check_chunks(chunks), rows, strict=True):
        row = item.row
        if key in first:
            assert isinstance(item, RowResult) and item.status is Status.DUPLICATE
            assert item.error_description.startswith(f"duplicate of row {first[key]}")
        else:
            first[key] = row
            assert isinstance(item, Row)
            assert (item.bot_id, item.message_id, item.reaction) == (7, key[1], key[0])
            assert item.given == ("7", message_text, reaction_text)
            # A note says what a cell was read as, exactly when it was not the plain value.
            assert ("read as" in item.note) == ("IM_MESSAGE" in message_text)
            assert ("reaction: read" in item.note) == (not reaction_text.isascii())
