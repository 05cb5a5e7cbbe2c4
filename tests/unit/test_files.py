"""cleanup.outputs.files: whole files replaced atomically (fsynced, folder too) and the
one rule for a line cut by a crash in an appended file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cleanup.outputs.files import (
    drop_cut_line,
    open_replacing,
    read_csv_lines,
    read_jsonl,
    replacing,
    whole_records,
    write_atomic,
)


def test_write_atomic_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "r.summary.json"
    target.write_text("old")
    write_atomic(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    write_atomic(target, b"\x00bytes")
    assert target.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.summary.json"]


def test_write_atomic_creates_missing_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "page.html"
    write_atomic(target, "<p>")
    assert target.read_text() == "<p>"


def test_a_failed_write_keeps_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"files": {}}')
    with pytest.raises(RuntimeError), open_replacing(target) as fh:
        fh.write('{"files": {"half')
        raise RuntimeError("disk full")  # as if the write failed half way
    assert target.read_text() == '{"files": {}}'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_file_and_its_folder_are_fsynced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x.html"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomic(target, "page")
    assert events == ["fsync file", "rename", "fsync dir"]


def test_permissions_follow_the_umask_or_the_mode_given(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "summary.json", "{}")
        write_atomic(tmp_path / "tokens.json", "{}", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600


def test_replacing_gives_a_path_for_writers_that_open_their_own(tmp_path: Path) -> None:
    target = tmp_path / "r.parquet"
    with replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"PAR1")
        assert not target.exists()  # nothing is visible before the block ends
    assert target.read_bytes() == b"PAR1"


# --------------------------------------------------------------------------- appended files


def test_jsonl_stops_before_a_line_cut_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"a": 1}\nnot json\n[1]\n{"b": 2}\n{"c": 3')
    # A damaged whole line is skipped, a cut last one is not a record.
    assert list(read_jsonl(path)) == [{"a": 1}, {"b": 2}]


def test_csv_lines_end_at_the_last_whole_record_outside_quotes(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    whole = 'row,text\r\n1,"two\nlines"\r\n'
    path.write_bytes((whole + '2,"cut in the mid').encode())
    assert whole_records(path, csv_quotes=True) == len(whole.encode())
    assert "".join(read_csv_lines(path)) == whole
    # Without quote rules, the last newline ends the last whole record.
    assert whole_records(path) == len(whole.encode())


def test_drop_cut_line_truncates_only_the_cut_record(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    path.write_text('{"sent": [1]}\n{"sent": [2')
    drop_cut_line(path)
    assert path.read_text() == '{"sent": [1]}\n'
    drop_cut_line(path)  # nothing cut: nothing dropped
    assert path.read_text() == '{"sent": [1]}\n'
    path.write_text('{"sent"')  # a cut first line leaves an empty file
    drop_cut_line(path)
    assert path.read_bytes() == b""
