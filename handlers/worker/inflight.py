"""What one poll loop holds between receive and delete: each message waiting, started, or handed back.

A message is handed back (released) only through `take_waiting`, and a handler starts a record only
through `claim`; both take one lock, so a message is never both processed here and released to
another consumer. A handler that claims its records lets the loop release the ones it has not reached
yet; a handler that never claims keeps its whole batch from the moment the batch is handed to it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from handlers.worker.records import Received


@dataclass(slots=True, eq=False)
class _Batch:
    claiming: bool = False
    """True once its handler claimed a record: the records it has not reached yet may be released."""


@dataclass(slots=True)
class _Entry:
    item: Received
    received_at: float
    batch: _Batch | None = None
    """The batch it was handed to the handler in (the handler may not have reached the record yet)."""
    started: bool = False


class InFlight:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._batches = 0

    def add(self, items: Iterable[Received], received_at: float) -> None:
        with self._lock:
            for item in items:
                self._entries[item.message_id] = _Entry(item, received_at)

    def offer(self, batch: Iterable[Received]) -> list[Received]:
        """Mark the batch as handed to the handler; returns the items still held (not released meanwhile)."""
        with self._lock:
            held = [item for item in batch if item.message_id in self._entries]
            token = _Batch()
            for item in held:
                self._entries[item.message_id].batch = token
            self._batches += bool(held)
            return held

    def claim(self, message_id: str) -> bool:
        """Called by the handler before it starts a record: False if the message was handed back."""
        with self._lock:
            entry = self._entries.get(message_id)
            if entry is None:
                return False
            entry.started = True
            if entry.batch is not None:
                entry.batch.claiming = True
            return True

    def finish(self, batch: Iterable[Received]) -> list[Received]:
        """The handler returned: forget the batch; returns the items that were still held by this loop."""
        with self._lock:
            self._batches -= bool(batch)
            return [item for item in batch if self._entries.pop(item.message_id, None) is not None]

    def take_waiting(
        self,
        *,
        waited_seconds: float = 0.0,
        spare: Callable[[Received], bool] | None = None,
        among: Iterable[Received] | None = None,
    ) -> list[Received]:
        """Stop holding, and return, every message not started that has waited at least `waited_seconds`.

        With `spare`, only messages for which it is true; with `among`, only those messages (one receive's,
        when several receives are in work at once). A batch handed to a handler that does not claim
        records counts as started.
        """
        now = self._clock()
        wanted = None if among is None else {item.message_id for item in among}
        with self._lock:
            taken = [
                entry.item
                for message_id, entry in self._entries.items()
                if (wanted is None or message_id in wanted)
                and not entry.started
                and (entry.batch is None or entry.batch.claiming)
                and now - entry.received_at >= waited_seconds
                and (spare is None or spare(entry.item))
            ]
            for item in taken:
                del self._entries[item.message_id]
            return taken

    def busy(self) -> bool:
        """True while a handler works on a batch of this loop."""
        with self._lock:
            return self._batches > 0
