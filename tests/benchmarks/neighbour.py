#!/usr/bin/env python
"""A good neighbour: what another application on the portal's bucket keeps while the job runs.

    python tests/benchmarks/neighbour.py              # every part (about 12 min)
    python tests/benchmarks/neighbour.py --part share # one part: share, steady

Against the sandbox portal on 127.0.0.1 (its one bucket is every caller's), with the
profile of run_benchmarks.py (30 ms per request, 20 ms per command: a batch of 50 takes about
a second). The job is the real CLI in a subprocess; the neighbour is run_benchmarks'
`OtherClient` (cheap `server.time` calls), here without re-sending what is refused, so every
refusal is a request it lost. Nothing asserts: each figure is printed beside its target.

share:  the neighbour sends 0.4 req/s plus a burst of 8 every 15 s, on a 2/s portal with
        burst 20 and on the standard 2/s burst 50. The job runs with --share 0.5 (target: 0
        of the neighbour's requests refused, the job >= 0.9 of its share's ideal
        (batches - f*burst) / (f*rate)) and, beside it, without --share.
estimate: the estimate the job logs before sending against its real time (summary JSON), at
        a steady limit: standard, Enterprise, single calls (the portal refuses batch and the
        job is told --mode single). Target: within 10 %.
bound:  --max-duration cuts a 6,000-row file (standard plan); runs with --resume until the
        report is complete. Targets: each run ends within the bound plus --stop-timeout (its
        wall time), no row sent twice (the portal's deletes = rows), every report line true;
        a run resumed at once into the bucket the run before left full is back at 2 req/s
        within 15 s (its accepted requests per 5 s), and the file takes the 2 runs said.
steady: the neighbour sends a steady 2 req/s on a 5/s portal with burst 10 (and 1 req/s on
        the standard 2/s, 50), then stops; the job runs at the default share (targets: the
        neighbour keeps >= 90 % of its requests, the job reaches >= 0.9 of the capacity the
        neighbour leaves, and is back at the full rate within 15 s after it stops).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.run_benchmarks import (
    LATENCY,
    NO_OPERATING,
    PER_COMMAND,
    OtherClient,
    _back_to_full,
    make_rows,
    run_ours,
    start_portal,
)

BURSTY = (0.4, (8, 15.0))  # the neighbour: steady req/s, (burst size, every s)


def _split(portal: Any) -> tuple[list[Any], list[Any]]:
    ours = [r for r in portal.stats.log if r.path_method == "batch"]
    theirs = [r for r in portal.stats.log if r.path_method != "batch"]
    return ours, theirs


def share_part(rate: float, burst: int, share: float | None, n: int, work: Path) -> dict[str, Any]:
    rows = make_rows(n, first_message=21_000_000)
    portal = start_portal(
        rows, rate=rate, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
    )
    try:
        steady, bursts = BURSTY
        with OtherClient(portal, steady, burst=bursts, resend=False):
            time.sleep(2.0)
            portal.reset_stats()
            extra = ("--share", str(share)) if share else ()
            name = f"share-{rate:g}-{burst}-{share}"
            result = run_ours(
                portal, rows, work, name, "--rate", str(rate), "--burst", str(burst),
                *extra, *NO_OPERATING,
            )  # fmt: skip
        ours, theirs = _split(portal)
        begin, end = min(r.t_start for r in ours), max(r.t_end for r in ours)
        during = [r for r in theirs if begin <= r.t_start <= end]
        f = share or 1.0
        batches = math.ceil(n / 50)
        ideal = max(batches - f * burst, 0) / (f * rate)
        job_s = result.get("job_s") or result["wall_s"]
        return {
            "portal": f"{rate:g}/s burst {burst}",
            "share": f,
            "rows": n,
            "removed": result["removed"],
            "exit": result["exit"],
            "job_s": round(job_s, 2),
            "ideal_s": round(ideal, 2),
            "ratio": round(ideal / job_s, 3),
            "job_refused": sum(1 for r in ours if r.status != 200),
            "neighbour_requests": len(during),
            "neighbour_refused": sum(1 for r in during if r.status != 200),
        }
    finally:
        portal.stop()


def steady_part(
    rate: float, burst: int, other: float, n: int, stop_after: float, work: Path
) -> dict[str, Any]:
    rows = make_rows(n, first_message=23_000_000)
    portal = start_portal(
        rows, rate=rate, burst=burst, latency=LATENCY, per_command_cost=PER_COMMAND
    )
    try:
        with OtherClient(portal, other, stop_after, resend=False) as client:
            time.sleep(2.0)
            portal.reset_stats()
            result = run_ours(
                portal, rows, work, f"steady-{rate:g}-{other:g}",
                "--rate", str(rate), "--burst", str(burst), *NO_OPERATING,
            )  # fmt: skip
        ours, theirs = _split(portal)
        stopped = client.stopped_at or math.inf
        begin = min(r.t_start for r in ours)
        # While the neighbour ran, once the job's start-up burst has drained (and 5 s more
        # for its first measure).
        window = [r for r in theirs if begin <= r.t_start < stopped]
        lo, hi = begin + burst / rate + 5.0, min(stopped, max(r.t_end for r in ours))
        job_acc = sum(1 for r in ours if r.status == 200 and lo <= r.t_start < hi)
        nb_acc = sum(1 for r in theirs if r.status == 200 and lo <= r.t_start < hi)
        span = max(hi - lo, 1e-9)
        left = rate - nb_acc / span
        return {
            "portal": f"{rate:g}/s burst {burst}",
            "neighbour": f"{other:g}/s, stops after {stop_after:g} s",
            "rows": n,
            "removed": result["removed"],
            "exit": result["exit"],
            "neighbour_requests": len(window),
            "neighbour_kept": round(
                sum(1 for r in window if r.status == 200) / max(len(window), 1), 3
            ),
            "job_rate_while_shared": round(job_acc / span, 3),
            "capacity_left": round(left, 3),
            "job_of_left": round(job_acc / span / left, 3) if left > 0 else None,
            "back_to_full_s": _back_to_full(ours, client.stopped_at, rate),
            "job_refused": sum(1 for r in ours if r.status != 200),
        }
    finally:
        portal.stop()


def estimate_part(name: str, n: int, work: Path, *options: str, **portal: Any) -> dict[str, Any]:
    rows = make_rows(n, first_message=25_000_000)
    sandbox = start_portal(rows, latency=LATENCY, per_command_cost=PER_COMMAND, **portal)
    try:
        result = run_ours(sandbox, rows, work, f"estimate-{name}", *options, *NO_OPERATING)
        est = result["summary"].get("estimate") or {}
        return {
            "setting": name,
            "rows": n,
            "removed": result["removed"],
            "estimated_s": est.get("seconds"),
            "job_s": result.get("job_s"),
            "wall_s": round(result["wall_s"], 2),
            "off": est.get("time_off"),
            "said": est.get("said"),
        }
    finally:
        sandbox.stop()


def bound_part(n: int, bound: str, work: Path) -> dict[str, Any]:
    rows = make_rows(n, first_message=27_000_000)
    sandbox = start_portal(rows, rate=2.0, burst=50, latency=LATENCY, per_command_cost=PER_COMMAND)
    runs: list[dict[str, Any]] = []
    try:
        resume: tuple[str, ...] = ()
        for _ in range(10):
            logged = len(sandbox.stats.log)
            result = run_ours(
                sandbox, rows, work, "bound", "--plan", "standard", "--max-duration", bound,
                *resume, *NO_OPERATING, keep_report=bool(resume),
            )  # fmt: skip
            summary = result["summary"]
            ours = [r for r in sandbox.stats.log[logged:] if r.path_method == "batch"]
            begin = min((r.t_start for r in ours), default=0.0)
            runs.append({
                # accepted batch requests per 5 s from the run's first request: a run resumed
                # at once meets the bucket the run before left full (2/s is the most it takes)
                "per_5s": [sum(1 for r in ours if r.status == 200
                               and begin + a <= r.t_start < begin + a + 5) for a in range(0, 20, 5)],
                "refused": sum(1 for r in ours if r.status != 200),
                "exit": result["exit"],
                "wall_s": round(result["wall_s"], 2),
                "elapsed_s": summary.get("elapsed_s"),
                "removed": summary.get("by_status", {}).get("removed"),
                "rows_left": summary.get("rows_left"),
                "expected_this_run": (summary.get("estimate") or {}).get("rows_this_run"),
                "runs_needed": (summary.get("estimate") or {}).get("runs_needed"),
            })  # fmt: skip
            resume = ("--resume",)
            if result["exit"] != 75:
                break
        deletes = sum(r.n_commands for r in sandbox.stats.log if r.path_method == "batch"
                      and r.status == 200)  # fmt: skip
        report = work / "bound.report.csv"
        lines = report.read_text().splitlines()[1:]
        return {
            "rows": n,
            "bound": bound,
            "runs": runs,
            "portal_removed": sandbox.stats.removed,
            "commands_sent": deletes,
            "report_removed": sum(1 for line in lines if ",removed," in line),
        }
    finally:
        sandbox.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("share", "steady", "estimate", "bound"), action="append")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="fewer rows (figures rougher)")
    args = parser.parse_args()
    parts = args.part or ["share", "steady", "estimate", "bound"]
    scale = 0.5 if args.quick else 1.0
    out: dict[str, list[dict[str, Any]]] = {p: [] for p in parts}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "share" in parts:
            for rate, burst in ((2.0, 20), (2.0, 50)):
                for share in (0.5, None):
                    n = int(4000 * scale) if burst == 20 else int(5000 * scale)
                    r = share_part(rate, burst, share, n, work)
                    out["share"].append(r)
                    print(
                        f"share {r['share']:g} on {r['portal']}: neighbour refused "
                        f"{r['neighbour_refused']} of {r['neighbour_requests']} (target with "
                        f"--share 0.5: 0); job {r['job_s']} s, ideal {r['ideal_s']} s, ratio "
                        f"{r['ratio']} (target >= 0.9 with --share)",
                        flush=True,
                    )
        if "steady" in parts:
            shared_s = 20.0 if args.quick else 60.0  # measured while shared
            for rate, burst, other in ((5.0, 10, 2.0), (2.0, 50, 1.0)):
                # The neighbour stops after the job's burst, its first measure and
                # `shared_s`; the job outlasts it by about 25 s.
                stop_after = 2.0 + burst / rate + 5.0 + shared_s
                calls = burst + (rate - other) * stop_after + rate * 25.0
                r = steady_part(rate, burst, other, int(calls * 50), stop_after, work)
                out["steady"].append(r)
                print(
                    f"steady {r['neighbour']} on {r['portal']}: neighbour kept "
                    f"{r['neighbour_kept']:.1%} (target >= 90 %); job {r['job_rate_while_shared']}"
                    f" req/s of {r['capacity_left']} left = {r['job_of_left']} (target >= 0.9); "
                    f"back to full {r['back_to_full_s']} s (target <= 15)",
                    flush=True,
                )
        if "estimate" in parts:
            for name, n, options, portal in (
                ("standard", 6000, ("--plan", "standard"), {"rate": 2.0, "burst": 50}),
                ("enterprise", 20000, ("--plan", "enterprise"), {"rate": 5.0, "burst": 250}),
                ("single calls", 150, ("--plan", "standard", "--mode", "single"),
                 {"rate": 2.0, "burst": 50, "batch_not_allowed": "call"}),
            ):  # fmt: skip
                r = estimate_part(name, int(n * scale), work, *options, **portal)
                out["estimate"].append(r)
                print(
                    f"estimate {name}: said {r['estimated_s']} s, took {r['job_s']} s "
                    f"(process {r['wall_s']} s): off {r['off']:+.1%} (target within 10 %)",
                    flush=True,
                )
        if "bound" in parts:
            r = bound_part(6000, "20s", work)
            out["bound"].append(r)
            for i, run in enumerate(r["runs"], 1):
                print(
                    f"bound 20s, run {i}: exit {run['exit']}, {run['wall_s']} s of process "
                    f"(target <= 20 + 30 --stop-timeout), removed {run['removed']}, left "
                    f"{run['rows_left']}, expected this run {run['expected_this_run']}, "
                    f"runs needed {run['runs_needed']}; accepted per 5 s {run['per_5s']} "
                    f"(refused {run['refused']})",
                    flush=True,
                )
            print(
                f"bound: {r['rows']} rows; the portal removed {r['portal_removed']}, was sent "
                f"{r['commands_sent']} delete commands (target: = rows), report says "
                f"{r['report_removed']} removed",
                flush=True,
            )
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
