"""The retrieval benchmark end to end on a tiny slice: S3 -> SQS -> worker -> search, metrics checked."""

from __future__ import annotations

import pytest

from bench.ir_collections import load
from bench.retrieval import MODES, evaluate, run, subset


@pytest.mark.slow
def test_the_benchmark_runs_on_a_slice_and_its_metrics_follow_from_its_rankings(monkeypatch):
    monkeypatch.setenv("FILEQUEUE_WORKER_WAIT_TIME_SECONDS", "1")
    results = run(["cisi"], ["hashing-v2"], docs=30, queries=5)
    cisi = results["collections"]["cisi"]
    data = cisi["embedders"]["hashing-v2"]
    assert cisi["documents"] == 30
    assert data["chunks"] >= 30
    assert set(data["metrics"]) == set(MODES)
    for metrics in [*data["metrics"].values(), *data["fusion"].values()]:
        assert 0.0 <= metrics["ndcg@10"] <= 1.0
        assert 0.0 <= metrics["recall@100"] <= 1.0
    # every judged document is among the 30, and each mode ranks up to 200 of them: recall@100 is
    # what the slice allows, and BM25 over the same words finds something for every query
    assert data["metrics"]["bm25_reference"]["recall@100"] > 0.5
    assert data["metrics"]["bm25_postgres"]["ndcg@10"] > 0.0
    for kind in ("short", "long"):
        for mode in ("vector", "hybrid", "text", "bm25_postgres"):
            figures = data["latency_ms"]["at_collection_size"][f"{mode} {kind}"]
            assert 0 < figures["p50"] <= figures["p95"]


def test_evaluate_averages_over_judged_queries_and_scores_missing_rankings_zero():
    collection = subset(load("cisi"), docs=None, queries=2)
    first, second = sorted(collection.qrels, key=int)
    perfect = sorted(collection.qrels[first])
    metrics = evaluate({first: perfect}, {first: collection.qrels[first], second: collection.qrels[second]})
    assert metrics["recall@100"] == pytest.approx(0.5)
    assert metrics["mrr@10"] == pytest.approx(0.5)
