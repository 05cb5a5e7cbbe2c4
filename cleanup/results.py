"""Small explicit result values: a row's final status and the run's summary.

The one home of: the report's columns (`REPORT_COLUMNS`, `RowResult.as_record`,
`RowResult.from_record`, `RowResult.arrow_schema`), whether a row was given up
(`RowResult.given_up`) and what --resume sends again (`Settled.retry_on_resume`), which statuses are not done
(`NOT_DONE_STATUSES`), how a run ended (`RunSummary.state`, `RunSummary.complete`) and
the summary's fields (`RunSummary`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

from pydantic import BaseModel, ConfigDict, PlainSerializer, computed_field

from cleanup.exits import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_ROWS_FAILED,
    finished,
    run_exit_code,
    signal_exit_code,
    state_word,
)

if TYPE_CHECKING:
    import pyarrow as pa


class Status(StrEnum):
    """The report's documented statuses, and nothing else."""

    REMOVED = "removed"
    # A first attempt found the reaction not there (REACTION_NOT_FOUND for a documented
    # code): the state the row asked for; nothing to remove. Not a failure.
    ABSENT = "absent"
    RESTORED = "restored"  # an undo added the reaction back (or found it there again)
    FAILED = "failed"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    TO_SEND = "to_send"  # only in a dry run's report: a valid row a run would send


# Statuses a --resume keeps; a skipped row is still to do.
FINAL_STATUSES = frozenset(
    {
        Status.REMOVED,
        Status.ABSENT,
        Status.RESTORED,
        Status.FAILED,
        Status.INVALID,
        Status.DUPLICATE,
    }
)
# The statuses each kind of report uses, in the order summaries and pages list them.
RUN_STATUSES = (
    Status.REMOVED,
    Status.ABSENT,
    Status.FAILED,
    Status.INVALID,
    Status.DUPLICATE,
    Status.SKIPPED,
)
UNDO_STATUSES = (Status.RESTORED, Status.FAILED, Status.SKIPPED)
DRY_RUN_STATUSES = (Status.TO_SEND, Status.INVALID, Status.DUPLICATE)


def statuses_of(*, undo: bool) -> tuple[Status, ...]:
    """The statuses a report of this kind uses, in order."""
    return UNDO_STATUSES if undo else RUN_STATUSES


# Rows a request reached the portal for and that have their answer.
SENT_STATUSES = (Status.REMOVED, Status.ABSENT, Status.RESTORED, Status.FAILED)
# Rows a run did not get done: a run with any ends "failed" (exit 1, unless
# failed_rows_exit_code = 0), and the pages list them by cause.
NOT_DONE_STATUSES = (Status.FAILED, Status.INVALID, Status.SKIPPED)


def rows_not_done(by_status: Mapping[str, int]) -> int:
    """How many rows have a status in NOT_DONE_STATUSES."""
    return sum(int(by_status.get(s.value, 0)) for s in NOT_DONE_STATUSES)


# The report's text for a failure where the run stopped trying (not the portal's answer
# about the row), for people: the code decides from `RowResult.given_up`. Kept stable, as
# the journal of an earlier version (without the field) is read by it (`legacy_given_up`).
GAVE_UP = "(gave up"


def gave_up(description: str, why: str) -> str:
    """The failure text of a row the run stopped trying, e.g. `... (gave up after 3 attempts)`."""
    return f"{description} {GAVE_UP}{why})"


def legacy_given_up(description: str) -> bool:
    """Whether a result recorded by an earlier version, which had no `given_up` field, was
    given up: it said so in its description."""
    return GAVE_UP in description


# The error of a failure that was a bug in reaction-cleanup, not the portal's answer.
CLIENT_ERROR = "CLIENT_ERROR"


# --------------------------------------------------------------------------- a row

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
_INT_COLUMNS = frozenset({"row", "attempts"})


