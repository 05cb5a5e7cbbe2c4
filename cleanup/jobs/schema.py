"""Job files: their keys, the checks on them, and their conversion into a `JobFile`.

A job file (TOML) names the portal, *where* its credentials are (an environment variable
or a file, never the secrets themselves), what to read (one file, a glob, or an inbox
folder) and where reports and processed inputs go. Every option of `run` that is not a
secret is a key too: those keys are derived from `RunConfig`'s declaration, the keys only a
job file has are declared below, and `job_file_schema()` gives editors the JSON Schema of
both (`jobs/job-file.schema.json`; regenerate it with `python -m cleanup.jobs.schema`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError

from cleanup.errors import ConfigError
from cleanup.options import declared_options, problems_of, without_none
from cleanup.outputs.files import STATE_FOLDER
from cleanup.outputs.report import REPORT_FORMATS
from cleanup.redact import register_secret, webhook_code
from cleanup.run.config import RunConfig

# The report writer's formats (a type checker sees text).
if typing.TYPE_CHECKING:
    ReportFormat = str
else:
    ReportFormat = Literal[REPORT_FORMATS]
NAME_PATTERN = r"^[\w.-]{1,80}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
SCHEMA_FILE = "job-file.schema.json"


def _problem(text: str) -> PydanticCustomError:
    return PydanticCustomError("problems", "{problems}", {"problems": [text]})


def _not_blank(value: str) -> str:
    if not value.strip():
        raise _problem("is empty")
    return value


def _name_problem(name: str) -> str:
    return (
        f"name {name!r} may hold only letters, digits, '.', '_' and '-' "
        "(it names the job's state and lock files)"
    )


def _job_name(value: str) -> str:
    if not re.match(NAME_PATTERN, value):
        raise _problem(_name_problem(value))
    return value


def _env_name(value: str) -> str:
    if "://" in value or "/rest/" in value:
        raise _problem(
            "webhook_env holds the NAME of an environment variable, such as "
            '"B24_WEBHOOK_URL", not the webhook URL itself (a secret that must not be in the file)'
        )
    if not re.match(ENV_NAME_PATTERN, value):
        raise _problem(f"webhook_env {value!r} is not an environment variable name")
    return value


# A path in a job file: text, relative to the job file's folder.
PathText = Annotated[str, AfterValidator(_not_blank)]


class JobFileKeys(BaseModel):
    """The keys only a job file has. The run options follow (see `JobFileSchema`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, AfterValidator(_job_name)] | None = Field(
        None,
        description="The job's name, used in logs, the HTML report and the state/lock file names. Default: the job file's name.",
        json_schema_extra={"pattern": NAME_PATTERN},
    )
    webhook_env: Annotated[str, AfterValidator(_env_name)] | None = Field(
        None,
        description="Name of the environment variable holding the webhook URL.",
        json_schema_extra={"pattern": ENV_NAME_PATTERN},
    )
    webhook_file: PathText | None = Field(
        None, description="File holding the webhook URL (e.g. a mounted secret)."
    )
    bot_tokens_file: PathText | None = Field(
        None, description="File with each bot's botToken (webhook mode)."
    )
    input: PathText | None = Field(
        None, description="One spreadsheet, or a glob such as exports/*.csv."
    )
    inbox: PathText | None = Field(
        None, description="Folder whose spreadsheets are each processed once."
    )
    reports: PathText | None = Field(
        None,
        description="Folder for the dated reports, summaries, HTML reports and the job's state (required).",
    )
    archive: PathText | None = Field(
        None, description="Folder where an input moves once its report is complete."
    )
    report_format: ReportFormat = Field("csv", description="csv, jsonl or parquet.")
    html: bool = Field(True, description="Write the HTML review report next to each report.")
    min_age: float = Field(
        10.0,
        ge=0,
        description="Seconds a file must be left unchanged before it is taken (it may still be copied in).",
    )


def _toml_type(annotation: Any) -> Any:
    """A run option's type as TOML gives it: never null (a key left out takes its default),
    a path as text."""
    annotation = without_none(annotation)
    return PathText if annotation is Path else annotation


