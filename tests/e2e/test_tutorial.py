"""The tutorial's worked example (run, review, re-run, undo), typed as written, against the
sandbox: every command must be accepted, each re-run must send only its rows, and the undos
at its end must leave the portal as it was before the first run."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.helpers.faults import left, start, workload, write_input

RunCli = Callable[..., Result]
TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def worked_example() -> list[list[str]]:
    """The commands of the two worked-example blocks, in order (continuation lines joined,
    comments and `export` left out)."""
    text = TUTORIAL.read_text(encoding="utf-8")
    starts = ("## Run, review, fix, re-run", "## Undo the whole thing")
    commands = []
    for start_text in starts:
        block = text.split(start_text, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("reaction-cleanup "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_worked_example_runs_as_written(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = worked_example()
    assert [c[0] for c in commands].count("undo") >= 3 and len(commands) >= 6
    rows, existing = workload(60)  # every 10th row names a reaction never set: failed
    portal = start(existing)
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "march.csv", rows)
    tokens = {str(b.id): b.token for b in portal.state.bots.values()}
    # As in the story: one bot is missing from bots.json (NO_BOT_TOKEN), another has a
    # wrong token (BOT_OWNERSHIP_ERROR: failed); both are fixed after the first run.
    first = {**tokens, "106": "wrong-token"}
    del first["107"]
    Path("bots.json").write_text(json.dumps(first))
    env = {"B24_WEBHOOK_URL": portal.webhook_url()}

    for i, argv in enumerate(commands):
        if argv[0] == "undo" and "--dry-run" not in argv and "--yes" not in argv:
            argv = [*argv, "--yes"]  # the tutorial answers the terminal's question with y
        result = run_cli(*argv, "--progress", "none", "--rate", "1000", "--burst", "1000", env=env)
        assert result.exit_code in (0, 1), f"{shlex.join(argv)}: {result.stderr}"
        if i == 0:
            assert result.exit_code == 1 and re.search(r"NO_BOT_TOKEN|BOT_OWNERSHIP", result.stderr)
            Path("bots.json").write_text(json.dumps(tokens))

    assert left(portal) == set(existing)
