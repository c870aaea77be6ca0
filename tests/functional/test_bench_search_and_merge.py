"""`bench/search_latency.py` and `bench.merge_cost` run as their docstrings say, end to end, on tiny workloads.

Their figures are not checked, only that every layout and variant was measured and reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from pathlib import Path


def _run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    return completed


@pytest.mark.slow
def test_the_search_benchmark_measures_each_layout_beside_one_index(tmp_path: Path) -> None:
    output = tmp_path / "search.json"
    completed = _run(
        [
            "bench/search_latency.py",
            "--documents",
            "60",
            "--chunks-per-document",
            "60",
            "--queries",
            "20",
            "--rounds",
            "1",
            "--output",
            str(output),
        ]
    )
    report = json.loads(output.read_text())
    assert report["chunks"] == 60 * 60
    layouts = report["layouts"]
    assert set(layouts) == {"segmented", "single", "merged", "single_beside_merged", "exact"}
    assert layouts["segmented"]["layout"]["segments"]  # compaction sealed at least one segment
    assert layouts["segmented"]["layout"]["growing_rows"] > 0
    assert layouts["merged"]["layout"]["segments"] == [60 * 60]
    assert layouts["single"]["layout"]["live_rows"] == 60 * 60
    for name in ("segmented", "single", "merged"):
        assert 0 < layouts[name]["vector"]["recall_at_10"] <= 1, name
        assert layouts[name]["hybrid"]["median_ms"] > 0, name
    assert set(layouts["segmented"]["ef_search_sweep"]) == {"40", "100", "200"}
    assert set(report["latency_ratio_to_single_index"]) == {"segmented", "merged"}
    assert "segmented / single beside it" in completed.stdout


@pytest.mark.slow
def test_the_merge_benchmark_measures_both_full_text_columns(tmp_path: Path) -> None:
    output = tmp_path / "merge.json"
    _run(["-m", "bench.merge_cost", "--rows", "1000", "--segments", "4", "--rounds", "1", "--output", str(output)])
    report = json.loads(output.read_text())
    assert set(report["medians"]) == {"generated", "copied"}
    for variant, figures in report["medians"].items():
        assert figures["copy_seconds"] > 0, variant
        assert figures["index_seconds"] > 0, variant
    assert set(report["copied_over_generated"]) == set(report["medians"]["copied"])
