"""Issue 14: the deployment files in jobs/ work with the image the Dockerfile builds.

The Kubernetes manifests are validated against the Kubernetes schemas (offline, with
kubernetes-validate, as .ci/run does), and then checked for what the schemas cannot see:
every container locked down as the image expects, the image the container guide's build command
makes, every volume, Secret key and ConfigMap they name defined beside them, job files that
load, and the exit-code policy (row failures never retried, aborts retried). The alert rules
are checked against the documented metric names and, where promtool is installed (CI
installs it), by `promtool test rules`; the systemd units by `systemd-analyze verify`; the
crontab line's exit-code filter by running it.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from cleanup.cli import main
from cleanup.exits import EXIT_OUTPUT, EXIT_PAUSED
from cleanup.jobs.schema import job_keys, load_job_file
from cleanup.version import __version__

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
MANIFESTS = sorted(JOBS.glob("kubernetes-*.yaml"))
IMAGE = f"localhost/reaction-cleanup:{__version__}"  # podman build -t IMAGE . (docs/how-to/container.md)
UID = 10001  # the Dockerfile's USER
# The oldest Kubernetes whose Job has everything the manifests use as GA (podFailurePolicy,
# backoffLimitPerIndex), and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
# Issue 14's metric names (docs/how-to/prometheus.md).
METRICS = {
    "reaction_cleanup_rows",
    "reaction_cleanup_last_run_timestamp_seconds",
    "reaction_cleanup_last_success_timestamp_seconds",
    "reaction_cleanup_run_duration_seconds",
    "reaction_cleanup_requests",
    "reaction_cleanup_limit_refusals",
    "reaction_cleanup_exit_code",
    "reaction_cleanup_rows_left",  # issue 18
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def job_specs(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        if doc["kind"] == "CronJob":
            yield doc["spec"]["jobTemplate"]["spec"]
        elif doc["kind"] == "Job":
            yield doc["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def schema_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            problems.append(
                f"{doc['kind']}/{doc['metadata']['name']} {version}: {where}: {e.message}"
            )
    return problems


@pytest.fixture(params=MANIFESTS, ids=lambda p: p.name)
def manifest(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return documents(request.param)


def test_jobs_has_the_cronjob_and_the_indexed_job() -> None:
    kinds = {p.name: [d["kind"] for d in documents(p)] for p in MANIFESTS}
    assert "CronJob" in kinds["kubernetes-cronjob.yaml"]
    specs = list(job_specs(documents(JOBS / "kubernetes-many-portals.yaml")))
    assert [s.get("completionMode") for s in specs] == ["Indexed"]


def test_every_manifest_validates_against_the_kubernetes_schemas(
    manifest: list[dict[str, Any]],
) -> None:
    problems = [p for doc in manifest for p in schema_problems(doc)]
    assert problems == []


@pytest.mark.parametrize(
    "break_it",
    [
        lambda spec: spec.update(backoffLimitPerIndx=1),  # a misspelt field
        lambda spec: spec.update(completions="two"),  # a wrong type
        lambda spec: spec["template"]["spec"].pop("containers"),  # a required field
    ],
    ids=["unknown field", "wrong type", "missing field"],
)
def test_a_broken_manifest_fails_validation(break_it: Any) -> None:
    docs = documents(JOBS / "kubernetes-many-portals.yaml")
    cronjob = copy.deepcopy(next(iter(by_kind(docs, "CronJob").values())))
    break_it(cronjob["spec"]["jobTemplate"]["spec"])
    assert schema_problems(cronjob)


def test_every_container_runs_the_built_image_locked_down(
    manifest: list[dict[str, Any]],
) -> None:
    for spec in job_specs(manifest):
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID
        assert pod["securityContext"]["fsGroup"] == UID  # the volume is writable by it
        for c in containers(pod):
            assert c["image"] == IMAGE, c["name"]
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert "add" not in sc["capabilities"], c["name"]


def test_the_dockerfile_builds_what_the_manifests_expect() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"^USER {UID}:{UID}$", dockerfile, re.M)
    assert 'ENTRYPOINT ["reaction-cleanup"]' in dockerfile
    assert re.search(r"^VOLUME \[\"/data\"\]$", dockerfile, re.M)
    guide = (ROOT / "docs" / "how-to" / "container.md").read_text()
    assert f"podman build -t {IMAGE} ." in guide


def test_everything_a_pod_mounts_is_defined_beside_it(manifest: list[dict[str, Any]]) -> None:
    claims = by_kind(manifest, "PersistentVolumeClaim")
    secrets = by_kind(manifest, "Secret")
    config_maps = by_kind(manifest, "ConfigMap")
    for spec in job_specs(manifest):
        pod = spec["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in containers(pod):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, mount
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_secrets_hold_placeholders_only(manifest: list[dict[str, Any]]) -> None:
    for secret in by_kind(manifest, "Secret").values():
        assert "data" not in secret  # stringData: readable, and visibly a placeholder
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, key


def mounted_job_files(manifest: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path in the container, job file text, the pod spec) for each job file mounted."""
    config_maps = by_kind(manifest, "ConfigMap")
    for spec in job_specs(manifest):
        pod = spec["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in pod["containers"][0]["volumeMounts"]:
            source = volumes[mount["name"]].get("configMap")
            if source:
                for key, text in config_maps[source["name"]]["data"].items():
                    yield f"{mount['mountPath']}/{key}", text, pod


def test_the_job_files_load_and_name_only_mounted_secrets(
    manifest: list[dict[str, Any]], tmp_path: Path
) -> None:
    known = set(job_keys())
    found = list(mounted_job_files(manifest))
    assert found
    for path, text, pod in found:
        keys = tomllib.loads(text)
        assert keys.get("failed_rows_exit_code") == 0, path  # docs: row failures exit 0
        # Secret files exist in the container only as the Secret's keys under its mount.
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        secret_files = {
            f"{mounts[v['name']]}/{key}"
            for v in pod["volumes"]
            if "secret" in v
            for key in by_kind(manifest, "Secret")[v["secret"]["secretName"]]["stringData"]
        }
        for key in ("webhook_file", "bot_tokens_file"):
            assert keys[key] in secret_files, (path, key)
        for key in ("inbox", "reports", "archive", "metrics_file"):
            assert keys[key].startswith("/data/"), (path, key)  # on the volume
        # The file loads as run-job would load it, with the secret files in place.
        job = tmp_path / Path(path).name
        assert set(keys) <= known, set(keys) - known
        job.write_text(
            text.replace('"/secrets/', f'"{tmp_path}/').replace('"/data/', f'"{tmp_path}/')
        )
        for key in ("webhook_file", "bot_tokens_file"):
            (tmp_path / Path(keys[key]).name).write_text('{"456": "token"}')
        for folder in (Path(keys["inbox"]), Path(keys["metrics_file"]).parent):
            (tmp_path / folder.relative_to("/data")).mkdir(parents=True, exist_ok=True)
        loaded = load_job_file(job)
        assert loaded.name == keys["name"]
        assert loaded.options["failed_rows_exit_code"] == 0
        assert loaded.options["metrics_file"] == tmp_path / Path(keys["metrics_file"]).relative_to(
            "/data"
        )


def test_the_arguments_are_run_job_options(manifest: list[dict[str, Any]]) -> None:
    run_job = main.get_command(click.Context(main), "run-job")
    assert run_job is not None
    options = {opt for p in run_job.params for opt in getattr(p, "opts", [])}
    for spec in job_specs(manifest):
        args = spec["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "run-job"
        for arg in args[1:]:
            if arg.startswith("--"):
                assert arg in options, arg


def test_row_failures_are_never_retried_and_aborts_are(manifest: list[dict[str, Any]]) -> None:
    for spec in job_specs(manifest):
        actions: dict[int, str] = {}
        rules = spec["podFailurePolicy"]["rules"]
        for rule in rules:
            for code in rule.get("onExitCodes", {}).get("values", []):
                actions.setdefault(code, rule["action"])
        stop = "FailIndex" if spec.get("completionMode") == "Indexed" else "FailJob"
        # 1 (rows failed, if the job file does not map it to 0), 2, 4 and 5 (an output file
        # not written): retrying cannot change the answer. 3 (aborted), 70 and the signals:
        # retried.
        # 75 (paused by a time bound): the next scheduled run continues, not a retry now.
        never = (1, 2, 4, EXIT_OUTPUT, EXIT_PAUSED)
        assert {code: actions.get(code) for code in never} == dict.fromkeys(never, stop)
        assert {code: actions.get(code) for code in (3, 70, 143)} == dict.fromkeys(
            (3, 70, 143), "Count"
        )
        assert any(
            rule["action"] == "Ignore"
            and rule["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
            for rule in rules
        )
        retries = spec.get("backoffLimitPerIndex", spec.get("backoffLimit"))
        assert retries and retries >= 1


def test_the_indexed_job_has_one_index_per_job_file() -> None:
    docs = documents(JOBS / "kubernetes-many-portals.yaml")
    (spec,) = job_specs(docs)
    files = list(mounted_job_files(docs))
    assert spec["completions"] == len(files) >= 2
    assert "maxFailedIndexes" not in spec  # one portal's failure never stops the others
    assert "backoffLimit" not in spec  # per index instead
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert args[1:4] == ["--index", "$(JOB_COMPLETION_INDEX)", "/config/portals/"]
    names = [tomllib.loads(text)["name"] for _, text, _ in files]
    assert len(set(names)) == len(names)  # own state, lock and metrics per portal
    folders = [tomllib.loads(text)["reports"] for _, text, _ in files]
    assert len(set(folders)) == len(folders)


# ---------------------------------------------------------------- Prometheus alert rules

ALERTS = JOBS / "prometheus-alerts.yaml"


def test_alert_rules_use_the_documented_metrics() -> None:
    (group,) = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert {
        "ReactionCleanupNoSuccessfulRun",
        "ReactionCleanupFailedRows",
        "ReactionCleanupAborted",
    } <= set(rules)
    for name, rule in rules.items():
        used = set(re.findall(r"\breaction_cleanup_\w+", rule["expr"]))
        assert used and used <= METRICS, (name, used - METRICS)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    assert (
        "reaction_cleanup_last_success_timestamp_seconds"
        in rules["ReactionCleanupNoSuccessfulRun"]["expr"]
    )
    assert 'status="failed"' in rules["ReactionCleanupFailedRows"]["expr"]
    assert re.search(r"reaction_cleanup_exit_code == 3\b", rules["ReactionCleanupAborted"]["expr"])


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="promtool is not installed (CI installs it)"
)
def test_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = Path(__file__).with_name("prometheus-alerts.promtool.yaml")
    tested = subprocess.run(
        ["promtool", "test", "rules", cases.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=cases.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


# ---------------------------------------------------------------- systemd and cron


def unit_values(path: Path, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", path.read_text(), re.M)


def test_systemd_succeeds_on_row_failures_and_retries_aborts_only() -> None:
    service = JOBS / "reaction-cleanup.service"
    (exec_start,) = unit_values(service, "ExecStart")
    assert " run-job jobs/example.toml " in exec_start
    assert set(" ".join(unit_values(service, "SuccessExitStatus")).split()) == {
        "1", str(EXIT_PAUSED), "143",
    }  # fmt: skip
    assert unit_values(service, "Restart") == ["on-failure"]
    assert set(" ".join(unit_values(service, "RestartPreventExitStatus")).split()) == {
        "2", "4", str(EXIT_OUTPUT),
    }  # fmt: skip
    assert unit_values(JOBS / "reaction-cleanup.timer", "OnCalendar")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path: Path) -> None:
    # The unit runs a program installed elsewhere: verify a copy that runs /bin/true.
    text = (JOBS / "reaction-cleanup.service").read_text()
    text = re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", text, flags=re.M)
    text = re.sub(r"^EnvironmentFile=", "EnvironmentFile=-", text, flags=re.M)
    (tmp_path / "reaction-cleanup.service").write_text(text)
    shutil.copy(JOBS / "reaction-cleanup.timer", tmp_path)
    verified = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            "reaction-cleanup.service",
            "reaction-cleanup.timer",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    complaints = [line for line in verified.stderr.splitlines() if "reaction-cleanup" in line]
    assert verified.returncode == 0 and complaints == [], verified.stderr


@pytest.mark.parametrize(
    ("code", "mailed"),
    [
        (0, False),
        (1, False),
        (2, True),
        (3, True),
        (4, True),
        (5, True),
        (70, True),
        (75, False),
        (143, True),
    ],
)
def test_cron_mails_only_runs_that_did_not_finish(tmp_path: Path, code: int, mailed: bool) -> None:
    (line,) = [
        line
        for line in (JOBS / "crontab.example").read_text().splitlines()
        if re.match(r"^[\d*]", line)
    ]
    command = line.split(None, 5)[5]
    assert " run-job jobs/example.toml " in command
    # The same command with run-job replaced by a program that exits `code`.
    command = command[command.index("{") :]
    command = re.sub(
        r"\./\.venv/bin/reaction-cleanup run-job [^>]*", f"sh -c 'exit {code}' ", command
    )
    command = command.replace("/var/log/reaction-cleanup.log", str(tmp_path / "log"))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    assert bool(done.stdout) is mailed, done.stdout  # cron mails what a job prints
    assert done.stderr == ""
    if mailed:
        assert f"exited {code}" in done.stdout
