"""Validation's fast paths stay exact: duplicates found through a hash are checked in full,
and plain-digit ids take the fast path while odd ones get the documented rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup.inputs import validate as validate_module
from cleanup.inputs.readers import RawChunk
from cleanup.inputs.validate import CheckedChunk, Row, Validator
from cleanup.results import RowResult, Status

dedup_rows = st.lists(
    st.tuples(
        st.sampled_from(["1", "2", "3", " 2", "2.0", "x"]),
        st.sampled_from(["7", "8", "9", "007", "10"]),
        st.sampled_from(["like", "LIKE", "fire", "nope"]),
    ),
    min_size=1,
    max_size=80,
)


def reference_duplicates(rows: list[tuple[str, str, str]]) -> list[int]:
    """The first row of each duplicate, 0 for first occurrences and invalid rows."""
    first: dict[tuple[int, int, str | None], int] = {}
    out = []
    for i, (bot, msg, reaction) in enumerate(rows, start=1):
        canonical = {"like": "like", "fire": "fire"}.get(reaction.strip().lower())
        try:
            key = (int(float(bot)), int(msg), canonical)
        except ValueError:
            out.append(0)
            continue
        if canonical is None:
            out.append(0)
            continue
        out.append(first.setdefault(key, i) if key in first else 0)
        first.setdefault(key, i)
    return out


@given(rows=dedup_rows, chunk=st.integers(1, 9), hash_bits=st.sampled_from([1, 2, 64]))
def test_duplicates_stay_exact_when_hashes_collide(
    rows: list[tuple[str, str, str]], chunk: int, hash_bits: int
) -> None:
    # With a hash of one or two bits nearly every key collides with another: the verdicts
    # must still be exact, because a hash match is only ever a candidate. Tiny sorted
    # slices (2 rows) exercise the split of big chunks as well.
    def weak_hash(b: np.ndarray, m: np.ndarray, r: np.ndarray) -> np.ndarray:
        full = strong_hash(b, m, r)
        shift = np.uint64(64 - hash_bits)
        return full if hash_bits == 64 else (full >> shift) << shift  # the top bits only

    strong_hash = validate_module._hash
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(validate_module, "_hash", weak_hash)
        mp.setattr(validate_module._Deduplicator, "_INDEX_BITS", 1 if hash_bits == 1 else 24)
        validator = Validator()
        found: list[int] = []
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            checked = validator.check(
                RawChunk(start + 1, *(pa.array([r[k] for r in part]) for k in range(3)))
            )
            found.extend(checked.duplicate_of.tolist())
    assert found == reference_duplicates(rows)


def test_a_million_ids_take_the_fast_path_but_odd_ones_the_full_rule() -> None:
    # Plain digits go straight to integers; anything else gets the documented rule.
    values = [
        "12",
        " 12 ",
        "12.0",
        "0012",
        "0",
        "-3",
        "1e3",
        "0x10",
        "９",
        "1" * 19,
        "0" * 20 + "5",
    ]
    chunk = RawChunk(
        1,
        pa.array(values),
        pa.array([str(i + 1) for i in range(len(values))]),
        pa.array(["like"] * len(values)),
    )
    checked = Validator().check(chunk)
    assert checked.bot_id.tolist() == [12, 12, 12, 12, 0, 0, 0, 0, 0, 0, 5]
    reasons = {i: d for i, (_, d) in checked.problems.items()}
    assert reasons[4] == "botId: '0' is not a positive integer (ids start at 1)"
    assert reasons[7] == "botId: '0x10' is not a positive integer"
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9]
    assert not checked.duplicate_of.any()  # every row has its own messageId


# ------------------------------------------------------------------- emoji and links


def check_rows(*rows: tuple[str, str, str], validator: Validator | None = None) -> CheckedChunk:
    columns = (pa.array([r[k] for r in rows]) for k in range(3))
    return (validator or Validator()).check(RawChunk(1, *columns))


LINK = "https://portal.example/online/?IM_DIALOG=chat5&IM_MESSAGE=792"


def test_an_emoji_and_a_link_are_read_and_the_row_says_so() -> None:
    checked = check_rows(("1", LINK, "\U0001f44d"), ("1", "7", "\u2764\ufe0f"), ("1", "8", "fire"))
    rows = list(checked.items())
    assert all(isinstance(r, Row) for r in rows)
    first, heart, fire = (r for r in rows if isinstance(r, Row))
    assert (first.message_id, first.reaction) == (792, "like")
    assert first.given == ("1", LINK, "\U0001f44d")  # the cells as written, for the report
    assert first.note == (
        "messageId: read as 792 (the link's IM_MESSAGE); reaction: read '\U0001f44d' as like"
    )
    assert (heart.reaction, heart.note) == ("redHeart", "reaction: read '\u2764\ufe0f' as redHeart")
    assert fire.note == ""  # a code as written needs no note
    # The note reaches every line the row gets, once (a journal's line already has it).
    removed = first.result(Status.REMOVED)
    assert removed.error_description == first.note
    failed = first.result(Status.FAILED, "REACTION_NOT_FOUND", "Reaction not found")
    assert failed.error_description == f"Reaction not found; {first.note}"
    again = first.result(Status.FAILED, "REACTION_NOT_FOUND", failed.error_description)
    assert again.error_description == failed.error_description


def test_the_same_reaction_as_emoji_code_or_link_is_one_key() -> None:
    checked = check_rows(
        ("1", "792", "like"),
        ("1", LINK, "\U0001f44d\U0001f3fd"),
        ("1", LINK.replace("/online/", "/im/") + "#x", "LIKE"),
    )
    assert checked.duplicate_of.tolist() == [0, 1, 1]
    dup = [r for r in checked.items() if isinstance(r, RowResult)]
    assert dup[0].error_description.startswith("duplicate of row 1; messageId: read as 792")


def test_a_link_without_a_message_and_an_unknown_emoji_are_invalid() -> None:
    chat_link = "https://portal.example/online/?IM_DIALOG=chat5"
    checked = check_rows(
        ("1", chat_link, "like"),
        ("1", "https://portal.example/?IM_MESSAGE=0", "like"),
        ("1", "9", "\U0001f389"),
        validator=Validator(allow_unknown_reactions=True),  # an emoji is never a code
    )
    results = [r for r in checked.items() if isinstance(r, RowResult)]
    assert [(r.status, r.error) for r in results] == [
        (Status.INVALID, "INVALID_MESSAGE_ID"),
        (Status.INVALID, "INVALID_MESSAGE_ID"),
        (Status.INVALID, "INVALID_REACTION"),
    ]
    assert "copy the link of the message, not of the chat" in results[0].error_description
    assert "IM_MESSAGE '0' is not a positive integer" in results[1].error_description
    assert "not an emoji the portal has as a reaction" in results[2].error_description


def test_a_dry_run_plans_each_row_as_to_send_invalid_or_duplicate() -> None:
    checked = check_rows(("1", LINK, "\U0001f44d"), ("1", "792", "like"), ("x", "5", "like"))
    planned = list(checked.as_planned())
    assert [(r.row, r.status) for r in planned] == [
        (1, Status.TO_SEND),
        (2, Status.DUPLICATE),
        (3, Status.INVALID),
    ]
    assert planned[0].message_id == LINK and "read as 792" in planned[0].error_description


def test_only_the_dry_run_writes_to_send() -> None:
    """A real run never writes `to_send`: the status is made in one place, which only the
    dry run calls (the e2e tests check the reports themselves)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "cleanup"
    made, planned = set(), set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(func):
                where = f"{path.relative_to(package)}:{func.name}"
                if isinstance(node, ast.Attribute) and node.attr == "TO_SEND":
                    made.add(where)
                if isinstance(node, ast.Attribute) and node.attr == "as_planned":
                    planned.add(where)
    assert made == {"inputs/validate.py:as_planned"}
    assert planned == {"run/runner.py:_dry_run"}
