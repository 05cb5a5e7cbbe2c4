"""A job file's run options with its credentials read: from the environment variable or
file the job file names, the command line winning over the file, the file over `B24_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleanup.errors import ConfigError
from cleanup.jobs.inbox import folder_problems
from cleanup.jobs.schema import JobFile
from cleanup.redact import register_secret, webhook_code

CREDENTIAL_FIELDS = ("webhook", "portal", "oauth_file")


def resolve_run_options(
    job: JobFile,
    cli: dict[str, Any] | None = None,
    env: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """RunConfig keyword arguments for this job file's runs (all but input/report/resume).

    `cli` holds options given on the command line (they win over the file), `env` the
    ones click took from B24_* environment variables (used only where the file is
    silent; credentials only if the file names none). Reads the webhook from the
    variable or file the job file names. Raises ConfigError naming every missing variable
    and file.
    """
    cli, env = dict(cli or {}), dict(env or {})
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    if cli.pop("report", None) is not None or env.pop("report", None) is not None:
        problems.append(
            "--report: run-job names each file's report itself, in the job's reports folder"
            f" ({job.reports}); choose the format with report_format"
        )
    out = _credentials(job, cli, env, environ, problems)
    for key in CREDENTIAL_FIELDS:
        cli.pop(key, None)
        env.pop(key, None)
    # Everything else: environment < job file < command line.
    merged = {
        **env,
        **{k: v for k, v in job.options.items() if k not in ("portal", "oauth_file")},
    }
    if job.bot_tokens_file is not None:
        merged["bot_tokens"] = job.bot_tokens_file
    merged.update(cli)
    out.update(merged)
    problems.extend(_missing_files(out))
    no_credentials = not (out.get("webhook") or out.get("portal"))
    if (
        no_credentials
        and not out.get("dry_run")
        and not any(p.startswith("webhook_") for p in problems)
    ):
        problems.append(
            "no portal credentials: set webhook_env (or webhook_file), or portal and oauth_file"
        )
    out.pop("resume", None)  # run-job resumes an unfinished file by itself
    problems.extend(folder_problems(job))
    if problems:
        raise ConfigError(problems)
    return out


def _credentials(
    job: JobFile,
    cli: dict[str, Any],
    env: dict[str, Any],
    environ: Mapping[str, str],
    problems: list[str],
) -> dict[str, Any]:
    """Credentials are taken as one group, from one place: the command line, else the job
    file, else the B24_* variables."""
    if any(cli.get(k) is not None for k in CREDENTIAL_FIELDS):
        return {k: cli[k] for k in CREDENTIAL_FIELDS if cli.get(k) is not None}
    if not job.names_credentials:
        return {k: env[k] for k in CREDENTIAL_FIELDS if env.get(k) is not None}
    out: dict[str, Any] = {k: job.options[k] for k in ("portal", "oauth_file") if k in job.options}
    if job.webhook_env:
        value = environ.get(job.webhook_env, "").strip()
        if value:
            register_secret(*webhook_code(value))
            out["webhook"] = value
            out["webhook_source"] = ("env", job.webhook_env)
        else:
            problems.append(
                f"webhook_env: the environment variable {job.webhook_env} is not set "
                f"(job file {job.path} names it as the holder of the webhook URL)"
            )
    elif job.webhook_file:
        text = _read_secret_file(job.webhook_file, "webhook_file", problems)
        if text:
            register_secret(*webhook_code(text))
            out["webhook"] = text
            out["webhook_source"] = ("file", str(job.webhook_file))
    return out


def _missing_files(out: dict[str, Any]) -> list[str]:
    problems = []
    oauth_file = out.get("oauth_file")
    if oauth_file is not None and not Path(oauth_file).is_file():
        problems.append(f"oauth_file: {oauth_file} does not exist")
    tokens = out.get("bot_tokens")
    if tokens is not None and not Path(tokens).is_file():
        problems.append(f"bot_tokens_file: {tokens} does not exist")
    if out.get("webhook") and tokens is None:
        problems.append(
            "bot_tokens_file: webhook mode needs each bot's botToken; name the tokens file"
        )
    return problems


def _read_secret_file(path: Path, key: str, problems: list[str]) -> str | None:
    try:
        text = path.read_text(encoding="utf-8-sig").strip()
    except FileNotFoundError:
        problems.append(f"{key}: {path} does not exist")
        return None
    except OSError as exc:
        problems.append(f"{key}: {path} cannot be read ({exc.strerror})")
        return None
    if not text:
        problems.append(f"{key}: {path} is empty")
        return None
    return text
