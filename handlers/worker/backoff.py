"""Exponential backoff with full jitter and a cap (AWS Architecture Blog, "Exponential Backoff And Jitter")."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_MAX_EXPONENT = 32


@dataclass(slots=True)
class Backoff:
    base_seconds: float
    cap_seconds: float
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        growth: float = 2.0 ** min(self.attempts, _MAX_EXPONENT)
        return min(self.cap_seconds, self.base_seconds * growth)

    def next_delay(self) -> float:
        delay = self.rng.uniform(0.0, self.ceiling())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
