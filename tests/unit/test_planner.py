"""The planner (cleanup.run.planner), property-tested with hypothesis: every row once, in
order, in batches the portal runs whole, under non-numeric keys; as plan() and as the runner
feeds a Planner (rows one by one, early flushes, a size that drops mid-run)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from cleanup.inputs.validate import Row
from cleanup.portal.protocol import MAX_BATCH
from cleanup.run.planner import Batch, Planner, command_key, count_batches, plan


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
