"""The review report: one self-contained HTML page per run, for a person to read.

Totals by status and by error code, the rows that did not go through grouped by cause
with what to do about each, requests and limit refusals over time as an inline SVG chart,
and the run's settings. Inline CSS and SVG only: no script, no network (a Content Security
Policy in the page forbids both). Every value is escaped: row values come from
spreadsheets, and a `<script>` typed into a reaction cell must stay text.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from cleanup.outputs.report import sidecar
from cleanup.redact import redact
from cleanup.version import __version__

ROWS_PER_CAUSE = 200  # rows listed under each cause; the report file has them all
_LISTED = ("failed", "invalid", "skipped")
_STATUS_ORDER = ("removed", "failed", "invalid", "duplicate", "skipped")
_STATUS_TEXT = {
    "removed": "removed (or found already absent on a retry)",
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
    for rec in _records(report):
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


def _records(report: Path) -> Iterator[dict[str, Any]]:
    suffix = report.suffix.lower()
    if suffix == ".parquet":
        partial = sidecar(report, ".partial.jsonl")
        if partial.exists():
            yield from _jsonl(partial)
            return
        if not report.exists():
            return
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(report).iter_batches(batch_size=65536):
            yield from batch.to_pylist()
        return
    if not report.exists():
        return
    if suffix == ".jsonl":
        yield from _jsonl(report)
        return
    with report.open(encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if isinstance(rec, dict):
                yield rec


def write_html(
    summary: Mapping[str, Any],
    report: Path,
    out: Path,
    *,
    context: Mapping[str, str] | None = None,
) -> Path:
    """Write the review page for a run. `summary` is the summary JSON's content (with
    `settings`); `report` is the per-row report whose failed rows are listed."""
    page = render_html(summary, collect_causes(report), context=context, report=report)
    tmp = sidecar(out, ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


# --------------------------------------------------------------------------- rendering


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _n(value: Any) -> str:
    """A count as shown: digits grouped with a thin space, easy to read and to parse back."""
    return f"{int(value):,}".replace(",", "\u2009")


def render_html(
    summary: Mapping[str, Any],
    causes: list[Cause],
    *,
    context: Mapping[str, str] | None = None,
    report: Path | None = None,
) -> str:
    s = summary
    by_status = {k: int(v) for k, v in dict(s.get("by_status") or {}).items()}
    by_error = {k: int(v) for k, v in dict(s.get("by_error") or {}).items()}
    rows = int(s.get("rows") or 0)
    settings = dict(s.get("settings") or {})
    label = settings.get("label") or (context or {}).get("job") or ""
    title = (
        f"reaction-cleanup: {label + ' – ' if label else ''}{Path(str(s.get('input', ''))).name}"
    )
    started = float(s.get("started_at") or 0)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else "?"
    state, state_class = _state(s, by_status)
    elapsed = float(s.get("elapsed_s") or 0)
    rate = float(s.get("rate") or 0)

    parts: list[str] = []
    add = parts.append
    add('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n')
    add(
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">\n"
    )
    add('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
    add(f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n")
    add(f"<header><h1>{_e(title)}</h1>\n")
    add(
        f'<p class="meta">Run <code data-testid="run-id">{_e(s.get("run_id", ""))}</code> · started {_e(when)}'
        f" · {elapsed:.1f} s · {_e(s.get('mode', ''))} mode, "
        f"{_e(s.get('auth_mode', ''))} auth</p>\n"
    )
    add(
        f'<p class="state {state_class}" data-testid="state">{_e(state)} '
        f'<span class="exit">exit code <b data-testid="exit-code">{_e(s.get("exit_code", ""))}</b></span></p>\n'
    )
    if s.get("aborted"):
        add(f'<p class="why">Aborted: {_e(s["aborted"])}</p>\n')
    if s.get("fallback_to_single"):
        add(f'<p class="why">Fell back to single calls: {_e(s["fallback_to_single"])}</p>\n')
    add("</header>\n")

    # Tiles: the numbers at a glance.
    add('<section class="tiles" aria-label="Totals">\n')
    add(_tile("rows", rows, "rows"))
    for status in _STATUS_ORDER:
        add(_tile(status, by_status.get(status, 0), status))
    add("</section>\n")

    # Totals by status.
    add('<section><h2>By status</h2>\n<table class="totals" data-testid="by-status">\n')
    add(
        '<thead><tr><th>status</th><th class="num">rows</th><th class="num">share</th><th>meaning</th></tr></thead><tbody>\n'
    )
    for status in _STATUS_ORDER:
        count = by_status.get(status, 0)
        share = 100.0 * count / rows if rows else 0.0
        add(
            f'<tr data-status="{_e(status)}"><td><span class="dot s-{_e(status)}"></span>{_e(status)}</td>'
            f'<td class="num" data-count="{count}">{_n(count)}</td>'
            f'<td class="num">{share:.1f} %<span class="bar"><span class="s-{_e(status)}" style="width:{share:.1f}%"></span></span></td>'
            f"<td>{_e(_STATUS_TEXT[status])}</td></tr>\n"
        )
    add("</tbody></table></section>\n")

    # Totals by error code.
    add("<section><h2>By error code</h2>\n")
    if by_error:
        add(
            '<table class="totals" data-testid="by-error">\n<thead><tr><th>error</th><th class="num">rows</th><th>meaning</th><th>what to do</th></tr></thead><tbody>\n'
        )
        statuses = {c.code: c.status for c in causes}
        for code, count in by_error.items():
            meaning, todo = advice(statuses.get(code, "failed"), code)
            add(
                f'<tr data-error="{_e(code)}"><td><code>{_e(code)}</code></td>'
                f'<td class="num" data-count="{count}">{_n(count)}</td><td>{_e(meaning)}</td><td>{_e(todo)}</td></tr>\n'
            )
        add("</tbody></table>\n")
    else:
        add("<p>No row has an error code.</p>\n")
    add("</section>\n")

    # The rows that did not go through, by cause.
    add('<section data-testid="causes"><h2>Rows not removed, by cause</h2>\n')
    if not causes:
        add("<p>None: every row was removed or was a duplicate.</p>\n")
    for i, cause in enumerate(causes):
        meaning, todo = advice(cause.status, cause.code)
        name = cause.code or ("not sent" if cause.status == "skipped" else "(no code)")
        add(
            f'<details class="cause"{" open" if i < 3 else ""} data-cause="{_e(cause.code)}" data-status="{_e(cause.status)}">\n'
            f'<summary><span class="dot s-{_e(cause.status)}"></span><code>{_e(name)}</code> · '
            f'<span data-count="{cause.count}">{_n(cause.count)}</span> row{"s" if cause.count != 1 else ""} {_e(cause.status)}</summary>\n'
            f'<p class="advice"><b>What it means:</b> {_e(meaning)}<br><b>What to do:</b> {_e(todo)}</p>\n'
        )
        add(
            '<table class="rows"><thead><tr><th class="num">row</th><th>botId</th><th>messageId</th><th>reaction</th><th>description</th><th class="num">attempts</th></tr></thead><tbody>\n'
        )
        for rec in cause.rows:
            add(
                f'<tr><td class="num">{_e(rec.get("row", ""))}</td><td>{_e(rec.get("botId", ""))}</td>'
                f"<td>{_e(rec.get('messageId', ''))}</td><td>{_e(rec.get('reaction', ''))}</td>"
                f'<td>{_e(rec.get("error_description", ""))}</td><td class="num">{_e(rec.get("attempts", ""))}</td></tr>\n'
            )
        add("</tbody></table>\n")
        if cause.count > len(cause.rows):
            more = cause.count - len(cause.rows)
            where = f" in {_e(report.name)}" if report is not None else ""
            add(
                f'<p class="more">… and {_n(more)} more row{"s" if more != 1 else ""} with this cause: '
                f"filter the report{where} on status = {_e(cause.status)}"
                f"{f', error = {_e(cause.code)}' if cause.code else ''}.</p>\n"
            )
        add("</details>\n")
    add("</section>\n")

    # Requests over time.
    add("<section><h2>Requests over time</h2>\n")
    add(
        f'<p class="meta" data-testid="requests"><b data-count="{int(s.get("requests") or 0)}">{_n(s.get("requests") or 0)}</b> requests '
        f"({_n(s.get('batch_requests') or 0)} batch, {_n(s.get('single_requests') or 0)} single) · "
        f'<b data-count="{int(s.get("limit_refusals") or 0)}">{_n(s.get("limit_refusals") or 0)}</b> refused for the rate limit · '
        f"{_n(s.get('operating_refusals') or 0)} for the operating-time limit · "
        f"waited <b>{float(s.get('limit_wait_s') or 0):.1f} s</b> on limits · {_n(s.get('retries') or 0)} retries · "
        f"{float(s.get('rows_per_s') or 0):.1f} rows/s at {rate:g} req/s (burst {_e(s.get('burst', ''))})</p>\n"
    )
    add(_chart(list(s.get("timeline") or [])))
    add("</section>\n")

    # Settings and files.
    add('<section><h2>Settings</h2>\n<table class="settings" data-testid="settings"><tbody>\n')
    for key, value in (context or {}).items():
        add(f"<tr><th>{_e(key)}</th><td><code>{_e(value)}</code></td></tr>\n")
    for key in sorted(settings):
        value = settings[key]
        shown = (
            "–"
            if value is None
            else json.dumps(value, ensure_ascii=False)
            if isinstance(value, (dict, list, bool))
            else value
        )
        add(
            f'<tr data-setting="{_e(key)}"><th>{_e(key)}</th><td><code>{_e(shown)}</code></td></tr>\n'
        )
    add("</tbody></table></section>\n")
    add(
        f"<footer>Written by reaction-cleanup {_e(__version__)} on "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}. "
        "The per-row report and the summary JSON hold the full data.</footer>\n"
    )
    add("</main>\n</body>\n</html>\n")
    # Belt and braces: nothing that looks like a webhook code or token leaves the process.
    return redact("".join(parts))


def _state(s: Mapping[str, Any], by_status: Mapping[str, int]) -> tuple[str, str]:
    if s.get("aborted"):
        return "Aborted by the portal: rows not done were skipped", "bad"
    if s.get("interrupted"):
        return f"Interrupted ({s['interrupted']}): rows not done were skipped", "bad"
    if by_status.get("failed") or by_status.get("invalid") or by_status.get("skipped"):
        return "Finished: some rows were not removed", "warn"
    return "Finished: every row removed", "good"


def _tile(key: str, count: int, label: str) -> str:
    return (
        f'<div class="tile t-{_e(key)}" data-testid="tile-{_e(key)}">'
        f'<span class="n" data-count="{int(count)}">{_n(count)}</span>'
        f'<span class="l">{_e(label)}</span></div>\n'
    )


def _chart(timeline: list[Mapping[str, Any]]) -> str:
    """Requests per time bucket as bars; refusals (429/503) in red on top of each bar."""
    if not timeline:
        return '<p data-testid="chart-empty">No requests were made.</p>\n'
    w, h, left, bottom, top, right = 760, 200, 44, 28, 12, 12
    plot_w, plot_h = w - left - right, h - top - bottom
    bucket = float(timeline[0]["width"]) or 1.0
    # At least ten buckets wide, so a short run shows bars, not one block.
    span = max(max(float(b["t"]) + float(b["width"]) for b in timeline), 10 * bucket)
    peak = max(int(b["requests"]) for b in timeline) or 1
    out = [
        f'<svg class="chart" data-testid="chart" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="Requests per {float(timeline[0]["width"]):g} s over the run; refusals in red" '
        'xmlns="http://www.w3.org/2000/svg">\n'
    ]
    # Grid and axes.
    for frac in (0.0, 0.5, 1.0) if peak >= 2 and peak % 2 == 0 else (0.0, 1.0):
        y = top + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{w - right}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{_e(round(peak * frac))}</text>'
        )
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + plot_w * frac
        out.append(
            f'<text x="{x:.1f}" y="{h - 8}" class="axis" text-anchor="middle">{_e(_secs(span * frac))}</text>'
        )
    for b in timeline:
        t, width = float(b["t"]), float(b["width"])
        n, refused = int(b["requests"]), int(b.get("refused", 0))
        x = left + plot_w * t / span
        bw = max(plot_w * width / span - 1.0, 1.0)
        bh = plot_h * n / peak
        rh = plot_h * refused / peak
        tip = (
            f"{_secs(t)}–{_secs(t + width)}: {n} request{'s' if n != 1 else ''}, "
            f"{refused} refused, mean latency {float(b.get('latency', 0)):.2f} s"
        )
        out.append(
            f"<g><title>{_e(tip)}</title>"
            f'<rect x="{x:.1f}" y="{top + plot_h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" class="req"/>'
            + (
                f'<rect x="{x:.1f}" y="{top + plot_h - bh:.1f}" width="{bw:.1f}" height="{rh:.1f}" class="refused"/>'
                if refused
                else ""
            )
            + "</g>"
        )
    out.append("</svg>\n")
    out.append(
        '<p class="legend"><span class="key req"></span>requests answered '
        '<span class="key refused"></span>refused for a limit (429/503); hover a bar for its numbers</p>\n'
    )
    return "\n".join(out)


def _secs(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.3g} min"
    return f"{value:.3g} s"


_CSS = """
:root{--removed:#2e7d32;--failed:#c62828;--invalid:#ef6c00;--duplicate:#757575;--skipped:#5c6bc0;
--ink:#1f2328;--muted:#59636e;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;background:var(--soft);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px}
header,section{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin-bottom:16px}
h1{font-size:22px;margin:0 0 4px;word-break:break-all}h2{font-size:17px;margin:0 0 10px}
.meta{color:var(--muted);margin:4px 0}
.state{font-weight:600;margin:10px 0 0;padding:8px 12px;border-radius:6px}
.state.good{background:#e8f5e9;color:#1b5e20}.state.warn{background:#fff3e0;color:#8a4b00}.state.bad{background:#ffebee;color:#b71c1c}
.exit{font-weight:400;float:right}.why{margin:8px 0 0;color:var(--failed)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:10px;padding:12px}
.tile{border:1px solid var(--line);border-radius:8px;padding:10px 12px;border-top:5px solid var(--muted)}
.tile .n{display:block;font-size:26px;font-weight:650;font-variant-numeric:tabular-nums}
.tile .l{color:var(--muted)}
.t-removed{border-top-color:var(--removed)}.t-failed{border-top-color:var(--failed)}.t-invalid{border-top-color:var(--invalid)}
.t-duplicate{border-top-color:var(--duplicate)}.t-skipped{border-top-color:var(--skipped)}.t-rows{border-top-color:var(--ink)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
th{font-weight:600;background:var(--soft);overflow-wrap:normal;white-space:nowrap}
td code{overflow-wrap:anywhere}td:first-child code{white-space:nowrap}
table.settings th{white-space:normal}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{display:inline-block;width:80px;height:8px;background:var(--soft);margin-left:8px;border-radius:4px;overflow:hidden;vertical-align:middle}
.bar span{display:block;height:100%}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px;vertical-align:baseline}
.s-removed{background:var(--removed)}.s-failed{background:var(--failed)}.s-invalid{background:var(--invalid)}
.s-duplicate{background:var(--duplicate)}.s-skipped{background:var(--skipped)}
details.cause{border:1px solid var(--line);border-radius:6px;margin:10px 0;padding:0 12px}
details.cause>summary{cursor:pointer;padding:8px 0;font-weight:600}
.advice{background:var(--soft);padding:8px 10px;border-radius:6px;margin:4px 0 10px}
table.rows{font-size:13px;margin-bottom:10px}.more{color:var(--muted)}
table.settings th{width:28%}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:var(--line);stroke-width:1}svg .axis{fill:var(--muted);font-size:11px}
svg .req{fill:#4f7fbf}svg .refused{fill:var(--failed)}
.legend{color:var(--muted);font-size:13px}.key{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.key.req{background:#4f7fbf}.key.refused{background:var(--failed)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
footer{color:var(--muted);font-size:13px;text-align:center;padding:8px}
@media print{body{background:#fff}details.cause{break-inside:avoid}}
"""


__all__ = ["ADVICE", "advice", "collect_causes", "render_html", "write_html"]
