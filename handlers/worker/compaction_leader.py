"""The worker's compaction leader: a thread in the worker's main process that compacts the chunk store.

Every pod runs one; the database's compaction lock makes the one that takes it the leader for that
run, and the others find it held and do nothing, so there is at most one compaction per database.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from handlers.errors import FileQueueError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import psycopg

    from handlers.ops.compaction import CompactReport
    from handlers.settings import Settings

logger = Logger(service="filequeue")

STOP_JOIN_SECONDS = 10.0
CANCEL_EVERY_SECONDS = 0.5


class CompactionLeader:
    """Runs `compact_once` every `interval_seconds` until stopped; stopping cancels a run in progress."""

    def __init__(
        self,
        compact_once: Callable[[Callable[[psycopg.Connection[Any]], None]], CompactReport],
        interval_seconds: float,
    ) -> None:
        self._compact_once = compact_once
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="filequeue-compaction", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread; a compaction in progress is cancelled (it is crash-safe) and dropped next time.

        The cancel is repeated until the thread ends: one that arrives between two statements of
        the run cancels nothing, and the run would go on with the next one.
        """
        self._stop.set()
        deadline = time.monotonic() + STOP_JOIN_SECONDS
        while self._thread.is_alive() and time.monotonic() < deadline:
            with self._lock:
                connection = self._connection
            if connection is not None:
                with suppress(Exception):
                    connection.cancel_safe()
            self._thread.join(CANCEL_EVERY_SECONDS)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                report = self._compact_once(self._remember)
            except (FileQueueError, OSError) as error:
                if not self._stop.is_set():
                    logger.warning("compaction failed; retried at the next interval", extra={"error": str(error)})
                continue
            except Exception as error:  # noqa: BLE001  (a driver error must not end the leader thread)
                if not self._stop.is_set():
                    logger.warning(
                        "compaction failed; retried at the next interval",
                        extra={"error": f"{type(error).__name__}: {error}"},
                    )
                continue
            finally:
                self._remember(None)
            self.runs += 1
            if report.sealed_rows or report.merges:
                logger.info(
                    "compaction",
                    extra={
                        "sealed_rows": report.sealed_rows,
                        "merges": report.merges,
                        "merged_rows": report.merged_rows,
                        "seconds": report.seconds,
                    },
                )

    def _remember(self, conn: psycopg.Connection[Any] | None) -> None:
        with self._lock:
            self._connection = conn


@contextmanager
def compaction_leader(settings: Settings) -> Iterator[CompactionLeader | None]:
    """A running leader for the worker's lifetime, unless compaction is off.

    With chunks indexed live there is nothing to seal, but compaction also runs the `similar`
    linking pass, which every store needs.
    """
    if settings.compaction_interval_seconds <= 0:
        yield None
        return
    from handlers.ops.compaction import compact_options, run_compaction

    options = compact_options(settings)
    leader = CompactionLeader(
        lambda on_connect: run_compaction(settings, options, on_connect=on_connect),
        settings.compaction_interval_seconds,
    )
    leader.start()
    try:
        yield leader
    finally:
        leader.stop()
