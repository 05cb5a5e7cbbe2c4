"""What is written after a run, besides its report and summary (the run writes those):
its HTML review page, the reports folder's index page, and its metrics. One function,
`write_outputs`, serves `run`, `undo` and `run-job`, so the commands stay thin."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cleanup.redact import redact
from cleanup.results import RunSummary

if TYPE_CHECKING:
    from cleanup.run.config import RunConfig

log = logging.getLogger("cleanup")


def write_outputs(
    summary: RunSummary,
    config: RunConfig,
    *,
    html: Path | None = None,
    context: Mapping[str, str] | None = None,
    index_title: str | None = None,
    metrics: bool = True,
    on_error: Literal["raise", "log"] = "raise",
) -> Path | None:
    """After a run that wrote a report: the review page at `html` (with `context`, lines
    such as the job file and input, on it); the index page of the report's folder (with
    `index_title`, written under that title: a job file's reports folder; without, only
    rebuilt if this tool wrote it there); and, with `metrics`, the run's figures to the
    metrics file and Pushgateway the options name. A dry run writes nothing.

    `on_error="log"`: a page that cannot be written is logged, never costs the run its
    result (a job file's run). Returns the page's path if it was written."""
    if summary.dry_run or not summary.report:
        return None
    report = Path(summary.report)
    page = None
    if html is not None:
        page = _guarded(
            on_error, f"the HTML report {html}", _write_page, summary, report, html, context
        )
    if index_title is not None:
        _guarded(on_error, f"the index page in {report.parent}", _write_index, report, index_title)
    else:
        from cleanup.outputs.index import refresh_index

        refresh_index(report.parent)  # a run-job folder's index.html
    if metrics and (config.metrics_file is not None or config.pushgateway):
        publish_metrics(summary, config)
    return page


def _guarded(on_error: str, what: str, write: Callable[..., Path], *args: object) -> Path | None:
    if on_error == "raise":
        return write(*args)
    try:
        return write(*args)
    except Exception as exc:  # a review page must never cost the run its result
        log.error("could not write %s: %s", what, redact(str(exc)))
        return None


def _write_page(
    summary: RunSummary, report: Path, out: Path, context: Mapping[str, str] | None
) -> Path:
    from cleanup.outputs.html import write_html

    return write_html(summary, report, out, context=context)


def _write_index(report: Path, title: str) -> Path:
    from cleanup.outputs.index import write_index

    return write_index(report.parent, title=title)


def publish_metrics(summary: RunSummary, config: RunConfig) -> None:
    """The run's figures under the job name of its input (`reactions` for reactions.csv)."""
    from cleanup.outputs.metrics import publish, summary_figures

    job = config.label or config.input.name.split(".")[0] or "run"
    files = {config.metrics_file: [job]} if config.metrics_file is not None else {}
    publish([summary_figures(job, summary)], files, config.pushgateway)


__all__ = ["publish_metrics", "write_outputs"]
