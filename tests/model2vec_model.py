"""A small model2vec model built here (no download): a word-level vocabulary with topic vectors.

Words of one topic share a direction, so texts on the same subject with no word in common still
point the same way, which is what a semantic embedder adds over a lexical one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

TOPICS = {
    "bread": ["bread", "loaf", "dough", "sourdough", "starter", "flour", "bake", "yeast"],
    "sea": ["tide", "tides", "ocean", "sea", "moon", "harbour", "wave", "beach"],
    "code": ["compiler", "javascript", "loop", "trace", "jit", "interpreter", "bytecode", "function"],
}
DIMENSION = 16


def build_model(folder: Path) -> Path:
    """Write a model2vec model to `folder` with the library's own saving code and return the folder."""
    import numpy as np
    from model2vec import StaticModel
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import Lowercase
    from tokenizers.pre_tokenizers import Whitespace

    words = ["[UNK]", "[PAD]"] + [word for topic in TOPICS.values() for word in topic]
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    rng = np.random.default_rng(7)
    vectors = np.zeros((len(words), DIMENSION), dtype=np.float32)
    for topic_index, topic in enumerate(TOPICS.values()):
        direction = np.zeros(DIMENSION, dtype=np.float32)
        direction[topic_index] = 1.0
        for word in topic:
            vectors[words.index(word)] = direction + 0.1 * rng.standard_normal(DIMENSION).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True).save_pretrained(folder)
    return folder
