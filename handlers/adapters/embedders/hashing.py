"""A deterministic lexical embedder: the feature-hashing trick over words and word bigrams.

No model, no network: the same text always gives the same unit vector, and texts that share
words point the same way. It is the default so that the demo and the tests run anywhere.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from typing import TYPE_CHECKING

from handlers.adapters.embedders._common import EmbedderIdentity

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder(EmbedderIdentity):
    def __init__(self, dimension: int, model: str = "hashing-v1") -> None:
        super().__init__(model, dimension)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self._dimension
        for feature, count in Counter(_features(text)).items():
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self._dimension
            sign = 1.0 if digest[4] & 1 else -1.0
            vector[index] += sign * (1.0 + math.log(count))
        norm = math.sqrt(sum(value * value for value in vector))
        if norm == 0.0:
            # pgvector's cosine distance is undefined for the zero vector; a fixed unit vector keeps
            # text without words (digits-only tables are words too, so this is rare) searchable.
            vector[0] = 1.0
            return vector
        return [value / norm for value in vector]


def _features(text: str) -> Iterable[str]:
    words = [word.casefold() for word in _WORD.findall(text)]
    yield from words
    yield from (f"{first} {second}" for first, second in itertools.pairwise(words))
