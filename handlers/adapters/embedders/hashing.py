"""Deterministic lexical embedders: the feature-hashing trick, for demos and tests.

No model, no network: the same text always gives the same unit vector, and texts that share
words point the same way. They know nothing of meaning (a paraphrase with no shared word is not
found); they are the default so that the demo and the tests run anywhere.

Two versions, told apart by the model name recorded with every vector:

- `hashing-v1`: every word and word bigram, stop words included, no stemming. Kept so that stores
  built with it still open; `filequeue reembed` moves them to `hashing-v2`.
- `hashing-v2`: English stop words dropped, words reduced to their Snowball stem ("feeding" and
  "feeds" meet at "feed"), stem bigrams at half weight, sublinear term frequency (1 + ln tf), and
  the whole batch hashed and summed with numpy.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from handlers.adapters.embedders._common import EmbedderIdentity
from handlers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import numpy as np
    import numpy.typing as npt

_WORD = re.compile(r"\w+", re.UNICODE)
# Longer runs of word characters are base64, hashes or glued tables: they would only add noise,
# and a bound keeps the stemmer's work per token small.
_MAX_WORD_CHARS = 40
_BIGRAM_WEIGHT = 0.5
_STEM_CACHE_SIZE = 1 << 16
# Distinct words remembered by one process; past this, new words are stemmed on every use.
_WORD_CACHE_SIZE = 1 << 19
_DROPPED = 0
_MIX_MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_ROW_MULTIPLIER = 0xC2B2AE3D27D4EB4F

# Snowball's English stop word list (the one PostgreSQL's `english` configuration uses too), so the
# embedder and the full-text side of hybrid search ignore the same words.
_STOP_WORDS = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her
hers herself it its itself they them their theirs themselves what which who whom this that these
those am is are was were be been being have has had having do does did doing would should could
ought i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd we'd
they'd i'll you'll he'll she'll we'll they'll isn't aren't wasn't weren't hasn't haven't hadn't
doesn't don't didn't won't wouldn't shan't shouldn't can't cannot couldn't mustn't let's that's
who's what's here's there's when's where's why's how's a an the and but if or because as until while
of at by for with about against between into through during before after above below to from up down
in out on off over under again further then once here there when where why how all any both each few
more most other some such no nor not only own same so than too very s t can will just don should now
"""
ENGLISH_STOP_WORDS = frozenset(_STOP_WORDS.split())

V1 = "hashing-v1"
V2 = "hashing-v2"


def build_hashing_embedder(dimension: int, model: str) -> HashingEmbedder | LexicalHashingEmbedder:
    """The hashing embedder whose algorithm the model name asks for (`hashing-v1…` or `hashing-v2…`)."""
    if model.startswith(V1):
        return HashingEmbedder(dimension, model)
    if model.startswith(V2):
        return LexicalHashingEmbedder(dimension, model)
    raise ConfigError(
        f"FILEQUEUE_EMBEDDING_MODEL {model!r} is not a hashing model; with FILEQUEUE_EMBEDDER=hashing use "
        f"{V2!r} (or {V1!r} for stores built with the first version)"
    )


class HashingEmbedder(EmbedderIdentity):
    """`hashing-v1`: words and word bigrams with sublinear counts, one text at a time."""

    def __init__(self, dimension: int, model: str = V1) -> None:
        super().__init__(model, dimension)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self._dimension
        for feature, count in Counter(_v1_features(text)).items():
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


def _v1_features(text: str) -> Iterable[str]:
    words = [word.casefold() for word in _WORD.findall(text)]
    yield from words
    yield from (f"{first} {second}" for first, second in itertools.pairwise(words))


