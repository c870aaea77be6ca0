"""`bench/ingest.py` runs as the README says, end to end, on a tiny workload (its figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from pathlib import Path

CONTENDERS = ("floor", "seed", "direct after", "worker2 after")


@pytest.mark.slow
def test_the_ingest_benchmark_measures_every_contender_and_writes_its_report(tmp_path: Path) -> None:
    output = tmp_path / "ingest.json"
    only = [argument for name in CONTENDERS for argument in ("--only", name)]
    completed = subprocess.run(
        [sys.executable, "bench/ingest.py", "--n", "2", "--rounds", "1", *only, "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads(output.read_text())
    assert set(report["results"]) == set(CONTENDERS)
    for name, row in report["results"].items():
        # Every contender stored every chunk of the same 4 files (2 Markdown, 2 PDFs)
        assert (row["files"], row["chunks"]) == (4, report["results"]["floor"]["chunks"]), name
        assert row["chunks"] > 0
        assert row["machine_cpu_seconds"] > 0, name
    assert report["results"]["direct after"]["compaction_seconds"] is not None
    assert report["results"]["worker2 after"]["first_document_seconds"] is not None
    assert report["results"]["worker2 after"]["moto_cpu_seconds"] > 0  # moto answered the worker
    assert "x floor" in completed.stdout  # the side-by-side table
    assert report["cold_import_ms"]["lambda_entry"] > 0
