"""The reference pages' generated parts, filled in from the code when mkdocs builds the site.

A page asks for one with a line of its own, `<!-- reference: NAME -->`, where NAME is a key of
GENERATORS; an unknown NAME fails the build. Each generator reads one source that the code
itself uses, so the pages cannot drift from it:

- `commands`: every command of `reaction-cleanup` and its options, from click (the same text
  as `--help`);
- `job-file-keys`: every key of a job file, from `jobs/job-file.schema.json`;
- `exit-codes`: every `EXIT_*` code in `cleanup/exits.py`, with its comment there (beside
  or above it);
- `report-columns`, `statuses`: the report's columns and the statuses, from
  `cleanup/results.py`;
- `summary-fields`: the fields of `R.summary.json`, from the model that writes it
  (`RunSummary` in `cleanup/results.py`);
- `input-formats`: the input file endings, from `cleanup/inputs/formats.py`.

mkdocs loads this file as a hook (mkdocs.yml, `hooks:`); tests/unit/test_docs.py imports it.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- reference: ([\w-]+) -->$", re.M)


def plain(text: str) -> str:
    """Text from the code as Markdown shows it: one line, `*` and `<` not read as markup."""
    return escaped(" ".join(text.split()))


def escaped(text: str) -> str:
    return text.replace("*", "\\*").replace("<", "&lt;")


def cell(text: object) -> str:
    """One table cell: outside code spans (which a table keeps whole), plain text with `|`
    escaped, and the spaces around a code span kept."""
    parts = " ".join(str(text).split()).split("`")
    return "`".join(p if i % 2 else escaped(p).replace("|", "\\|") for i, p in enumerate(parts))


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def commands() -> str:
    """Each command's usage, help and options, as `reaction-cleanup COMMAND --help` says them."""
    from cleanup.cli.main import main

    root = click.Context(main, info_name="reaction-cleanup", **main.context_settings)
    parts = []
    for name in main.list_commands(root):
        command = main.get_command(root, name)
        assert command is not None, name
        parts.append(command_section(command, click.Context(command, parent=root, info_name=name)))
    return "\n\n".join(parts)


def command_section(command: click.Command, ctx: click.Context) -> str:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    text = (command.help or "").replace("\b\n", "")
    help_text = "\n\n".join(plain(p) for p in text.split("\n\n") if p.strip())
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or (isinstance(param, click.Option) and param.hidden):
            continue
        meaning = record[1] or ("argument" if isinstance(param, click.Argument) else "")
        rows.append((f"`{record[0]}`", meaning))
    body = [f"## {ctx.command_path}", "", f"```\n{usage}\n```", "", help_text, ""]
    return "\n".join([*body, table(("Option", "Meaning"), rows)])


def job_file_keys() -> str:
    """Every key of jobs/job-file.schema.json: type, bounds, default and description."""
    schema = json.loads((ROOT / "jobs" / "job-file.schema.json").read_text(encoding="utf-8"))
    required = set(schema.get("required", ()))
    rows = []
    for key, spec in schema["properties"].items():
        meaning = spec.get("description", "")
        if key in required and "required" not in meaning.lower():
            meaning += " Required."
        default = json.dumps(spec["default"]) if "default" in spec else ""
        rows.append((f"`{key}`", value_kind(spec), f"`{default}`" if default else "", meaning))
    return table(("Key", "Value", "Default", "Meaning"), rows)


