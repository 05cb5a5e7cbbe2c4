"""`reaction-cleanup`: the command group. The demo and the sandbox portal are part of the
package but load only when their command runs (`import cleanup.cli` stays light)."""

from __future__ import annotations

import importlib
from typing import Any

import click

from cleanup.cli.jobs import check_job_command, run_job_command
from cleanup.cli.run import run_command
from cleanup.cli.undo import undo_command
from cleanup.version import __version__

# name -> "module:attribute" of a command imported only when it is used.
LAZY_COMMANDS = {
    "demo": "cleanup.sandbox.demo:demo_command",
    "sandbox": "cleanup.sandbox.command:sandbox_command",
}


class LazyGroup(click.Group):
    """A group whose heavier commands are imported when invoked (or listed by --help)."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="reaction-cleanup")
def main() -> None:
    """Remove chat-bot reactions listed in a spreadsheet from a Bitrix24 portal."""


main.add_command(run_command)
main.add_command(run_job_command)
main.add_command(check_job_command)
main.add_command(undo_command)
