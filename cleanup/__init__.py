"""reaction-cleanup: remove chat-bot reactions listed in a spreadsheet from a Bitrix24 portal.

The core is callable without click:

    from cleanup import RunConfig, run_file
    summary = run_file(RunConfig(input=Path("rows.csv"), webhook=..., bot_tokens=Path("tokens.json")))

The names below load when first used (PEP 562), so that `reaction-cleanup --help` starts
without pydantic, pyarrow or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cleanup.version import __version__

if TYPE_CHECKING:
    from cleanup.errors import CleanupError
    from cleanup.results import RowResult, RunSummary, Status
    from cleanup.run.config import RunConfig
    from cleanup.run.progress import ProgressUpdate
    from cleanup.run.runner import StopSignal, run_file

_HOMES = {
    "CleanupError": "cleanup.errors",
    "ProgressUpdate": "cleanup.run.progress",
    "RowResult": "cleanup.results",
    "RunConfig": "cleanup.run.config",
    "RunSummary": "cleanup.results",
    "Status": "cleanup.results",
    "StopSignal": "cleanup.run.runner",
    "run_file": "cleanup.run.runner",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cleanup' has no attribute {name!r}")


__all__ = [
    "CleanupError",
    "ProgressUpdate",
    "RowResult",
    "RunConfig",
    "RunSummary",
    "Status",
    "StopSignal",
    "__version__",
    "run_file",
]
