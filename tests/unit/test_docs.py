"""The documentation site matches the code: every command's options, every job-file key, every
exit code, report column, status, summary field and input file ending appear in the generated
reference pages (rendered here by
the same hook mkdocs runs, docs/hooks/reference.py), and the module map names every module of
cleanup/ and nothing else. The site itself is built with `mkdocs build --strict` by .ci/run."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import click
import pytest

from cleanup import exits, results
from cleanup.cli.main import main
from cleanup.inputs.formats import INPUT_SUFFIXES
from cleanup.jobs.schema import job_keys

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = hook()


def rendered(page: str) -> str:
    """A page as mkdocs renders its Markdown: with its generated parts filled in."""
    text = (DOCS / page).read_text(encoding="utf-8")
    assert REFERENCE.MARKER.search(text), f"{page} has no generated part"
    filled: str = REFERENCE.fill(text)
    return filled


def section(markdown: str, heading: str) -> str:
    """The text under a `## heading`, up to the next one."""
    return markdown.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def all_commands() -> list[tuple[str, click.Command, click.Context]]:
    root = click.Context(main, info_name="reaction-cleanup", **main.context_settings)
    found = []
    for name in main.list_commands(root):
        command = main.get_command(root, name)
        assert command is not None
        found.append((name, command, click.Context(command, parent=root, info_name=name)))
    return found


@pytest.mark.parametrize("name", [name for name, _, _ in all_commands()])
def test_every_option_of_every_command_is_in_the_reference(name: str) -> None:
    page = section(rendered("reference/cli.md"), f"## reaction-cleanup {name}")
    _, command, ctx = next(c for c in all_commands() if c[0] == name)
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option) and not p.hidden]
    assert len(options) > 1
    for option in options:
        for flag in [*option.opts, *option.secondary_opts]:
            assert re.search(rf"`[^`]*{re.escape(flag)}\b", page), f"{name} {flag}"
        if option.envvar:
            assert str(option.envvar) in page, f"{name} {option.envvar}"


def test_every_exit_code_is_in_the_reference_and_explained() -> None:
    page = rendered("reference/exit-codes.md")
    generated = page.split("## What each code covers", 1)[0]
    covered = section(page, "## What each code covers")
    codes = {name: value for name, value in vars(exits).items() if name.startswith("EXIT_")}
    assert len(codes) >= 9
    for name, code in codes.items():
        assert f"| `{code}` | `{name}` |" in generated, name
        assert re.search(rf"^\| (\d+ / )?{code}( / \d+)? \|", covered, re.M), f"{code} unexplained"


def test_every_job_file_key_is_in_the_reference() -> None:
    page = rendered("reference/job-file.md")
    schema = json.loads((ROOT / "jobs" / "job-file.schema.json").read_text(encoding="utf-8"))
    keys = set(job_keys()) | set(schema["properties"])
    for key in keys:
        assert f"| `{key}` |" in page, key


def test_every_report_column_and_status_is_in_the_reference_and_explained() -> None:
    page = rendered("reference/report.md")
    columns = REFERENCE.columns()
    assert columns[0] == "row" and "status" in columns
    generated_columns = section(page, "## Columns").split("| Column |", 1)
    for column in columns:
        assert f"`{column}`" in generated_columns[0], column
        assert f"`{column}`" in generated_columns[1], f"column {column} unexplained"
    statuses = section(page, "## Statuses")
    generated, explained = statuses.split("What each means:", 1)
    for status in results.Status:
        assert f"| `{status.value}` |" in generated, status
        assert f"| `{status.value}` |" in explained, f"status {status.value} unexplained"


def test_every_summary_field_and_input_ending_is_in_the_reference() -> None:
    summary = section(rendered("reference/report.md"), "## The summary")
    fields = results.RunSummary.model_json_schema(mode="serialization")["properties"]
    assert {"by_status", "exit_code", "rows_per_s"} <= set(fields)
    for field in fields:
        assert f"| `{field}` |" in summary, field
    endings = section(rendered("reference/input.md"), "## File endings")
    for ending in INPUT_SUFFIXES:
        assert f"| `{ending}` |" in endings, ending


def test_every_summary_field_says_what_it_means() -> None:
    """A field added to RunSummary must carry its meaning (a comment beside or above it in
    cleanup/results.py, or a description), so the generated table has no empty cell."""
    generated = REFERENCE.summary_fields().splitlines()[2:]
    fields = results.RunSummary.model_json_schema(mode="serialization")["properties"]
    assert len(generated) == len(fields)
    for line in generated:
        name, _kind, meaning = (c.strip() for c in line.strip("|").split(" | ", 2))
        assert meaning, f"summary field {name} has no meaning in the reference"
        assert "``" not in meaning and not re.search(r"\w`\w", meaning), line


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 20
    for link in local:
        assert (ROOT / link).is_file(), link


def test_every_page_asks_only_for_generators_that_exist() -> None:
    for page in DOCS.rglob("*.md"):
        for name in REFERENCE.MARKER.findall(page.read_text(encoding="utf-8")):
            assert name in REFERENCE.GENERATORS, f"{page}: {name}"


def module_map() -> dict[str, set[str]]:
    """The module map's rows: folder (`""` for the top level) -> the modules it names."""
    text = (DOCS / "explanation" / "architecture.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| (`(\w+)/`|top level) \|.*\|(.*)\|$", line)
        if match:
            rows[match.group(2) or ""] = set(re.findall(r"`(\w+)\.py`", match.group(3)))
    return rows


def test_the_module_map_names_every_module_and_nothing_else() -> None:
    package = ROOT / "cleanup"
    folders = {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    mapped = module_map()
    assert set(mapped) == folders | {""}
    for folder, named in mapped.items():
        modules = {p.stem for p in (package / folder).glob("*.py")} - {"__init__", "__main__"}
        assert named == modules, f"cleanup/{folder}: map {sorted(named)} != {sorted(modules)}"
