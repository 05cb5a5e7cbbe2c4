#!/usr/bin/env python
"""Benchmarks for reaction-cleanup: throughput at the portal's limit, and the dry run's speed.

    python tests/benchmarks/run_benchmarks.py --quick     # about 2 minutes (CI's optional step)
    python tests/benchmarks/run_benchmarks.py             # the figures in docs/explanation/benchmarks.md (about 25 min)

Everything runs against the sandbox portal (cleanup.sandbox) on 127.0.0.1 with a realistic
profile: a strict leaky bucket (standard 2 req/s burst 50, enterprise 5 req/s burst 250),
30 ms per request plus 20 ms per command, so a 50-command batch takes about a second.
The job is the real CLI in a subprocess (`python -m cleanup run ...`); its peak memory is
the child's ru_maxrss.

Ideal: what a client that keeps the portal's bucket exactly full would need for the same
rows: the first `burst` requests leave at once, then one every 1/rate, and the last answer
takes one batch's duration L:  ideal_s = max(0, N - burst) / rate + L,  N = ceil(rows / 50).
Achieved uses the whole process's wall time (interpreter start, reading the input, writing
the report included); ratio = ideal_s / wall_s. The burst counts the same way in both.

fast_bitrix24 (the most used Python client) removes the same rows from the same sandbox
with its batched `call()`, once with its defaults and once inside its `slow()` context at
its best setting; both run in their own process too. Nothing here asserts: it prints a
Markdown table (and --json writes the figures).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import threading  # noqa: E402

import requests  # noqa: E402

from cleanup.pacing.throttle import PLANS, ideal_seconds  # noqa: E402
from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal  # noqa: E402
from cleanup.sandbox.reactions import REACTION_CODES  # noqa: E402

METHOD = "imbot.v2.Chat.Message.Reaction.delete"
LATENCY = 0.03  # seconds per request
PER_COMMAND = 0.02  # seconds per reaction command: a batch of 50 takes ~1.03 s
BOTS = 10
# The throughput profile enforces no operating-time limit, but reports the time like a
# portal (20 ms per command): at 2-5 batches/s the job's tracking would rightly slow down
# once 80 % of 480 s were spent, which measures the budget, not the rate limit. So it is
# off here; the operating-time scenario below measures it on its own.
NO_OPERATING = ("--operating-limit", "0")
OPERATING = {"limit": 10.0, "window": 30.0}  # seconds of method time per window
# Told twice the real rate: (told rate, real rate, burst) for the job and the portal.
WRONG_RATE = ((10.0, 5.0, 10), (4.0, 2.0, 50))
# Another client on the same bucket: (plan, its steady req/s).
SHARED = (("standard", 1.0), ("enterprise", 2.0))
Row = tuple[int, int, str]

FULL = {
    "standard_rows": 20_000,
    "enterprise_rows": 50_000,
    "single_rows": 400,
    "dry_rows": 1_000_000,
    "real_rows": 1_000_000,
    "fb_probe_rows": 7_500,
    "fb_probe": (2, 4, 5, 6, 8, 10),
    "operating_rows": 1_500,
    "wrong_rate_rows": 12000,
    "shared_rows": (6000, 20000),  # standard, enterprise
    "other_stops_at": 25,  # seconds into the run (0: the recovery part is skipped)
}
SMOKE = {  # seconds: only checks that the script itself works
    "standard_rows": 300,
    "enterprise_rows": 300,
    "single_rows": 55,
    "dry_rows": 20_000,
    "real_rows": 2_000,
    "fb_probe_rows": 0,
    "fb_probe": (),
    "operating_rows": 100,
    "wrong_rate_rows": 300,
    "shared_rows": (300, 300),  # standard, enterprise
    "other_stops_at": 5,  # seconds into the run (0: the recovery part is skipped)
}
QUICK = {
    "standard_rows": 5_000,
    "enterprise_rows": 0,
    "single_rows": 70,
    "dry_rows": 1_000_000,
    "real_rows": 0,
    "fb_probe_rows": 0,
    "fb_probe": (),
    "operating_rows": 0,
    "wrong_rate_rows": 6000,
    "shared_rows": (3000, 0),  # standard, enterprise
    "other_stops_at": 0,  # seconds into the run (0: the recovery part is skipped)
}


# ---------------------------------------------------------------------------- helpers


def make_rows(n: int, first_message: int = 100_000) -> list[Row]:
    return [
        (1001 + i % BOTS, first_message + i, REACTION_CODES[i % len(REACTION_CODES)])
        for i in range(n)
    ]


def write_csv(path: Path, rows: Sequence[Row]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["botId", "messageId", "reaction"])
        writer.writerows(rows)
    return path


def write_tokens(path: Path) -> Path:
    path.write_text(json.dumps({str(1001 + b): f"token-{1001 + b}" for b in range(BOTS)}))
    return path


def start_portal(rows: Sequence[Row], **config: Any) -> SandboxPortal:
    # A few hundred chats instead of one per message keeps a million-row state small.
    state = PortalState.build(rows, chat_id_for_message=lambda m: m % 997)
    return SandboxPortal(state, PortalConfig(**config)).start()


def restore(portal: SandboxPortal, reactions: set[tuple[int, int, str]]) -> None:
    """Put every reaction back, empty the bucket and zero the counters: a fresh portal."""
    # A client that gave up leaves requests running on the portal: let them finish first.
    deadline = time.monotonic() + 60
    while portal.stats.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    with portal.state.lock:
        portal.state.reactions = set(reactions)
    portal.reset_limits()
    portal.reset_stats()


def _high_water_mib(pid: int) -> float | None:
    """The process's peak resident memory so far (VmHWM), or None once it has exited.

    Not the child's ru_maxrss: Linux carries a forked child's copy of the parent's memory
    into it, so a child of this (big) benchmark process would report the benchmark's size.
    VmHWM belongs to the program's own address space, made new at exec.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measured(cmd: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Run a child process: wall time, peak RSS (MiB), exit code, output."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=ROOT)
        deadline = t0 + timeout
        peak = 0.0
        while True:
            # The high-water mark only grows: the last reading before exit is the peak.
            peak = max(peak, _high_water_mib(proc.pid) or 0.0)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "exit": proc.returncode,
            "wall_s": wall,
            "peak_mib": peak or usage.ru_maxrss / 1024,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
        }