def _run_option_keys() -> dict[str, Any]:
    """The run options that are job-file keys, as pydantic field definitions."""
    out: dict[str, Any] = {}
    for opt in declared_options(RunConfig):
        if not opt.option.job:
            continue
        info = opt.field
        annotation: Any = Annotated[_toml_type(info.annotation), *info.metadata]
        default = info.get_default(call_default_factory=True)
        out[opt.name] = (
            annotation,
            Field(
                None if default is None else default,
                description=info.description,
                json_schema_extra=info.json_schema_extra,
            ),
        )
    return out


# Every key a job file may have: its own, then the run options (one declaration, RunConfig).
JobFileSchema: type[JobFileKeys] = create_model(
    "JobFileSchema",
    __base__=JobFileKeys,
    __doc__="A reaction-cleanup job file (TOML).",
    **_run_option_keys(),
)

JOB_KEYS: dict[str, str] = {
    name: info.description or "" for name, info in JobFileKeys.model_fields.items()
}
RUN_OPTION_KEYS: tuple[str, ...] = tuple(
    name for name in JobFileSchema.model_fields if name not in JOB_KEYS
)
# Keys that would hold a secret: refused with a pointer to the right key.
_SECRET_KEYS = {
    "webhook": "webhook_env (the name of an environment variable) or webhook_file",
    "webhook_url": "webhook_env (the name of an environment variable) or webhook_file",
    "bot_token": "bot_tokens_file",
    "bottoken": "bot_tokens_file",
    "access_token": "oauth_file",
    "refresh_token": "oauth_file",
    "client_secret": "oauth_file",
    "client_id": "oauth_file",
    "password": "a file or an environment variable",
    "secret": "a file or an environment variable",
    "token": "bot_tokens_file or oauth_file",
}
# The path keys: resolved against the job file's folder.
_PATH_KEYS = {"webhook_file", "bot_tokens_file", "inbox", "reports", "archive"} | {
    opt.name
    for opt in declared_options(RunConfig)
    if opt.option.job and _toml_type(opt.field.annotation) is PathText
}


def job_keys() -> list[str]:
    """Every key a job file may have."""
    return sorted(JobFileSchema.model_fields)


def job_file_schema() -> dict[str, Any]:
    """The JSON Schema of job files, for editors (e.g. taplo / Even Better TOML)."""
    schema = JobFileSchema.model_json_schema()
    for prop in schema["properties"].values():
        prop.pop("title", None)
        # TOML has no null: a key left out takes the run's default.
        if prop.get("default", 0) is None:
            del prop["default"]
        variants = prop.get("anyOf", [])
        if {"type": "null"} in variants:
            variants.remove({"type": "null"})
            if len(variants) == 1:
                prop.update(variants[0])
                del prop["anyOf"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated by `python -m cleanup.jobs.schema`; do not edit.",
        **schema,
        "title": "reaction-cleanup job file",
        "required": ["reports"],
        "oneOf": [{"required": ["input"]}, {"required": ["inbox"]}],
    }


@dataclass(frozen=True, kw_only=True)
class JobFile:
    """A parsed job file. Paths are absolute (relative ones are taken from the file's folder).
    Built only by `load_job_file` from `JobFileKeys`, whose defaults are the only ones."""

    path: Path
    name: str
    reports: Path
    webhook_env: str | None
    webhook_file: Path | None
    bot_tokens_file: Path | None
    input: str | None  # an absolute path or glob pattern
    inbox: Path | None
    archive: Path | None
    report_format: str
    html: bool
    min_age: float
    options: dict[str, Any]  # RunConfig fields

    @property
    def state_path(self) -> Path:
        return self.reports / f"{self.name}.state.json"

    @property
    def lock_path(self) -> Path:
        """In the reports folder's hidden state folder, with the reports' locks."""
        return self.reports / STATE_FOLDER / f"{self.name}.job.lock"

    @property
    def names_credentials(self) -> bool:
        return bool(
            self.webhook_env
            or self.webhook_file
            or self.options.get("portal")
            or self.options.get("oauth_file")
        )


