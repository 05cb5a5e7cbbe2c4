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
from cleanup.inputs.validate import Validator

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