def batch_duration(portal: SandboxPortal) -> float:
    """Mean duration of the batches the portal ran (its L for the ideal)."""
    times = [
        r.t_end - r.t_start
        for r in portal.stats.log
        if r.path_method == "batch" and r.status == 200 and r.n_commands >= 50
    ]
    return statistics.mean(times) if times else LATENCY + 50 * PER_COMMAND


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------------------- our job


def run_ours(
    portal: SandboxPortal,
    rows: Sequence[Row],
    work: Path,
    name: str,
    *extra: str,
    timeout: float = 3600,
    keep_report: bool = False,
) -> dict[str, Any]:
    inp = work / f"{name}.csv"
    if not (keep_report and inp.exists()):
        write_csv(inp, rows)
    report = work / f"{name}.report.csv"
    for old in work.glob(f"{name}.report.csv*"):
        if not keep_report:  # --resume continues it
            old.unlink()
    cmd = [
        sys.executable, "-m", "cleanup", "run", str(inp),
        "--webhook", portal.webhook_url(),
        "--bot-tokens", str(write_tokens(work / "tokens.json")),
        "--report", str(report),
        "--progress", "none",
        *extra,
    ]  # fmt: skip
    result = measured(cmd, timeout=timeout)
    summary_path = work / f"{name}.report.csv.summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    stats = portal.stats.as_dict()
    result.update(
        rows=len(rows),
        removed=stats["removed"],
        requests=stats["requests"],
        refused=stats["limit_refusals"],
        job_s=summary.get("elapsed_s"),
        summary=summary,
    )
    if result["exit"] != 0:
        result["error"] = result["stderr"].strip().splitlines()[-1:] or ["?"]
    return result


def with_ideal(
    result: dict[str, Any], rate: float, burst: int, per_request: int, last: float
) -> None:
    n = math.ceil(result["rows"] / per_request)
    ideal = ideal_seconds(n, rate, burst, last)
    result["ideal_s"] = ideal
    result["rows_per_s"] = result["removed"] / result["wall_s"]
    result["ideal_rows_per_s"] = result["rows"] / ideal
    result["ratio"] = ideal / result["wall_s"] if result["removed"] == result["rows"] else None
    if result.get("job_s"):
        result["job_ratio"] = ideal / result["job_s"]


