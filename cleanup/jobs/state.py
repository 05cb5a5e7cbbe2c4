"""The state file of a job file: which input contents it has processed, in its reports folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cleanup.errors import StateFileError
from cleanup.outputs.files import write_atomic

STATE_VERSION = 1


class JobState:
    """`{sha256: entry}` for every input content the job file's runs have taken.

    An entry is "running" from the moment a file is taken until its report is complete,
    then "done". A "running" entry found by a later run means: resume that report.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.files = {str(k): dict(v) for k, v in data["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            raise StateFileError(
                f"the job's state file {path} is damaged ({exc}); move it away to start "
                "afresh (every file in the inbox would then be processed again)"
            ) from None
        if data.get("version") != STATE_VERSION:
            raise StateFileError(
                f"the job's state file {path} has format {data.get('version')!r}, and this"
                f" reaction-cleanup reads format {STATE_VERSION}; run the job with the version"
                " that wrote it, or move the file away to start afresh (every file in the"
                " inbox would then be processed again)"
            )

    def save(self) -> None:
        data = {"version": STATE_VERSION, "files": self.files}
        write_atomic(self.path, json.dumps(data, indent=1, ensure_ascii=False))
