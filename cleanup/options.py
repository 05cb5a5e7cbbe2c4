"""Options declared once: the metadata a pydantic field carries to become a click option, a
job-file key and a checked value, and the one translation of pydantic's errors into ours.

A field of `RunConfig` is an option when its type is `Annotated[..., Option(...)]`. Its
name, type, bounds (`Field(ge=, le=)`), default and help (`Field(description=)`) come from
pydantic; `Option` adds what pydantic does not know: the environment variable, whether it
is a command-line option and a job-file key, and how to show its default. `cleanup.cli.options`
derives the click options and `cleanup.jobs.schema` the job-file schema from the same fields.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from cleanup.redact import redact


@dataclass(frozen=True)
class Option:
    """What a field needs beyond its pydantic declaration to be an option."""

    cli: bool = True  # an option of `reaction-cleanup run` (and of the commands reusing them)
    job: bool = True  # a key of job files
    env: str | None = None  # the environment variable click reads it from
    flag: str | None = None  # the command-line name, when not the field's name with dashes
    metavar: str | None = None
    shown_default: str | None = None  # "[default: ...]" in --help, when not the default itself
    # The command line's type, when not the field's (a duration typed as `2h`, read by the
    # field's validator).
    cli_type: Any = None
    # A repeatable command-line option: its values -> the field's value (raises ConfigError).
    parse: Callable[[tuple[str, ...]], Any] | None = None


@dataclass(frozen=True)
class DeclaredOption:
    name: str
    field: FieldInfo
    option: Option

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.name.replace("_", "-")


def without_none(annotation: Any) -> Any:
    """`X | None` -> `X` (`X | Y | None` -> `X | Y`): an option's type once it is given."""
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007


def declared_options(model: type[BaseModel]) -> Iterator[DeclaredOption]:
    """The model's options, in declaration order (the order of --help)."""
    for name, info in model.model_fields.items():
        for item in info.metadata:
            if isinstance(item, Option):
                yield DeclaredOption(name, info, item)


# pydantic's error types, as the end of "<key> must be ...".
_TYPE_WORDS = {
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text",
    "path_type": "must be a path (text)",
    "dict_type": "must be a table",
}


def describe_error(error: ErrorDetails) -> str:
    """One of pydantic's errors as our message: `batch_size must be at most 50, not 99`."""
    loc = ".".join(str(part) for part in error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    shown = f", not {shown_value(error['input'])}"
    if kind in _TYPE_WORDS:
        return f"{loc} {_TYPE_WORDS[kind]}{shown}"
    if kind == "literal_error":
        choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{loc} must be one of {choices}{shown}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("above", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("below", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        limit = ctx.get(key)
        limit = f"{limit:g}" if isinstance(limit, (int, float)) else limit
        return f"{loc} must be {words} {limit}{shown}"
    if kind == "string_too_short":
        return f"{loc} is empty"
    if kind == "extra_forbidden":
        return f"unknown option {loc!r}"
    if kind == "value_error":
        return f"{loc}: {ctx.get('error', error['msg'])}"
    return f"{loc}: {error['msg']}"


def problems_of(exc: ValidationError, where: str | None = None) -> list[str]:
    """Every problem pydantic found, one line each, prefixed with `where` (a file) if given."""
    prefix = f"{where}: " if where else ""
    out: list[str] = []
    for error in exc.errors():
        # A validator that found several problems in one value reports each (see `columns`).
        many = (error.get("ctx") or {}).get("problems") if error["type"] == "problems" else None
        out.extend(prefix + p for p in (many or [describe_error(error)]))
    return out


def shown_value(value: Any) -> str:
    """A value in a message: short, and masked if it holds a secret."""
    text = repr(value)
    return redact(text if len(text) <= 40 else text[:39] + "…")


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given (click passes None, or () for a repeatable option)."""
    return {k: v for k, v in options.items() if v is not None and v != ()}
