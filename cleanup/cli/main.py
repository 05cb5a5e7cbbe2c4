"""`reaction-cleanup`: the command group. Every command loads only when it runs (or its own
--help is asked for): `reaction-cleanup --help` lists them from their docstrings, read from
the source without importing it, so the group's help starts without pydantic, pyarrow or
numpy, and the options derived from `RunConfig` are built only for the command that runs."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import click

from cleanup.version import __version__

# name -> "module:attribute" of each command, imported when it is used.
COMMANDS = {
    "run": "cleanup.cli.run:run_command",
    "run-job": "cleanup.cli.jobs:run_job_command",
    "check-job": "cleanup.cli.jobs:check_job_command",
    "undo": "cleanup.cli.undo:undo_command",
    "demo": "cleanup.sandbox.demo:demo_command",
    "sandbox": "cleanup.sandbox.command:sandbox_command",
}
_PACKAGE = Path(__file__).resolve().parents[1]  # the folder of `cleanup`


def docstring_help(target: str) -> str | None:
    """A command's help as click takes it from its function's docstring (up to `\\f`), read
    from the module's source without importing it; None when the source is not at hand."""
    module, _, attribute = target.partition(":")
    path = _PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == attribute:
            doc = ast.get_docstring(node)
            return inspect.cleandoc(doc).split("\f", 1)[0] if doc else None
    return None


class LazyGroup(click.Group):
    """A group whose commands are imported when invoked, and listed by --help unimported."""

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

    def listed_help(self, ctx: click.Context, cmd_name: str, limit: int) -> str:
        """What --help lists for a command: from its docstring while it is not loaded."""
        if cmd_name in self.lazy and cmd_name not in self.commands:
            text = docstring_help(self.lazy[cmd_name])
            if text is not None:  # shortened as click shortens the loaded command's
                return click.Command(cmd_name, help=text).get_short_help_str(limit)
        command = self.get_command(ctx, cmd_name)
        return command.get_short_help_str(limit) if command is not None else ""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.listed_help(ctx, name, limit)) for name in names])


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="reaction-cleanup")
def main() -> None:
    """Remove chat-bot reactions listed in a spreadsheet from a Bitrix24 portal."""