class Settled(NamedTuple):
    """A row's final result without its input values: what the journal keeps of it."""

    status: Status
    error: str = ""
    error_description: str = ""
    attempts: int = 0
    given_up: bool = False

    @property
    def retry_on_resume(self) -> bool:
        """Whether --resume sends the row again instead of keeping its line: a skipped row,
        or a failure that was not the portal's answer about the row (the run gave up
        retrying: the portal was unreachable, kept failing or kept refusing for its
        limits; or a bug in reaction-cleanup)."""
        if self.status is Status.SKIPPED:
            return True
        return self.status is Status.FAILED and (self.given_up or self.error == CLIENT_ERROR)


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
    # The run stopped trying (not the portal's answer): --resume sends it again. Not a
    # report column: the journal keeps it (`settled`), the description says it for people.
    given_up: bool = False

    @property
    def settled(self) -> Settled:
        return Settled(
            self.status, self.error, self.error_description, self.attempts, self.given_up
        )

    @staticmethod
    def arrow_schema() -> pa.Schema:
        """The Arrow schema of a Parquet report: REPORT_COLUMNS, whole numbers as int64."""
        import pyarrow as pa

        return pa.schema(
            [(c, pa.int64() if c in _INT_COLUMNS else pa.string()) for c in REPORT_COLUMNS]
        )

    def as_record(self) -> dict[str, Any]:
        """The report's line: REPORT_COLUMNS, in their order."""
        values = (
            self.row,
            self.bot_id,
            self.message_id,
            self.reaction,
            str(self.status),
            self.error,
            self.error_description,
            self.attempts,
        )
        return dict(zip(REPORT_COLUMNS, values, strict=True))

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], *, given_up: bool = False) -> RowResult:
        """A report's line read back (any format: CSV gives text); `given_up` is not in
        it (the journal has it). Raises KeyError, ValueError or TypeError for a line that
        is not one."""
        return cls(
            int(rec["row"]),
            str(rec["botId"] or ""),
            str(rec["messageId"] or ""),
            str(rec["reaction"] or ""),
            Status(str(rec["status"])),
            str(rec.get("error") or ""),
            str(rec.get("error_description") or ""),
            int(rec.get("attempts") or 0),
            given_up,
        )


# --------------------------------------------------------------------------- a run

# How a run ended, in `cleanup.exits.state_word`'s words (`RunSummary.state`): the two a
# page explains beyond its exit code.
ENDED_ABORTED = state_word(EXIT_ABORTED)
ENDED_INTERRUPTED = state_word(EXIT_INTERRUPTED)


@dataclass
class Tally:
    """The counts a run keeps while it runs (the runner's thread only); `RunSummary` is
    built from it once, at the end."""

    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    resumed_rows: int = 0
    resumed_sent: int = 0  # of resumed_rows, those an earlier run sent (SENT_STATUSES)
    given_up: int = 0

    def resumed(self, result: RowResult) -> None:
        """A row whose result an earlier run of the report got (--resume)."""
        self.resumed_rows += 1
        self.resumed_sent += result.status in SENT_STATUSES

    def add(self, result: RowResult) -> None:
        self.rows += 1
        self.by_status[str(result.status)] += 1
        if result.error:
            self.by_error[result.error] += 1
        self.given_up += result.given_up

    @property
    def rows_not_done(self) -> int:
        return rows_not_done(self.by_status)

    @property
    def sent(self) -> int:
        return sum(self.by_status[s] for s in SENT_STATUSES)


def _round3(value: float) -> float:
    return round(value, 3)


# Seconds and rates: exact in memory, to the millisecond in summary.json.
Rounded = Annotated[float, PlainSerializer(_round3, return_type=float)]


