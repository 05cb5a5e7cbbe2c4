"""Job files and the inbox: the same cleanup run on a schedule, each spreadsheet once.

A job file (TOML) names the portal, *where* its credentials are (an environment variable
or a file, never the secrets themselves), what to read (one file, a glob, or an inbox
folder) and where reports and processed inputs go. Every `run` option is a key too.

`run_sources()` processes every spreadsheet it has not processed before. A file is known
by its content (SHA-256), so a renamed copy is not done twice and an edited file is done
again. Each file gets a dated report in the reports folder; the input moves to the
archive only once its report is complete. A file whose run stopped early (abort, signal,
crash) stays where it is and the next run resumes its report. A small state file in the
reports folder remembers which contents were processed, and a lock there keeps two
scheduled runs of the same job from taking the inbox together.
"""

from __future__ import annotations

import difflib
import glob
import json
import logging
import os
import re
import shutil
import time
import tomllib
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from cleanup.errors import (
    EXIT_ABORTED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CleanupError,
    ConfigError,
    FatalAPIError,
    InputError,
    LockedError,
    ReportMismatchError,
)
from cleanup.inputs.select import split_values
from cleanup.outputs.files import sidecar, write_atomic
from cleanup.outputs.journal import fingerprint
from cleanup.outputs.report import REPORT_FORMATS
from cleanup.outputs.summary import summary_record
from cleanup.redact import redact, register_secret
from cleanup.results import RunSummary, Status
from cleanup.run.config import RunConfig, load_bot_tokens
from cleanup.run.progress import ProgressFactory
from cleanup.run.runner import StopSignal, run_file

log = logging.getLogger("cleanup")

STATE_VERSION = 1
# What an inbox picks up; anything else there is left alone.
INBOX_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".xlsx", ".xlsm", ".parquet", ".pq")
# Spreadsheets it cannot read: worth a warning, unlike a README someone left there.
_UNSUPPORTED_SHEETS = (".xls", ".ods", ".numbers", ".xlsb")
# Names of files still being written by a copy tool or editor.
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".swp", ".lock")
_NAME = re.compile(r"^[\w.-]{1,80}$")
_WEBHOOK_IN_URL = re.compile(r"/rest/\d+/[^/\s]+")

# Keys only a job file has (the rest are RunConfig fields, i.e. `run` options).
JOB_KEYS: dict[str, str] = {
    "name": "the job's name, used in logs, the HTML report and the state/lock file names",
    "webhook_env": "name of the environment variable holding the webhook URL",
    "webhook_file": "file holding the webhook URL (e.g. a mounted secret)",
    "bot_tokens_file": "file with each bot's botToken (webhook mode)",
    "input": "one spreadsheet, or a glob such as exports/*.csv",
    "inbox": "folder whose spreadsheets are each processed once",
    "reports": "folder for the dated reports, summaries, HTML reports and the job's state",
    "archive": "folder where an input moves once its report is complete",
    "report_format": "csv, jsonl or parquet",
    "html": "write the HTML review report next to each report",
    "min_age": "seconds a file must be left unchanged before it is taken (it may still be copied in)",
}
# RunConfig fields that are not keys: set by run-job itself, or secrets.
_NOT_KEYS = {"input", "report", "webhook", "run_id", "label", "bot_tokens"}
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
# Lower bounds the CLI enforces with click ranges; RunConfig.check() covers the rest.
_MINIMUM: dict[str, float] = {
    "max_wait": 0,
    "timeout": 1,
    "operating_limit": 0,
    "stop_timeout": 0,
    "chunk_rows": 1,
    "min_age": 0,
}
CREDENTIAL_FIELDS = ("webhook", "portal", "oauth_file")


def config_fields() -> dict[str, Any]:
    """RunConfig fields that are job-file keys, with their resolved types."""
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in fields(RunConfig) if f.name not in _NOT_KEYS}


def job_keys() -> list[str]:
    """Every key a job file may have."""
    return sorted(set(JOB_KEYS) | set(config_fields()))


# --------------------------------------------------------------------------- the job file


