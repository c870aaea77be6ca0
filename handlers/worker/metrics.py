"""Prometheus metrics of the poll loop.

With several worker processes, prometheus_client's multiprocess mode is used: each child writes
its samples to memory-mapped files in a private directory and the parent, which alone serves
`/metrics`, aggregates them with `MultiProcessCollector`. That is the library's supported way to
aggregate across processes, counters survive a child's restart, and no child needs a port.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from handlers import outcome_metrics
from handlers.model import OutcomeStatus

BATCH_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class WorkerMetrics:
    """The loop's counters; `registry=None` records without registering (multiprocess children).

    Creating them also makes them this process's outcome recorder, so the handler's per-record
    outcomes (by kind and error code) and its throughput appear on `/metrics`.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._count_messages(registry)
        self._measure_batches(registry)
        self._count_records(registry)
        outcome_metrics.install(self)

    def _count_messages(self, registry: CollectorRegistry | None) -> None:
        """What happened to each message the loop received: handled, failed, deleted, released, lost."""
        self.received = Counter(
            "filequeue_messages_received", "Messages returned by ReceiveMessage (every copy).", registry=registry
        )
        self.processed = Counter(
            "filequeue_messages_processed",
            "Messages the handler finished without reporting them as failed.",
            registry=registry,
        )
        self.skipped = Counter(
            "filequeue_messages_skipped",
            "Extra copies of a message received twice in one receive: not given to the handler again.",
            registry=registry,
        )
        self.failed = Counter(
            "filequeue_messages_failed",
            "Messages left for redelivery, by reason (reported, handler_exception, invalid_response, aborted).",
            ["reason"],
            registry=registry,
        )
        self.deleted = Counter("filequeue_messages_deleted", "Receipt handles deleted.", registry=registry)
        self.released = Counter(
            "filequeue_messages_released", "Receipt handles made visible again (visibility 0).", registry=registry
        )
        self.lease_lost = Counter(
            "filequeue_lease_lost",
            "Receipt handles SQS no longer accepted (MessageNotInflight / ReceiptHandleIsInvalid).",
            registry=registry,
        )

    def _measure_batches(self, registry: CollectorRegistry | None) -> None:
        """SQS call failures, batch durations and the messages in work right now."""
        self.sqs_errors = Counter(
            "filequeue_sqs_errors", "Failed SQS calls, by operation.", ["operation"], registry=registry
        )
        self.batch_seconds = Histogram(
            "filequeue_batch_duration_seconds",
            "Time the handler took for one batch.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "filequeue_messages_in_flight",
            "Messages currently given to the handler.",
            multiprocess_mode="livesum",
            registry=registry,
        )

    def _count_records(self, registry: CollectorRegistry | None) -> None:
        """The handler's per-record outcomes and throughput (documents, chunks, bytes)."""
        self.records = Counter(
            "filequeue_records",
            "Object events and records handled, by outcome (stored, unchanged, skipped, deleted, ignored, failed,"
            " retry) and error code (none when there was no error).",
            ["outcome", "error_code"],
            registry=registry,
        )
        self.documents_stored = Counter(
            "filequeue_documents_stored", "Documents written with their chunks and edges.", registry=registry
        )
        self.chunks_written = Counter(
            "filequeue_chunks_written", "Chunks written with their vectors.", registry=registry
        )
        self.bytes_processed = Counter(
            "filequeue_bytes_processed", "Bytes of the objects downloaded and extracted.", registry=registry
        )

    def record(self, outcome: OutcomeStatus, error_code: str | None, *, chunks: int, size: int) -> None:
        self.records.labels(outcome=outcome, error_code=error_code or outcome_metrics.NO_ERROR).inc()
        if outcome is OutcomeStatus.STORED:
            self.documents_stored.inc()
            self.chunks_written.inc(chunks)
        if outcome in outcome_metrics.DOWNLOADED:
            self.bytes_processed.inc(size)
