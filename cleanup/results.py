"""Small explicit result values: a row's final status and the run's summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from cleanup.exits import EXIT_OK, EXIT_ROWS_FAILED, run_exit_code, signal_exit_code


class Status(StrEnum):
    """The report's documented statuses, and nothing else."""

    REMOVED = "removed"
    RESTORED = "restored"  # an undo added the reaction back (or found it there again)
    FAILED = "failed"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"


# Statuses a --resume keeps; a skipped row is still to do.
FINAL_STATUSES = frozenset(
    {Status.REMOVED, Status.RESTORED, Status.FAILED, Status.INVALID, Status.DUPLICATE}
)
# The statuses each kind of report uses, in the order summaries and pages list them.
RUN_STATUSES = (Status.REMOVED, Status.FAILED, Status.INVALID, Status.DUPLICATE, Status.SKIPPED)
UNDO_STATUSES = (Status.RESTORED, Status.FAILED, Status.SKIPPED)
# Rows a request reached the portal for and that have their answer.
SENT_STATUSES = (Status.REMOVED, Status.RESTORED, Status.FAILED)

# Marks a failure where the run stopped trying (not the portal's answer about the row), so
# that --resume sends the row again. Part of the report's text, hence kept stable.
GAVE_UP = "(gave up"


def gave_up(description: str, why: str) -> str:
    """The failure text of a row the run stopped trying, e.g. `... (gave up after 3 attempts)`."""
    return f"{description} {GAVE_UP}{why})"


REPORT_COLUMNS = (
    "row",
    "botId",
    "messageId",
    "reaction",
    "status",
    "error",
    "error_description",
    "attempts",
)


@dataclass(frozen=True, slots=True)
class RowResult:
    """One line of the report. botId/messageId/reaction are the input's text as given."""

    row: int
    bot_id: str
    message_id: str
    reaction: str
    status: Status
    error: str = ""
    error_description: str = ""
    attempts: int = 0

    def as_record(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "botId": self.bot_id,
            "messageId": self.message_id,
            "reaction": self.reaction,
            "status": str(self.status),
            "error": self.error,
            "error_description": self.error_description,
            "attempts": self.attempts,
        }


@dataclass
class RunSummary:
    """What a run did. The core fills it in; the caller decides what is an error."""

    run_id: str
    input: str
    report: str | None
    mode: str
    auth_mode: str
    dry_run: bool = False
    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    started_at: float = 0.0
    elapsed_s: float = 0.0
    requests: int = 0
    batch_requests: int = 0
    single_requests: int = 0
    limit_refusals: int = 0
    operating_refusals: int = 0
    limit_wait_s: float = 0.0
    # What a client keeping the bucket exactly full would need (throttle.ideal_seconds).
    ideal_s: float = 0.0
    retries: int = 0
    token_refreshes: int = 0
    fallback_to_single: str | None = None
    rate: float = 0.0
    burst: int = 0
    concurrency: int = 0
    batch_size: int = 0
    to_send: int = 0  # dry run: valid rows that a run would send
    planned_calls: int = 0
    estimated_s: float = 0.0
    aborted: str | None = None
    interrupted: str | None = None
    # A good neighbour (issue 18): the part of the portal's rate and burst the run used, the
    # time bound it had (seconds; None: none) and, when that bound ended it with rows left
    # (exit 75), why ("--max-duration 2h", "the window 22:00-06:00 (UTC) closed").
    share: float = 1.0
    time_bound_s: float | None = None
    paused: str | None = None
    # What the run expected before it sent (cleanup.run.estimate.Estimate.as_dict), and
    # afterwards how far off it was.
    estimate: dict[str, Any] | None = None
    resumed_rows: int = 0
    # A re-run of a report's rows (--only / --only-error): that report, and how many of
    # its rows were not chosen (they get no line in this run's report).
    source_report: str | None = None
    left_out: int = 0
    # An undo: the report whose removed rows it adds back (its statuses are UNDO_STATUSES).
    undo_of: str | None = None
    timeline: list[dict[str, float]] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)  # dry run: the first invalid rows
    exit_code: int = EXIT_OK

    def add(self, result: RowResult) -> None:
        self.rows += 1
        self.by_status[str(result.status)] += 1
        if result.error:
            self.by_error[result.error] += 1

    @property
    def statuses(self) -> tuple[Status, ...]:
        return UNDO_STATUSES if self.undo_of is not None else RUN_STATUSES

    @property
    def sent(self) -> int:
        return sum(self.by_status[s] for s in SENT_STATUSES)

    @property
    def rows_per_s(self) -> float:
        done = self.sent
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ideal_rows_per_s(self) -> float:
        """What a client keeping the portal's bucket exactly full would reach on this run:
        the burst at the start counts, so a short run may beat rate x rows per request."""
        done = self.sent
        if self.ideal_s > 0 and done:
            return done / self.ideal_s
        per_request = self.batch_size if self.mode == "batch" else 1
        return self.rate * per_request

    @property
    def rows_left(self) -> int:
        """Rows still to do by a later run (--resume, or the job file's next run)."""
        return self.by_status[Status.SKIPPED]

    @property
    def rows_not_done(self) -> int:
        return sum(self.by_status[s] for s in (Status.FAILED, Status.INVALID, Status.SKIPPED))

    def conclude(
        self,
        *,
        stopped_by: str | None = None,
        aborted_code: int | None = None,
        failed_rows_code: int = EXIT_ROWS_FAILED,
    ) -> None:
        """Set `interrupted` and `exit_code` from how the run ended: the one place a run's
        exit code is decided (`cleanup.exits.run_exit_code`)."""
        if signal_exit_code(stopped_by) is not None:
            self.interrupted = stopped_by
        self.exit_code = run_exit_code(
            stopped_by=stopped_by,
            aborted_code=aborted_code,
            rows_not_done=self.rows_not_done,
            failed_rows_code=failed_rows_code,
            rows_skipped=self.by_status[Status.SKIPPED],
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["by_status"] = {s.value: self.by_status.get(s.value, 0) for s in self.statuses}
        data["by_error"] = dict(self.by_error.most_common())
        data["rows_per_s"] = round(self.rows_per_s, 3)
        data["ideal_rows_per_s"] = round(self.ideal_rows_per_s, 3)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        data["limit_wait_s"] = round(self.limit_wait_s, 3)
        data["ideal_s"] = round(self.ideal_s, 3)
        data["rows_left"] = self.rows_left
        return data
