"""A job's state file says its format; one of another format is refused, not misread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleanup.errors import StateFileError
from cleanup.jobs.state import STATE_VERSION, JobState


def test_the_state_file_round_trips_with_its_format(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "night.state.json"
    state = JobState(path)
    state.files["ab12"] = {"status": "done", "report": "x.report.csv"}
    state.save()
    assert json.loads(path.read_text())["version"] == STATE_VERSION
    assert JobState(path).files == {"ab12": {"status": "done", "report": "x.report.csv"}}
    assert [p.name for p in path.parent.iterdir()] == ["night.state.json"]  # no temporary left


@pytest.mark.parametrize("version", [STATE_VERSION + 1, None])
def test_a_state_file_of_another_format_is_refused(tmp_path: Path, version: int | None) -> None:
    path = tmp_path / "night.state.json"
    path.write_text(json.dumps({"version": version, "files": {}}))
    with pytest.raises(StateFileError) as err:
        JobState(path)
    assert f"has format {version!r}, and this reaction-cleanup reads format {STATE_VERSION}" in str(
        err.value
    )
    assert "move the file away to start afresh" in str(err.value)
