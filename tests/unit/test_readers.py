"""Readers: the read-ahead thread keeps chunk order and stops with the reader."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cleanup.inputs.readers import open_table


def test_read_ahead_keeps_order_and_stops_with_the_reader(tmp_path: Path) -> None:
    # The next chunk is read in a thread while this one is validated; rows keep their
    # numbers, and a caller that stops early leaves no reader thread behind.
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.table(
            {
                "botId": ["1"] * 100,
                "messageId": [str(i) for i in range(1, 101)],
                "reaction": ["like"] * 100,
            }
        ),
        path,
    )
    chunks = list(open_table(path, chunk_rows=10).chunks())
    assert [c.first_row for c in chunks] == list(range(1, 101, 10))
    assert sum(len(c) for c in chunks) == 100

    stream = open_table(path, chunk_rows=10).chunks()
    assert next(iter(stream)).first_row == 1
    stream.close()  # type: ignore[attr-defined]
    for thread in threading.enumerate():
        if thread.name == "cleanup-read-ahead":
            thread.join(5)
            assert not thread.is_alive()