def value_kind(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " or ".join(f"`{json.dumps(v)}`" for v in spec["enum"])
    if "anyOf" in spec:
        return " or ".join(value_kind(s) for s in spec["anyOf"])
    kinds = spec.get("type", "")
    kind = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if kind == "array":
        kind = f"array of {value_kind(spec.get('items', {}))}"
    bounds = [f"≥ {spec['minimum']}" if "minimum" in spec else "", ""]
    bounds[1] = f"≤ {spec['maximum']}" if "maximum" in spec else ""
    pattern = f"matching `{spec['pattern']}`" if "pattern" in spec else ""
    return " ".join(filter(None, [kind, *bounds, pattern]))


def exit_codes() -> str:
    """Every EXIT_* code of cleanup/exits.py, worst first as `exits.worst` ranks them."""
    from cleanup import exits

    source = (ROOT / "cleanup" / "exits.py").read_text(encoding="utf-8")
    comments = line_comments(source, r"(EXIT_\w+) = ")
    codes = {name: getattr(exits, name) for name in comments}
    rank: Callable[[int], int] = getattr(exits, "severity", lambda code: code)
    rows = [
        (f"`{code}`", f"`{name}`", f"`{exits.state_word(code)}`", comments[name])
        for name, code in sorted(codes.items(), key=lambda item: -rank(item[1]))
    ]
    return table(("Code", "Name in `cleanup/exits.py`", "`SUMMARY status=`", "Meaning"), rows)


def report_columns() -> str:
    """The report's columns, in the order the report writes them."""
    return ", ".join(f"`{c}`" for c in columns())


def columns() -> tuple[str, ...]:
    from cleanup import results

    named = getattr(results, "REPORT_COLUMNS", None)
    if named is None:  # the row's own record names them
        row = results.RowResult
        named = getattr(row, "COLUMNS", None) or getattr(row, "columns", lambda: None)()
    if named is None:
        raise LookupError("cleanup/results.py names no report columns this hook knows")
    return tuple(str(c) for c in named)


def statuses() -> str:
    """Every Status, and which reports use it (the status groups results.py names)."""
    from cleanup import results

    groups = {
        name.removesuffix("_STATUSES").replace("_", " ").lower(): frozenset(value)
        for name, value in vars(results).items()
        if name.endswith("_STATUSES") and isinstance(value, tuple | frozenset)
    }
    status_enum: type[enum.Enum] = results.Status
    rows = [
        (f"`{s.value}`", *("yes" if s in members else "" for members in groups.values()))
        for s in status_enum
    ]
    return table(("Status", *(f"{name} statuses" for name in groups)), rows)


def summary_fields() -> str:
    """Each field of the run's summary (`R.summary.json`), from the model that writes it:
    its JSON type, and the comment beside (or above) it in cleanup/results.py."""
    from cleanup.results import RunSummary

    comments = line_comments(inspect.getsource(RunSummary), r"    (\w+): ")
    fields = RunSummary.model_json_schema(mode="serialization")["properties"]
    rows = [
        (f"`{name}`", json_kind(spec), comments.get(name) or spec.get("description", ""))
        for name, spec in fields.items()
    ]
    return table(("Field", "Value", "Meaning"), rows)


def line_comments(source: str, name: str) -> dict[str, str]:
    """name -> its comment, for each line of `source` that starts with the `name` pattern
    (its group 1 is the name): the comment lines right above it, then the one at its end."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in source.splitlines():
        if line.strip().startswith("#"):
            above.append(line.strip().lstrip("# "))
            continue
        match = re.match(rf"^{name}[^#]*(?:#\s*(.*))?$", line)
        if match:
            comments[match.group(1)] = " ".join([*above, match.group(2) or ""]).strip()
        above = []
    return comments


def json_kind(spec: dict[str, Any]) -> str:
    """A JSON Schema's type in a word or two: `integer`, `string or null`, `object`."""
    if "anyOf" in spec:
        return " or ".join(json_kind(s) for s in spec["anyOf"])
    if "$ref" in spec or spec.get("type") == "object":
        return "object"
    if spec.get("type") == "array":
        return "list"
    return str(spec.get("type", "any"))


def input_formats() -> str:
    """Each input file ending and the format it means, from cleanup/inputs/formats.py."""
    from cleanup.inputs import formats

    rows = [(f"`{ending}`", f"`{kind}`") for ending, kind in formats.INPUT_SUFFIXES.items()]
    return table(("Ending", "Format"), rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "commands": commands,
    "job-file-keys": job_file_keys,
    "exit-codes": exit_codes,
    "report-columns": report_columns,
    "statuses": statuses,
    "input-formats": input_formats,
    "summary-fields": summary_fields,
}


def fill(markdown: str) -> str:
    """The page with each `<!-- reference: NAME -->` line replaced by what NAME generates."""
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs' hook: called with each page's Markdown before it is rendered."""
    return fill(markdown)
