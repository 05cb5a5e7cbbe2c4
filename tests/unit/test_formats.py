"""Input file endings: one table, and every place that looks at a name agrees with it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cleanup.inputs.formats import INPUT_SUFFIXES, split_input_suffix
from cleanup.inputs.readers import detect_format
from cleanup.jobs.inbox import list_sources
from cleanup.jobs.schema import load_job_file


@pytest.mark.parametrize("ext", sorted(INPUT_SUFFIXES))
def test_the_inbox_picks_up_every_ending_the_readers_take(tmp_path: Path, ext: str) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / f"rows{ext}").write_bytes(b"")
    (tmp_path / "inbox" / "notes.txt").write_text("not an input")
    (tmp_path / "job.toml").write_text(
        'webhook_env = "B24_FORMATS_TEST"\nbot_tokens_file = "t.json"\n'
        'inbox = "inbox"\nreports = "reports"\n'
    )
    job = load_job_file(tmp_path / "job.toml")
    sources, _ = list_sources(job, now=time.time() + 3600)
    assert [s.path.name for s in sources] == [f"rows{ext}"]


# Parquet, XLSX and gzip files are recognised by their first bytes, whatever their name.
TEXT = sorted((e, f) for e, f in INPUT_SUFFIXES.items() if f in ("csv", "tsv", "jsonl"))


@pytest.mark.parametrize(("ext", "fmt"), TEXT)
def test_a_text_file_is_read_as_its_ending_says(tmp_path: Path, ext: str, fmt: str) -> None:
    path = tmp_path / f"rows{ext}"
    path.write_text("botId,messageId,reaction\n")
    assert detect_format(path) == fmt


def test_a_compound_ending_counts_as_one() -> None:
    assert split_input_suffix("Rows.CSV.GZ") == ("Rows", ".CSV.GZ")
    assert split_input_suffix("rows.ndjson") == ("rows", ".ndjson")
    assert split_input_suffix("rows.txt") == ("rows", ".txt")
    assert split_input_suffix(".hidden") == (".hidden", "")
