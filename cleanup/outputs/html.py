"""The review report: one self-contained HTML page per run, for a person to read.

Totals by status and by error code, the rows that did not go through grouped by cause
with what to do about each, requests and limit refusals over time as an inline SVG chart,
and the run's settings. Inline CSS and SVG only: no script, no network (a Content Security
Policy in the page forbids both). The page is a jinja2 template (templates/run.html.j2)
with autoescaping on: row values come from spreadsheets, and a `<script>` typed into a
reaction cell must stay text. This module prepares the figures; the template lays them out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from cleanup.outputs.commands import commands_note, next_commands
from cleanup.outputs.files import write_atomic
from cleanup.outputs.report import iter_records
from cleanup.redact import redact
from cleanup.results import (
    ENDED_ABORTED,
    ENDED_INTERRUPTED,
    NOT_DONE_STATUSES,
    REPORT_COLUMNS,
    RunSummary,
    Status,
    TimeBucket,
)
from cleanup.version import __version__

ROWS_PER_CAUSE = 200  # rows listed under each cause; the report file has them all
_LISTED = tuple(s.value for s in NOT_DONE_STATUSES)  # the rows listed by cause
_STATUS_TEXT = {
    "removed": "removed (or found already absent on a retry)",
    "absent": "not there: nothing to remove",
    "restored": "added back (or found there again: REACTION_ALREADY_SET)",
    "failed": "the portal refused or the run gave up",
    "invalid": "not sent: the row is not valid",
    "duplicate": "not sent: the same row appears earlier",
    "skipped": "not sent: the run stopped early",
}

# What each cause means and what to do about it: (meaning, what to do).
_NETWORK = (
    "The portal gave no usable answer, even after the retries (network error, timeout, 5xx or a proxy page).",
    "Put these rows in a new spreadsheet and run them again later. A reaction that did go meanwhile is then reported removed.",
)
ADVICE: dict[str, tuple[str, str]] = {
    "ACCESS_DENIED": (
        "The bot is not a member of the chat that holds the message.",
        "Add the bot to that chat and run these rows again, or drop the rows.",
    ),
    "REACTION_NOT_FOUND": (
        "The portal found no such reaction of the bot on that message. A row ends failed so only in two cases: the run used --absent-as-failed, and the reaction was already removed or never set (without that option such a row is absent); or the reaction is not a documented code (sent with --allow-unknown-reactions), which the portal may not know at all.",
        "With --absent-as-failed: nothing to do if the reaction is meant to be gone; if many rows have it, check the message ids. With an undocumented code: check the code against the documented ones (an emoji such as \N{THUMBS UP SIGN} is not a code; like is), correct the rows and run them again.",
    ),
    "BOT_OWNERSHIP_ERROR": (
        "The botToken does not match this bot, or the bot belongs to another application.",
        "Correct the bot's token in the bot tokens file (webhook mode), or run with the credentials of the application that registered the bot.",
    ),
    "BOT_NOT_FOUND": (
        "There is no bot with this id on the portal.",
        "Check the botId column; the bot may have been deleted.",
    ),
    "BOT_TOKEN_NOT_SPECIFIED": (
        "The portal received the call without a botToken.",
        "Add the bot's token to the bot tokens file.",
    ),
    "BOT_ID_REQUIRED": ("The portal did not accept the botId.", "Check the botId column."),
    "NO_BOT_TOKEN": (
        "The bot tokens file has no token for this bot, so its rows were not sent.",
        'Add "botId": "token" for this bot to the bot tokens file, then run these rows again.',
    ),
    "INVALID_BOT_ID": (
        "The botId cell is not a positive whole number.",
        "Correct the cell (see the description) and run the corrected rows.",
    ),
    "INVALID_MESSAGE_ID": (
        "The messageId cell is not a positive whole number.",
        "Correct the cell (see the description) and run the corrected rows.",
    ),
    "INVALID_REACTION": (
        "The reaction is empty, not a documented reaction code, or unsafe to send.",
        "Correct the spelling (codes are camelCase, such as redHeart), or set allow_unknown_reactions if the portal knows newer codes.",
    ),
    "INVALID_ROW": (
        "The row could not be read as written (for example, more fields than the header).",
        "Correct the row in the spreadsheet.",
    ),
    "MESSAGE_NOT_FOUND": (
        "The portal has no message with this id.",
        "Check the messageId column.",
    ),
    "QUERY_LIMIT_EXCEEDED": (
        "The portal kept refusing for its request-rate limit until max_wait ran out.",
        "Lower rate (or choose the right plan), or raise max_wait, and run these rows again.",
    ),
    "OPERATION_TIME_LIMIT": (
        "The portal's operating-time budget for the method stayed spent until max_wait ran out.",
        "Run these rows again later, or raise max_wait.",
    ),
    "UNEXPECTED_RESULT": (
        "The portal answered something other than success.",
        "Check these messages in the portal by hand; the description shows the answer.",
    ),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (
        "The portal refused the method inside a batch, and single calls were not possible.",
        'Run these rows again with mode = "single".',
    ),
    "CLIENT_ERROR": (
        "An internal error in reaction-cleanup.",
        "Run these rows again; if it recurs, report it with the log of a --verbose run.",
    ),
    "NETWORK_ERROR": _NETWORK,
    "TIMEOUT": _NETWORK,
    "MISSING_RESULT": _NETWORK,
    "INTERNAL_SERVER_ERROR": _NETWORK,
    "ERROR_UNEXPECTED_ANSWER": _NETWORK,
    "ERROR_CORE": _NETWORK,
    "ERROR_BATCH_TIMEOUT": _NETWORK,
    "PORTAL_UNREACHABLE": _NETWORK,
}
_SKIPPED = (
    "Not sent, because the run stopped early (aborted by the portal, or interrupted).",
    "Run the same input again: the run resumes and sends only these rows (run-job does so by itself on its next run).",
)
_DUPLICATE_ADVICE = (
    "The same row appears earlier in the input; it was sent once.",
    "Nothing to do.",
)
_UNKNOWN = (
    "An error code reaction-cleanup does not know.",
    "See the description; look the code up in the Bitrix24 REST documentation.",
)


def advice(status: str, code: str) -> tuple[str, str]:
    """(meaning, what to do) for rows with this status and error code."""
    if status == "skipped":
        return _SKIPPED
    if status == "duplicate":
        return _DUPLICATE_ADVICE
    if code in ADVICE:
        return ADVICE[code]
    if code.startswith("HTTP_"):
        return _NETWORK
    return _UNKNOWN


@dataclass
class Cause:
    status: str
    code: str
    count: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)


def collect_causes(report: Path, limit: int = ROWS_PER_CAUSE) -> list[Cause]:
    """The report's not-done rows grouped by (status, error), largest group first.

    Streams the report, so a report of millions of rows costs little memory."""
    causes: dict[tuple[str, str], Cause] = {}
    for rec in iter_records(report):
        status = str(rec.get("status") or "")
        if status not in _LISTED:
            continue
        code = str(rec.get("error") or "")
        cause = causes.setdefault((status, code), Cause(status, code))
        cause.count += 1
        if len(cause.rows) < limit:
            cause.rows.append(rec)
    order = {s: i for i, s in enumerate(_LISTED)}
    return sorted(causes.values(), key=lambda c: (order[c.status], -c.count, c.code))


def write_html(
    summary: RunSummary,
    report: Path,
    out: Path,
    *,
    context: Mapping[str, str] | None = None,
) -> Path:
    """Write the review page for a run; `report` is the per-row report whose failed rows
    are listed."""
    page = render_html(summary, collect_causes(report), context=context, report=report)
    write_atomic(out, page)
    return out


# --------------------------------------------------------------------------- rendering


@cache
def environment() -> jinja2.Environment:
    """The templates beside this module, every value escaped unless marked safe."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cleanup.outputs", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests, not the page
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["n"] = _n
    return env