@dataclass
class Job:
    """A parsed job file. Paths are absolute (relative ones are taken from the file's folder)."""

    path: Path
    name: str
    reports: Path
    webhook_env: str | None = None
    webhook_file: Path | None = None
    bot_tokens_file: Path | None = None
    input: str | None = None  # an absolute path or glob pattern
    inbox: Path | None = None
    archive: Path | None = None
    report_format: str = "csv"
    html: bool = True
    min_age: float = 10.0
    options: dict[str, Any] = field(default_factory=dict)  # RunConfig fields

    @property
    def state_path(self) -> Path:
        return self.reports / f"{self.name}.state.json"

    @property
    def lock_path(self) -> Path:
        return self.reports / f"{self.name}.job.lock"

    @property
    def names_credentials(self) -> bool:
        return bool(
            self.webhook_env
            or self.webhook_file
            or self.options.get("portal")
            or self.options.get("oauth_file")
        )

    def resolve(
        self,
        cli: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        environ: typing.Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """RunConfig keyword arguments for this job's runs (all but input/report/resume).

        `cli` holds options given on the command line (they win over the file), `env` the
        ones click took from B24_* environment variables (used only where the file is
        silent; credentials only if the file names none). Reads the webhook from the
        variable or file the job names. Raises ConfigError naming every missing variable
        and file.
        """
        cli, env = dict(cli or {}), dict(env or {})
        environ = os.environ if environ is None else environ
        problems: list[str] = []
        if cli.pop("report", None) is not None or env.pop("report", None) is not None:
            problems.append(
                "--report: run-job names each file's report itself, in the job's reports folder"
                f" ({self.reports}); choose the format with report_format"
            )
        out: dict[str, Any] = {}
        # Credentials are taken as one group, from one place.
        if any(cli.get(k) is not None for k in CREDENTIAL_FIELDS):
            out.update({k: cli[k] for k in CREDENTIAL_FIELDS if cli.get(k) is not None})
        elif self.names_credentials:
            out.update({k: self.options[k] for k in ("portal", "oauth_file") if k in self.options})
            if self.webhook_env:
                value = environ.get(self.webhook_env, "").strip()
                if value:
                    register_secret(*_webhook_code(value))
                    out["webhook"] = value
                else:
                    problems.append(
                        f"webhook_env: the environment variable {self.webhook_env} is not set "
                        f"(job file {self.path} names it as the holder of the webhook URL)"
                    )
            elif self.webhook_file:
                text = _read_secret_file(self.webhook_file, "webhook_file", problems)
                if text:
                    register_secret(*_webhook_code(text))
                    out["webhook"] = text
        else:
            out.update({k: env[k] for k in CREDENTIAL_FIELDS if env.get(k) is not None})
        for key in CREDENTIAL_FIELDS:
            cli.pop(key, None)
            env.pop(key, None)
        # Everything else: environment < job file < command line.
        merged = {
            **env,
            **{k: v for k, v in self.options.items() if k not in ("portal", "oauth_file")},
        }
        if self.bot_tokens_file is not None:
            merged["bot_tokens"] = self.bot_tokens_file
        merged.update(cli)
        out.update(merged)
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
        problems.extend(self.sources_problems())
        if problems:
            raise ConfigError(problems)
        return out

    def sources_problems(self) -> list[str]:
        """Folders that must exist or be creatable, checked without changing anything."""
        problems = []
        if self.inbox is not None and not self.inbox.is_dir():
            problems.append(f"inbox: {self.inbox} is not a folder")
        for key, folder in (("reports", self.reports), ("archive", self.archive)):
            if folder is None:
                continue
            probe = folder
            while not probe.exists() and probe.parent != probe:
                probe = probe.parent
            if not probe.is_dir():
                problems.append(f"{key}: {folder} is not a folder")
            elif not os.access(probe, os.W_OK):
                problems.append(f"{key}: {probe} is not writable")
        return problems


def load_job(path: str | Path) -> Job:
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
    return parse_job(data, path.resolve())


def parse_job(data: dict[str, Any], path: Path) -> Job:
    base = path.parent
    problems: list[str] = []
    where = f"job file {path}"
    known = set(job_keys())
    types = config_fields()

    for key in sorted(data):
        if key in known:
            continue
        folded = key.replace("-", "_").casefold()
        if folded in _SECRET_KEYS:
            problems.append(
                f"{where}: {key!r} would put a secret in the job file; secrets never go there: "
                f"use {_SECRET_KEYS[folded]}"
            )
        elif folded == "bot_tokens":
            problems.append(f"{where}: 'bot_tokens' is spelt bot_tokens_file in a job file")
        elif folded == "report":
            problems.append(
                f"{where}: 'report': a job writes each file's report into the reports folder "
                "under a dated name; set reports (a folder) and report_format"
            )
        else:
            hint = difflib.get_close_matches(folded, known, n=1, cutoff=0.7)
            problems.append(
                f"{where}: unknown key {key!r}"
                + (
                    f" (did you mean {hint[0]!r}?)"
                    if hint
                    else "; see jobs/example.toml for the keys"
                )
            )

    def get(key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = data.get(key)
        if value is None:
            return None
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))
        if not ok:
            problems.append(f"{where}: {key} must be {what}, not {_shown(value)}")
            return None
        return value

    def path_of(key: str) -> Path | None:
        value = get(key, str, "a path (text)")
        if value is None:
            return None
        if not value.strip():
            problems.append(f"{where}: {key} is empty")
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)

    name = get("name", str, "text") or path.stem
    if not _NAME.match(name):
        problems.append(
            f"{where}: name {name!r} may hold only letters, digits, '.', '_' and '-' "
            "(it names the job's state and lock files)"
        )
    webhook_env = get("webhook_env", str, "the name of an environment variable")
    if webhook_env is not None:
        if _looks_like_url(webhook_env):
            problems.append(
                f"{where}: webhook_env holds the NAME of an environment variable, such as "
                '"B24_WEBHOOK_URL", not the webhook URL itself (a secret that must not be in the file)'
            )
            webhook_env = None
        elif not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", webhook_env):
            problems.append(
                f"{where}: webhook_env {webhook_env!r} is not an environment variable name"
            )
            webhook_env = None
    webhook_file = path_of("webhook_file")
    bot_tokens_file = path_of("bot_tokens_file")
    pattern = get("input", str, "a path or glob (text)")
    inbox = path_of("inbox")
    reports = path_of("reports")
    archive = path_of("archive")
    report_format = get("report_format", str, "text") or "csv"
    if report_format not in REPORT_FORMATS:
        problems.append(f"{where}: report_format must be one of {', '.join(REPORT_FORMATS)}")
    html = get("html", bool, "true or false")
    min_age = get("min_age", (int, float), "a number of seconds")

    if webhook_env and webhook_file:
        problems.append(f"{where}: give webhook_env or webhook_file, not both")
    if (pattern is None) == (inbox is None):
        problems.append(
            f"{where}: give either input (a file or glob) or inbox (a folder), exactly one of them"
        )
    if pattern is not None:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = str(base / pattern)
    if reports is None:
        problems.append(f"{where}: reports (the folder for reports) is required")

    options: dict[str, Any] = {}
    for key, hint in types.items():
        if key not in data:
            continue
        value = _convert(key, data[key], hint, base, where, problems)
        if value is not _INVALID:
            options[key] = value
    for key, minimum in _MINIMUM.items():
        value = options.get(key, min_age if key == "min_age" else None)
        if isinstance(value, (int, float)) and value < minimum:
            problems.append(f"{where}: {key} must be at least {minimum:g}")
    if options.get("operating_limit") == 0:
        options["operating_limit"] = None  # as on the command line: 0 turns the tracking off
    portal = options.get("portal")
    if isinstance(portal, str) and _WEBHOOK_IN_URL.search(portal):
        register_secret(*_webhook_code(portal))
        problems.append(
            f"{where}: portal looks like a webhook URL, whose code is a secret: keep the URL in an "
            "environment variable and name it with webhook_env; portal is for OAuth mode "
            "(https://example.bitrix24.com)"
        )
    if webhook_env or webhook_file:
        for key in ("portal", "oauth_file"):
            if key in options:
                problems.append(
                    f"{where}: give either a webhook or OAuth (portal + oauth_file), not both"
                )
                break
    try:
        # The options' own rules (mode, batch size, rate...), without needing credentials.
        checkable = {k: v for k, v in options.items() if k not in ("dry_run", "report")}
        RunConfig(
            input=Path("x.csv"), report=Path("x.report.csv"), dry_run=True, **checkable
        ).check()
    except ConfigError as exc:
        problems.extend(f"{where}: {p}" for p in exc.problems)
    if problems:
        raise ConfigError(problems)
    assert reports is not None
    return Job(
        path=path,
        name=name,
        reports=reports,
        webhook_env=webhook_env,
        webhook_file=webhook_file,
        bot_tokens_file=bot_tokens_file,
        input=pattern,
        inbox=inbox,
        archive=archive,
        report_format=report_format,
        html=True if html is None else html,
        min_age=10.0 if min_age is None else float(min_age),
        options=options,
    )


