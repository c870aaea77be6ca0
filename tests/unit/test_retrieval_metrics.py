"""The retrieval benchmark's metrics and fusion rules on hand-made rankings."""

from __future__ import annotations

import math

import pytest

from bench.ir_collections import NAMES, load, parse_smart, verify
from bench.retrieval import first_occurrences, latency_queries, minmax, mrr_at, ndcg_at, recall_at, rrf


def test_ndcg_with_binary_gains():
    # relevant at ranks 1 and 3 of 2 relevant: (1 + 1/log2(4)) / (1 + 1/log2(3))
    assert ndcg_at(["a", "x", "b"], {"a", "b"}) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert ndcg_at(["a", "b"], {"a", "b"}) == pytest.approx(1.0)
    assert ndcg_at(["x", "y"], {"a"}) == 0.0
    # a relevant document below the cut-off does not count
    assert ndcg_at([*"xxxxxxxxxx", "a"], {"a"}) == 0.0


def test_ndcg_ideal_is_capped_at_k():
    ranking = [str(n) for n in range(10)]
    assert ndcg_at(ranking, {str(n) for n in range(20)}) == pytest.approx(1.0)


def test_mrr_and_recall():
    assert mrr_at(["x", "y", "a"], {"a", "b"}) == pytest.approx(1 / 3)
    assert mrr_at(["x"] * 10 + ["a"], {"a"}) == 0.0
    assert recall_at(["a", "x", "b"], {"a", "b", "c", "d"}) == pytest.approx(0.5)
    assert recall_at(["a", "b"], {"a", "b"}, k=1) == pytest.approx(0.5)


def test_chunks_dedupe_to_their_first_document():
    assert first_occurrences(["3", "1", "3", "2", "1"]) == ["3", "1", "2"]


def test_weighted_rrf():
    fused = rrf([(1.0, ["a", "b"]), (2.0, ["b", "c"])], k=60)
    # Scores: b gets 1/62 and 2/61, c gets 2/62, a gets 1/61.
    assert fused == ["b", "c", "a"]


def test_minmax_fusion():
    fused = minmax([(0.5, [("a", 0.9), ("b", 0.1)]), (0.5, [("b", 10.0), ("c", 5.0), ("a", 0.0)])])
    # a: 0.5*1 + 0.5*0 = 0.5; b: 0 + 0.5 = 0.5; c: 0.25 -> a and b tie, by name
    assert fused == ["a", "b", "c"]


def test_latency_queries_are_short_and_40_to_60_words():
    queries = latency_queries(["one two three four five six seven eight", "nine ten", "eleven twelve thirteen"])
    assert queries["short"][0] == "one two three four five six"
    assert all(40 <= len(text.split()) <= 60 for text in queries["long"])


def test_smart_records_are_parsed_by_field():
    records = parse_smart(".I 1\n.T\nA title\n.W\nFirst line\nsecond line\n.I 002\n.W\nOnly text\n")
    assert records == {"1": {"T": "A title", "W": "First line second line"}, "2": {"W": "Only text"}}


def test_the_vendored_collections_match_their_digests():
    assert verify() == []
    for name in NAMES:
        collection = load(name)
        assert collection.qrels
        assert all(query in collection.queries for query in collection.qrels)
        assert all(doc in collection.docs for found in collection.qrels.values() for doc in found)
