"""Issue 14: the metrics file (Prometheus text format) and the Pushgateway push.

The file is read back with prometheus-client's own parser, as Prometheus would read it
through node_exporter's textfile collector, and compared with the runs' summary JSON.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

from cleanup.outputs.metrics import METRICS
from cleanup.sandbox import SandboxPortal
from tests.helpers.jobs import likes
from tests.helpers.portals import Portal, webhooks

PortalFactory = Callable[..., SandboxPortal]
RunCli = Callable[..., Result]


def samples(path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{metric: {sorted labels: value}}, parsed by prometheus-client."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(parsed: dict[str, Any], name: str, **labels: str) -> float:
    return float(parsed[f"reaction_cleanup_{name}"][tuple(sorted(labels.items()))])


def test_metrics_file_matches_each_jobs_summary(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    ok = Portal(tmp_path, portal_factory(likes(6)), "clean")
    some_failed = Portal(tmp_path, portal_factory(likes(4)), "partly")
    ok.drop(likes(6))
    some_failed.drop(likes(6))  # two rows the portal does not have: failed
    metrics = tmp_path / "textfile" / "new-folder" / "reaction-cleanup.prom"
    before = time.time()

    result = run_cli(
        "run-job", ok.job, some_failed.job, "--metrics-file", metrics, env=webhooks(ok, some_failed)
    )

    assert result.exit_code == 1, result.output
    parsed = samples(metrics)
    assert set(parsed) == set(METRICS)  # every metric, nothing else
    for p, code in ((ok, 0), (some_failed, 1)):
        (summary,) = p.summaries()
        for status, count in summary["by_status"].items():
            assert value(parsed, "rows", job=p.name, status=status) == count, (p.name, status)
        assert value(parsed, "requests", job=p.name) == summary["requests"]
        assert value(parsed, "limit_refusals", job=p.name) == summary["limit_refusals"]
        assert value(parsed, "exit_code", job=p.name) == code == summary["exit_code"]
        ended = value(parsed, "last_run_timestamp_seconds", job=p.name)
        assert before <= ended <= time.time()
        # Exit 0 and exit 1 (only rows failed) are both a run that got to its end.
        assert value(parsed, "last_success_timestamp_seconds", job=p.name) == ended
        assert 0 < value(parsed, "run_duration_seconds", job=p.name) < 60
    text = metrics.read_text()
    for p in (ok, some_failed):
        assert p.portal.webhook_url().split("/rest/")[1].split("/")[1] not in text  # no secret
    assert not [f for f in metrics.parent.iterdir() if f != metrics]  # no temporary file left


def test_last_success_is_carried_over_an_aborted_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    p = Portal(tmp_path, portal_factory(likes(3)), "nightly", metrics_file="metrics/job.prom")
    other = Portal(tmp_path, portal_factory(likes(1)), "other")
    p.drop(likes(3))
    assert run_cli("run-job", p.job, env=webhooks(p)).exit_code == 0
    metrics = tmp_path / "metrics" / "job.prom"  # relative to the job file's folder
    first = samples(metrics)
    succeeded = value(first, "last_success_timestamp_seconds", job="nightly")
    # Another job writes its lines into the same file: ours are kept.
    other_metrics = ["--metrics-file", metrics]
    assert run_cli("run-job", other.job, *other_metrics, env=webhooks(other)).exit_code == 0
    assert value(samples(metrics), "exit_code", job="nightly") == 0

    p.drop(likes(2, first=2001), "more.csv")
    aborted = run_cli("run-job", p.job, env=webhooks(wrong=p))

    assert aborted.exit_code == 3
    parsed = samples(metrics)
    assert value(parsed, "exit_code", job="nightly") == 3
    assert value(parsed, "last_run_timestamp_seconds", job="nightly") > succeeded
    assert value(parsed, "last_success_timestamp_seconds", job="nightly") == succeeded
    assert value(parsed, "rows", job="nightly", status="skipped") == 2
    assert value(parsed, "exit_code", job="other") == 0  # the other job's lines stay


def test_a_job_file_that_cannot_start_still_writes_its_exit_code(
    run_cli: RunCli, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\nreports = "r"\ninbox = "in"\nwebhook_env = "UNSET_X"\n')
    metrics = tmp_path / "m.prom"

    result = run_cli("run-job", broken, "--metrics-file", metrics, env={})

    assert result.exit_code == 2
    parsed = samples(metrics)
    assert value(parsed, "exit_code", job="broken") == 2
    assert ("job", "broken") not in {
        label
        for labels in parsed.get("reaction_cleanup_last_success_timestamp_seconds", {})
        for label in labels
    }


def test_an_empty_inbox_is_a_successful_run(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    # Nothing to do for a week must not look like "no successful run".
    p = Portal(tmp_path, portal_factory(likes(1)), "quiet", metrics_file="q.prom")
    result = run_cli("run-job", p.job, env=webhooks(p))
    assert result.exit_code == 0 and result.output == ""
    parsed = samples(tmp_path / "q.prom")
    assert value(parsed, "exit_code", job="quiet") == 0
    assert value(parsed, "last_success_timestamp_seconds", job="quiet") > 0
    assert value(parsed, "rows", job="quiet", status="removed") == 0


def test_run_writes_metrics_too(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    from tests.helpers.cli import portal_args, write_rows

    portal = portal_factory(likes(2))
    rows = write_rows(tmp_path / "reactions.csv", likes(2))
    metrics = tmp_path / "run.prom"
    result = run_cli("run", rows, *portal_args(portal, tmp_path), "--metrics-file", metrics)
    assert result.exit_code == 0, result.output
    parsed = samples(metrics)
    assert value(parsed, "rows", job="reactions", status="removed") == 2
    assert value(parsed, "requests", job="reactions") == 1


class _Recorder(http.server.BaseHTTPRequestHandler):
    pushes: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.pushes.append(("POST", self.path, body))
        self.send_response(200)
        self.end_headers()

    def do_PUT(self) -> None:
        self.do_POST()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    pushes: list[tuple[str, str, bytes]] = []
    handler = type("Recorder", (_Recorder,), {"pushes": pushes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", pushes
    server.shutdown()
    server.server_close()


def test_pushgateway_gets_each_jobs_figures(
    portal_factory: PortalFactory,
    run_cli: RunCli,
    tmp_path: Path,
    pushgateway: tuple[str, list[tuple[str, str, bytes]]],
) -> None:
    url, pushes = pushgateway
    a = Portal(tmp_path, portal_factory(likes(2)), "alpha")
    b = Portal(tmp_path, portal_factory(likes(2)), "beta")
    for p in (a, b):
        p.drop(likes(2))

    result = run_cli("run-job", a.job, b.job, "--pushgateway", url, env=webhooks(a, b))

    assert result.exit_code == 0, result.output
    by_path = {path: body.decode() for method, path, body in pushes if method == "POST"}
    assert set(by_path) == {"/metrics/job/alpha", "/metrics/job/beta"}
    families = {f.name: f for f in text_string_to_metric_families(by_path["/metrics/job/alpha"])}
    rows = {s.labels["status"]: s.value for s in families["reaction_cleanup_rows"].samples}
    assert rows["removed"] == 2
    assert {s.labels["job"] for f in families.values() for s in f.samples} == {"alpha"}


def test_an_unreachable_pushgateway_is_logged_not_fatal(
    portal_factory: PortalFactory, run_cli: RunCli, tmp_path: Path
) -> None:
    p = Portal(tmp_path, portal_factory(likes(1)), "alone")
    p.drop(likes(1))
    result = run_cli("run-job", p.job, "--pushgateway", "http://127.0.0.1:9", env=webhooks(p))
    assert result.exit_code == 0
    assert "could not push the metrics to http://127.0.0.1:9" in result.stderr
