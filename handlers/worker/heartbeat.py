"""Keep received messages invisible while they are in work, so slow work is not delivered twice.

A failed extension is logged as `lease_lost` and the work goes on: the write is idempotent.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

if TYPE_CHECKING:
    from collections.abc import Iterable

    from handlers.worker.records import Lease
    from handlers.worker.sqs import Acknowledger

logger = Logger(service="filequeue")


class VisibilityHeartbeat:
    """A daemon thread that periodically resets the visibility timeout of every tracked lease.

    A lease SQS no longer accepts (the message was
    received by someone else, or its handle is stale) is logged as `lease_lost`, counted, and no
    longer extended; the handler keeps working, and the database's unique keys make a second
    processing harmless.
    """

    def __init__(
        self,
        acknowledger: Acknowledger,
        *,
        interval_seconds: float,
        visibility_timeout: int,
    ) -> None:
        self._acknowledger = acknowledger
        self._interval = interval_seconds
        self._visibility_timeout = visibility_timeout
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, leases: Iterable[Lease]) -> None:
        """Extend these leases from now on."""
        with self._lock:
            for lease in leases:
                self._leases[lease.receipt_handle] = lease

    def untrack(self, leases: Iterable[Lease]) -> None:
        with self._lock:
            for lease in leases:
                self._leases.pop(lease.receipt_handle, None)

    def tracked(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="visibility-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 30)

    def beat(self) -> None:
        """Extend every tracked lease once."""
        self.renew(self.tracked())

    def renew(self, leases: Iterable[Lease]) -> None:
        """Extend these leases now, if still tracked (a batch about to start gets a full lease)."""
        with self._lock:
            leases = [lease for lease in leases if lease.receipt_handle in self._leases]
        if not leases:
            return
        result = self._acknowledger.extend(leases, self._visibility_timeout)
        with self._lock:
            # A lease untracked meanwhile was deleted or released on purpose: its stale handle is expected.
            lost = {lease: code for lease, code in result.lost.items() if lease.receipt_handle in self._leases}
        for lease, code in lost.items():
            self._acknowledger.report_lease_lost("extend", lease, code)
        self.untrack(lost)
        logger.debug("heartbeat", extra={"extended": len(result.done), "lost": len(lost)})

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.beat()
            except Exception:  # a dead heartbeat would silently let leases expire
                logger.exception("heartbeat_failed")
