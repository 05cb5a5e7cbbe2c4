"""Job files: the keys derived from RunConfig's declaration plus the job file's own, their
checks (every problem at once, naming the file and the key) and the committed JSON Schema."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cleanup.errors import ConfigError
from cleanup.jobs.schema import (
    JOB_KEYS,
    SCHEMA_FILE,
    job_file_schema,
    job_keys,
    load_job_file,
    parse_job_file,
)
from cleanup.options import declared_options
from cleanup.run.config import RunConfig

JOBS = Path(__file__).resolve().parents[2] / "jobs"
MINIMAL = {"inbox": "in", "reports": "out", "webhook_env": "B24_WEBHOOK_URL"}


def parse(tmp_path: Path, **keys: Any) -> Any:
    data = {k: v for k, v in {**MINIMAL, **keys}.items() if v is not None}  # None: left out
    return parse_job_file(data, tmp_path / "job.toml")


def problems(tmp_path: Path, **keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(tmp_path, **keys)
    return caught.value.problems


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = json.loads((JOBS / SCHEMA_FILE).read_text(encoding="utf-8"))
    assert committed == job_file_schema(), (
        f"regenerate it: python -m cleanup.jobs.schema > jobs/{SCHEMA_FILE}"
    )


def test_the_example_job_file_passes_the_schema_and_the_loader() -> None:
    example = tomllib.loads((JOBS / "example.toml").read_text(encoding="utf-8"))
    jsonschema.validate(example, job_file_schema())
    assert load_job_file(JOBS / "example.toml").name == "nightly-cleanup"


@pytest.mark.parametrize(
    "bad",
    [{"batch_size": 51}, {"mode": "fast"}, {"max_retry": 3}, {"html": "yes"}, {"rate": 0}],
)
def test_the_schema_refuses_what_the_loader_refuses(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**MINIMAL, **bad}, job_file_schema())
    with pytest.raises(ConfigError):
        parse(tmp_path, **bad)


def test_job_file_keys_are_the_run_options_that_are_no_secret_plus_its_own() -> None:
    run_keys = {o.name for o in declared_options(RunConfig) if o.option.job}
    assert set(job_keys()) == run_keys | set(JOB_KEYS)
    assert not {"webhook", "bot_tokens", "report", "input_file"} & run_keys
    assert "chunk_rows" in run_keys  # a job-file key with no command-line option


def test_every_problem_is_reported_at_once_naming_the_file_and_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        batch_size=99,
        rate="fast",
        max_wait=-1,
        min_age=-5,
        html=1,
        colums={"botId": "B"},
        columns={"bot": "B"},
        sheet=True,
    )
    where = f"job file {tmp_path / 'job.toml'}: "
    assert all(p.startswith(where) for p in found), found
    assert sorted(p[len(where) :] for p in found) == sorted(
        [
            "unknown key 'colums' (did you mean 'columns'?)",
            "html must be true or false, not 1",
            "min_age must be at least 0, not -5",
            "columns.bot: the fields are botId, messageId and reaction",
            "sheet must be text, not True",
            "batch_size must be at most 50, not 99",
            "rate must be a number, not 'fast'",
            "max_wait must be at least 0, not -1",
        ]
    )


def test_the_rules_between_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, input="x.csv", webhook_file="hook", portal="https://p.example")
    assert any("give webhook_env or webhook_file, not both" in p for p in found)
    assert any("give either input (a file or glob) or inbox" in p for p in found)
    assert any("give either a webhook or OAuth" in p for p in found)
    found = problems(tmp_path, reports=None)
    assert any("reports (the folder for reports) is required" in p for p in found)


def test_values_are_converted_as_on_the_command_line(tmp_path: Path) -> None:
    job = parse(
        tmp_path,
        sheet=2,
        operating_limit=0,
        max_wait=60,
        columns={"bot_id": " Bot "},
        oauth_file="secrets/oauth.json",
        webhook_env=None,
        portal="https://p.example",
    )
    assert job.options["sheet"] == "2"
    assert job.options["operating_limit"] is None  # 0 turns the tracking off
    assert job.options["max_wait"] == 60.0
    assert job.options["columns"] == {"botId": "Bot"}
    assert job.options["oauth_file"] == tmp_path / "secrets" / "oauth.json"
    assert job.reports == tmp_path / "out" and job.inbox == tmp_path / "in"
    assert job.name == "job" and job.min_age == 10.0 and job.html is True
    # What the job file gives is a valid run config.
    RunConfig(input=Path("x.csv"), **job.options)


def test_a_secret_key_is_refused_and_not_echoed(tmp_path: Path) -> None:
    code = "n0t" + "real"
    found = problems(tmp_path, access_token=code, webhook_env="https://p.example/rest/1/x/")
    assert any("'access_token' would put a secret in the job file" in p for p in found)
    assert any("NAME of an environment variable" in p for p in found)
    assert not any(code in p for p in found)


def test_a_bad_job_name_from_the_files_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name 'my job' may hold only letters"):
        parse_job_file(MINIMAL, tmp_path / "my job.toml")
