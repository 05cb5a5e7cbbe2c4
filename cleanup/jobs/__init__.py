"""Job files (TOML): the same cleanup run on a schedule, each spreadsheet once.

schema      the keys, their checks, load_job_file() -> JobFile, the JSON Schema
credentials resolve_run_options(): the run options with the credentials the job file names
inbox       finding the input files (inbox folder or glob) and naming their reports
state       the state file: which contents were processed
process     run_job_file(): each file run, reported and archived
probe       check_job_file(): `check-job`'s checks and its question to the portal
"""

from cleanup.jobs.credentials import resolve_run_options
from cleanup.jobs.inbox import list_sources
from cleanup.jobs.probe import check_job_file
from cleanup.jobs.process import FileOutcome, JobFileResult, run_job_file
from cleanup.jobs.schema import JOB_KEYS, JobFile, job_file_schema, job_keys, load_job_file

__all__ = [
    "JOB_KEYS",
    "FileOutcome",
    "JobFile",
    "JobFileResult",
    "check_job_file",
    "job_file_schema",
    "job_keys",
    "list_sources",
    "load_job_file",
    "resolve_run_options",
    "run_job_file",
]