def _n(value: Any) -> str:
    """A count as shown: digits grouped with a thin space, easy to read and to parse back."""
    return f"{int(value or 0):,}".replace(",", "\u2009")


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def render_html(
    summary: RunSummary,
    causes: list[Cause],
    *,
    context: Mapping[str, str] | None = None,
    report: Path | None = None,
) -> str:
    s = summary
    label = s.label or (context or {}).get("job") or ""
    # An undo lists its own statuses (restored, failed, skipped).
    order = [st.value for st in s.statuses]
    template = environment().get_template("run.html.j2")
    page = template.render(
        title=s.title(label),
        version=__version__,
        written=_utc(time.time()),
        run=_run(s),
        tiles=[("rows", s.rows)] + [(st, s.by_status.get(st, 0)) for st in order],
        statuses=[_status_row(st, s.by_status.get(st, 0), s.rows) for st in order],
        done=s.done.value,
        commands=next_commands(s),
        commands_note=commands_note(s),
        errors=_errors(s, causes),
        causes=[_cause(c) for c in causes],
        report=report.name if report is not None else None,
        requests=_requests(s),
        bars=chart(s.timeline),
        context=list((context or {}).items()),
        settings=[(key, _setting(s.settings[key])) for key in sorted(s.settings)],
    )
    # Belt and braces: nothing that looks like a webhook code or token leaves the process.
    return redact(page)


def _run(s: RunSummary) -> dict[str, Any]:
    state, state_class = _state(s)
    return {
        "run_id": s.run_id,
        "when": _utc(s.started_at) if s.started_at else "?",
        "elapsed": f"{s.elapsed_s:.1f}",
        "mode": s.mode,
        "auth_mode": s.auth_mode,
        "state": state,
        "state_class": state_class,
        "exit_code": s.exit_code,
        "aborted": s.aborted,
        "fallback_to_single": s.fallback_to_single,
    }


