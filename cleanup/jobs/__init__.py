"""Job files (TOML): the same cleanup run on a schedule, each spreadsheet once.

schema      the keys, their checks, load_job_file() -> JobFile, the JSON Schema
credentials resolve_run_options(): the run options with the credentials the job file names
inbox       finding the input files (inbox folder or glob) and naming their reports
state       the state file: which contents were processed
process     run_job_file(): each file run, reported and archived
probe       check_job_file(): `check-job`'s checks and its question to the portal
"""