def throughput(
    plan: str, n: int, work: Path
) -> tuple[dict[str, Any], SandboxPortal, set[tuple[int, int, str]]]:
    rate, burst = PLANS[plan]
    rows = make_rows(n)
    portal = start_portal(
        rows, rate=rate, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
    )
    original = portal.state.snapshot()  # to put back for fast_bitrix24
    print(f"  our job, {plan} plan, {n:,} rows ...", flush=True)
    result = run_ours(portal, rows, work, f"{plan}-{n}", "--plan", plan, *NO_OPERATING)
    with_ideal(result, rate, burst, 50, batch_duration(portal))
    result.update(name="reaction-cleanup", setting=f"--plan {plan}", plan=plan)
    return result, portal, original


def single_mode(n: int, work: Path) -> dict[str, Any]:
    rate, burst = PLANS["standard"]
    rows = make_rows(n, first_message=900_000)
    portal = start_portal(
        rows, rate=rate, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
    )
    try:
        print(f"  our job, single calls, {n:,} rows ...", flush=True)
        result = run_ours(
            portal,
            rows,
            work,
            f"single-{n}",
            "--plan",
            "standard",
            "--mode",
            "single",
            *NO_OPERATING,
        )
        with_ideal(result, rate, burst, 1, LATENCY + PER_COMMAND)
        result.update(name="reaction-cleanup", setting="--mode single", plan="standard")
        return result
    finally:
        portal.stop()


# ---------------------------------------------------------------------------- fast_bitrix24

FB_WORKER = "--fb-worker"


def fb_worker(argv: list[str]) -> None:
    """In its own process: remove the rows with fast_bitrix24's batched call()."""
    url, input_path, setting = argv
    t_start = time.perf_counter()
    from fast_bitrix24 import Bitrix

    with open(input_path, newline="", encoding="utf-8") as fh:
        items = [
            {
                "botId": int(r["botId"]),
                "messageId": int(r["messageId"]),
                "reaction": r["reaction"],
                "botToken": f"token-{int(r['botId'])}",
            }
            for r in csv.DictReader(fh)
        ]
    bx = Bitrix(url, verbose=False)
    t0 = time.perf_counter()
    error, got = None, 0
    try:
        if setting == "default":
            got = len(bx.call(METHOD, items))
        else:
            with bx.slow(int(setting)):
                got = len(bx.call(METHOD, items))
    except Exception as exc:  # reported as it happened
        error = f"{type(exc).__name__}: {exc}"
    end = time.perf_counter()
    print(json.dumps({"call_s": end - t0, "process_s": end - t_start, "error": error, "got": got}))