def load_job_file(path: str | Path) -> JobFile:
    """Read and check a job file; every problem in it is reported at once."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"job file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"job file {path} cannot be read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ConfigError(f"job file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"job file {path} is not valid TOML: {exc}") from None
    return parse_job_file(data, path.resolve())


def parse_job_file(data: dict[str, Any], path: Path) -> JobFile:
    """A job file's keys -> JobFile. Raises ConfigError naming the file and every bad key."""
    where = f"job file {path}"
    problems = [f"{where}: {p}" for p in _unknown_keys(data)]
    known = {k: v for k, v in data.items() if k in JobFileSchema.model_fields}
    try:
        keys = JobFileSchema.model_validate(known)
    except ValidationError as exc:
        problems.extend(problems_of(exc, where))
        # Check what remains, so that every problem is reported in one go.
        bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
        keys = JobFileSchema.model_validate({k: v for k, v in known.items() if k not in bad})
    if keys.name is None and not re.match(NAME_PATTERN, path.stem):
        problems.append(f"{where}: {_name_problem(path.stem)}")
    problems.extend(f"{where}: {p}" for p in _cross_key_problems(keys))
    if problems:
        raise ConfigError(problems)
    return _job_file(keys, path)


def _unknown_keys(data: dict[str, Any]) -> list[str]:
    problems = []
    for key in sorted(data):
        if key in JobFileSchema.model_fields:
            continue
        folded = key.replace("-", "_").casefold()
        if folded in _SECRET_KEYS:
            problems.append(
                f"{key!r} would put a secret in the job file; secrets never go there: "
                f"use {_SECRET_KEYS[folded]}"
            )
        elif folded == "bot_tokens":
            problems.append("'bot_tokens' is spelt bot_tokens_file in a job file")
        elif folded == "report":
            problems.append(
                "'report': a job writes each file's report into the reports folder "
                "under a dated name; set reports (a folder) and report_format"
            )
        else:
            hint = difflib.get_close_matches(folded, job_keys(), n=1, cutoff=0.7)
            problems.append(
                f"unknown key {key!r}"
                + (
                    f" (did you mean {hint[0]!r}?)"
                    if hint
                    else "; see jobs/example.toml for the keys"
                )
            )
    return problems


def _cross_key_problems(keys: JobFileKeys) -> list[str]:
    """The rules between keys (each key's own rules are in its declaration)."""
    given = keys.model_fields_set
    problems = []
    if keys.webhook_env and keys.webhook_file:
        problems.append("give webhook_env or webhook_file, not both")
    if (keys.input is None) == (keys.inbox is None):
        problems.append(
            "give either input (a file or glob) or inbox (a folder), exactly one of them"
        )
    if keys.reports is None and "reports" not in given:
        problems.append("reports (the folder for reports) is required")
    portal = getattr(keys, "portal", None)
    if isinstance(portal, str) and (code := webhook_code(portal)):
        register_secret(*code)
        problems.append(
            "portal looks like a webhook URL, whose code is a secret: keep the URL in an "
            "environment variable and name it with webhook_env; portal is for OAuth mode "
            "(https://example.bitrix24.com)"
        )
    if (keys.webhook_env or keys.webhook_file) and given & {"portal", "oauth_file"}:
        problems.append("give either a webhook or OAuth (portal + oauth_file), not both")
    return problems


def _job_file(keys: JobFileKeys, path: Path) -> JobFile:
    base = path.parent

    def absolute(text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else base / p

    values = {k: getattr(keys, k) for k in keys.model_fields_set}
    for key in _PATH_KEYS & set(values):
        values[key] = absolute(values[key])
    pattern = values.pop("input", None)
    if pattern is not None:
        pattern = os.path.expanduser(pattern)
        pattern = pattern if os.path.isabs(pattern) else str(base / pattern)
    if keys.reports is None:  # _problems reported it already; a direct caller learns it here
        raise ConfigError("reports (the folder for reports) is required")
    return JobFile(
        path=path,
        name=keys.name or path.stem,
        reports=values.pop("reports"),
        webhook_env=values.pop("webhook_env", None),
        webhook_file=values.pop("webhook_file", None),
        bot_tokens_file=values.pop("bot_tokens_file", None),
        input=pattern,
        inbox=values.pop("inbox", None),
        archive=values.pop("archive", None),
        report_format=keys.report_format,
        html=keys.html,
        min_age=keys.min_age,
        options={k: v for k, v in values.items() if k in RUN_OPTION_KEYS},
    )


def main() -> None:
    """Print the JSON Schema of job files (`python -m cleanup.jobs.schema > jobs/...`)."""
    json.dump(job_file_schema(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