def _errors(s: RunSummary, causes: list[Cause]) -> list[dict[str, Any]]:
    """Totals by error code, each with what it means and what to do."""
    statuses = {c.code: c.status for c in causes}
    out = []
    for code, count in s.by_error.items():
        meaning, todo = advice(statuses.get(code, "failed"), code)
        out.append({"code": code, "count": int(count), "meaning": meaning, "todo": todo})
    return out


def _state(s: RunSummary) -> tuple[str, str]:
    """How the run ended (`RunSummary.state`), as the page's headline and its class."""
    if s.state == ENDED_ABORTED:
        return "Aborted by the portal: rows not done were skipped", "bad"
    if s.state == ENDED_INTERRUPTED:
        return f"Interrupted ({s.interrupted}): rows not done were skipped", "bad"
    if s.paused:
        return (
            f"Paused: time is up ({s.paused}); {s.rows_left} row(s) left for the next run"
            " (or --resume)",
            "warn",
        )
    if s.rows_not_done:
        return f"Finished: some rows were not {s.done.value}", "warn"
    if s.count(Status.ABSENT):
        return f"Finished: every row {s.done.value} or not there", "good"
    return f"Finished: every row {s.done.value}", "good"


def _status_row(status: str, count: int, rows: int) -> dict[str, Any]:
    share = 100.0 * count / rows if rows else 0.0
    return {
        "status": status,
        "count": count,
        "share": f"{share:.1f}",
        "meaning": _STATUS_TEXT[status],
    }


def _cause(cause: Cause) -> dict[str, Any]:
    meaning, todo = advice(cause.status, cause.code)
    return {
        "status": cause.status,
        "code": cause.code,
        "name": cause.code or ("not sent" if cause.status == "skipped" else "(no code)"),
        "count": cause.count,
        "meaning": meaning,
        "todo": todo,
        "rows": [{c: rec.get(c, "") for c in _ROW_COLUMNS} for rec in cause.rows],
        "more": cause.count - len(cause.rows),
    }


# A listed row's columns: the report's, less those its cause already shows.
_ROW_COLUMNS = tuple(c for c in REPORT_COLUMNS if c not in ("status", "error"))


def _requests(s: RunSummary) -> dict[str, Any]:
    return {
        "requests": s.requests,
        "batch": s.batch_requests,
        "single": s.single_requests,
        "limit_refusals": s.limit_refusals,
        "operating_refusals": s.operating_refusals,
        "waited": f"{s.limit_wait_s:.1f}",
        "retries": s.retries,
        "rows_per_s": f"{s.rows_per_s:.1f}",
        "rate": f"{s.rate:g}",
        "burst": s.burst,
        "share": s.share_text,
        "estimate": str((s.estimate or {}).get("said", "")),
    }


def _setting(value: Any) -> Any:
    if value is None:
        return "–"
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return value


def chart(timeline: Sequence[TimeBucket]) -> dict[str, Any] | None:
    """The geometry of the requests chart: one bar per time bucket of the timeline."""
    if not timeline:
        return None
    w, h, left, bottom, top, right = 760, 200, 44, 28, 12, 12
    plot_w, plot_h = w - left - right, h - top - bottom
    bucket = timeline[0].width or 1.0
    # At least ten buckets wide, so a short run shows bars, not one block.
    span = max(max(b.t + b.width for b in timeline), 10 * bucket)
    peak = max(b.requests for b in timeline) or 1
    grid = []
    for frac in (0.0, 0.5, 1.0) if peak >= 2 and peak % 2 == 0 else (0.0, 1.0):
        y = top + plot_h * (1 - frac)
        grid.append({"y": f"{y:.1f}", "label_y": f"{y + 4:.1f}", "label": round(peak * frac)})
    ticks = [
        {"x": f"{left + plot_w * frac:.1f}", "label": _secs(span * frac)}
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    bars = []
    for b in timeline:
        bh = plot_h * b.requests / peak
        bars.append(
            {
                "x": f"{left + plot_w * b.t / span:.1f}",
                "y": f"{top + plot_h - bh:.1f}",
                "w": f"{max(plot_w * b.width / span - 1.0, 1.0):.1f}",
                "h": f"{bh:.1f}",
                "refused": f"{plot_h * b.refused / peak:.1f}" if b.refused else None,
                "tip": f"{_secs(b.t)}–{_secs(b.t + b.width)}: {b.requests} "
                f"request{'s' if b.requests != 1 else ''}, "
                f"{b.refused} refused, mean latency {b.latency:.2f} s",
            }
        )
    return {
        "w": w, "h": h, "left": left, "right": w - right, "bucket": f"{timeline[0].width:g}",
        "grid": grid, "ticks": ticks, "bars": bars,
    }  # fmt: skip


def _secs(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.3g} min"
    return f"{value:.3g} s"


__all__ = ["ADVICE", "advice", "collect_causes", "render_html", "write_html"]
