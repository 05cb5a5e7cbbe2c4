"""Property tests (hypothesis): the planner, the command encoding and the input validator.

Each property is checked against a plain reference written from the issue's rules, not
from the code, so a disagreement is a bug in one or the other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import assume, example, given
from hypothesis import strategies as st

from cleanup.inputs.reactions import REACTION_CODES
from cleanup.inputs.readers import RawChunk, open_table
from cleanup.inputs.validate import Row, Validator
from cleanup.results import RowResult, Status
from cleanup.run.actions import DELETE, DELETE_METHOD
from cleanup.run.planner import MAX_BATCH, Batch, Planner, command_key, count_batches, plan
from cleanup.sandbox import php

# ------------------------------------------------------------------------- planner


def make_rows(numbers: Sequence[int]) -> list[Row]:
    return [Row(n, 100 + n % 7, 1000 + n, "like", (str(n), str(n), "like")) for n in numbers]


row_numbers = st.lists(st.integers(1, 10**9), unique=True, max_size=400).map(sorted)


@given(numbers=row_numbers, size=st.integers(-10, 200))
def test_planner_every_row_once_in_order_within_the_clamp(numbers: list[int], size: int) -> None:
    rows = make_rows(numbers)
    batches = list(plan(iter(rows), size))
    limit = max(1, min(size, MAX_BATCH))
    flat = [row for batch in batches for row in batch.rows]
    assert flat == rows  # every row exactly once, order kept
    assert all(1 <= len(b) <= limit for b in batches)
    assert all(len(b) == limit for b in batches[:-1])  # only the last may be short
    keys = [key for batch in batches for key in batch.commands]
    assert len(keys) == len(set(keys))
    assert count_batches(len(rows), size) == len(batches)  # what a dry run estimates
    # Non-numeric keys: PHP would turn keys 0..n-1 into a JSON list.
    assert not any(re.fullmatch(r"-?\d+", key) for key in keys)
    for batch in batches:
        assert all(command_key(row) == key for key, row in batch.commands.items())


# What the runner does: rows arrive one by one, a unit may be sent early (a long backlog,
# the end of the input), and the size can drop mid-run (a fall-back to single calls).
planner_steps = st.lists(
    st.one_of(
        st.just(("row", 0)),
        st.just(("flush", 0)),
        st.tuples(st.just("size"), st.integers(-5, 80)),
    ),
    max_size=300,
)


@given(steps=planner_steps)
def test_planner_as_the_runner_feeds_it(steps: list[tuple[str, int]]) -> None:
    size = MAX_BATCH
    planner = Planner(lambda: size)
    fed: list[Row] = []
    cut: list[tuple[Batch, int]] = []  # each batch with the size in force when it was cut
    for step, value in steps:
        if step == "size":
            size = value
            continue
        limit = max(1, min(size, MAX_BATCH))
        if step == "row":
            row = make_rows([len(fed) + 1])[0]
            fed.append(row)
            batches = planner.add(row)
            # A batch is cut as soon as the open rows fill one, never before.
            assert len(planner) == 0 if batches else len(planner) < limit
            assert all(len(b) == limit for b in batches[:-1])
        else:
            batches = planner.flush()
            assert len(planner) == 0
        cut += [(b, limit) for b in batches]
    cut += [(b, max(1, min(size, MAX_BATCH))) for b in planner.flush()]
    assert [row for b, _ in cut for row in b.rows] == fed  # every row once, in order
    assert all(1 <= len(b) <= limit for b, limit in cut)
    keys = [key for b, _ in cut for key in b.commands]
    assert len(keys) == len(set(keys))


# ------------------------------------------------------------------------- command encoding

any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
odd_text = st.one_of(
    any_text,
    st.text(alphabet="&=#+%?;[] \t\n/\\'\"$лайк", max_size=20),
    st.sampled_from(["like&botId=1#x+y", "%26", "a=b&c", "+", "#", "%", "%zz", "like[]"]),
)


@given(
    bot=st.integers(1, 10**18 - 1),
    message=st.integers(1, 10**18 - 1),
    reaction=odd_text,
    token=st.one_of(st.none(), odd_text),
)
@example(bot=456, message=789, reaction="like&botId=1#x+y", token="t&o#k+en")
def test_command_round_trips_through_a_query_parser(
    bot: int, message: int, reaction: str, token: str | None
) -> None:
    row = Row(1, bot, message, reaction, ("", "", ""))
    command = DELETE.command(row, token)
    method, _, query = command.partition("?")
    assert method == DELETE_METHOD
    # Nothing in a value may end the query for the portal's parse_url.
    assert urlsplit(command).query == query and "#" not in command
    expected = {"botId": str(bot), "messageId": str(message), "reaction": reaction}
    if token is not None:
        expected["botToken"] = token
    assert parse_qs(query, keep_blank_values=True) == {k: [v] for k, v in expected.items()}
    # The portal's own reading (PHP parse_str, as the sandbox models it) agrees.
    assert php.parse_str(query) == expected


# ------------------------------------------------------------------------- validator


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
        known = canonical_by_fold.get(text.lower())
        if known is not None:
            assert isinstance(item, Row) and item.reaction == known
        elif allow and text and len(text) <= 100 and "$" not in text:
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
        chunks.append(RawChunk(int(nums[0]), *arrays, rows=None if contiguous else nums))
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
