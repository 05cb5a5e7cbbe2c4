"""The documentation's examples, run as written against the sandbox: the tutorial's worked
example (run, review, re-run, undo), where every command must be accepted, each re-run must
send only its rows and the undos at its end must leave the portal as it was before the first
run; and the From Python page's snippet."""

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


def test_the_python_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/reference/python.md's snippet, with the sandbox's webhook for the placeholder."""
    page = TUTORIAL.parent / "reference" / "python.md"
    code = page.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    placeholder = '"https://…/rest/1/…/"'
    assert placeholder in code
    rows, existing = workload(30)  # 3 rows name a reaction never set: failed
    portal = start(existing)
    monkeypatch.chdir(tmp_path)
    write_input(tmp_path / "rows.csv", rows)
    tokens = {str(b.id): b.token for b in portal.state.bots.values()}
    Path("bot_tokens.json").write_text(json.dumps(tokens))

    code = code.replace(placeholder, repr(portal.webhook_url()))
    exec(compile(code, str(page), "exec"), {})

    printed = capsys.readouterr().out.split()
    assert printed[-1] == "1"  # the exit code: some rows failed
    assert "'removed':" in " ".join(printed)
    assert left(portal) == set(existing) - set(rows)  # every listed reaction that was set
