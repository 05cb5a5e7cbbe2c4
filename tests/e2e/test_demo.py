"""`reaction-cleanup demo`, and sample_data/ kept in step with the generator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import Result

from tests.helpers.cli import read_report

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_data"
RunCli = Callable[..., Result]

EXPECTED_STATUSES = {"removed": 90, "failed": 11, "invalid": 7, "duplicate": 3}
EXPECTED_ERRORS = {
    "REACTION_NOT_FOUND": 5,
    "ACCESS_DENIED": 3,
    "BOT_OWNERSHIP_ERROR": 3,
    "INVALID_BOT_ID": 2,
    "INVALID_MESSAGE_ID": 2,
    "INVALID_REACTION": 2,
    "NO_BOT_TOKEN": 1,
}


@pytest.mark.parametrize("kind", ["csv", "xlsx", "parquet"])
def test_demo_runs_the_real_job(run_cli: RunCli, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--input", kind)
    assert result.exit_code == 0, result.stderr
    report_path = out / f"reactions-{kind}.report.csv"
    assert str(report_path) in result.stderr
    report = read_report(report_path)
    assert len(report) == 111
    assert [int(r["row"]) for r in report] == list(range(1, 112))
    assert Counter(r["status"] for r in report) == EXPECTED_STATUSES
    assert Counter(r["error"] for r in report if r["error"]) == EXPECTED_ERRORS
    # The duplicates name the rows they repeat.
    dups = [r["error_description"] for r in report if r["status"] == "duplicate"]
    assert dups == ["duplicate of row 2", "duplicate of row 3", "duplicate of row 4"]
    # The summary on stderr and as JSON next to the report.
    summary = json.loads((out / f"reactions-{kind}.report.csv.summary.json").read_text())
    assert summary["by_status"] == {**EXPECTED_STATUSES, "skipped": 0}
    assert "removed" in result.stderr and "rows/s" in result.stderr
    # The HTML page people review: its path printed first (alone on stdout), the file there.
    page = Path(result.stdout.splitlines()[0])
    assert result.stdout == f"{page}\n"
    assert page.is_absolute() and page == (out / f"reactions-{kind}.report.html").absolute()
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") or html.lstrip().lower().startswith("<!doctype")
    assert "REACTION_NOT_FOUND" in html and f"html: {page}" in result.stderr
    # No secret of the demo portal leaks into what it prints or writes.
    written = result.stderr + result.stdout + report_path.read_text() + html
    assert "demo-webhook-code" not in written and "demo-token" not in written


def test_demo_default_output_folder(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("demo")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "reaction-cleanup-demo" / "reactions-csv.report.csv").exists()
    page = tmp_path / "reaction-cleanup-demo" / "reactions-csv.report.html"
    assert result.stdout.splitlines()[0] == str(page) and page.exists()


def test_sample_data_matches_the_generator(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    done = subprocess.run(
        [sys.executable, "-m", "cleanup.sandbox.demo", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in SAMPLES.iterdir() if not p.name.startswith("."))
    for name in ("reactions.csv", "bot_tokens.json", "portal_state.json"):
        assert (out / name).read_bytes() == (SAMPLES / name).read_bytes(), name
    # Workbooks and Parquet files carry timestamps and library versions: compare contents.
    csv_rows = pd.read_csv(SAMPLES / "reactions.csv", dtype=str, keep_default_na=False)

    def read(path: Path) -> pd.DataFrame:
        if path.suffix == ".xlsx":
            return pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        return pd.read_parquet(path)

    for name in ("reactions.xlsx", "reactions.parquet"):
        fresh, kept = read(out / name), read(SAMPLES / name)
        pd.testing.assert_frame_equal(fresh, kept, check_dtype=False)
        pd.testing.assert_frame_equal(kept.astype(str), csv_rows, check_dtype=False)
