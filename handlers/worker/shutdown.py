"""The stop flag shared by the loop, its heartbeat and the supervisor, and the signals that set it."""

from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Set once; remembers when and why, so deadlines can be derived from the moment of the request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._event = threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self.requested_at: float | None = None
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        with self._lock:
            if self.requested_at is None:
                self.requested_at = self._clock()
                self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early when a stop is requested; True if stopping."""
        return self._event.wait(max(0.0, seconds))

    def deadline(self, grace_seconds: float) -> float:
        """The moment the grace period ends, or +inf while no stop was requested."""
        requested_at = self.requested_at
        return float("inf") if requested_at is None else requested_at + grace_seconds


def install_signal_handlers(stop: StopSignal) -> Callable[[], None]:
    """Route SIGTERM and SIGINT to `stop` (main thread only); returns a function restoring the old handlers."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only set the flag here: the loop logs and acts on it between blocking calls.
        stop.request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
