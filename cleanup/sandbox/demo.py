"""`reaction-cleanup demo`: a newcomer's first run, on the sandbox portal, with sample data.

The sample rows and the matching portal state are generated here, deterministically;
`sample_data/` holds the same files (written by `python -m cleanup.sandbox.demo sample_data`), and a
test keeps the two in step.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from cleanup.inputs.reactions import REACTION_CODES

WEBHOOK_CODE = "demo-webhook-code-0000"
BOT_TOKENS = {101: "demo-token-101", 102: "demo-token-102", 104: "demo-token-104-WRONG"}
_REAL_TOKENS = {
    101: "demo-token-101",
    102: "demo-token-102",
    103: "demo-token-103",
    104: "demo-token-104",
}
HEADER = ["botId", "messageId", "reaction", "comment"]


def sample_rows() -> tuple[
    list[list[str]], list[tuple[int, int, str]], dict[int, int], dict[int, set[int]]
]:
    """(rows as text, reactions on the portal, message -> chat, chat -> members)."""
    rows: list[list[str]] = []
    reactions: list[tuple[int, int, str]] = []
    messages: dict[int, int] = {}
    chats: dict[int, set[int]] = {10: {101, 102, 103, 104}, 20: {101, 102, 104}, 30: {102}}
    codes = [c for c in REACTION_CODES]
    # 90 rows that the portal has: removed.
    for i in range(90):
        bot = 101 if i % 3 else 102
        message = 5000 + i
        chat = 10 if i % 2 else 20
        messages[message] = chat
        code = codes[i % len(codes)]
        reactions.append((bot, message, code))
        given = code
        if i % 17 == 0:
            given = code.upper()  # matched without regard to case, sent as documented
        elif i % 13 == 0:
            given = f"  {code} "
        bot_text = f"{bot}.0" if i % 11 == 0 else str(bot)
        rows.append([bot_text, str(message), given, "marker left by the triage bot"])
    # Not set by that bot: REACTION_NOT_FOUND, so `absent` (not there: nothing to remove).
    for i in range(5):
        messages[5100 + i] = 10
        rows.append(["101", str(5100 + i), "like", "already cleaned by hand"])
    # The bot is not in the message's chat: ACCESS_DENIED.
    for i in range(3):
        messages[5200 + i] = 30
        rows.append(["101", str(5200 + i), "fire", "bot left the chat"])
    # Wrong botToken in the tokens file: BOT_OWNERSHIP_ERROR for all of bot 104's rows.
    for i in range(3):
        messages[5300 + i] = 10
        reactions.append((104, 5300 + i, "eyes"))
        rows.append(["104", str(5300 + i), "eyes", "token rotated"])
    # Bot 103 has no token in the file: invalid, never sent.
    messages[5400] = 10
    reactions.append((103, 5400, "okHand"))
    rows.append(["103", "5400", "okHand", "no token on file"])
    # Invalid cells.
    rows += [
        ["abc", "5001", "like", "typo in botId"],
        ["101", "12.5", "like", "not an integer"],
        ["101", "-3", "like", "negative id"],
        ["101", "5002", "", "empty reaction"],
        ["101", "5003", "thumbsup", "not a documented code"],
        ["", "5004", "like", "empty botId"],
    ]
    # Exact duplicates of earlier rows: sent once.
    rows += [[r[0].replace(".0", ""), r[1], r[2].strip(), "pasted twice"] for r in rows[1:4]]
    return rows, reactions, messages, chats


def portal_state_dict() -> dict[str, Any]:
    _, reactions, messages, chats = sample_rows()
    return {
        "webhooks": {"1": WEBHOOK_CODE},
        "oauth_apps": {"local.demo.app": "demo-client-secret"},
        "bots": {str(b): {"token": t, "client_id": None} for b, t in _REAL_TOKENS.items()},
        "chats": {str(c): sorted(m) for c, m in chats.items()},
        "messages": {str(m): c for m, c in messages.items()},
        "reactions": [[b, m, r] for b, m, r in reactions],
    }


def write_samples(folder: Path) -> dict[str, Path]:
    """Write the sample inputs (CSV, XLSX, Parquet), bot tokens and portal state."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rows, *_ = sample_rows()
    paths = {
        "csv": folder / "reactions.csv",
        "xlsx": folder / "reactions.xlsx",
        "parquet": folder / "reactions.parquet",
        "bot_tokens": folder / "bot_tokens.json",
        "state": folder / "portal_state.json",
    }
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    paths["csv"].write_text(buf.getvalue(), encoding="utf-8")
    frame = pd.DataFrame(rows, columns=HEADER)
    frame.to_excel(paths["xlsx"], index=False, sheet_name="reactions")
    frame.to_parquet(paths["parquet"], index=False)
    paths["bot_tokens"].write_text(
        json.dumps({str(k): v for k, v in BOT_TOKENS.items()}, indent=2) + "\n"
    )
    paths["state"].write_text(json.dumps(portal_state_dict(), indent=2) + "\n")
    return paths


@click.command(name="demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("reaction-cleanup-demo"),
    show_default=True,
    help="Folder for the demo's input copy, report, summary and HTML page.",
)
@click.option(
    "--input",
    "input_kind",
    type=click.Choice(["csv", "xlsx", "parquet"]),
    default="csv",
    show_default=True,
    help="Which sample file to run on.",
)
def demo_command(out: Path, input_kind: str) -> None:
    """Run a real cleanup on the sample data against the local sandbox portal, and write the
    HTML page people review. Prints the page's path first, alone on stdout (the rest goes
    to stderr), so `open "$(reaction-cleanup demo)"` shows it."""
    from cleanup.logs import setup_logging
    from cleanup.outputs.after import write_outputs
    from cleanup.outputs.console import summary_lines
    from cleanup.run.config import RunConfig
    from cleanup.run.runner import run_file
    from cleanup.sandbox import PortalConfig, PortalState, SandboxPortal

    setup_logging(quiet=True)
    page = (out / f"reactions-{input_kind}.report.html").absolute()
    click.echo(str(page))
    paths = write_samples(out)
    state = PortalState.from_file(paths["state"])
    # A realistic portal: 2 requests/s with a burst of 50, a little latency per request.
    with SandboxPortal(
        state, PortalConfig(rate=2.0, burst=50, latency=0.02, per_command_cost=0.002)
    ) as portal:
        click.echo(f"sandbox portal listening on {portal.url}", err=True)
        report = out / f"reactions-{input_kind}.report.csv"
        config = RunConfig(
            input=paths[input_kind],
            report=report,
            webhook=portal.webhook_url(),
            bot_tokens=paths["bot_tokens"],
            progress="none",
        )
        summary = run_file(config)
        left = len(state.reactions)
    write_outputs(summary, config, html=page)  # as `run --html` writes it
    lines = summary_lines(summary, config)
    lines[-1:-1] = [f"html: {page}"]  # the one-line SUMMARY stays last
    for line in lines:
        click.echo(line, err=True)
    click.echo(
        f"\nThe sample has valid rows, rows the portal refuses and invalid rows on purpose;\n"
        f"open {page} in a browser, or see the status column of {report}.\n"
        f"Reactions left on the sandbox portal: {left}.\n"
        f"The run itself would exit {summary.exit_code} (1 = some rows failed or were invalid).",
        err=True,
    )


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("sample_data")
    for name, path in write_samples(target).items():
        print(f"{name}: {path}")
