"""`import cleanup.cli` stays light: the demo, the sandbox portal, pandas and openpyxl load
only when a command needs them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("cleanup.sandbox", "cleanup.sandbox.demo", "cleanup.jobs.process", "pandas", "openpyxl")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys, json; {code}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_neither_the_sandbox_the_demo_pandas_nor_openpyxl() -> None:
    loaded = _loaded_after("import cleanup.cli")
    assert [m for m in HEAVY if m in loaded] == []


def test_the_demo_and_sandbox_commands_load_when_asked_for() -> None:
    loaded = _loaded_after(
        "import click, cleanup.cli as c; "
        "c.main.get_command(click.Context(c.main), 'demo'); "
        "c.main.get_command(click.Context(c.main), 'sandbox')"
    )
    assert "cleanup.sandbox.demo" in loaded and "cleanup.sandbox.command" in loaded


# What `reaction-cleanup --help` may load: click and the group, not the commands' machinery.
NOT_AT_START = ("pydantic", "numpy", "pyarrow", "requests", "cleanup.run.config", "cleanup.cli.run")


def test_the_groups_help_loads_no_command() -> None:
    loaded = _loaded_after(
        "import click, cleanup.cli as c; "
        "c.main.get_help(click.Context(c.main, info_name='reaction-cleanup'))"
    )
    assert [m for m in NOT_AT_START if m in loaded] == []


def test_the_groups_help_lists_each_command_as_the_loaded_command_would() -> None:
    # Read from the docstring unimported, or from the command itself: the same words.
    import click

    from cleanup.cli.main import COMMANDS, LazyGroup, docstring_help, main

    assert isinstance(main, LazyGroup)
    ctx = click.Context(main, info_name="reaction-cleanup")
    for name, target in COMMANDS.items():
        assert docstring_help(target), name
        unloaded = LazyGroup(lazy={name: target}).listed_help(ctx, name, 45)
        command = main.get_command(ctx, name)
        assert command is not None
        assert unloaded == command.get_short_help_str(45), name
