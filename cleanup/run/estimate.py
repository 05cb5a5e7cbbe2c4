"""An honest estimate before sending: how long the rows take at this portal's pace and the
run's share, and with a time bound how many rows this run finishes and how many runs the
file needs. A pure function of its inputs; the runner logs it at the start (and the dry run
prints it), puts it in the summary, and afterwards records how far off it was.

The pace is the pacing's own: the run's part of the bucket (the share's burst, less the
headroom the throttle keeps free) leaves at once, then one request every 1/(share x rate);
the last answer takes a request's round trip (`LATENCY`, a guess before any request: about
a second for a batch of 50 on a portal, less for a single call).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from cleanup.pacing.throttle import default_headroom, share_part
from cleanup.portal.protocol import MAX_BATCH
from cleanup.run.planner import count_batches

LATENCY = {"batch": 1.0, "single": 0.3}  # seconds: a request's round trip, guessed


@dataclass(frozen=True)
class Estimate:
    rows: int  # rows to send
    mode: str  # "batch" or "single"
    why_single: str  # why single calls ("" in batch mode)
    calls: int
    rate: float  # the run's requests/s (share x the portal's)
    burst: int  # the run's part of the bucket it may send at once
    share: float
    seconds: float
    bound_s: float | None = None  # the run's time bound
    rows_this_run: int | None = None  # with a bound: rows this run is expected to finish
    runs_needed: int | None = None  # with a bound: runs of this length the rows need

    def as_dict(self) -> dict[str, Any]:
        out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        out["said"] = self.describe()  # what the run told before sending
        return out

    def describe(self) -> str:
        """One sentence for the log and the dry run."""
        mode = "single calls" if self.mode == "single" else "batch requests"
        why = f" ({self.why_single})" if self.why_single else ""
        part = "" if self.share >= 1 else f", share {self.share:g} of the portal"
        text = (
            f"estimate: {self.rows:,} row(s) in {self.calls:,} {mode}{why} take about "
            f"{_span(self.seconds)} at {self.rate:g} req/s after a burst of {self.burst}{part}"
        )
        if self.bound_s is not None and self.rows_this_run is not None:
            if self.rows_this_run >= self.rows:
                text += f"; all of them fit this run's {_span(self.bound_s)}"
            else:
                text += (
                    f"; this run's {_span(self.bound_s)} finishes about "
                    f"{self.rows_this_run:,} of them; the file needs about {self.runs_needed} "
                    "run(s) of that length"
                )
        return text


def estimate(
    rows: int,
    *,
    rate: float,
    burst: int,
    share: float = 1.0,
    batch_size: int = MAX_BATCH,
    single: str = "",
    bound_s: float | None = None,
) -> Estimate:
    """`single`: why the run sends single calls ("" for batch)."""
    mode = "single" if single else "batch"
    per_call = 1 if single else batch_size
    calls = count_batches(rows, per_call)
    job_rate, job_burst = share_part(rate, burst, share)
    at_once = max(1, math.floor(job_burst - default_headroom(job_burst)))
    latency = LATENCY[mode]
    seconds = (max(calls - at_once, 0) / job_rate + latency) if calls else 0.0
    this_run: int | None = None
    runs: int | None = None
    if bound_s is not None and bound_s != math.inf:
        fit = at_once + max(bound_s - latency, 0.0) * job_rate  # calls answered in the bound
        per_run = max(1, math.floor(fit))
        this_run = min(rows, per_run * per_call)
        runs = max(1, math.ceil(calls / per_run)) if calls else 1
    return Estimate(
        rows, mode, single, calls, job_rate, at_once, share, seconds, bound_s, this_run, runs
    )


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def how_far_off(planned: dict[str, Any], elapsed_s: float, sent_rows: int) -> dict[str, Any]:
    """The estimate with what really happened: the time (and, for a run a bound ended, the
    rows it finished against those it was expected to)."""
    out = dict(planned)
    out["actual_s"] = round(elapsed_s, 3)
    seconds = float(planned.get("seconds") or 0.0)
    expected = int(planned.get("rows_this_run") or 0)
    cut = 0 < expected < int(planned.get("rows") or 0)
    if seconds > 0 and not cut:  # a run its bound cut short is judged by its rows
        out["time_off"] = round((elapsed_s - seconds) / seconds, 3)
    if expected:
        out["actual_rows"] = sent_rows
        out["rows_off"] = round((sent_rows - expected) / expected, 3)
    return out
