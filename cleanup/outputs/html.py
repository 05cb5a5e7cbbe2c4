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
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from cleanup.outputs.commands import commands_note, next_commands
from cleanup.outputs.files import write_atomic
from cleanup.outputs.report import iter_records
from cleanup.redact import redact
from cleanup.results import RunSummary
from cleanup.version import __version__

ROWS_PER_CAUSE = 200  # rows listed under each cause; the report file has them all
_LISTED = ("failed", "invalid", "skipped")
_STATUS_ORDER = ("removed", "failed", "invalid", "duplicate", "skipped")
_STATUS_TEXT = {
    "removed": "removed (or found already absent on a retry)",
    "restored": "added back (or found there again: REACTION_ALREADY_SET)",
    "failed": "the portal refused or the job gave up",
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
        "The bot has no such reaction on that message: it was already removed, or never set.",
        "Usually nothing to do. If many rows have it, check that the reaction codes and message ids are the right ones.",
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
    "Run the same input again: the job resumes and sends only these rows (run-job does so by itself on its next run).",
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
    data = summary.model_dump(mode="json")
    page = render_html(data, collect_causes(report), context=context, report=report)
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
    summary: Mapping[str, Any],
    causes: list[Cause],
    *,
    context: Mapping[str, str] | None = None,
    report: Path | None = None,
) -> str:
    s = summary
    by_status = {k: int(v) for k, v in dict(s.get("by_status") or {}).items()}
    rows = int(s.get("rows") or 0)
    settings = dict(s.get("settings") or {})
    label = settings.get("label") or (context or {}).get("job") or ""
    input_name = Path(str(s.get("input", ""))).name
    # An undo's summary lists its own statuses (restored, failed, skipped).
    order = tuple(by_status) if s.get("undo_of") else _STATUS_ORDER
    kind = "undo of " if s.get("undo_of") else ""
    template = environment().get_template("run.html.j2")
    page = template.render(
        title=f"reaction-cleanup: {label + ' – ' if label else ''}{kind}{input_name}",
        version=__version__,
        written=_utc(time.time()),
        run=_run(s, by_status),
        tiles=[("rows", rows)] + [(st, by_status.get(st, 0)) for st in order],
        statuses=[_status_row(st, by_status.get(st, 0), rows) for st in order],
        done="restored" if s.get("undo_of") else "removed",
        commands=next_commands(s),
        commands_note=commands_note(s),
        errors=_errors(s, causes),
        causes=[_cause(c) for c in causes],
        report=report.name if report is not None else None,
        requests=_requests(s),
        bars=chart(list(s.get("timeline") or [])),
        context=list((context or {}).items()),
        settings=[(key, _setting(settings[key])) for key in sorted(settings)],
    )
    # Belt and braces: nothing that looks like a webhook code or token leaves the process.
    return redact(page)


def _run(s: Mapping[str, Any], by_status: Mapping[str, int]) -> dict[str, Any]:
    started = float(s.get("started_at") or 0)
    state, state_class = _state(s, by_status)
    return {
        "run_id": s.get("run_id", ""),
        "when": _utc(started) if started else "?",
        "elapsed": f"{float(s.get('elapsed_s') or 0):.1f}",
        "mode": s.get("mode", ""),
        "auth_mode": s.get("auth_mode", ""),
        "state": state,
        "state_class": state_class,
        "exit_code": s.get("exit_code", ""),
        "aborted": s.get("aborted"),
        "fallback_to_single": s.get("fallback_to_single"),
    }


def _errors(s: Mapping[str, Any], causes: list[Cause]) -> list[dict[str, Any]]:
    """Totals by error code, each with what it means and what to do."""
    statuses = {c.code: c.status for c in causes}
    out = []
    for code, count in dict(s.get("by_error") or {}).items():
        meaning, todo = advice(statuses.get(code, "failed"), code)
        out.append({"code": code, "count": int(count), "meaning": meaning, "todo": todo})
    return out


