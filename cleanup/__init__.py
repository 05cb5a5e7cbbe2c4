"""reaction-cleanup: remove chat-bot reactions listed in a spreadsheet from a Bitrix24 portal.

The core is callable without click:

    from cleanup import JobConfig, run_job
    summary = run_job(JobConfig(input=Path("rows.csv"), webhook=..., bot_tokens=Path("tokens.json")))
"""

__version__ = "0.1.0"

from .config import JobConfig
from .errors import CleanupError
from .results import RowResult, RunSummary, Status
from .runner import StopSignal, run_job

__all__ = [
    "CleanupError",
    "JobConfig",
    "RowResult",
    "RunSummary",
    "Status",
    "StopSignal",
    "run_job",
]
