"""reaction-cleanup: remove chat-bot reactions listed in a spreadsheet from a Bitrix24 portal.

The core is callable without click:

    from cleanup import RunConfig, run_file
    summary = run_file(RunConfig(input=Path("rows.csv"), webhook=..., bot_tokens=Path("tokens.json")))
"""

from cleanup.errors import CleanupError
from cleanup.results import RowResult, RunSummary, Status
from cleanup.run.config import RunConfig
from cleanup.run.progress import ProgressUpdate
from cleanup.run.runner import StopSignal, run_file
from cleanup.version import __version__

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
