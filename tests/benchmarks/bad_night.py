#!/usr/bin/env python
"""Issue 17's targets, measured: a bad night against the sandbox portal on 127.0.0.1.

    python tests/benchmarks/bad_night.py              # about 6 minutes
    python tests/benchmarks/bad_night.py --parts outage --outage 60
    python tests/benchmarks/bad_night.py --smoke      # tiny sizes, seconds (checks the script)

Parts (the real CLI, `python -m cleanup`, in a subprocess each time):

- `outage`: 3,000 rows at 5 req/s (batches of 10, so about 60 s without trouble), the portal
  away for `--outage` seconds (60) once 1,000 rows are removed: first refusing connections,
  then accepting and closing them (a local TCP relay in front of the sandbox). Default
  options. Target: every row removed, exit 0, the run takes the outage plus at most 10 s
  more than the same run without one.
- `faults`: 400 rows as single calls (the portal refuses batch) under 8 % lost replies and
  8 % resets, default --max-retries 5; then the undo of its report under the same faults.
  Target: no row fails before its own 5 re-sends; every line true (checked against the
  portal's state).
- `absent`: the same 300 rows run twice; target: the second report all `absent`, exit 0,
  and an undo of it sends nothing.
- `outage-before` (with `--before DIR`): the `outage` part with another checkout's CLI.
- `retry`: run-job with 15 % HTTP 500 and max_retries = 0; target: the file stays in the
  inbox, the next run (portal healthy) sends only the rows that failed transiently and
  archives the file, every row `removed`.

Prints each figure beside its target and the ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal  # noqa: E402
from tests.helpers.relay import Relay  # noqa: E402

BOT = 456
Row = tuple[int, int, str]


def likes(n: int) -> list[Row]:
    return [(BOT, 100_000 + i, "like") for i in range(n)]


def write_rows(path: Path, rows: list[Row]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("botId", "messageId", "reaction"))
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def portal(rows: list[Row], **config: Any) -> SandboxPortal:
    p = SandboxPortal(PortalState.build(rows), PortalConfig(**config))
    p.start()
    return p


def tokens(folder: Path, p: SandboxPortal) -> Path:
    path = folder / "tokens.json"
    path.write_text(json.dumps({str(b.id): b.token for b in p.state.bots.values()}))
    return path


CODE = [ROOT]  # the checkout whose CLI runs (--before: another one, for a comparison)


def cli(*args: Any, env: dict[str, str] | None = None) -> tuple[int, float, str]:
    """Run the CLI in its own process: (exit code, wall seconds, stderr)."""
    full_env = {**os.environ, "PYTHONPATH": str(CODE[0]), **(env or {})}
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cleanup", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=CODE[0],  # `python -m` puts the working folder first on the path
        check=False,
    )
    return done.returncode, time.monotonic() - t0, done.stderr


def left(p: SandboxPortal) -> set[Row]:
    return {(b, m, r) for m, b, r in p.state.snapshot()}


def line(name: str, value: str, target: str, ok: bool) -> None:
    print(f"| {name} | {value} | {target} | {'met' if ok else 'NOT met'} |")


# ---------------------------------------------------------------------- outage


def outage_run(work: Path, n: int, way: str | None, seconds: float) -> dict[str, Any]:
    rows = likes(n)
    p = portal(rows, rate=5.0, burst=10, latency=0.03)
    relay = Relay(p.port)
    folder = work / f"outage-{way or 'none'}"
    folder.mkdir(parents=True)
    src = write_rows(folder / "in.csv", rows)
    began: dict[str, float] = {}

    def outage() -> None:
        while p.stats.removed < n // 3:
            time.sleep(0.01)
        began["at"] = time.monotonic()
        relay.refuse() if way == "refuse" else relay.drop()
        time.sleep(seconds)
        relay.restore()

    if way is not None:
        threading.Thread(target=outage, daemon=True).start()
    args = ("--rate", "5", "--burst", "10", "--batch-size", "10", "--progress", "log")
    code, wall, err = cli(
        "run", src, "--webhook", relay.url(p.webhook_url()), "--bot-tokens", tokens(folder, p),
        *args,
    )  # fmt: skip
    report = read_report(folder / "in.report.csv")
    statuses = {s: sum(r["status"] == s for r in report) for s in {r["status"] for r in report}}
    summary = json.loads((folder / "in.report.csv.summary.json").read_text())
    relay.close()
    p.stop()
    return {
        "exit": code,
        "wall": wall,
        "statuses": statuses,
        "left": len(left(p)),
        "outage_s": summary.get("outage_s", 0.0),
        "log_lines": [x for x in err.splitlines() if "portal" in x and "answer" in x][:4],
    }


def part_outage(work: Path, n: int, seconds: float) -> None:
    print(f"\n### Outage: {n} rows at 5 req/s (batches of 10), the portal away {seconds:.0f} s\n")
    base = outage_run(work, n, None, 0)
    print(f"without an outage: {base['wall']:.1f} s, exit {base['exit']}, {base['statuses']}\n")
    print("| case | figure | target | |\n|---|---|---|---|")
    for way in ("refuse", "drop"):
        r = outage_run(work, n, way, seconds)
        extra = r["wall"] - base["wall"] - seconds
        all_removed = r["statuses"] == {"removed": n} and r["left"] == 0
        line(f"{way}: rows", str(r["statuses"]), f"all {n} removed", all_removed)
        line(f"{way}: exit", str(r["exit"]), "0", r["exit"] == 0)
        line(
            f"{way}: run time",
            f"{r['wall']:.1f} s = {base['wall']:.1f} + {seconds:.0f} + {extra:.1f} s"
            f" (outage seen {r['outage_s']:.1f} s)",
            "outage + <= 10 s",
            extra <= 10,
        )
        for text in r["log_lines"]:
            print(f"|  | `{text[-110:]}` | | |")


# ---------------------------------------------------------------------- faults


def part_faults(work: Path, n: int, retries: int = 5, label: str = "") -> None:
    print(
        f"\n### {label}Single calls under 8 % lost replies + 8 % resets, {n} rows,"
        f" --max-retries {retries}\n"
    )
    rows = likes(n)
    faults = {"lost_reply": 0.08, "reset": 0.08}
    p = portal(rows, batch_not_allowed="call", fault_rates=faults, seed=17)
    folder = work / f"faults-{retries}-{label.strip(': ') or 'this'}"
    folder.mkdir()
    src = write_rows(folder / "in.csv", rows)
    common: tuple[Any, ...] = ("--webhook", p.webhook_url(), "--bot-tokens", tokens(folder, p))
    common += ("--rate", "1000", "--burst", "1000", "--progress", "none")
    common += ("--max-retries", str(retries))
    code, wall, _ = cli("run", src, *common)
    report = read_report(folder / "in.report.csv")
    early = [r for r in report if r["status"] == "failed" and int(r["attempts"]) < retries + 1]
    failed = [r for r in report if r["status"] == "failed"]
    gone = {(BOT, int(r["messageId"]), "like") for r in report if r["status"] == "removed"}
    # True lines: removed rows are gone; a row not there any more is removed, or failed
    # after an attempt whose answer was lost (it may have acted: "gave up").
    unsure = {(BOT, int(r["messageId"]), "like") for r in report if r["status"] == "failed"}
    true = gone <= set(rows) - left(p) <= gone | unsure
    print("| case | figure | target | |\n|---|---|---|---|")
    print(f"|  | faults injected {dict(p.stats.faults)}, {wall:.1f} s, exit {code} | | |")
    line(f"run: rows failed before their own {retries} re-sends", str(len(early)), "0", not early)
    line("run: rows failed at all", str(len(failed)), "-", True)
    line("run: every line true", str(true), "True", true)
    code, wall, _ = cli("undo", folder / "in.report.csv", *common, "--yes")
    undo = read_report(folder / "in.report.undo.csv")
    early = [r for r in undo if r["status"] == "failed" and int(r["attempts"]) < retries + 1]
    back = {(BOT, int(r["messageId"]), "like") for r in undo if r["status"] == "restored"}
    unsure = {(BOT, int(r["messageId"]), "like") for r in undo if r["status"] == "failed"}
    true = back <= left(p) and left(p) - (set(rows) - gone) <= back | unsure
    line(f"undo: rows failed before their own {retries} re-sends", str(len(early)), "0", not early)
    line("undo: restored / removed", f"{len(back)} / {len(gone)}, exit {code}", "-", True)
    line("undo: every line true", str(true), "True", true)
    p.stop()


# ---------------------------------------------------------------------- absent


def part_absent(work: Path, n: int) -> None:
    print(f"\n### The same {n} rows twice\n")
    rows = likes(n)
    p = portal(rows)
    folder = work / "absent"
    folder.mkdir()
    src = write_rows(folder / "in.csv", rows)
    common: tuple[Any, ...] = ("--webhook", p.webhook_url(), "--bot-tokens", tokens(folder, p))
    common += ("--rate", "1000", "--burst", "1000", "--progress", "none")
    first, _, _ = cli("run", src, *common)
    second, _, _ = cli("run", src, *common, "--report", folder / "again.report.csv")
    report = read_report(folder / "again.report.csv")
    absent = sum(r["status"] == "absent" for r in report)
    before = p.stats.requests
    undo, _, _ = cli("undo", folder / "again.report.csv", *common, "--yes")
    sent = p.stats.requests - before
    print("| case | figure | target | |\n|---|---|---|---|")
    line("first run exit", str(first), "0", first == 0)
    line("second report absent", f"{absent} of {len(report)}", f"{n} of {n}", absent == n)
    line("second run exit", str(second), "0", second == 0)
    line("undo of it: requests sent", f"{sent} (exit {undo})", "0", sent == 0)
    p.stop()


# ---------------------------------------------------------------------- retry runs


def part_retry(work: Path, n: int) -> None:
    print(f"\n### run-job, {n} rows, 15 % HTTP 500, max_retries = 0\n")
    rows = likes(n)
    p = portal(rows, fault_rates={"http500": 0.15}, seed=5)
    root = work / "job"
    for name in ("inbox", "reports", "archive"):
        (root / name).mkdir(parents=True)
    tokens(root, p)
    keys = {
        "name": "night", "webhook_env": "NIGHT_WEBHOOK", "bot_tokens_file": "tokens.json",
        "inbox": "inbox", "reports": "reports", "archive": "archive", "min_age": 0,
        "rate": 1000, "burst": 1000, "batch_size": 10, "max_retries": 0, "progress": "none",
    }  # fmt: skip
    job = root / "job.toml"
    job.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items()) + "\n")
    src = write_rows(root / "inbox" / "night.csv", rows)
    env = {"NIGHT_WEBHOOK": p.webhook_url()}
    first, _, _ = cli("run-job", job, env=env)
    [path] = (root / "reports").glob("*.report.csv")
    transient = sum(r["status"] == "failed" for r in read_report(path))
    stayed = src.exists()
    p.config.fault_rates = {}
    executed = p.stats.commands_executed
    second, _, _ = cli("run-job", job, env=env)
    sent = p.stats.commands_executed - executed
    final = read_report(path)
    removed = sum(r["status"] == "removed" for r in final)
    archived = (root / "archive" / "night.csv").exists()
    print("| case | figure | target | |\n|---|---|---|---|")
    line("first run", f"exit {first}, {transient} rows failed transiently", "-", True)
    line("file stays in the inbox", str(stayed), "True", stayed)
    line("second run: rows sent", f"{sent} (exit {second})", str(transient), sent == transient)
    line(
        "archived, every row removed",
        f"{archived}, {removed} of {n}",
        f"True, {n}",
        archived and removed == n,
    )
    p.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="outage,faults,absent,retry")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the portal is away")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--work", type=Path, help="keep inputs and reports here")
    parser.add_argument(
        "--before", type=Path, help="also run `faults` with the CLI of this checkout (e.g. main)"
    )
    args = parser.parse_args()
    sizes = {"outage": 3000, "faults": 400, "absent": 300, "retry": 1000}
    if args.smoke:
        sizes = {"outage": 150, "faults": 40, "absent": 30, "retry": 100}
        args.outage = min(args.outage, 3.0)
    work = args.work or Path(tempfile.mkdtemp(prefix="bad-night-"))
    work.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    print(f"bad night: {', '.join(parts)}; work folder {work}")
    if "outage" in parts:
        part_outage(work, sizes["outage"], args.outage)
    if "outage-before" in parts and args.before is not None:  # the same with another CLI
        CODE[0] = args.before
        print("\n(before: the CLI of", args.before, ")")
        part_outage(work / "before", sizes["outage"], args.outage)
        CODE[0] = ROOT
    if "faults" in parts:
        part_faults(work, sizes["faults"])
        part_faults(work, sizes["faults"], retries=1)
        if args.before is not None:
            CODE[0] = args.before
            part_faults(work, sizes["faults"], label="before (--before): ")
            part_faults(work, sizes["faults"], retries=1, label="before (--before): ")
            CODE[0] = ROOT
    if "absent" in parts:
        part_absent(work, sizes["absent"])
    if "retry" in parts:
        part_retry(work, sizes["retry"])


if __name__ == "__main__":
    main()
