#!/usr/bin/env python
"""Many portals in one `run-job`: 1, 5 and 20 sandbox portals, each with its own job file.

    python tests/benchmarks/many_portals.py            # the figures in docs/explanation/benchmarks.md (about 3 min)
    python tests/benchmarks/many_portals.py --quick    # 1, 5 and 20 portals on fewer rows (~1 min)

Each portal is a sandbox on 127.0.0.1 with the realistic profile of run_benchmarks.py (a
strict leaky bucket of the standard plan, 2 req/s burst 50; 30 ms per request plus 20 ms
per command, so a 50-command batch takes about a second). One job file per portal, all
run by one `reaction-cleanup run-job` process. A portal's ideal is what a client keeping
its bucket exactly full would need: max(0, N - burst) / rate + L for N requests; the whole
run is held against the slowest portal's ideal (its wall time includes Python's start-up).

Limits (issue 14): the whole run within 1.15x of the slowest portal's ideal, and each portal
within its limit (< 1 % of its requests refused). Printed with the process's peak threads,
peak memory (RSS, sampled with psutil) and CPU time, to show how they grow with portals.
Nothing here asserts; the exit code is 1 when a limit is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from cleanup.pacing.throttle import PLANS, ideal_seconds  # noqa: E402
from cleanup.sandbox import SandboxPortal  # noqa: E402
from tests.benchmarks.run_benchmarks import (  # noqa: E402
    LATENCY,
    PER_COMMAND,
    make_rows,
    start_portal,
    write_csv,
    write_tokens,
)

RATE, BURST = PLANS["standard"]
BATCH = 50
WHOLE_RUN_LIMIT = 1.15  # x the slowest portal's ideal
REFUSED_LIMIT = 0.01  # of a portal's requests


@dataclass
class Figures:
    portals: int
    rows: int
    wall_s: float
    slowest_ideal_s: float
    worst_refused: float  # the highest share of refused requests among the portals
    removed_all: bool
    exit_code: int
    peak_threads: int
    peak_rss_mib: float
    cpu_s: float

    @property
    def ratio(self) -> float:
        return self.wall_s / self.slowest_ideal_s

    @property
    def ok(self) -> bool:
        return (
            self.ratio <= WHOLE_RUN_LIMIT
            and self.worst_refused < REFUSED_LIMIT
            and self.removed_all
            and self.exit_code == 0
        )


def job_file(folder: Path, portal: SandboxPortal, rows: int, index: int) -> tuple[Path, int]:
    """A portal's job file and input; the number of requests its rows need."""
    folder.mkdir(parents=True)
    data = make_rows(rows, first_message=1_000_000 * (index + 1))
    write_csv(folder / "rows.csv", data)
    write_tokens(folder / "bot_tokens.json")
    (folder / "webhook-url").write_text(portal.webhook_url())
    (folder / "job.toml").write_text(
        f'name = "portal-{index:02d}"\n'
        'webhook_file = "webhook-url"\n'
        'bot_tokens_file = "bot_tokens.json"\n'
        'input = "rows.csv"\n'
        'reports = "reports"\n'
        'plan = "standard"\n'
        "min_age = 0\n"  # the input was just written
        "operating_limit = 0\n"  # as run_benchmarks.py: the rate limit is measured here
        'progress = "none"\n'
    )
    return folder / "job.toml", math.ceil(rows / BATCH)


def measure(portals: int, rows: int, work: Path) -> Figures:
    # The portals differ a little, so that one is the slowest.
    sizes = [rows - (i % 4) * BATCH * 5 for i in range(portals)]
    started = [
        start_portal(
            make_rows(n, 1_000_000 * (i + 1)),
            rate=RATE,
            burst=BURST,
            latency=LATENCY,
            per_command_cost=PER_COMMAND,
        )
        for i, n in enumerate(sizes)
    ]
    try:
        jobs, requests = zip(
            *(
                job_file(work / f"p{i:02d}", p, n, i)
                for i, (p, n) in enumerate(zip(started, sizes, strict=True))
            ),
            strict=True,
        )
        batch_s = LATENCY + BATCH * PER_COMMAND
        slowest = max(ideal_seconds(n, RATE, BURST, batch_s) for n in requests)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, "-m", "cleanup", "run-job", *map(str, jobs), "--quiet"],
            cwd=work,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        peak_threads, peak_rss = 0, 0
        watched = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                peak_threads = max(peak_threads, watched.num_threads())
                peak_rss = max(peak_rss, watched.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.2)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        refused = [p.stats.limit_refusals / max(p.stats.requests, 1) for p in started]
        return Figures(
            portals=portals,
            rows=sum(sizes),
            wall_s=wall,
            slowest_ideal_s=slowest,
            worst_refused=max(refused),
            removed_all=all(not p.state.reactions for p in started),
            exit_code=child.returncode,
            peak_threads=peak_threads,
            peak_rss_mib=peak_rss / 2**20,
            cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        )
    finally:
        for p in started:
            p.stop()


def table(results: list[Figures]) -> str:
    lines = [
        "| Portals | Rows | Wall s | Slowest portal's ideal s | Wall / ideal (limit 1.15) "
        "| Worst portal refused (limit 1 %) | Peak threads | Peak RSS MiB | CPU s | CPU / wall |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in results:
        lines.append(
            f"| {f.portals} | {f.rows:,} | {f.wall_s:.1f} | {f.slowest_ideal_s:.1f} "
            f"| **{f.ratio:.3f}**{'' if f.ok else ' (missed)'} | {100 * f.worst_refused:.2f} % "
            f"| {f.peak_threads} | {f.peak_rss_mib:.0f} | {f.cpu_s:.1f} | {f.cpu_s / f.wall_s:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows per portal")
    parser.add_argument("--portals", default="1,5,20", help="portal counts to run")
    parser.add_argument("--rows", type=int, help="rows of the largest portal")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = args.rows or (4_000 if args.quick else 6_000)
    results = []
    for count in (int(n) for n in args.portals.split(",")):
        with tempfile.TemporaryDirectory(prefix="rc-many-") as tmp:
            figures = measure(count, rows, Path(tmp))
        results.append(figures)
        print(table([figures]).splitlines()[-1], flush=True)
    print()
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}; run-job of one job file per portal"
    )
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps([f.__dict__ | {"ratio": f.ratio} for f in results], indent=2)
        )
    return 0 if all(f.ok for f in results) else 1


if __name__ == "__main__":
    sys.exit(main())
