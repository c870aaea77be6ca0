"""What the embedders share: their identity, and the checks and retry timing of the network ones."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from handlers.errors import ConfigError, ErrorCode, PermanentError

if TYPE_CHECKING:
    from collections.abc import Sequence

# Full-jitter exponential backoff (the AWS Architecture Blog's recommendation): spreads the retries of
# concurrent callers so that a throttled endpoint is not hit again in lockstep.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
DEFAULT_MAX_ATTEMPTS = 5


class EmbedderIdentity:
    """The model and dimension an embedder reports: the `Embedder` port's two properties."""

    def __init__(self, model: str, dimension: int) -> None:
        self._model = model
        self._dimension = dimension

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dimension


def backoff_seconds(attempt: int) -> float:
    """Delay before retry number `attempt` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not a secret


def require_text(texts: Sequence[str]) -> None:
    """Reject empty inputs before they reach a provider, whose 400 would read as a configuration error."""
    for position, text in enumerate(texts):
        if not text.strip():
            raise PermanentError(f"cannot embed an empty text (input {position})", code=ErrorCode.EMPTY_TEXT)


def unit_vector(values: Sequence[float], dimension: int, source: str) -> list[float]:
    """Check the length of a provider's vector and return it with unit L2 norm.

    Every stored vector is unit length whatever the provider: cosine distance does not care, but inner
    products, graph thresholds and comparisons across providers then mean the same thing. Normalising
    a vector that already has unit length changes it only by rounding.
    """
    if len(values) != dimension:
        raise ConfigError(
            f"{source} returned {len(values)}-dimensional vectors but FILEQUEUE_EMBEDDING_DIMENSION is "
            f"{dimension}; set FILEQUEUE_EMBEDDING_DIMENSION to the model's dimension (the database column "
            "must match it)"
        )
    norm = math.sqrt(math.fsum(value * value for value in values))
    if norm == 0.0 or not math.isfinite(norm):
        # A zero or non-finite vector has no direction: pgvector's cosine distance would be NaN.
        raise PermanentError(
            f"{source} returned a vector without a direction (norm {norm})", code=ErrorCode.EMBEDDING_INVALID
        )
    return [value / norm for value in values]