def run_fb(
    portal: SandboxPortal, rows: Sequence[Row], work: Path, setting: str, rate: float, burst: int
) -> dict[str, Any]:
    inp = write_csv(work / f"fb-{len(rows)}.csv", rows)
    label = "defaults" if setting == "default" else f"slow({setting})"
    print(f"  fast_bitrix24 {label}, {len(rows):,} rows ...", flush=True)
    result = measured(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            FB_WORKER,
            portal.webhook_url(),
            str(inp),
            setting,
        ],
        timeout=3600,
    )
    try:
        inner = json.loads(result["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        inner = {"error": (result["stderr"].strip().splitlines() or ["no output"])[-1]}
    stats = portal.stats.as_dict()
    result.update(
        name="fast_bitrix24",
        setting=label,
        rows=len(rows),
        removed=stats["removed"],
        requests=stats["requests"],
        refused=stats["limit_refusals"],
        error=inner.get("error"),
        call_s=inner.get("call_s"),
    )
    with_ideal(result, rate, burst, 50, batch_duration(portal))
    return result


def fb_version() -> str:
    try:
        from importlib.metadata import version

        return version("fast-bitrix24")
    except Exception:
        return "not installed"


# ---------------------------------------------------------------------------- the big file


def make_big_csv(path: Path, n: int) -> Path:
    import numpy as np
    import pandas as pd

    if path.exists():
        return path
    rng = np.random.default_rng(1)
    codes = np.array(REACTION_CODES)
    pd.DataFrame(
        {
            "botId": 1001 + rng.integers(0, 20, n),
            "messageId": 100_000 + np.arange(n),
            "reaction": codes[rng.integers(0, len(codes), n)],
        }
    ).to_csv(path, index=False)
    return path


WORK_TIMER = """
import sys, time, pandas
from pathlib import Path
kind, path = sys.argv[1], sys.argv[2]
if kind == "dry":
    from cleanup.run.config import RunConfig
    from cleanup.run.runner import run_file
    t = time.perf_counter()
    summary = run_file(RunConfig(input=Path(path), dry_run=True))
    assert summary.rows > 0
else:
    t = time.perf_counter()
    pandas.read_csv(path)
print(time.perf_counter() - t)
"""


def dry_run(n: int, work: Path, repeats: int) -> dict[str, Any]:
    path = make_big_csv(work / f"big-{n}.csv", n)
    print(f"  dry run of {n:,} rows vs pandas.read_csv, best of {repeats} ...", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {
        "cli": [],
        "read_csv_proc": [],
        "dry_work": [],
        "read_csv_work": [],
    }
    for _ in range(repeats):
        runs["cli"].append(
            measured([sys.executable, "-m", "cleanup", "run", str(path), "--dry-run"], timeout=600)
        )
        runs["read_csv_proc"].append(
            measured(
                [sys.executable, "-c", f"import pandas; pandas.read_csv({str(path)!r})"],
                timeout=600,
            )
        )
        # The work alone, imports excluded on both sides (pandas is imported before timing).
        for kind, key in (("dry", "dry_work"), ("read_csv", "read_csv_work")):
            r = measured([sys.executable, "-c", WORK_TIMER, kind, str(path)], timeout=600)
            r["work_s"] = float(r["stdout"].strip() or "nan")
            runs[key].append(r)
    best = {k: min(v, key=lambda r: r.get("work_s", r["wall_s"])) for k, v in runs.items()}
    cli_ok = all(r["exit"] in (0, 1) for r in runs["cli"])
    return {
        "rows": n,
        "file_mib": path.stat().st_size / 2**20,
        "cli_wall_s": best["cli"]["wall_s"],
        "cli_peak_mib": max(r["peak_mib"] for r in runs["cli"]),
        "read_csv_wall_s": best["read_csv_proc"]["wall_s"],
        "read_csv_peak_mib": max(r["peak_mib"] for r in runs["read_csv_proc"]),
        "dry_work_s": best["dry_work"]["work_s"],
        "read_csv_work_s": best["read_csv_work"]["work_s"],
        "dry_work_median_s": statistics.median(r["work_s"] for r in runs["dry_work"]),
        "read_csv_work_median_s": statistics.median(r["work_s"] for r in runs["read_csv_work"]),
        "cli_ok": cli_ok,
    }


def operating_budget(n: int, work: Path, billing: str) -> dict[str, Any]:
    """The operating-time limit binds, not the rate: a small budget per window, billed per
    method or the whole batch to `batch`, and the job not told it (it assumes the cloud's
    480 s). Floor: the first `limit` seconds of method time at once, then `limit` per
    `window`."""
    rows = make_rows(n, first_message=7_000_000)
    limit, window = OPERATING["limit"], OPERATING["window"]
    portal = start_portal(
        rows,
        rate=5.0,
        burst=250,
        latency=LATENCY,
        per_command_cost=PER_COMMAND,
        operating_limit=limit,
        operating_window=window,
        operating_billing=billing,
    )
    try:
        print(f"  our job against an operating-time limit ({billing} billing), {n:,} rows ...")
        result = run_ours(portal, rows, work, f"operating-{billing}-{n}", "--plan", "enterprise")
        stats = portal.stats.as_dict()
        refused_at = _operating_refusal_times(portal, billing)
        spent = n * PER_COMMAND
        ideal = max(0.0, spent - limit) * window / limit + LATENCY + 50 * PER_COMMAND
        first = refused_at[0] if refused_at else 0.0
        later = [t for t in refused_at if t > first + 2.0]
        per_window: dict[int, int] = {}
        for t in later:
            per_window[int((t - first) // window)] = (
                per_window.get(int((t - first) // window), 0) + 1
            )
        result.update(
            name="reaction-cleanup",
            setting=f"told 480 s (default); portal {limit:g} s per {window:g} s, {billing} billing",
            billing=billing,
            plan="enterprise",
            operating_refusals=stats["operating_refusals"],
            refused_requests=len(refused_at),
            most_refused_in_a_later_window=max(per_window.values(), default=0),
            ideal_s=ideal,
            rows_per_s=result["removed"] / result["wall_s"],
            ideal_rows_per_s=n / ideal,
            ratio=ideal / result["wall_s"] if result["removed"] == n else None,
        )
        return result
    finally:
        portal.stop()


def _operating_refusal_times(portal: SandboxPortal, billing: str) -> list[float]:
    """Send times of the requests the operating limit refused, whole (batch billing: a 429)
    or some of their commands (per method: inside a 200 answer)."""
    return sorted(r.t_start for r in portal.stats.log if r.error == "OPERATION_TIME_LIMIT")


# ---------------------------------------------------------------- a wrong rate, a shared bucket


class OtherClient:
    """Another application on the same portal: `rate` cheap requests/s into the same bucket,
    each due at its own slot (not after the previous answer), until stopped; with `burst`
    (n, every) also n requests at once every `every` seconds. By default, like many real
    clients, it sends again what the portal refuses (0.1 s later) and keeps its schedule
    (what fell behind goes as soon as the portal takes it): its offered rate stays `rate`.
    With `resend=False` a refused request is lost (counted in the portal's log)."""

    def __init__(
        self,
        portal: SandboxPortal,
        rate: float,
        stop_after: float | None = None,
        *,
        burst: tuple[int, float] = (0, 0.0),
        resend: bool = True,
    ):
        self.url = portal.webhook_url() + "server.time.json"
        self.interval = 1.0 / rate
        self.stop_after = stop_after
        self.burst, self.resend = burst, resend
        self.stopped_at: float | None = None  # time.time() when it stopped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _due(self) -> Any:
        """Offsets (seconds from the start) of its requests, in order."""
        steady, n, (size, every) = 1, 0, self.burst
        while True:
            next_steady = steady * self.interval
            next_burst = (n + 1) * every if size else math.inf
            if next_burst <= next_steady:
                n += 1
                yield from [next_burst] * size
            else:
                steady += 1
                yield next_steady

    def _run(self) -> None:
        start = time.monotonic()
        with requests.Session() as session:
            for offset in self._due():
                due = start + offset
                if self.stop_after is not None and offset >= self.stop_after:
                    self.stopped_at = time.time()
                    return
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                while not self._send(session) and self.resend:  # refused: again, shortly
                    if self._stop.wait(0.1):
                        return

    def _send(self, session: requests.Session) -> bool:
        try:
            return session.post(self.url, json={}, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def __enter__(self) -> OtherClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def wrong_rate(told: float, real: float, burst: int, n: int, work: Path) -> dict[str, Any]:
    """Told `told` req/s, the portal drains `real` (burst as told)."""
    rows = make_rows(n, first_message=11_000_000)
    portal = start_portal(
        rows, rate=real, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
    )
    try:
        print(f"  our job told {told:g} req/s, the portal {real:g} (burst {burst}), {n:,} rows ...")
        result = run_ours(
            portal, rows, work, f"wrong-{told:g}-{n}",
            "--rate", str(told), "--burst", str(burst), *NO_OPERATING,
        )  # fmt: skip
        with_ideal(result, real, burst, 50, batch_duration(portal))
        result.update(
            name="reaction-cleanup",
            setting=f"told --rate {told:g}, portal {real:g}/s burst {burst}",
            plan="—",
        )
        return result
    finally:
        portal.stop()


def shared(plan: str, other: float, n: int, work: Path, stop_after: float = 0) -> dict[str, Any]:
    """Another client sends `other` req/s into the same bucket, for the whole run or (with
    `stop_after`) for its first seconds; the ideal is the capacity left to the job."""
    rate, burst = PLANS[plan]
    rows = make_rows(n, first_message=13_000_000)
    portal = start_portal(
        rows, rate=rate, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
    )
    try:
        what = f"stops after {stop_after:g} s" if stop_after else "the whole run"
        print(f"  our job ({plan}) beside a client at {other:g} req/s ({what}), {n:,} rows ...")
        with OtherClient(portal, other, stop_after or None) as client:
            time.sleep(2.0)  # the other client is there first, in its steady state
            portal.reset_stats()
            result = run_ours(
                portal, rows, work, f"shared-{plan}-{n}", "--plan", plan, *NO_OPERATING
            )
        ours = [r for r in portal.stats.log if r.path_method == "batch"]
        theirs = [r for r in portal.stats.log if r.path_method != "batch"]
        result["refused"] = sum(1 for r in ours if r.status != 200)
        result["requests"] = len(ours)
        # The other client re-sends what the portal refused it; what it really got while
        # the job ran is what the job's capacity is judged against.
        result["other_refused"] = sum(1 for r in theirs if r.status != 200)
        result["other_requests"] = len(theirs)
        begin = min(r.t_start for r in ours)
        end = max(r.t_end for r in ours)
        taken = sum(1 for r in theirs if r.status == 200 and begin <= r.t_start <= end)
        result["other_got"] = taken / (end - begin)
        if stop_after:
            result["back_to_full_s"] = _back_to_full(ours, client.stopped_at, rate)
            with_ideal(result, rate, burst, 50, batch_duration(portal))
            result["ratio"] = None  # part of the run had less capacity: no single ideal
            setting = f"another client {other:g}/s, stops after {stop_after:g} s"
        else:
            with_ideal(result, rate - other, burst, 50, batch_duration(portal))
            result["ratio_nominal"] = result["ratio"]  # against rate - other
            with_ideal(result, rate - result["other_got"], burst, 50, batch_duration(portal))
            setting = (
                f"another client {other:g}/s for the whole run (it got "
                f"{result['other_got']:.2f}/s; {result['other_refused']} of its "
                f"{result['other_requests']} requests refused; ratio against "
                f"{rate - other:g}/s left: {_ratio(result['ratio_nominal'])})"
            )
        result.update(name="reaction-cleanup", setting=setting, plan=plan)
        return result
    finally:
        portal.stop()


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _back_to_full(ours: list[Any], stopped_at: float | None, rate: float) -> float | None:
    """Seconds after the other client stopped until the job's accepted requests over 5 s
    reach 95 % of the portal's rate."""
    if stopped_at is None:
        return None
    accepted = sorted(r.t_start for r in ours if r.status == 200)
    t = stopped_at
    while accepted and t < accepted[-1] - 5.0:
        if sum(1 for x in accepted if t <= x < t + 5.0) >= 0.95 * rate * 5.0:
            return t - stopped_at
        t += 0.1
    return None


def real_run(n: int, work: Path) -> dict[str, Any]:
    """A million rows for real against a sandbox without limits: memory stays bounded."""
    rows = make_rows(n)
    print(f"  real run of {n:,} rows against an unlimited sandbox ...", flush=True)
    portal = start_portal(rows)
    try:
        result = run_ours(
            portal, rows, work, f"real-{n}", "--rate", "1000", "--burst", "1000", timeout=7200
        )
        result["rows_per_s"] = result["removed"] / result["wall_s"]
        return result
    finally:
        portal.stop()


# ---------------------------------------------------------------------------- output


def throughput_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| Client | Setting | Plan | Rows | Removed | Wall s | Rows/s | Ideal rows/s | Ratio | Refused / requests | Peak MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r['ratio']:.3f}" if r.get("ratio") is not None else "—"
        note = f" ({_clip(str(r['error']))})" if r.get("error") else ""
        lines.append(
            f"| {r['name']} | {r['setting']}{note} | {r.get('plan', 'standard')} | {r['rows']:,} | "
            f"{r['removed']:,} | {fmt(r['wall_s'])} | {fmt(r['rows_per_s'])} | "
            f"{fmt(r['ideal_rows_per_s'])} | {ratio} | {r['refused']} / {r['requests']} "
            f"({100 * r['refused'] / max(r['requests'], 1):.1f} %) | {fmt(r['peak_mib'], 0)} |"
        )
    return lines


def dry_table(d: dict[str, Any]) -> list[str]:
    return [
        f"| {d['rows']:,}-row CSV ({d['file_mib']:.0f} MiB) | Work s (imports excluded) | Process wall s | Peak MiB |",
        "|---|---:|---:|---:|",
        f"| `reaction-cleanup run --dry-run` | {d['dry_work_s']:.2f} (median {d['dry_work_median_s']:.2f}) | "
        f"{d['cli_wall_s']:.2f} | {d['cli_peak_mib']:.0f} |",
        f"| `pandas.read_csv` | {d['read_csv_work_s']:.2f} (median {d['read_csv_work_median_s']:.2f}) | "
        f"{d['read_csv_wall_s']:.2f} | {d['read_csv_peak_mib']:.0f} |",
        f"| ratio | {d['dry_work_s'] / d['read_csv_work_s']:.1f}x (median "
        f"{d['dry_work_median_s'] / d['read_csv_work_median_s']:.1f}x) | "
        f"{d['cli_wall_s'] / d['read_csv_wall_s']:.1f}x | |",
    ]


PARTS = ("standard", "enterprise", "single", "dry", "operating", "wrong", "shared", "real")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == FB_WORKER:
        fb_worker(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short run for CI (about 2 min)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--fb-slow", type=int, help="fast_bitrix24's slow() setting (no probing)")
    parser.add_argument("--skip-fb", action="store_true", help="leave fast_bitrix24 out")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (standard includes fast_bitrix24)",
    )
    parser.add_argument("--work", type=Path, help="folder for inputs and reports (default: temp)")
    args = parser.parse_args()
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    if parts - set(PARTS):
        parser.error(f"unknown part(s): {', '.join(sorted(parts - set(PARTS)))}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes: dict[str, Any] = {"smoke": SMOKE, "quick": QUICK, "full": FULL}[mode]
    work = args.work or Path(tempfile.mkdtemp(prefix="reaction-cleanup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    have_fb = fb_version() != "not installed" and not args.skip_fb
    t_start = time.perf_counter()
    print(
        f"reaction-cleanup benchmarks ({mode}) on {platform.node()}: Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, fast_bitrix24 {fb_version()}; "
        f"work folder {work}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"mode": mode, "sizes": sizes}
    ours: dict[str, Any] | None = None

    if "standard" in parts:
        # Our job at the standard plan, then fast_bitrix24 on the same rows and portal.
        ours, portal, original = throughput("standard", sizes["standard_rows"], work)
        results.append(ours)
        rows = make_rows(sizes["standard_rows"])
        try:
            if have_fb:
                rate, burst = PLANS["standard"]
                restore(portal, original)
                results.append(run_fb(portal, rows, work, "default", rate, burst))
                best = args.fb_slow or (8 if not sizes["fb_probe"] else None)
                if best is None:
                    probe = probe_fb(sizes, work)
                    figures["fb_probe"] = probe
                    best = probe["best"]
                restore(portal, original)
                results.append(run_fb(portal, rows, work, str(best), rate, burst))
        finally:
            portal.stop()
    if "enterprise" in parts and sizes["enterprise_rows"]:
        ent, portal, _ = throughput("enterprise", sizes["enterprise_rows"], work)
        portal.stop()
        results.append(ent)
    if "single" in parts and sizes["single_rows"]:
        results.append(single_mode(sizes["single_rows"], work))
    dry = (
        dry_run(sizes["dry_rows"], work, repeats=3 if args.quick else 5) if "dry" in parts else None
    )
    operating = (
        [operating_budget(sizes["operating_rows"], work, b) for b in ("method", "batch")]
        if "operating" in parts and sizes["operating_rows"]
        else []
    )
    if "wrong" in parts and sizes["wrong_rate_rows"]:
        for told, actual, burst in WRONG_RATE:
            results.append(wrong_rate(told, actual, burst, sizes["wrong_rate_rows"], work))
    recovery: list[dict[str, Any]] = []
    if "shared" in parts:
        for (plan, other), n in zip(SHARED, sizes["shared_rows"], strict=True):
            if n:
                results.append(shared(plan, other, n, work))
                if sizes["other_stops_at"]:
                    recovery.append(shared(plan, other, n, work, sizes["other_stops_at"]))
    real = real_run(sizes["real_rows"], work) if "real" in parts and sizes["real_rows"] else None

    print()
    if results:
        print("Throughput (realistic sandbox: 30 ms per request + 20 ms per command):")
        print("\n".join(throughput_table(results)))
    fb = [r for r in results if r["name"] == "fast_bitrix24"]
    if fb and ours:
        best_fb = max(
            (r for r in fb if r["removed"] == r["rows"]),
            key=lambda r: r["rows_per_s"],
            default=None,
        )
        if best_fb:
            print(
                f"\nours / fast_bitrix24 {best_fb['setting']}: "
                f"{ours['rows_per_s'] / best_fb['rows_per_s']:.3f}x rows/s "
                f"({ours['wall_s']:.1f} s / {best_fb['wall_s']:.1f} s)"
            )
        figures["ours_over_fb"] = ours["rows_per_s"] / best_fb["rows_per_s"] if best_fb else None
    single = next((r for r in results if r["setting"] == "--mode single"), None)
    if single and ours:
        print(
            f"batch / single calls: {ours['rows_per_s']:.1f} / {single['rows_per_s']:.2f} rows/s "
            f"= {ours['rows_per_s'] / single['rows_per_s']:.0f}x"
        )
    if dry:
        print("\nDry run:")
        print("\n".join(dry_table(dry)))
    for op in operating:
        print(
            f"\nOperating-time limit ({op['setting']}): {op['removed']:,} of "
            f"{op['rows']:,} removed in {op['wall_s']:.1f} s, floor "
            f"{op['ideal_s']:.1f} s (wall / floor {op['wall_s'] / op['ideal_s']:.2f}x), "
            f"OPERATION_TIME_LIMIT commands {op['operating_refusals']} "
            f"(requests refused whole: {op['refused_requests']}), the most in a later window "
            f"{op['most_refused_in_a_later_window']}, rate refusals {op['refused']}, failed rows "
            f"{op['summary'].get('by_status', {}).get('failed', '?')}"
        )
    for rec in recovery:
        back = rec.get("back_to_full_s")
        print(
            f"\n{rec['plan']}: {rec['setting']}: back at 95 % of the full rate "
            + (f"{back:.1f} s after it stopped" if back is not None else "not seen")
            + f"; {rec['removed']:,} of {rec['rows']:,} removed, refused {rec['refused']} / "
            f"{rec['requests']} requests"
        )
    if real:
        print(
            f"\nReal run of {real['rows']:,} rows (unlimited sandbox): {real['removed']:,} removed in "
            f"{real['wall_s']:.0f} s ({real['rows_per_s']:.0f} rows/s), exit {real['exit']}, "
            f"peak {real['peak_mib']:.0f} MiB"
        )
    print(f"\n(benchmarks took {time.perf_counter() - t_start:.0f} s)")
    figures.update(
        throughput=[_plain(r) for r in results],
        dry_run=dry,
        real_run=_plain(real),
        operating=[_plain(op) for op in operating],
        recovery=[_plain(r) for r in recovery],
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


def probe_fb(sizes: dict[str, Any], work: Path) -> dict[str, Any]:
    """fast_bitrix24's best slow() setting: the fastest that removes every row, each tried
    on its own fresh portal with the realistic profile."""
    rate, burst = PLANS["standard"]
    rows = make_rows(sizes["fb_probe_rows"], first_message=5_000_000)
    tried: dict[int, dict[str, Any]] = {}
    for setting in sizes["fb_probe"]:
        portal = start_portal(
            rows, rate=rate, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
        )
        try:
            r = run_fb(portal, rows, work, str(setting), rate, burst)
        finally:
            portal.stop()
        tried[setting] = {
            k: r.get(k) for k in ("removed", "wall_s", "refused", "requests", "error", "ratio")
        }
    ok = {s: t for s, t in tried.items() if t["removed"] == len(rows)}
    best = min(ok, key=lambda s: ok[s]["wall_s"]) if ok else min(tried)
    print(f"  fast_bitrix24 slow() probe on {len(rows):,} rows: {tried}; best {best}", flush=True)
    return {"best": best, "tried": tried}


def _clip(text: str, limit: int = 90) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(r: dict[str, Any] | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {k: v for k, v in r.items() if k not in ("stdout", "stderr", "summary")}


if __name__ == "__main__":
    sys.exit(main())
