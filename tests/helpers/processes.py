"""The CLI in a subprocess: started, waited for, killed; and its reports read back in any format."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

DEADLINE = 60.0  # a guard against a hung subprocess, not a speed assertion


def spawn(cli: Sequence[Any], cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("B24_")}
    return subprocess.Popen(
        [sys.executable, "-m", "cleanup", *map(str, cli)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[bytes] | None = None) -> None:
    end = time.monotonic() + DEADLINE
    while not cond():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the run ended first (exit {proc.returncode}): {err.decode()}")
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.002)


def sigterm_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> str:
    """SIGTERM to `proc` once `ready()` holds (or after DEADLINE: the test then sees how it
    ended); waits for it to end and returns its stderr. Killed if it does not end."""
    try:
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end and not ready():
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    return err


def lines_of(path: Path) -> int:
    """How many lines a file has so far (0 while it does not exist)."""
    return len(path.read_text().splitlines()) if path.exists() else 0


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def read_any(path: Path) -> list[dict[str, str]]:
    """A report in any format, values as text (as the CSV has them)."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        records = pq.read_table(path).to_pylist()
    return [{k: "" if v is None else str(v) for k, v in r.items()} for r in records]
