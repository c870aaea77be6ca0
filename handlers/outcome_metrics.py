"""Per-record outcome metrics: the handler records, the runtime that runs it exports.

The handler calls `record_outcome` once per object event (or per record that fails before it names
one). The worker installs a recorder backed by its Prometheus counters (`/metrics`); the Lambda entry
point installs `EmfOutcomes`, which aggregates one invocation and writes CloudWatch embedded metric
format lines through Powertools' metrics utility. Without a recorder (tests, `filequeue invoke`)
nothing is recorded.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Protocol

from handlers.model import OutcomeStatus

NAMESPACE = "FileQueue"
SERVICE = "filequeue"
NO_ERROR = "none"
# Outcomes for which the object was downloaded (and so counts as bytes processed).
DOWNLOADED = frozenset({OutcomeStatus.STORED, OutcomeStatus.UNCHANGED, OutcomeStatus.FAILED})


class OutcomeRecorder(Protocol):
    def record(self, outcome: OutcomeStatus, error_code: str | None, *, chunks: int, size: int) -> None: ...


_recorder: OutcomeRecorder | None = None


def install(recorder: OutcomeRecorder | None) -> None:
    """Make `recorder` receive every outcome of this process (None stops recording)."""
    global _recorder  # noqa: PLW0603 - one recorder per process, chosen by the runtime at start
    _recorder = recorder


def record_outcome(
    outcome: OutcomeStatus, error_code: str | None = None, *, chunks: int = 0, size: int | None = None
) -> None:
    """Count one outcome and what it wrote."""
    if _recorder is not None:
        _recorder.record(outcome, error_code, chunks=chunks, size=size or 0)


class OutcomeTally:
    """Outcomes counted by status, for a caller that must tell how a run ended (`filequeue invoke`).

    A permanent failure is acknowledged, so it never shows in `batchItemFailures`: installed during a run,
    this still counts it (`failed`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[OutcomeStatus] = Counter()

    def record(self, outcome: OutcomeStatus, error_code: str | None, *, chunks: int, size: int) -> None:
        with self._lock:
            self.counts[outcome] += 1

    @property
    def failed(self) -> int:
        return self.counts[OutcomeStatus.FAILED]


class EmfOutcomes:
    """Outcomes of one Lambda invocation, written as EMF when `flush` is called at its end.

    Each (outcome, error_code) pair is one `Records` metric with those two dimensions, so a dashboard
    can plot failures by reason; `DocumentsStored`, `ChunksWritten` and `BytesProcessed` carry the
    throughput under the service dimension alone.
    """

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self._namespace = namespace
        self._lock = threading.Lock()
        self._records: Counter[tuple[str, str]] = Counter()
        self._totals: Counter[str] = Counter()

    def record(self, outcome: OutcomeStatus, error_code: str | None, *, chunks: int, size: int) -> None:
        with self._lock:
            self._records[(outcome, error_code or NO_ERROR)] += 1
            if outcome is OutcomeStatus.STORED:
                self._totals["DocumentsStored"] += 1
                self._totals["ChunksWritten"] += chunks
            if outcome in DOWNLOADED:
                self._totals["BytesProcessed"] += size

    def flush(self) -> None:
        from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric

        with self._lock:
            records, totals = dict(self._records), dict(self._totals)
            self._records.clear()
            self._totals.clear()
        for (outcome, error_code), count in sorted(records.items()):
            with single_metric(
                name="Records",
                unit=MetricUnit.Count,
                value=count,
                namespace=self._namespace,
                default_dimensions={"service": SERVICE},
            ) as metric:
                metric.add_dimension(name="outcome", value=outcome)
                metric.add_dimension(name="error_code", value=error_code)
        if not totals:
            return
        throughput = Metrics(namespace=self._namespace, service=SERVICE)
        throughput.add_metric(name="DocumentsStored", unit=MetricUnit.Count, value=totals.get("DocumentsStored", 0))
        throughput.add_metric(name="ChunksWritten", unit=MetricUnit.Count, value=totals.get("ChunksWritten", 0))
        throughput.add_metric(name="BytesProcessed", unit=MetricUnit.Bytes, value=totals.get("BytesProcessed", 0))
        throughput.flush_metrics()
