"""Undo a run: add back, with Reaction.add, every reaction its report shows `removed`.

An undo is a run of the report's `removed` rows (each keeping its `row` number) with the
ADD action: the same credentials, batching, fallback, pacing, retries, journal, lock and
exit codes as `run`, through `run_file`. Its own report (`<report>.undo.csv` by default)
has a line per removed row: `restored`, `failed` or `skipped`.

- `--rows 12,40-55` restores only those rows.
- `--only-error CODE,...` sends again the rows whose restore failed with one of those
  codes in the undo report (after fixing the cause); the undo report keeps its other
  lines and gets these rows' new ones, as a `--resume` would.
- An undo report that is already there is not overwritten: a second undo of the same
  report is refused (exit 2) unless it continues that one (--resume, --only-error).
- The report being undone is locked for the undo's duration: a run still writing it is
  refused (exit 4) rather than undone half-way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cleanup.clock import Clock
from cleanup.errors import ConfigError
from cleanup.inputs.select import RowRanges, split_values
from cleanup.outputs.files import PARTIAL, sidecar
from cleanup.outputs.report import REPORT_FORMATS, iter_records, read_report, report_format
from cleanup.outputs.summary import summary_path
from cleanup.results import UNDO_STATUSES, RunSummary, Status
from cleanup.run.actions import ADD
from cleanup.run.config import RunConfig
from cleanup.run.portals import PortalPacing
from cleanup.run.progress import ProgressCallback
from cleanup.run.runner import StopSignal, lock_report, open_input, run_file

UNDO_SUFFIX = ".undo.csv"


def default_undo_report(report: Path) -> Path:
    """`data.report.csv` -> `data.report.undo.csv`, next to it (whatever the report's format)."""
    name = report.name
    for ext in (f".{fmt}" for fmt in REPORT_FORMATS):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return report.with_name(name + UNDO_SUFFIX)


@dataclass
class Undo:
    """An undo ready to send: the run it is, and how many reactions it would add back."""

    undone: Path  # the report being undone (the undo's input)
    config: RunConfig  # input: the undone report; report: the undo report
    to_restore: int  # rows it would send now (0: nothing to restore)
    warnings: list[str] = field(default_factory=list)

    @property
    def nothing(self) -> str:
        """Why there is nothing to restore, when there is not."""
        cfg = self.config
        if cfg.redo_rows or (cfg.rows and not cfg.rows[-1].spans):
            return f"{cfg.report_path} has no row left that failed with those codes"
        if cfg.rows or cfg.resume:
            return f"no removed row of {self.undone} is left to restore among those chosen"
        return f"{self.undone} shows no removed row"


@contextmanager
def prepare_undo(
    options: RunConfig, *, rows: str | None = None, only_error: list[str] | None = None
) -> Iterator[Undo]:
    """`options` are run's, with `input` the report to undo and `report` the undo report
    (None: the default). Holds the undone report's lock while the block runs (LockedError
    if a run is writing it). Raises ConfigError / InputError for what is wrong."""
    report = options.input
    report_format(report)  # a report of reaction-cleanup: .csv, .jsonl or .parquet
    lock = lock_report(report)
    try:
        yield _plan(options, rows, split_values(only_error or []))
    finally:
        lock.release()


def undo_file(
    undo: Undo,
    *,
    stop: StopSignal | None = None,
    clock: Clock | None = None,
    on_progress: ProgressCallback | None = None,
    pacing: PortalPacing | None = None,
) -> RunSummary:
    """Send the adds (or, with dry_run, count them and estimate the time). `pacing`: the
    portal's bucket, when the caller keeps it (for the chat notification after the undo)."""
    return run_file(
        undo.config,
        stop=stop,
        clock=clock,
        on_progress=on_progress,
        action=ADD,
        pacing=pacing,
        rows_to_send=undo.to_restore,
    )


def _plan(options: RunConfig, rows: str | None, only_error: list[str]) -> Undo:
    undone = options.input
    undo_report = options.report or default_undo_report(undone)
    if not (options.resume or only_error or options.dry_run):
        _refuse_a_second_undo(undone, undo_report)
    chosen: tuple[RowRanges, ...] = ()
    if rows is not None:
        chosen += (RowRanges.parse(rows),)
    redo_rows: frozenset[int] = frozenset()
    if only_error:
        redo_rows = _failed_with(undo_report, only_error)
        chosen += (RowRanges.of(redo_rows),)
    config = options.model_copy(
        update={
            "report": undo_report,
            "only": [Status.REMOVED.value],
            "only_error": [],
            "rows": chosen,
            "redo_rows": redo_rows,
            # The portal took each of these codes when the run removed it.
            "allow_unknown_reactions": True,
            "resume": options.resume or bool(only_error),
        }
    )
    config.check()
    return Undo(undone, config, _to_restore(config), _warnings(undone))


def _refuse_a_second_undo(report: Path, undo_report: Path) -> None:
    """An undo report is already there: `report` was undone before. Sending every add again
    would overwrite that record, and an add may replace a reaction the bot has put on the
    message since (one per bot and message): say what to do instead (ConfigError, exit 2)."""
    if not undo_report.exists() and not sidecar(undo_report, ".partial.jsonl").exists():
        return
    counts = Counter(str(rec.get("status")) for rec in iter_records(undo_report))
    done = ", ".join(f"{counts[s.value]} {s.value}" for s in UNDO_STATUSES if counts[s.value])
    raise ConfigError(
        f"{report} was undone before, into {undo_report} ({done or 'no line yet'}):"
        " --resume finishes that undo without sending what it settled again, --only-error"
        " CODE sends its failed restores again; to undo from scratch, delete that report or"
        " give another --report"
    )


def _failed_with(undo_report: Path, codes: list[str]) -> frozenset[int]:
    """Rows whose restore failed with one of `codes` in the undo report."""
    if not undo_report.exists() and not sidecar(undo_report, PARTIAL).exists():
        raise ConfigError(
            f"--only-error sends again the rows whose restore failed in {undo_report}, which"
            " does not exist; run undo without it first (or give that undo's --report)"
        )
    wanted = {c.casefold() for c in codes}
    return frozenset(
        int(rec["row"])
        for rec in iter_records(undo_report)
        if rec.get("status") == Status.FAILED.value
        and str(rec.get("error") or "").casefold() in wanted
    )


def _to_restore(config: RunConfig) -> int:
    """The removed rows chosen, less those the undo report already settled (--resume)."""
    table = open_input(config)
    done = set(read_report(config.report_path)) - config.redo_rows if config.resume else set()
    count = 0
    for chunk in table.chunks():
        numbers = chunk.row_numbers()
        count += len(numbers) if not done else sum(1 for r in numbers.tolist() if r not in done)
    return count


def _warnings(report: Path) -> list[str]:
    if summary_path(report).exists():
        return []
    return [
        f"{report} has no summary beside it: its run did not finish. Rows it sent without"
        " recording the answer may have been removed and are not restored; finish that run"
        " with --resume first to undo them too"
    ]


__all__ = ["UNDO_SUFFIX", "Undo", "default_undo_report", "prepare_undo", "undo_file"]