class LexicalHashingEmbedder(EmbedderIdentity):
    """`hashing-v2`: stop words dropped, Snowball stems and stem bigrams, sublinear counts, numpy sums.

    Python only splits each text into words (one regular expression over the case-folded text) and
    looks each word up in a per-process table of word -> 64-bit stem hash (a stop word or an
    over-long word maps to "dropped"); a new word is stemmed and hashed once. Everything after
    that runs over the whole batch in numpy: bigram hashes mixed from the stem hashes, term counts
    per text (`np.unique`), sublinear weights, the signed sums into the vector slots (`np.bincount`)
    and the normalisation.
    """

    def __init__(self, dimension: int, model: str = V2) -> None:
        super().__init__(model, dimension)
        self._hashes: dict[str, int] = {}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        lengths: list[int] = []
        hashes: list[int | None] = []
        known = self._hashes.get
        for text in texts:
            words = _WORD.findall(text.casefold())
            lengths.append(len(words))
            found = list(map(known, words))  # one C-level pass; only new words reach Python code
            if None in found:
                found = [
                    self._learn(word) if value is None else value for word, value in zip(words, found, strict=True)
                ]
            hashes.extend(found)
        rows = np.repeat(np.arange(len(texts), dtype=np.uint64), lengths)
        terms = np.asarray(hashes, dtype=np.uint64)
        kept = terms != _DROPPED
        rows, terms = rows[kept], terms[kept]
        # A bigram joins two neighbouring content words of the same text (stop words skipped).
        same_text = rows[1:] == rows[:-1]
        bigrams = _mix(terms[:-1][same_text], terms[1:][same_text])
        features = np.concatenate([terms, bigrams])
        feature_rows = np.concatenate([rows, rows[1:][same_text]])
        scale = np.concatenate([np.ones(len(terms)), np.full(len(bigrams), _BIGRAM_WEIGHT)])
        matrix = self._sum_features(len(texts), feature_rows, features, scale)
        unit: list[list[float]] = _unit_rows(matrix).tolist()
        return unit

    def _sum_features(
        self,
        count: int,
        rows: npt.NDArray[np.uint64],
        features: npt.NDArray[np.uint64],
        scale: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Per text, each distinct feature once with weight scale * (1 + ln tf), signed, summed into slots."""
        import numpy as np

        # (text, feature) pairs made one key; a text's row changes the key, so equal keys are one
        # feature of one text (two features colliding in 64 bits would merely share a count).
        keys = features ^ (rows * np.uint64(_ROW_MULTIPLIER))
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        weights = scale[first] * (1.0 + np.log(counts))
        chosen = features[first]
        # The low bit of a word's hash is always set (0 marks a dropped word): slots come from above it.
        slots = ((chosen >> np.uint64(8)) % np.uint64(self._dimension)).astype(np.int64)
        signs = np.where((chosen >> np.uint64(40)) & np.uint64(1), 1.0, -1.0)
        flat = rows[first].astype(np.int64) * self._dimension + slots
        summed = np.bincount(flat, weights=weights * signs, minlength=count * self._dimension)
        matrix: npt.NDArray[np.float64] = summed.astype(np.float64).reshape(count, self._dimension)
        return matrix

    def _learn(self, word: str) -> int:
        value = _stem_hash(word)
        if len(self._hashes) < _WORD_CACHE_SIZE:
            self._hashes[word] = value
        return value


def _stem_hash(word: str) -> int:
    """64-bit hash of the word's stem, or `_DROPPED` for a stop word or an over-long word."""
    if len(word) > _MAX_WORD_CHARS or word in ENGLISH_STOP_WORDS:
        return _DROPPED
    digest = hashlib.blake2b(_stem(word).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1  # never 0, which marks a dropped word


def _mix(first: npt.NDArray[np.uint64], second: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """An order-sensitive 64-bit hash of two hashes (a multiply-xorshift step, wrapping modulo 2**64)."""
    import numpy as np

    mixed = first * np.uint64(_MIX_MULTIPLIER) ^ second
    mixed ^= mixed >> np.uint64(29)
    result: npt.NDArray[np.uint64] = mixed * np.uint64(_MIX_MULTIPLIER)
    return result


def _unit_rows(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1)
    empty = norms == 0.0
    # pgvector's cosine distance is undefined for the zero vector; a fixed unit vector keeps a text
    # made only of stop words searchable (it matches nothing in particular).
    matrix[empty, 0] = 1.0
    norms[empty] = 1.0
    unit: npt.NDArray[np.float64] = matrix / norms[:, None]
    return unit


@lru_cache(maxsize=_STEM_CACHE_SIZE)
def _stem(word: str) -> str:
    stemmed: str = _stemmer().stemWord(word)
    return stemmed


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")
