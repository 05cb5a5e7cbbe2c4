"""Click options derived from the one declaration of each option (RunConfig's fields), and
the options a command was given, as RunConfig fields."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

import annotated_types
import click
from click.core import ParameterSource
from pydantic import BaseModel

from cleanup.options import DeclaredOption, declared_options, given, without_none
from cleanup.run.config import RunConfig

F = TypeVar("F", bound=Callable[..., Any])


def click_options(
    model: type[BaseModel] = RunConfig, *, exclude: Iterable[str] = ()
) -> Callable[[F], F]:
    """A decorator adding the model's command-line options, in declaration order.

    Every option defaults to None, so a command can tell what was given (and a job file's
    key is overridden only by an option the user typed); the model supplies the defaults.
    """
    skip = set(exclude)
    decorators = [
        _click_option(opt)
        for opt in declared_options(model)
        if opt.option.cli and opt.name not in skip
    ]

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def _click_option(opt: DeclaredOption) -> Callable[[F], F]:
    kind = without_none(opt.field.annotation)
    kwargs: dict[str, Any] = {"help": _help(opt, kind), "default": None}
    if opt.option.env:
        kwargs.update(envvar=opt.option.env, show_envvar=True)
    if opt.option.metavar:
        kwargs["metavar"] = opt.option.metavar
    if opt.option.parse is not None:
        kwargs.update(multiple=True, default=())
    elif kind is bool:
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = opt.option.cli_type or _click_type(kind, opt.field.metadata)
    return click.option(opt.flag, opt.name, **kwargs)


def _click_type(kind: Any, metadata: list[Any]) -> Any:
    if typing.get_origin(kind) is Literal:
        return click.Choice([str(a) for a in typing.get_args(kind)])
    if kind is Path:
        return click.Path(path_type=Path)
    if kind in (int, float):
        bounds: dict[str, Any] = {}
        for item in metadata:
            if isinstance(item, annotated_types.Ge):
                bounds["min"] = item.ge
            elif isinstance(item, annotated_types.Gt):
                bounds.update(min=item.gt, min_open=True)
            elif isinstance(item, annotated_types.Le):
                bounds["max"] = item.le
            elif isinstance(item, annotated_types.Lt):
                bounds.update(max=item.lt, max_open=True)
        if not bounds:
            return kind
        return click.IntRange(**bounds) if kind is int else click.FloatRange(**bounds)
    return kind


def _help(opt: DeclaredOption, kind: Any) -> str:
    text = opt.field.description or ""
    shown = opt.option.shown_default
    default = opt.field.default
    if shown is None and kind is not bool and isinstance(default, (int, float, str)):
        shown = f"{default:g}" if isinstance(default, (int, float)) else default
    return f"{text} [default: {shown}]" if shown else text


def given_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options typed on the command line, options click took from B24_* variables), as
    RunConfig fields. Raises ConfigError for a repeatable option's bad value."""
    ctx = click.get_current_context()
    typed: dict[str, Any] = {}
    from_env: dict[str, Any] = {}
    for name, value in given(options).items():
        source = ctx.get_parameter_source(name)
        (from_env if source is ParameterSource.ENVIRONMENT else typed)[name] = value
    return _parsed(typed), _parsed(from_env)


def _parsed(options: dict[str, Any]) -> dict[str, Any]:
    parsers: dict[str, Callable[[tuple[str, ...]], Any]] = {}
    for opt in declared_options(RunConfig):
        if opt.option.parse is not None:
            parsers[opt.name] = opt.option.parse
    return {k: parsers[k](v) if k in parsers else v for k, v in options.items()}


def output_options(func: F) -> F:
    """--log-format, --verbose, --quiet: how a command talks, not what it does."""
    func = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines as text or one JSON object per line.",
    )(func)
    func = click.option(
        "--verbose",
        "-v",
        is_flag=True,
        help="Debug logging (requests with secrets masked) and tracebacks.",
    )(func)
    func = click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="No progress and no summary unless something went wrong.",
    )(func)
    return func
