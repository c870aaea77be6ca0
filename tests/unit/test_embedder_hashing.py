from __future__ import annotations

import math

import pytest

from handlers.adapters.embedders.hashing import HashingEmbedder, LexicalHashingEmbedder, build_hashing_embedder
from handlers.errors import ConfigError


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


def test_v2_is_deterministic_unit_length_and_the_same_alone_or_in_a_batch():
    embedder = LexicalHashingEmbedder(128)
    texts = ["Queues deliver messages at least once.", "the the the", "Feeding starters daily"]
    batch = embedder.embed(texts)
    assert batch == LexicalHashingEmbedder(128).embed(texts)
    for text, in_batch in zip(texts, batch, strict=True):
        assert LexicalHashingEmbedder(128).embed([text])[0] == pytest.approx(in_batch)
    assert all(len(vector) == 128 and math.isclose(_cosine(vector, vector), 1.0) for vector in batch)


def test_v2_ignores_stop_words_and_meets_word_forms_at_their_stem():
    embedder = LexicalHashingEmbedder(256)
    question, statement, other = embedder.embed(
        ["How do I feed a sourdough starter?", "Feeding the sourdough starters", "How do I compile a loop?"]
    )
    assert _cosine(question, statement) > 0.9
    assert _cosine(question, other) < 0.1  # "how do I ... a" weighs nothing


def test_v2_term_frequency_is_sublinear_and_bigrams_keep_word_order():
    embedder = LexicalHashingEmbedder(1024)
    once, often, other = embedder.embed(["sourdough bread", "sourdough " * 50 + "bread", "bread sourdough"])
    # Fifty repetitions weigh 1 + ln 50 (about 4.9), not 50: bread still counts.
    assert _cosine(once, often) > 0.6
    assert 0.5 < _cosine(once, other) < 0.99


def test_the_model_name_chooses_the_algorithm_and_an_unknown_name_is_a_configuration_error():
    assert isinstance(build_hashing_embedder(64, "hashing-v1"), HashingEmbedder)
    assert isinstance(build_hashing_embedder(64, "hashing-v2-384"), LexicalHashingEmbedder)
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_MODEL 'word2vec' is not a hashing model"):
        build_hashing_embedder(64, "word2vec")


def test_v2_spreads_words_over_even_and_odd_slots():
    [vector] = LexicalHashingEmbedder(64).embed([" ".join(f"word{number}" for number in range(300))])
    used = {index for index, value in enumerate(vector) if value}
    assert {index % 2 for index in used} == {0, 1}
    assert len(used) > 48