class TimeBucket(BaseModel):
    """Requests in one time bucket of a run (the HTML page's chart)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    t: float  # seconds from the run's start
    width: float
    requests: int
    refused: int = 0  # 429 and 503 answers
    latency: float = 0.0  # mean seconds per request


class Notification(BaseModel):
    """What became of a run's chat notification (`cleanup.outputs.notify`). `status`: `sent`,
    `failed`, or `not_needed` (--notify-when problems and the run ended with 0).
    `attachment`: `sent`, `failed`, `too_large` (the message names the file's path instead),
    `withheld` (it looked like it held a secret), `missing`, `not_sent` (the message
    failed), or `none`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    dialog: str  # the chat it went to: `chat123`, or a user id
    bot_id: int  # the bot that posted
    status: str
    error: str = ""  # the portal's code (or the problem) when it failed
    message_id: int | None = None  # the posted message's id
    attachment: str = "none"
    attachment_name: str = ""  # the attached (or meant) file's name
    attachment_error: str = ""  # the portal's code when the upload failed


class RunSummary(BaseModel):
    """What a run did: built once when it ends, frozen; `R.summary.json` is this model
    (`model_dump_json`) and is read back by it (`read_summary`). The core reports; the
    caller decides what is an error.

    To add a field: declare it here, with a default (a summary.json written before it
    existed must still read), and give it its value where the run builds its summary
    (`cleanup.run.runner`: `_Run._finish_summary`, `_dry_run`). summary.json, the JSON log
    event and the pages then have it. A figure derived from others is a property here (a
    `computed_field` if summary.json shows it), never a second stored copy.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str = ""  # the run's id: --run-id, else 12 random hex digits
    input: str = ""  # the input file's path (for an undo: the report it undoes)
    report: str | None = None  # the report's path; null for a dry run without --report
    mode: str = ""  # how rows were sent: `batch`, or `single` (one call per row)
    auth_mode: str = ""  # `webhook` or `oauth` (`none`: a dry run without credentials)
    dry_run: bool = False  # whether this was a dry run: nothing was sent
    rows: int = 0  # the input's data rows the run accounted for
    # Counts by status: every status of the run's kind (`statuses`), in their order.
    by_status: Mapping[str, int] = {}
    by_error: Mapping[str, int] = {}  # most frequent first
    started_at: float = 0.0  # when the run started, in seconds since the Unix epoch
    elapsed_s: Rounded = 0.0  # how long the run took, in seconds
    requests: int = 0  # HTTP requests sent to the portal (batch and single)
    batch_requests: int = 0  # of them, `batch` calls (up to 50 rows each)
    single_requests: int = 0  # of them, calls for one row
    limit_refusals: int = 0  # requests the portal refused for its rate limit
    operating_refusals: int = 0  # requests refused for the operating-time limit
    limit_wait_s: Rounded = 0.0  # seconds the run waited to keep within the limits
    # What a client keeping the bucket exactly full would need (throttle.ideal_seconds).
    ideal_s: Rounded = 0.0
    retries: int = 0  # requests sent again (a retriable answer, a lost reply)
    token_refreshes: int = 0  # OAuth access tokens renewed during the run
    # Why the run went from batch to one call per row (the portal's error), if it did.
    fallback_to_single: str | None = None
    rate: float = 0.0  # the requests per second the run started with
    burst: int = 0  # the requests it could send at once before pacing
    concurrency: int = 0  # requests in flight at the same time, at most
    batch_size: int = 0  # rows per batch call
    to_send: int = 0  # dry run: valid rows that a run would send
    planned_calls: int = 0  # dry run: the calls a run would make
    estimated_s: float = 0.0  # dry run: the seconds those calls would take at `rate`
    aborted: str | None = None  # why the portal refused the run as a whole
    interrupted: str | None = None  # the signal that stopped it
    # The part of the portal's request rate and burst the run used (--share; 1: all).
    share: float = 1.0
    # Seconds the run was given by --max-duration or a job file's window (None: no bound).
    time_bound_s: float | None = None
    # Why the time bound ended it with rows left (exit 75): "--max-duration 2h", "the window
    # 22:00-06:00 (UTC) closed"; None when it did not.
    paused: str | None = None
    # What the run said before it sent (seconds, calls, rows_this_run, runs_needed, said),
    # and how far off it was (actual_s, time_off; for a run its bound cut, rows_off).
    estimate: Mapping[str, Any] | None = None
    resumed_rows: int = 0  # --resume: rows whose line the report already had
    resumed_sent: int = 0  # of those, rows the earlier run sent (not this run's work)
    # Failed rows the run stopped trying (not the portal's answer): --resume sends them.
    given_up: int = 0
    # A re-run of a report's rows (--only / --only-error): that report.
    source_report: str | None = None
    # A re-run: that report's rows not chosen (they get no line in this run's report).
    left_out: int = 0
    # An undo: the report whose removed rows it adds back (its statuses are UNDO_STATUSES).
    undo_of: str | None = None
    # run-job's retry run of a file (1, 2 ...): it re-sent the rows that failed transiently.
    retry_run: int = 0
    # Seconds the portal was away (an outage waited out, cleanup.portal.outage).
    outage_s: float = 0.0
    # The run ended while the portal was still away (not waited out): an outage longer than
    # --max-wait aborts the run, or a signal or time bound ended it meanwhile.
    outage_open: bool = False
    # run-job: rows that failed for a transient reason and that the next run re-sends (the
    # file waits in the inbox for that retry run); 0: the file does not wait for one.
    waits_retry: int = 0
    # Requests, refusals and latency over the run, in time buckets (the page's chart).
    timeline: tuple[TimeBucket, ...] = ()
    examples: tuple[str, ...] = ()  # dry run: the first invalid rows
    exit_code: int = 0  # the exit code the run ended with
    # The settings the run ran with (`RunConfig.settings()`: no secrets).
    settings: Mapping[str, Any] = {}
    # What became of the run's chat notification (`Notification`), set after the run by
    # `notify_run` (a copy of the summary); null when none was asked for. It never changes
    # the exit code.
    notification: Notification | None = None

    @property
    def statuses(self) -> tuple[Status, ...]:
        return statuses_of(undo=self.undo_of is not None)

    @property
    def done(self) -> Status:
        """The status of a row this kind of run got done: removed, or restored (an undo)."""
        return Status.RESTORED if self.undo_of is not None else Status.REMOVED

    def count(self, status: Status) -> int:
        return int(self.by_status.get(status.value, 0))

    @property
    def sent(self) -> int:
        return sum(self.count(s) for s in SENT_STATUSES)

    @property
    def sent_this_run(self) -> int:
        """Rows this run sent: `sent` less those kept from an earlier run (--resume)."""
        return self.sent - self.resumed_sent

    @property
    def rows_not_done(self) -> int:
        return rows_not_done(self.by_status)

    @property
    def share_text(self) -> str:
        """What share of the portal's limit the run used, in words; "" for all of it."""
        if self.share >= 1:
            return ""
        return (
            f"share {self.share:g}: at most {self.rate * self.share:.3g} req/s and a burst of"
            f" {max(1, int(self.burst * self.share))} of the portal's {self.rate:g} req/s and"
            f" {self.burst}"
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rows_left(self) -> int:
        """Rows a later run still has to do (--resume, or the job file's next run)."""
        return self.count(Status.SKIPPED)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rows_per_s(self) -> Rounded:
        """Rows this run sent per second (removed, absent, failed or restored: the portal's
        answer); rows kept from an earlier run (--resume) are not this run's work."""
        return self.sent_this_run / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ideal_rows_per_s(self) -> Rounded:
        """What a client keeping the portal's bucket exactly full would reach on this run:
        the burst at the start counts, so a short run may beat rate x rows per request."""
        done = self.sent_this_run
        if self.ideal_s > 0 and done:
            return done / self.ideal_s
        per_request = self.batch_size if self.mode == "batch" else 1
        return self.rate * per_request

    @property
    def state(self) -> str:
        """How the run ended, in one word (`cleanup.exits.state_word`): `ok`, `failed`
        (rows not done, whatever failed_rows_exit_code made the code), `aborted` (the
        portal refused the run as a whole), `interrupted` (a signal), ..."""
        if self.aborted:  # an abort for a configuration problem exits 2, still an abort
            return ENDED_ABORTED
        return state_word(self.exit_code, rows_not_done=self.rows_not_done)

    @property
    def finished(self) -> bool:
        """Whether the run got to its end: every row has its status, some perhaps not done
        (`cleanup.exits.finished`); not aborted, not stopped by a signal."""
        return finished(self.exit_code)

    @property
    def complete(self) -> bool:
        """Whether its report has a final line for every row: not aborted, not interrupted,
        no row skipped. A job file's input is archived only then; else --resume continues."""
        return not self.aborted and not self.interrupted and self.count(Status.SKIPPED) == 0

    @property
    def label(self) -> str:
        """The run's name in pages and metrics (the job file's name), if it has one."""
        return str(self.settings.get("label") or "")

    def title(self, label: str = "") -> str:
        """The run's title in its page and its chat message: `reaction-cleanup: LABEL – undo
        of INPUT`, the label (`label`, else the summary's) and the undo's words when there."""
        label = label or self.label
        named = f"{label} – " if label else ""
        undo = "undo of " if self.undo_of else ""
        return f"reaction-cleanup: {named}{undo}{PurePath(self.input).name}"


def concluded(
    *,
    stopped_by: str | None,
    aborted_code: int | None,
    rows_not_done: int,
    failed_rows_code: int = EXIT_ROWS_FAILED,
    rows_skipped: int = 0,
) -> tuple[str | None, int]:
    """(`interrupted`, `exit_code`) from how a run ended: the one place a run's exit code is
    decided (`cleanup.exits.run_exit_code`)."""
    interrupted = stopped_by if signal_exit_code(stopped_by) is not None else None
    code = run_exit_code(
        stopped_by=stopped_by,
        aborted_code=aborted_code,
        rows_not_done=rows_not_done,
        failed_rows_code=failed_rows_code,
        rows_skipped=rows_skipped,
    )
    return interrupted, code


def counts_by_status(by_status: Mapping[str, int], statuses: tuple[Status, ...]) -> dict[str, int]:
    """Every status of a run's kind, in order, zero where none."""
    return {s.value: int(by_status.get(s.value, 0)) for s in statuses}


def read_summary(text: str) -> RunSummary:
    """A summary.json's text as the model (a file of an earlier version too: every field
    has a default, and keys it does not know are ignored). Raises pydantic's
    ValidationError (a ValueError) for text that is not one."""
    return RunSummary.model_validate_json(text)
