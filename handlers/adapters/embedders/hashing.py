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
# Distinct features seen by one process; past this, features are hashed again on every use.
_SLOT_CACHE_SIZE = 1 << 18

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

    Per text, Python only tokenises and counts; hashing is cached per distinct feature, and the
    weighted sums, norms and the division run over the whole batch at once.
    """

    def __init__(self, dimension: int, model: str = V2) -> None:
        super().__init__(model, dimension)
        self._slots: dict[str, int] = {}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        rows: list[int] = []
        slots: list[int] = []
        weights: list[float] = []
        for row, text in enumerate(texts):
            for feature, weight in _v2_features(text).items():
                rows.append(row)
                slots.append(self._slot(feature))
                weights.append(weight)
        signed = np.asarray(slots, dtype=np.int64)
        # A slot is index * 2 + sign bit, so one cached integer carries both.
        flat = np.asarray(rows, dtype=np.int64) * self._dimension + (signed >> 1)
        values = np.asarray(weights, dtype=np.float64) * np.where(signed & 1, 1.0, -1.0)
        matrix = np.bincount(flat, weights=values, minlength=len(texts) * self._dimension).reshape(
            len(texts), self._dimension
        )
        unit: list[list[float]] = _unit_rows(matrix.astype(np.float64)).tolist()
        return unit

    def _slot(self, feature: str) -> int:
        slot = self._slots.get(feature)
        if slot is None:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self._dimension
            slot = index * 2 + (digest[4] & 1)
            if len(self._slots) < _SLOT_CACHE_SIZE:
                self._slots[feature] = slot
        return slot


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


def content_terms(text: str) -> list[str]:
    """The stems of `text`'s words that are not stop words, in order (bounded word length)."""
    terms = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        if len(word) > _MAX_WORD_CHARS:
            continue
        folded = word.casefold()
        if folded not in ENGLISH_STOP_WORDS:
            terms.append(_stem(folded))
    return terms


def _v2_features(text: str) -> dict[str, float]:
    terms = content_terms(text)
    counts = Counter(terms)
    features = {term: 1.0 + math.log(count) for term, count in counts.items()}
    bigrams = Counter(f"{first} {second}" for first, second in itertools.pairwise(terms))
    features.update({bigram: _BIGRAM_WEIGHT * (1.0 + math.log(count)) for bigram, count in bigrams.items()})
    return features


@lru_cache(maxsize=_STEM_CACHE_SIZE)
def _stem(word: str) -> str:
    stemmed: str = _stemmer().stemWord(word)
    return stemmed


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")
