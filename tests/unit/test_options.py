"""The one declaration of the run's options (RunConfig) and what is derived from it: the
click options of `run` and their checks, with the same bounds, defaults and variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cleanup.cli.options import click_options, given_options
from cleanup.cli.run import run_command
from cleanup.errors import ConfigError
from cleanup.inputs.columns import canonical_field, normalise_name
from cleanup.options import declared_options
from cleanup.run.config import RunConfig, parse_column_options

ENV = {
    "webhook": "B24_WEBHOOK_URL",
    "portal": "B24_PORTAL",
    "oauth_file": "B24_OAUTH_FILE",
    "oauth_server": "B24_OAUTH_SERVER",
    "bot_tokens": "B24_BOT_TOKENS_FILE",
}


def _params() -> dict[str, click.Parameter]:
    return {p.name: p for p in run_command.params if p.name}


def test_every_declared_command_line_option_is_an_option_of_run() -> None:
    params = _params()
    declared = [o for o in declared_options(RunConfig) if o.option.cli]
    assert [o.name for o in declared] == [n for n in params if n in {o.name for o in declared}]
    for opt in declared:
        param = params[opt.name]
        assert isinstance(param, click.Option)
        assert param.opts == [opt.flag]
        assert param.default in (None, ())  # the model supplies the defaults
        assert param.envvar == ENV.get(opt.name), opt.name
    assert "chunk_rows" not in params  # a job-file key only


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("batch_size", 1, 50),
        ("concurrency", 1, 64),
        ("max_retries", 0, None),
        ("burst", 1, None),
        ("rate", 0.01, None),
        ("timeout", 1, None),
        ("max_wait", 0, None),
        ("stop_timeout", 0, None),
        ("operating_limit", 0, None),
    ],
)
def test_bounds_are_the_same_on_the_command_line_and_in_the_config(
    name: str, low: float, high: float | None
) -> None:
    kind = _params()[name].type
    assert isinstance(kind, (click.IntRange, click.FloatRange))
    assert (kind.min, kind.max) == (low, high)
    with pytest.raises(ConfigError, match=rf"{name} must be at least {low}"):
        RunConfig(input=Path("x.csv"), **{name: low - 1})
    if high is not None:
        with pytest.raises(ConfigError, match=rf"{name} must be at most {high}, not {high + 1}"):
            RunConfig(input=Path("x.csv"), **{name: high + 1})


def test_help_shows_the_declared_defaults() -> None:
    text = CliRunner().invoke(run_command, ["--help"], terminal_width=200).output
    for shown in (
        "Commands per batch request. [default: 50]",
        "[default: 900]",
        "[default: 480]",
        "[default: standard]",
        "[default: auto: a bar on a terminal, log lines otherwise]",
        "[env var: B24_WEBHOOK_URL]",
    ):
        assert shown in text


def test_every_problem_is_reported_at_once_naming_the_option() -> None:
    with pytest.raises(ConfigError) as caught:
        RunConfig(
            input=Path("x.csv"),
            mode="fast",
            batch_size=0,
            rate="quick",
            columns={"bot": "B", "messageId": " "},
            unknown=1,
        )
    assert caught.value.problems == [
        "columns.bot: the fields are botId, messageId and reaction",
        "columns.messageId must be a column name (text)",
        "mode must be one of auto, batch, single, not 'fast'",
        "batch_size must be at least 1, not 0",
        "rate must be a number, not 'quick'",
        "unknown option 'unknown'",
    ]


def test_operating_limit_zero_turns_the_tracking_off_wherever_it_is_given() -> None:
    assert RunConfig(input=Path("x.csv"), operating_limit=0).operating_limit is None
    assert RunConfig(input=Path("x.csv")).operating_limit == 480.0
    seen: dict[str, Any] = {}

    @click.command()
    @click_options()
    def probe(**options: Any) -> None:
        typed, _env = given_options(options)
        seen.update(RunConfig(input=Path("x.csv"), **typed).settings())

    result = CliRunner().invoke(probe, ["--operating-limit", "0"])
    assert result.exit_code == 0, result.output
    assert seen["operating_limit"] is None


def test_the_options_can_be_reused_without_some() -> None:
    @click.command()
    @click_options(exclude=("mode", "batch_size"))
    def other(**options: Any) -> None:
        pass

    names = {p.name for p in other.params}
    assert "rate" in names and "mode" not in names and "batch_size" not in names


def test_repeatable_column_option_is_parsed_with_the_one_column_rule() -> None:
    assert parse_column_options(("bot_id=Bot", "Message ID=Msg", "REACTION=Emoji")) == {
        "botId": "Bot",
        "messageId": "Msg",
        "reaction": "Emoji",
    }
    with pytest.raises(ConfigError) as caught:
        parse_column_options(("colour=x", "botId"))
    assert len(caught.value.problems) == 2
    assert "expected botId=NAME, messageId=NAME or reaction=NAME" in caught.value.problems[0]


@pytest.mark.parametrize("name", ["botId", "bot_id", "Bot ID", "BOT-ID", " botid "])
def test_column_names_match_without_case_spaces_or_separators(name: str) -> None:
    assert canonical_field(name) == "botId"
    assert normalise_name(name) == "botid"


def test_settings_hold_no_webhook() -> None:
    config = RunConfig(input=Path("x.csv"), webhook="https://example.invalid/rest/1/code/")
    settings = config.settings()
    assert "webhook" not in settings and settings["auth"] == "webhook"
    assert settings["report"] == "x.report.csv"
