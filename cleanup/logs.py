"""Logging for people and for log collectors: text or JSON, one event per line, run id
on each, secrets masked before any handler sees a record."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType

from cleanup.redact import RedactingFilter, redact

LOGGER = "cleanup"


# The job a thread works for (a job file's name), when run-job runs several at once; the
# worker threads of a run copy their run's context, so their lines name it too.
_JOB: ContextVar[str | None] = ContextVar("cleanup_job", default=None)


class _Context(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.run_id = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        job = _JOB.get()
        record.job = job
        record.where = f"{self.run_id} {job}" if job else self.run_id
        return True


class _MaskedText(logging.Formatter):
    """The final line is masked again: the filter covers message and traceback, this
    also covers anything a formatter adds (extra fields, stack info)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._event(record))

    def _event(self, record: logging.LogRecord) -> str:
        event = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "run_id": getattr(record, "run_id", "-"),
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if job:
            event["job"] = job
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            event.update(extra)
        if record.exc_text:
            event["traceback"] = record.exc_text
        return json.dumps(event, ensure_ascii=False, default=str)


CONTEXT = _Context()


def setup_logging(*, verbose: bool = False, quiet: bool = False, fmt: str = "text") -> None:
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    # Filters on the handler run for records from every thread before formatting.
    handler.addFilter(RedactingFilter())
    handler.addFilter(CONTEXT)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            _MaskedText("%(asctime)s %(levelname)s [%(where)s] %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    # Libraries' records go through the same mask: urllib3's request lines hold webhook
    # codes and the OAuth refresh query. Without a handler of ours, their warnings would
    # reach Python's last-resort handler unmasked.
    for name in ("urllib3", "requests"):
        lib = logging.getLogger(name)
        lib.handlers = [handler]
        lib.setLevel(logging.DEBUG if verbose else logging.WARNING)
        lib.propagate = False
    # An exception nobody caught (a thread's, or one outside the CLI's boundary) is printed
    # by these hooks; mask it like everything else.
    sys.excepthook = _masked_excepthook
    threading.excepthook = _masked_thread_excepthook


def _masked_excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(exc_type, exc, tb))))


def _masked_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(redact(f"Exception in thread {name}:\n{text}"))


def set_run_id(run_id: str) -> None:
    CONTEXT.run_id = run_id


@contextmanager
def naming_job(name: str | None) -> Iterator[None]:
    """Within the block, every log line of this thread (and of the threads it starts, which
    copy its context) names the job."""
    token = _JOB.set(name)
    try:
        yield
    finally:
        _JOB.reset(token)


def current_job() -> str | None:
    return _JOB.get()
