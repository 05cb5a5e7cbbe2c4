"""Start-up time of `reaction-cleanup --help` against `python -c "import click, requests"`.

Issue 20's target: within 3x. Each command runs `--runs` times in a fresh interpreter; the
best and the median of each are printed, with their ratio to the limit.

    python tests/benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

LIMIT = 3.0


def timings(command: Sequence[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    script = shutil.which("reaction-cleanup")
    cli = [script, "--help"] if script else [sys.executable, "-m", "cleanup", "--help"]
    base = timings([sys.executable, "-c", "import click, requests"], args.runs)
    ours = timings(cli, args.runs)
    for name, fn in (("best", min), ("median", statistics.median)):
        ratio = fn(ours) / fn(base)
        print(
            f"{name:6}: import click, requests {fn(base):.3f} s; {' '.join(cli[-2:])} "
            f"{fn(ours):.3f} s; ratio {ratio:.2f}x (limit {LIMIT:g}x: "
            f"{'within' if ratio <= LIMIT else 'OVER'})"
        )


if __name__ == "__main__":
    main()
