from __future__ import annotations

import math

from handlers.adapters.embedders.hashing import HashingEmbedder


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_deterministic_unit_length_and_of_the_configured_dimension():
    embedder = HashingEmbedder(128)
    first, again = embedder.embed(["Queues deliver messages at least once."] * 2)
    assert first == again
    assert len(first) == 128
    assert math.isclose(math.sqrt(sum(v * v for v in first)), 1.0)


def test_texts_sharing_words_are_closer_than_unrelated_texts():
    embedder = HashingEmbedder(256)
    base, related, unrelated = embedder.embed(
        [
            "the queue delivers each message at least once to the consumer",
            "each consumer receives a message from the queue at least once",
            "photosynthesis converts light into chemical energy in plants",
        ]
    )
    assert _cosine(base, related) > 0.4
    assert _cosine(base, related) > _cosine(base, unrelated) + 0.3


def test_case_is_folded_and_text_without_words_still_gets_a_unit_vector():
    embedder = HashingEmbedder(64)
    upper, lower, empty = embedder.embed(["PGVECTOR Index", "pgvector index", "  ...  "])
    assert upper == lower
    assert math.isclose(sum(v * v for v in empty), 1.0)
