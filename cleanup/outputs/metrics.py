"""The run's figures for Prometheus: a metrics file in the text format, written atomically
the way node_exporter's textfile collector expects, and optionally a Pushgateway push.

One file may hold several jobs' lines (a `run-job` of several job files, or job files that
name the same `metrics_file`): each write replaces this run's jobs' lines and keeps the
other jobs' lines found in the file. `reaction_cleanup_last_success_timestamp_seconds` is
carried forward from the file when a run does not end well, so "no successful run for a
day" can be told. Every value is a count, a time or a code: no secret can be in it; the
label values are job names, which a job file restricts to `[A-Za-z0-9._-]`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest, pushadd_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from cleanup.exits import finished
from cleanup.outputs.files import write_atomic
from cleanup.redact import redact
from cleanup.results import RunSummary, Status, counts_by_status

log = logging.getLogger("cleanup")

PREFIX = "reaction_cleanup"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
# name -> (help, labels beyond `job`)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    f"{PREFIX}_rows": ("Rows of the job's last run by status.", ("status",)),
    f"{PREFIX}_last_run_timestamp_seconds": ("When the job's last run ended (unix time).", ()),
    LAST_SUCCESS: (
        "When the job's last run that got to its end (exit 0, only rows failed, or paused by its"
        " time bound: 75) ended.",
        (),
    ),
    f"{PREFIX}_run_duration_seconds": ("How long the job's last run took.", ()),
    f"{PREFIX}_requests": ("Requests the job's last run sent to the portal.", ()),
    f"{PREFIX}_limit_refusals": (
        "Requests of the job's last run the portal refused for its rate limit.",
        (),
    ),
    f"{PREFIX}_exit_code": ("The exit code of the job's last run.", ()),
    f"{PREFIX}_files_waiting_retry": (
        "Input files the job's last run left in the inbox for a retry run of their rows"
        " that failed for a transient reason.",
        (),
    ),
    f"{PREFIX}_rows_left": (
        "Rows the job's last run left for a later run (skipped: paused by its time bound, 75,"
        " or stopped).",
        (),
    ),
    f"{PREFIX}_notification_failures": (
        "Chat notification calls of the job's last run that did not deliver (the message or its"
        " file; 0 when none was asked for). A failure never changes the exit code.",
        (),
    ),
}


@dataclass
class JobFigures:
    """One job's last run, as the metrics show it."""

    job: str
    exit_code: int
    ended_at: float  # unix time
    duration_s: float
    rows: dict[str, int] = field(default_factory=dict)  # by status
    requests: int = 0
    limit_refusals: int = 0
    files_waiting_retry: int = 0
    notification_failures: int = 0

    @property
    def succeeded(self) -> bool:
        return finished(self.exit_code)


def summary_figures(job: str, summary: RunSummary) -> JobFigures:
    """A `reaction-cleanup run`'s figures."""
    return JobFigures(
        job=job,
        exit_code=summary.exit_code,
        ended_at=summary.started_at + summary.elapsed_s,
        duration_s=summary.elapsed_s,
        rows=counts_by_status(summary.by_status, tuple(Status)),
        requests=summary.requests,
        limit_refusals=summary.limit_refusals,
        notification_failures=notification_failures(summary),
    )


def notification_failures(summary: RunSummary) -> int:
    """Calls of the run's chat notification that did not deliver: the message, its file."""
    n = summary.notification
    if n is None:
        return 0
    return int(n.status == "failed") + int(n.attachment == "failed")


def build_registry(
    figures: Sequence[JobFigures], previous: dict[str, dict[tuple[str, ...], float]] | None = None
) -> CollectorRegistry:
    """The jobs' gauges; `previous` (from `read_previous`) gives the last success of a job
    whose run did not end well, and the lines of other jobs, kept as they were."""
    previous = previous or {}
    registry = CollectorRegistry()
    gauges = {
        name: Gauge(name, text, ("job", *labels), registry=registry)
        for name, (text, labels) in METRICS.items()
    }
    ours = {f.job for f in figures}
    for name, samples in previous.items():
        for labels, value in samples.items():
            if labels[0] not in ours:
                gauges[name].labels(*labels).set(value)
    for f in figures:
        for status in Status:
            gauges[f"{PREFIX}_rows"].labels(f.job, status.value).set(f.rows.get(status.value, 0))
        gauges[f"{PREFIX}_last_run_timestamp_seconds"].labels(f.job).set(f.ended_at)
        last = f.ended_at if f.succeeded else previous.get(LAST_SUCCESS, {}).get((f.job,))
        if last is not None:
            gauges[LAST_SUCCESS].labels(f.job).set(last)
        gauges[f"{PREFIX}_run_duration_seconds"].labels(f.job).set(round(f.duration_s, 3))
        gauges[f"{PREFIX}_requests"].labels(f.job).set(f.requests)
        gauges[f"{PREFIX}_limit_refusals"].labels(f.job).set(f.limit_refusals)
        gauges[f"{PREFIX}_exit_code"].labels(f.job).set(f.exit_code)
        gauges[f"{PREFIX}_files_waiting_retry"].labels(f.job).set(f.files_waiting_retry)
        gauges[f"{PREFIX}_rows_left"].labels(f.job).set(f.rows.get(Status.SKIPPED.value, 0))
        gauges[f"{PREFIX}_notification_failures"].labels(f.job).set(f.notification_failures)
    return registry


def read_previous(path: Path) -> dict[str, dict[tuple[str, ...], float]]:
    """Our samples in an existing metrics file: {metric: {(job, ...labels): value}}. A file
    that is missing or unreadable gives nothing (it is replaced whole anyway)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, dict[tuple[str, ...], float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in METRICS:
                continue
            names = ("job", *METRICS[family.name][1])
            for sample in family.samples:
                if set(sample.labels) == set(names):
                    labels = tuple(sample.labels[n] for n in names)
                    out.setdefault(family.name, {})[labels] = sample.value
    except ValueError:
        log.warning("the metrics file %s could not be read; writing it afresh", path)
        return {}
    return out


def write_metrics(path: Path, figures: Sequence[JobFigures]) -> None:
    """Replace `path` (atomically: node_exporter never reads half a file) with the jobs'
    figures and the other jobs' lines it had; its folder is made when missing."""
    registry = build_registry(figures, read_previous(path))
    write_atomic(path, generate_latest(registry))


def push_metrics(gateway: str, figures: Iterable[JobFigures], *, timeout: float = 10.0) -> None:
    """Push each job's figures to a Pushgateway, grouped by job (POST: a last success not
    renewed by this run stays as the gateway has it)."""
    for f in figures:
        pushadd_to_gateway(gateway, job=f.job, registry=build_registry([f]), timeout=timeout)


def publish(
    figures: Sequence[JobFigures], files: dict[Path, list[str]], gateway: str | None
) -> bool:
    """Write each metrics file with the figures of the jobs it names, and push them all if
    `gateway` is given. A failure is logged (the run's own result stands); False then."""
    ok = True
    by_job = {f.job: f for f in figures}
    for path, jobs in files.items():
        try:
            write_metrics(path, [by_job[j] for j in jobs if j in by_job])
        except OSError as exc:
            log.error("could not write the metrics file %s: %s", path, exc.strerror or exc)
            ok = False
    if gateway:
        try:
            push_metrics(gateway, figures)
        except OSError as exc:  # urllib's errors (refused, HTTP 4xx/5xx) are OSErrors
            log.error("could not push the metrics to %s: %s", redact(gateway), redact(exc))
            ok = False
    return ok
