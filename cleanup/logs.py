"""Logging for people and for log collectors: text or JSON, one event per line, run id
on each, secrets masked before any handler sees a record."""

from __future__ import annotations

import json
import logging
import sys
import time

from .redact import RedactingFilter

LOGGER = "cleanup"


class _Context(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.run_id = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "run_id": getattr(record, "run_id", "-"),
            "message": record.getMessage(),
        }
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
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(run_id)s] %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    if verbose:
        # Request lines from urllib3 (URLs with webhook codes) pass through the same mask.
        for name in ("urllib3",):
            lib = logging.getLogger(name)
            lib.handlers = [handler]
            lib.setLevel(logging.DEBUG)
            lib.propagate = False


def set_run_id(run_id: str) -> None:
    CONTEXT.run_id = run_id
