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
        [
            sys.executable,
            "bench/ingest.py",
            "--n",
            "2",
            "--rounds",
            "1",
            *only,
            "--profile-db",
            "--output",
            str(output),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    report = json.loads(output.read_text())
    results = report["results"]
    assert set(results) == set(CONTENDERS)
    for name, row in results.items():
        # Every contender stored the same 4 files (2 Markdown, 2 PDFs); ours all chunk them alike
        assert row["files"] == 4, name
        assert row["chunks"] > 0, name
        assert row["machine_cpu_seconds"] > 0, name
        assert row["x_floor_seconds"] > 0, name
    assert results["direct after"]["chunks"] == results["worker2 after"]["chunks"] == results["seed"]["chunks"]
    # The floor splits into fixed windows of its own, not with the project's chunker
    assert results["floor"]["chunks"] != results["seed"]["chunks"]
    for name in ("direct after", "worker2 after"):
        # The headline includes the default compaction, also reported apart
        assert 0 < results[name]["compaction_seconds"] < results[name]["seconds"], name
        assert "statistics" in results[name]["compaction_step_seconds"], name
    assert report["results"]["worker2 after"]["first_document_seconds"] is not None
    assert report["results"]["worker2 after"]["moto_cpu_seconds"] > 0  # moto answered the worker
    assert "x floor" in completed.stdout  # the side-by-side table
    assert report["cold_import_ms"]["lambda_entry"] > 0
    profile = report["profile_db_worker2_after"]
    statements = [row["statement"] for row in profile["load_statements"]]
    assert any(statement.startswith("COPY") for statement in statements)  # the chunks' COPY
    assert profile["compaction_statements"]
    assert any(row["function"].endswith("chunks_fill_tsv") for row in profile["functions"])  # the full-text trigger
