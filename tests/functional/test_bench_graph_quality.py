"""The graph benchmark as its docstring runs it, on a slice: coverage and co-relevance beside the BM25 reference."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.paths import REPO_ROOT


@pytest.mark.slow
def test_the_graph_benchmark_runs_on_a_slice_and_reports_each_list(tmp_path):
    output = tmp_path / "graph.json"
    env = {**os.environ, "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "1"}
    command = ["bench/graph_quality.py", "--collections", "cisi", "--embedders", "hashing-v2", "--docs", "40"]
    result = subprocess.run(
        [sys.executable, *command, "--output", str(output)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cisi = json.loads(output.read_text())["collections"]["cisi"]
    reference = cisi["bm25_reference"]
    assert reference["coverage"] == pytest.approx(1.0)
    product = cisi["embedders"]["hashing-v2"]
    assert product["documents"] == 40
    assert product["similar_edges"] > 0
    assert set(product["lists"]) == {"product", "vector", "fused"}
    for scores in [reference, *product["lists"].values()]:
        for share in ("co_relevance_at_1", "co_relevance_at_5"):
            assert 0.0 <= scores[share] <= 1.0
    # every document of the slice has text, and the linking pass gives each of them neighbours
    assert product["lists"]["product"]["coverage"] >= 0.9
    assert product["cost"]["link_db_cpu_seconds_per_document"] > 0