_INVALID = object()


def _convert(key: str, value: Any, hint: Any, base: Path, where: str, problems: list[str]) -> Any:
    """A TOML value checked against the RunConfig field's type."""
    if key == "columns" or typing.get_origin(hint) is dict:
        return _columns(value, where, problems)
    if typing.get_origin(hint) is list:  # only = ["failed", "skipped"] (or "failed,skipped")
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(v, str) for v in items):
            listed = split_values(items)
            if listed:
                return listed
        problems.append(
            f'{where}: {key} must be a list of text such as ["failed"], not {_shown(value)}'
        )
        return _INVALID
    args = set(typing.get_args(hint)) or {hint}
    args.discard(type(None))
    if Path in args:
        if isinstance(value, str) and value.strip():
            p = Path(value).expanduser()
            return p if p.is_absolute() else base / p
        problems.append(f"{where}: {key} must be a path (text), not {_shown(value)}")
        return _INVALID
    if bool in args:
        if isinstance(value, bool):
            return value
        problems.append(f"{where}: {key} must be true or false, not {_shown(value)}")
        return _INVALID
    if float in args:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        problems.append(f"{where}: {key} must be a number, not {_shown(value)}")
        return _INVALID
    if int in args:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        problems.append(f"{where}: {key} must be a whole number, not {_shown(value)}")
        return _INVALID
    if str in args:
        if key == "sheet" and isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # sheet = 2: the 1-based sheet number
        if isinstance(value, str):
            return value
        problems.append(f"{where}: {key} must be text, not {_shown(value)}")
        return _INVALID
    problems.append(f"{where}: {key} cannot be set in a job file")
    return _INVALID


