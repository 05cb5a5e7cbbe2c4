"""What is written after a run, besides its report and summary (the run writes those):
its HTML review page, the reports folder's index page, and its metrics. One function,
`write_outputs`, serves `run`, `undo` and `run-job`, so the commands stay thin."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from cleanup.redact import redact
from cleanup.results import RunSummary

if TYPE_CHECKING:
    from cleanup.run.config import RunConfig
    from cleanup.run.portals import PortalPacing

log = logging.getLogger("cleanup")


class Written(NamedTuple):
    """What `write_outputs` made: the page's path (None if none was written) and the
    summary, with the chat notification's outcome on it when one was asked for."""

    page: Path | None
    summary: RunSummary


def write_outputs(
    summary: RunSummary,
    config: RunConfig,
    *,
    html: Path | None = None,
    context: Mapping[str, str] | None = None,
    index_title: str | None = None,
    metrics: bool = True,
    on_error: Literal["raise", "log"] = "raise",
    pacing: PortalPacing | None = None,
) -> Written:
    """After a run that wrote a report: the review page at `html` (with `context`, lines
    such as the job file and input, on it); the index page of the report's folder (with
    `index_title`, written under that title: a job file's reports folder; without, only
    rebuilt if this tool wrote it there); the chat notification (`cleanup.outputs.notify`:
    it attaches the page, and its outcome goes into the summary file); and, with `metrics`,
    the run's figures to the metrics file and Pushgateway the options name. A dry run
    writes nothing. `pacing`: the portal's shared bucket for the notification, if any.

    `on_error="log"`: a page that cannot be written is logged, never costs the run its
    result (a job file's run); the index page is always so. Returns the page's path if it
    was written, and the summary with the notification's outcome on it."""
    if summary.dry_run or not summary.report:
        return Written(None, summary)
    report = Path(summary.report)
    page = None
    if html is not None:
        page = _guarded(
            on_error, f"the HTML report {html}", lambda: _write_page(summary, report, html, context)
        )
    if index_title is not None:
        write_index_page(report.parent, index_title)
    else:
        from cleanup.outputs.index import refresh_index

        refresh_index(report.parent)  # a run-job folder's index.html
    summary = _notify(summary, config, page, pacing)
    if metrics and (config.metrics_file is not None or config.pushgateway):
        publish_metrics(summary, config)
    return Written(page, summary)


def _notify(
    summary: RunSummary, config: RunConfig, page: Path | None, pacing: PortalPacing | None
) -> RunSummary:
    if config.notify is None:
        return summary
    from cleanup.outputs.notify import notify_run

    try:
        return notify_run(summary, config, page=page, pacing=pacing)
    except Exception as exc:  # a notification must never cost the run its result
        log.error("notification to %s failed: %s", config.notify, redact(str(exc)))
        return summary


def write_index_page(folder: Path, title: str) -> Path | None:
    """Rebuild `folder`'s index page under `title` (a job file's reports folder), also
    after a run that left no summary; an error is logged, never costs a run its result."""
    from cleanup.outputs.index import write_index

    return _guarded("log", f"the index page in {folder}", lambda: write_index(folder, title=title))


def _guarded(on_error: str, what: str, write: Callable[[], Path]) -> Path | None:
    if on_error == "raise":
        return write()
    try:
        return write()
    except Exception as exc:  # a review page must never cost the run its result
        log.error("could not write %s: %s", what, redact(str(exc)))
        return None


def _write_page(
    summary: RunSummary, report: Path, out: Path, context: Mapping[str, str] | None
) -> Path:
    from cleanup.outputs.html import write_html

    return write_html(summary, report, out, context=context)


def publish_metrics(summary: RunSummary, config: RunConfig) -> None:
    """The run's figures under the job name of its input (`reactions` for reactions.csv)."""
    from cleanup.outputs.metrics import publish, summary_figures

    job = config.label or config.input.name.split(".")[0] or "run"
    files = {config.metrics_file: [job]} if config.metrics_file is not None else {}
    publish([summary_figures(job, summary)], files, config.pushgateway)


__all__ = ["Written", "publish_metrics", "write_index_page", "write_outputs"]