def _state(s: Mapping[str, Any], by_status: Mapping[str, int]) -> tuple[str, str]:
    if s.get("aborted"):
        return "Aborted by the portal: rows not done were skipped", "bad"
    if s.get("interrupted"):
        return f"Interrupted ({s['interrupted']}): rows not done were skipped", "bad"
    if s.get("paused"):
        left = by_status.get("skipped", 0)
        return (
            f"Paused: time is up ({s['paused']}); {left} row(s) left for the next run"
            " (or --resume)",
            "warn",
        )
    done = "restored" if s.get("undo_of") else "removed"
    if by_status.get("failed") or by_status.get("invalid") or by_status.get("skipped"):
        return f"Finished: some rows were not {done}", "warn"
    return f"Finished: every row {done}", "good"


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


_ROW_COLUMNS = ("row", "botId", "messageId", "reaction", "error_description", "attempts")


def _requests(s: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "requests": int(s.get("requests") or 0),
        "batch": int(s.get("batch_requests") or 0),
        "single": int(s.get("single_requests") or 0),
        "limit_refusals": int(s.get("limit_refusals") or 0),
        "operating_refusals": int(s.get("operating_refusals") or 0),
        "waited": f"{float(s.get('limit_wait_s') or 0):.1f}",
        "retries": int(s.get("retries") or 0),
        "rows_per_s": f"{float(s.get('rows_per_s') or 0):.1f}",
        "rate": f"{float(s.get('rate') or 0):g}",
        "burst": s.get("burst", ""),
        "share": _share_text(s),
        "estimate": (s.get("estimate") or {}).get("said", ""),
    }


def _share_text(s: Mapping[str, Any]) -> str:
    """What share of the portal's limit ran ("" for all of it)."""
    share = float(s.get("share") or 1.0)
    if share >= 1:
        return ""
    rate, burst = float(s.get("rate") or 0), int(s.get("burst") or 0)
    return (
        f"share {share:g}: at most {rate * share:.3g} req/s and a burst of"
        f" {max(1, int(burst * share))} of the portal's"
    )


def _setting(value: Any) -> Any:
    if value is None:
        return "–"
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return value


def chart(timeline: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The geometry of the requests chart: one bar per time bucket of the timeline."""
    if not timeline:
        return None
    w, h, left, bottom, top, right = 760, 200, 44, 28, 12, 12
    plot_w, plot_h = w - left - right, h - top - bottom
    bucket = float(timeline[0]["width"]) or 1.0
    # At least ten buckets wide, so a short run shows bars, not one block.
    span = max(max(float(b["t"]) + float(b["width"]) for b in timeline), 10 * bucket)
    peak = max(int(b["requests"]) for b in timeline) or 1
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
        t, width = float(b["t"]), float(b["width"])
        n, refused = int(b["requests"]), int(b.get("refused", 0))
        bh = plot_h * n / peak
        bars.append(
            {
                "x": f"{left + plot_w * t / span:.1f}",
                "y": f"{top + plot_h - bh:.1f}",
                "w": f"{max(plot_w * width / span - 1.0, 1.0):.1f}",
                "h": f"{bh:.1f}",
                "refused": f"{plot_h * refused / peak:.1f}" if refused else None,
                "tip": f"{_secs(t)}–{_secs(t + width)}: {n} request{'s' if n != 1 else ''}, "
                f"{refused} refused, mean latency {float(b.get('latency', 0)):.2f} s",
            }
        )
    return {
        "w": w, "h": h, "left": left, "right": w - right, "bucket": f"{float(timeline[0]['width']):g}",
        "grid": grid, "ticks": ticks, "bars": bars,
    }  # fmt: skip


def _secs(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.3g} min"
    return f"{value:.3g} s"


__all__ = ["ADVICE", "advice", "collect_causes", "render_html", "write_html"]