def _columns(value: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(value, dict):
        problems.append(f'{where}: columns must be a table such as columns = {{ botId = "Bot" }}')
        return _INVALID
    out: dict[str, str] = {}
    for field_name, column in value.items():
        canon = {"botid": "botId", "messageid": "messageId", "reaction": "reaction"}.get(
            field_name.replace("_", "").replace("-", "").casefold()
        )
        if canon is None:
            problems.append(
                f"{where}: columns.{field_name}: the fields are botId, messageId and reaction"
            )
        elif not isinstance(column, str) or not column.strip():
            problems.append(f"{where}: columns.{field_name} must be a column name (text)")
        else:
            out[canon] = column.strip()
    return out


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _shown(value: Any) -> str:
    text = repr(value)
    return redact(text if len(text) <= 40 else text[:39] + "…")


def _looks_like_url(text: str) -> bool:
    return "://" in text or "/rest/" in text


def _webhook_code(url: str) -> list[str]:
    match = re.search(r"/rest/\d+/([^/\s?#]+)", url)
    return [match.group(1)] if match else []


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


# --------------------------------------------------------------------------- state


class JobState:
    """Which input contents this job has processed: `{sha256: entry}`, in the reports folder.

    An entry is "running" from the moment a file is taken until its report is complete,
    then "done". A "running" entry found by a later run means: resume that report.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.files = {str(k): dict(v) for k, v in data["files"].items()}
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
                raise ConfigError(
                    f"the job's state file {path} is damaged ({exc}); move it away to start "
                    "afresh (every file in the inbox would then be processed again)"
                ) from None
            if data.get("version") != STATE_VERSION:
                raise ConfigError(
                    f"the job's state file {path} has format {data.get('version')!r}, and this"
                    f" reaction-cleanup reads format {STATE_VERSION}; run the job with the version"
                    " that wrote it, or move the file away to start afresh (every file in the"
                    " inbox would then be processed again)"
                )

    def save(self) -> None:
        data = {"version": STATE_VERSION, "files": self.files}
        write_atomic(self.path, json.dumps(data, indent=1, ensure_ascii=False))


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    path: Path
    mtime: float
    size: int


NOTHING_TO_DO = "; nothing to do"
# A file younger than min_age is waited for, within the run, when it reaches that age
# within this many seconds: a file dropped in just before the run is still taken.
MAX_SETTLE_WAIT = 15.0


def list_sources(
    job: Job, *, now: float | None = None, settle: Callable[[float], bool] | None = None
) -> tuple[list[Source], list[str]]:
    """Files to consider, oldest first, and notes about files left for a later run.

    `settle(seconds)` waits (False: the job is stopping). With it, files younger than
    `min_age` that reach it within MAX_SETTLE_WAIT are waited for and taken if they did
    not change meanwhile; without it (check-job) they are only noted."""
    now = time.time() if now is None else now
    notes: list[str] = []
    paths: list[Path] = []
    if job.inbox is not None:
        if not job.inbox.is_dir():
            raise ConfigError(f"inbox: {job.inbox} is not a folder")
        for entry in job.inbox.iterdir():
            name = entry.name.lower()
            if _is_temporary(entry.name) or not entry.is_file():
                continue
            if name.endswith(INBOX_SUFFIXES):
                paths.append(entry)
            elif name.endswith(_UNSUPPORTED_SHEETS):
                notes.append(
                    f"ignoring {entry}: this kind of spreadsheet is not read; save it as .xlsx or .csv"
                )
            else:
                log.debug("ignoring %s: not a spreadsheet the inbox reads", entry)
    else:
        assert job.input is not None
        skip = [p for p in (job.reports, job.archive) if p is not None]
        for match in glob.glob(job.input, recursive=True):
            p = Path(match)
            if p.is_file() and not _is_temporary(p.name) and not any(_inside(p, s) for s in skip):
                paths.append(p)
        if not paths and not glob.has_magic(job.input):
            notes.append(f"input {job.input} does not exist (yet){NOTHING_TO_DO}")
    sources: list[Source] = []
    young: list[tuple[Source, float]] = []  # (file, seconds until it is min_age old)
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            continue  # taken away while we looked
        age = now - st.st_mtime
        if age < job.min_age:
            left = job.min_age - max(age, 0.0)
            if settle is not None and left <= MAX_SETTLE_WAIT:
                young.append((Source(p, st.st_mtime, st.st_size), left))
                continue
            notes.append(_too_new(p, age, job.min_age))
            continue
        sources.append(Source(p, st.st_mtime, st.st_size))
    if young and settle is not None:
        wait = max(left for _, left in young)
        names = ", ".join(y.path.name for y, _ in young)
        log.info(
            "waiting %.0f s for %s to stay unchanged (min_age = %g s)", wait, names, job.min_age
        )
        stopping = not settle(wait)
        for y, _ in young:
            try:
                st = y.path.stat()
            except FileNotFoundError:
                continue
            if stopping or (st.st_mtime, st.st_size) != (y.mtime, y.size):
                notes.append(_too_new(y.path, time.time() - st.st_mtime, job.min_age))
            else:
                sources.append(y)
    sources.sort(key=lambda s: (s.mtime, s.path.name))
    return sources, notes


def _too_new(path: Path, age: float, min_age: float) -> str:
    return (
        f"leaving {path.name} for the next run: it changed {max(age, 0):.0f} s ago and may "
        f"still be being copied in (min_age = {min_age:g} s)"
    )


def _is_temporary(name: str) -> bool:
    lower = name.lower()
    return name.startswith((".", "~$")) or lower.endswith(_TEMP_SUFFIXES)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _stem(name: str) -> str:
    lower = name.lower()
    for ext in sorted(INBOX_SUFFIXES, key=len, reverse=True):
        if lower.endswith(ext):
            name = name[: -len(ext)]
            break
    else:
        name = Path(name).stem
    return re.sub(r"[^\w.-]+", "-", name).strip("-.")[:60] or "input"


def report_name(source: Path, sha256: str, started: float, fmt: str) -> str:
    """`2026-11-25T183000Z_<stem>_<sha8>.report.csv`: sorts by time, names the input."""
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(started))
    return f"{stamp}_{_stem(source.name)}_{sha256[:8]}.report.{fmt}"


def html_path(report: Path) -> Path:
    """The HTML review report next to a report: `x.report.csv` -> `x.report.html`."""
    return report.with_suffix(".html")


# --------------------------------------------------------------------------- running


# How bad a file's exit code is, for the job's overall code (higher is worse).
_SEVERITY = {EXIT_OK: 0, 1: 1, 4: 2, EXIT_USAGE: 3, EXIT_ABORTED: 4, 70: 5}


def _rank(code: int) -> int:
    return 6 if code in (EXIT_INTERRUPTED, EXIT_TERMINATED) else _SEVERITY.get(code, 5)


def worst(codes: Iterable[int]) -> int:
    """interrupted (130/143) > internal error (70) > aborted (3) > config/input (2) >
    locked (4) > rows failed (1) > ok (0)."""
    return max(codes, key=_rank, default=EXIT_OK)


@dataclass
class FileOutcome:
    """What happened to one input file in a job run."""

    source: Path
    sha256: str
    exit_code: int
    report: Path | None = None
    summary: RunSummary | None = None
    config: RunConfig | None = None
    resumed: bool = False
    complete: bool = False
    archived_to: Path | None = None
    html: Path | None = None
    error: str | None = None  # the file could not be processed at all
    stops_job: bool = False  # a problem every later file would hit too


@dataclass
class JobResult:
    job: str
    run_id: str
    files: list[FileOutcome] = field(default_factory=list)
    already_done: int = 0  # known contents found again (renamed copies, unarchived inputs)
    notes: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the loop ended early

    @property
    def exit_code(self) -> int:
        codes = [f.exit_code for f in self.files]
        # A signal between files (or while waiting for one) still ends the run as interrupted:
        # the files not reached wait for the next run.
        if self.stopped == "SIGTERM":
            codes.append(EXIT_TERMINATED)
        elif self.stopped == "SIGINT":
            codes.append(EXIT_INTERRUPTED)
        return worst(codes)

    def totals(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        out["rows"] = 0
        for f in self.files:
            if f.summary is not None:
                out["rows"] += f.summary.rows
                for s in Status:
                    out[s.value] += f.summary.by_status.get(s.value, 0)
        return out


def run_sources(
    job: Job,
    base: dict[str, Any],
    *,
    run_id: str,
    stop: StopSignal | None = None,
    progress: ProgressFactory | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    now: Callable[[], float] = time.time,
) -> JobResult:
    """Process every new (or unfinished) input of `job`. `base` comes from `Job.resolve()`.

    Raises LockedError when another run of this job holds its lock; per-file problems end up
    in the returned FileOutcomes. An abort (credentials, unreachable portal) or a signal ends
    the loop: the files not reached wait for the next run.
    """
    stop = stop or StopSignal()
    dry = bool(base.get("dry_run"))
    result = JobResult(job.name, run_id)
    lock: FileLock | None = None
    if not dry:
        job.reports.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(job.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LockedError(
                f"another run of job {job.name!r} is still working (lock {job.lock_path}); "
                "this run leaves the inputs to it"
            ) from None
    try:
        state = JobState(job.state_path)
        sources, notes = list_sources(
            job, now=now(), settle=lambda seconds: not stop.event.wait(seconds)
        )
        result.notes.extend(notes)
        for note in notes:
            if note.startswith("ignoring"):
                log.warning("%s", note)
            elif note.endswith(NOTHING_TO_DO):
                # The named input was archived by an earlier run, or has not come yet: a run
                # that finds nothing prints nothing (check-job still says it).
                log.debug("%s", note)
            else:
                log.info("%s", note)
        if stop.is_set:
            result.stopped = stop.reason
        for source in sources:
            if stop.is_set:
                result.stopped = stop.reason
                break
            try:
                sha = fingerprint(source.path)["sha256"]
            except FileNotFoundError:
                continue
            entry = state.files.get(sha)
            if entry is not None and entry.get("status") == "done":
                result.already_done += 1
                _already_done(job, source.path, entry, dry)
                if not dry:
                    state.save()
                continue
            outcome = _process(job, base, source.path, sha, state, run_id, stop, progress, now, dry)
            result.files.append(outcome)
            if on_file is not None:
                on_file(outcome)
            if _ends_loop(outcome):
                result.stopped = (
                    "aborted" if outcome.exit_code == EXIT_ABORTED else stop.reason or "error"
                )
                break
        return result
    finally:
        if lock is not None:
            lock.release()


def _ends_loop(outcome: FileOutcome) -> bool:
    return outcome.stops_job or outcome.exit_code in (
        EXIT_ABORTED,
        EXIT_INTERRUPTED,
        EXIT_TERMINATED,
    )


def _already_done(job: Job, path: Path, entry: dict[str, Any], dry: bool) -> None:
    """A content this job processed before: a renamed copy, or an input left in place."""
    if job.archive is None or dry:
        log.debug("skipping %s: already processed (report %s)", path, entry.get("report"))
        return
    target = _archive(path, job.archive)
    log.info(
        "%s was already processed on %s (report %s); moved it to %s",
        path.name,
        entry.get("finished", "?"),
        entry.get("report", "?"),
        target,
    )


def _process(
    job: Job,
    base: dict[str, Any],
    path: Path,
    sha: str,
    state: JobState,
    run_id: str,
    stop: StopSignal,
    progress: ProgressFactory | None,
    now: Callable[[], float],
    dry: bool,
) -> FileOutcome:
    entry = state.files.get(sha)
    resumed = entry is not None and entry.get("status") == "running" and bool(entry.get("report"))
    started = now()
    if resumed:
        assert entry is not None
        report = job.reports / str(entry["report"])
        log.info(
            "resuming %s (sha256 %s…): its report %s is unfinished", path.name, sha[:8], report.name
        )
    else:
        report = job.reports / report_name(path, sha, started, job.report_format)
        log.info("processing %s (sha256 %s…) -> %s", path.name, sha[:8], report.name)
    outcome = FileOutcome(path, sha, EXIT_OK, report=None if dry else report, resumed=resumed)
    if not dry:
        new_entry = dict(entry or {})
        new_entry.update(
            status="running",
            input=path.name,
            report=report.name,
            started=new_entry.get("started") or _iso(started),
            size=path.stat().st_size,
        )
        state.files[sha] = new_entry
        state.save()  # before anything is sent: a crash now still resumes this report
    config = RunConfig(
        input=path, report=report, resume=resumed, run_id=run_id, label=job.name, **base
    )
    outcome.config = config
    try:
        on_progress = progress(config.progress) if progress else None
        summary = run_file(config, stop=stop, on_progress=on_progress)
    except CleanupError as exc:
        outcome.exit_code, outcome.error = exc.exit_code, redact(exc)
        # An unreadable file or a busy report concerns this file only; a configuration
        # problem would hit every file alike.
        outcome.stops_job = not isinstance(exc, (InputError, ReportMismatchError, LockedError))
        log.error("%s: %s", path.name, redact(exc))
        if not dry and not resumed and not report.exists():
            state.files.pop(sha, None)  # nothing was written: the next run starts it afresh
            state.save()
        return outcome
    if stop.reason in ("SIGINT", "SIGTERM"):
        summary.interrupted = stop.reason
        summary.exit_code = EXIT_INTERRUPTED if stop.reason == "SIGINT" else EXIT_TERMINATED
    outcome.summary = summary
    outcome.exit_code = summary.exit_code
    if dry:
        return outcome
    outcome.complete = (
        not summary.aborted
        and not summary.interrupted
        and summary.by_status.get(Status.SKIPPED.value, 0) == 0
    )
    if job.html:
        outcome.html = _write_html(job, config, summary, report, path, sha)
    entry = state.files[sha]
    entry.update(exit_code=summary.exit_code, counts=_counts(summary), run_id=run_id)
    if not outcome.complete:
        state.save()
        log.warning(
            "%s: its report is not complete (%s); the next run resumes it",
            path.name,
            summary.aborted or summary.interrupted or "rows left unsent",
        )
        return outcome
    entry.update(status="done", finished=_iso(now()))
    state.save()  # done first: if the move below fails, the next run only finishes the move
    if job.archive is not None:
        try:
            outcome.archived_to = _archive(path, job.archive)
        except OSError as exc:
            log.error(
                "%s: could not move it to the archive %s (%s)", path.name, job.archive, exc.strerror
            )
            outcome.exit_code = worst([outcome.exit_code, EXIT_USAGE])
        else:
            entry["archived_to"] = str(outcome.archived_to)
            state.save()
    return outcome


def _write_html(
    job: Job, config: RunConfig, summary: RunSummary, report: Path, source: Path, sha: str
) -> Path | None:
    from cleanup.outputs.html import write_html

    out = html_path(report)
    data = summary_record(summary, config.settings())
    context = {
        "job": job.name,
        "job file": str(job.path),
        "input file": source.name,
        "input sha256": sha,
        "report file": report.name,
        "summary file": sidecar(report, ".summary.json").name,
    }
    try:
        write_html(data, report, out, context=context)
    except Exception as exc:  # a review page must never cost the run its result
        log.error("could not write the HTML report %s: %s", out, redact(exc))
        return None
    return out


def _archive(path: Path, archive: Path) -> Path:
    """Move `path` into `archive`, never overwriting: a clash gets the content's hash."""
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / path.name
    if target.exists():
        sha8 = fingerprint(path)["sha256"][:8]
        stem, ext = _split_ext(path.name)
        target = archive / f"{stem}_{sha8}{ext}"
        n = 2
        while target.exists():
            target = archive / f"{stem}_{sha8}_{n}{ext}"
            n += 1
    shutil.move(str(path), str(target))
    return target


def _split_ext(name: str) -> tuple[str, str]:
    lower = name.lower()
    for ext in sorted(INBOX_SUFFIXES, key=len, reverse=True):
        if lower.endswith(ext):
            return name[: -len(ext)], name[-len(ext) :]
    p = Path(name)
    return p.stem, p.suffix


def _counts(summary: RunSummary) -> dict[str, int]:
    return {s.value: summary.by_status.get(s.value, 0) for s in Status}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# --------------------------------------------------------------------------- check-job


@dataclass
class CheckResult:
    lines: list[str] = field(default_factory=list)


def check_job(job: Job, base: dict[str, Any]) -> CheckResult:
    """Validate what a run would use and ask the portal one cheap question. Sends no delete,
    moves and writes nothing (an OAuth refresh may rewrite the token file, as a run would).

    Raises ConfigError (exit 2) for configuration problems, FatalAPIError (exit 3) when the
    portal rejects the credentials or cannot be reached.
    """
    out = CheckResult()
    problems: list[str] = []
    config = RunConfig(input=Path("check.csv"), report=job.reports / "check.report.csv", **base)
    try:
        config.check()
    except ConfigError as exc:
        problems.extend(exc.problems)
    tokens: dict[int, str] | None = None
    if config.bot_tokens is not None:
        try:
            tokens = load_bot_tokens(Path(config.bot_tokens))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    out.lines.append(f"ok: job file {job.path} (job {job.name!r})")
    if tokens is not None:
        out.lines.append(f"ok: bot tokens for {len(tokens)} bot(s) in {config.bot_tokens}")
    if not config.dry_run or config.webhook or config.portal:
        out.lines.extend(_check_portal(config))
    out.lines.extend(_describe_sources(job))
    return out


def _check_portal(config: RunConfig) -> list[str]:
    from cleanup.pacing.throttle import Throttle
    from cleanup.portal.classify import OK, Kind, classify_answer
    from cleanup.portal.transport import NetworkError, Transport

    auth = config.make_auth()
    assert auth is not None
    rate, burst = config.effective_rate
    transport = Transport(
        auth,
        Throttle(rate, burst),
        timeout=min(config.timeout, 30.0),
        pool_size=1,
        allow_insecure_http=config.allow_insecure_http,
    )
    lines: list[str] = []
    try:
        answer = None
        for attempt in range(3):
            try:
                answer = transport.call("profile", {})
            except NetworkError as exc:
                raise FatalAPIError(
                    "PORTAL_UNREACHABLE", redact(exc), "check the address and the network"
                ) from None
            outcome = classify_answer(answer.status, answer.body, context="batch")
            if outcome.kind is Kind.RATE_LIMITED and attempt < 2:
                time.sleep(min(answer.retry_after or 2.0, 10.0))
                continue
            break
        assert answer is not None
        if outcome.error == "ERROR_METHOD_NOT_FOUND":
            # A portal without `profile` (checked before auth, so it proves nothing): ask an
            # empty batch instead, which every portal the job can use must take.
            try:
                answer = transport.batch({})
            except NetworkError as exc:
                raise FatalAPIError(
                    "PORTAL_UNREACHABLE", redact(exc), "check the address and the network"
                ) from None
            outcome = classify_answer(answer.status, answer.body, context="batch")
            refused = (Kind.FATAL, Kind.EXPIRED_TOKEN, Kind.TRANSIENT, Kind.RATE_LIMITED)
            if outcome.kind not in refused:
                outcome = OK  # past the credentials check, even if it disliked the empty batch
        if outcome.kind is not Kind.OK:
            raise FatalAPIError(
                outcome.error or f"HTTP_{answer.status}",
                outcome.description,
                outcome.hint or "the credentials were not accepted",
            )
        user = answer.body.get("result") if isinstance(answer.body, dict) else None
        user_id = user.get("ID") if isinstance(user, dict) else None
        who = f" (user {user_id})" if user_id else ""
        lines.append(f"ok: {auth.kind} credentials accepted by {auth.host}{who}")
        # The imbot scope: without it every delete fails. Only judged when `scope` answers a list.
        try:
            scope = transport.call("scope", {})
        except NetworkError:
            scope = None
        scopes = (
            scope.body.get("result") if scope is not None and isinstance(scope.body, dict) else None
        )
        if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
            if "imbot" not in scopes:
                raise FatalAPIError(
                    "insufficient_scope",
                    f"the {auth.kind} has the scopes {', '.join(scopes) or '(none)'}",
                    "Add the 'imbot' scope to the webhook or application",
                )
            lines.append("ok: scope imbot granted")
        else:
            lines.append("note: the scope list was not available; imbot not checked")
    finally:
        transport.close()
    return lines


def _describe_sources(job: Job) -> list[str]:
    state = JobState(job.state_path) if job.state_path.exists() else None
    # A file that comes of age within the wait a run allows is one the next run takes.
    sources, notes = list_sources(job, settle=lambda _seconds: True)
    new = resume = done = 0
    for source in sources:
        sha = fingerprint(source.path)["sha256"]
        entry = state.files.get(sha) if state else None
        if entry is None:
            new += 1
        elif entry.get("status") == "running":
            resume += 1
        else:
            done += 1
    where = f"inbox {job.inbox}" if job.inbox is not None else f"input {job.input}"
    lines = [
        f"ok: {where}: {len(sources)} spreadsheet(s): {new} new, {resume} to resume, "
        f"{done} already processed"
    ]
    lines += [f"note: {n}" for n in notes]
    lines.append(
        f"ok: reports go to {job.reports}" + (f", inputs to {job.archive}" if job.archive else "")
    )
    return lines


__all__ = [
    "JOB_KEYS",
    "FileOutcome",
    "Job",
    "JobResult",
    "check_job",
    "job_keys",
    "list_sources",
    "load_job",
    "run_sources",
    "worst",
]
