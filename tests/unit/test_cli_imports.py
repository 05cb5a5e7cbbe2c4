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
