"""``sandbox``: serve a sandbox portal from a state file until interrupted."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from .config import FAULT_KINDS, PortalConfig
from .server import SandboxPortal
from .state import PortalState


def _parse_faults(values: tuple[str, ...]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for value in values:
        kind, sep, rate = value.partition("=")
        if not sep or kind not in FAULT_KINDS:
            raise click.BadParameter(
                f"{value!r}: expected KIND=RATE with KIND one of {', '.join(sorted(FAULT_KINDS))}",
                param_hint="--fault",
            )
        try:
            rates[kind] = float(rate)
        except ValueError:
            raise click.BadParameter(
                f"{value!r}: RATE must be a number such as 0.05", param_hint="--fault"
            ) from None
    return rates


@click.command(name="sandbox")
@click.option(
    "--state",
    "state_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON portal state (webhooks, apps, bots, chats, messages, reactions).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8024,
    show_default=True,
    type=int,
    help="Port to listen on (0 = any free port).",
)
@click.option(
    "--rate", type=float, default=None, help="Leaky-bucket drain in requests/s (default: no limit)."
)
@click.option("--burst", type=int, default=50, show_default=True, help="Leaky-bucket size.")
@click.option(
    "--latency", type=float, default=0.0, show_default=True, help="Seconds added to every request."
)
@click.option(
    "--per-command-cost",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds each reaction command takes.",
)
@click.option(
    "--operating-limit",
    type=float,
    default=None,
    help="Operating seconds allowed per window (default: off).",
)
@click.option(
    "--operating-window",
    type=float,
    default=600.0,
    show_default=True,
    help="Operating-time window, seconds.",
)
@click.option(
    "--operating-billing",
    type=click.Choice(["method", "batch"]),
    default="method",
    show_default=True,
    help="Charge each command to its method (the docs), or a whole batch to `batch` (as measured on live portals).",
)
@click.option(
    "--batch-not-allowed",
    type=click.Choice(["call", "command"]),
    default=None,
    help="Refuse Reaction.delete in batch: the whole call, or each command.",
)
@click.option(
    "--success-shape",
    type=click.Choice(["nested", "flat", "mixed"]),
    default="nested",
    show_default=True,
)
@click.option("--limit-status", type=click.Choice(["503", "429"]), default="503", show_default=True)
@click.option(
    "--retry-after",
    type=float,
    default=None,
    help="Send Retry-After (seconds) with limit refusals.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="KIND=RATE",
    help="Random fault per request; repeatable.",
)
@click.option("--seed", type=int, default=None, help="RNG seed for reproducible faults.")
@click.option(
    "--token-ttl",
    type=float,
    default=3600.0,
    show_default=True,
    help="OAuth access token lifetime.",
)
@click.option(
    "--save-state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="On exit, write the portal state (what is left) to this file.",
)
def sandbox_command(
    state_path: Path,
    host: str,
    port: int,
    limit_status: str,
    faults: tuple[str, ...],
    save_state: Path | None,
    **limits: Any,
) -> None:
    """Serve a local sandbox Bitrix24 portal until Ctrl-C.

    Prints the base URL, then the webhook URL, one per line.
    """
    try:
        state = PortalState.from_file(state_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    # The other options are named as PortalConfig's fields.
    config = PortalConfig(
        limit_status=int(limit_status), fault_rates=_parse_faults(faults), **limits
    )
    try:
        portal = SandboxPortal(state, config, host=host, port=port)
        portal.start()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    try:
        _serve(portal)
    finally:
        portal.stop()
        if save_state is not None:
            state.to_file(save_state)


def _serve(portal: SandboxPortal) -> None:
    """Print the URLs, then wait for Ctrl-C or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGTERM too, so a demo script can stop it cleanly and get the saved state. Only the
    # main thread may set handlers; elsewhere Ctrl-C is the way out.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, on_signal)
    try:
        click.echo(portal.url)
        try:
            click.echo(portal.webhook_url())
        except LookupError:
            click.echo("(no webhook in the state file)")
        sys.stdout.flush()  # a parent process reads these lines through a pipe
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
