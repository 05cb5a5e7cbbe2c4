"""The metrics file's content (cleanup.outputs.metrics), read back with prometheus-client."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cleanup.outputs.metrics import LAST_SUCCESS, JobFigures, read_previous, write_metrics


def lines(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(path.read_text())
        for s in f.samples
    }


def figures(job: str, code: int, ended: float) -> JobFigures:
    return JobFigures(job, code, ended, 1.5, {"removed": 3, "failed": 1}, 2, 0)


def test_last_success_is_kept_when_a_run_does_not_finish(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "m.prom"
    write_metrics(path, [figures("a", 1, 1000.0), figures("b", 0, 1000.0)])
    write_metrics(path, [figures("a", 3, 2000.0)])
    got = lines(path)
    assert got[(LAST_SUCCESS, (("job", "a"),))] == 1000.0
    assert got[("reaction_cleanup_exit_code", (("job", "a"),))] == 3
    assert got[("reaction_cleanup_exit_code", (("job", "b"),))] == 0  # b's lines kept
    assert got[("reaction_cleanup_rows", (("job", "a"), ("status", "restored")))] == 0


def test_a_job_that_never_finished_has_no_last_success(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    write_metrics(path, [figures("new", 2, 10.0)])
    assert not any(name == LAST_SUCCESS for name, _ in lines(path))


def test_a_garbled_file_is_written_afresh(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    path.write_text("this is { not the text format\n")
    assert read_previous(path) == {}
    write_metrics(path, [figures("a", 0, 5.0)])
    assert lines(path)[(LAST_SUCCESS, (("job", "a"),))] == 5.0
