"""The container runtime: long-poll SQS, call the Lambda handler with a Lambda-shaped event, act on its answer.

Parity with Lambda's SQS event source: the same records, a context whose
remaining time follows the visibility lease, the response read as strictly as Lambda reads it,
successes deleted, failures left to reappear. Beyond Lambda: a visibility heartbeat, redelivered
messages processed alone (a poison message cannot spend its batch-mates' receives), and a graceful
stop on SIGTERM that leaves nothing invisible until its timeout.

The handler is injected, so this module never imports the pipeline.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools import Logger

from handlers.errors import ConfigError
from handlers.worker.backoff import Backoff
from handlers.worker.context import memory_limit_mb, worker_context
from handlers.worker.heartbeat import VisibilityHeartbeat
from handlers.worker.inflight import InFlight
from handlers.worker.metrics import WorkerMetrics
from handlers.worker.records import build_event, group_received, plan_batches
from handlers.worker.response import InvalidBatchResponseError, failed_message_ids
from handlers.worker.shutdown import StopSignal
from handlers.worker.sqs import (
    SQS_ERRORS,
    Acknowledger,
    QueueInfo,
    aws_error_code,
    describe_queue,
    queue_missing,
    receive,
)
from handlers.worker.startup import heartbeat_interval, visibility_problem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

    from handlers.runtime_context import DeadlineContext, RecordGate
    from handlers.settings import Settings
    from handlers.worker.records import Lease, Received


class BatchHandler(Protocol):
    """`handler(event, context, gate=...) -> {"batchItemFailures": [...]}`, the Lambda handler's shape.

    The loop passes its gate, which the handler asks before it starts each record (False: the loop
    handed that message back to the queue).
    """

    def __call__(self, event: dict[str, Any], context: Any, /, *, gate: RecordGate | None = None) -> Any: ...


logger = Logger(service="filequeue")

EXIT_OK = 0
EXIT_ABORTED = 1
EXIT_CONFIG = 2
"""A configuration error stopped the loop: restarting it would fail the same way."""
HTTP_SLACK_SECONDS = 15.0
QUEUE_HINT = "FILEQUEUE_QUEUE_URL names a queue that does not exist"


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """How one poll loop runs.

    The fields up to `start_wait_seconds` come from `Settings` (`from_settings`), which holds their
    defaults; the rest are the loop's own mechanics, which no variable configures.
    """

    queue_url: str
    wait_time_seconds: int
    batch_size: int
    visibility_timeout_seconds: int
    """0: use the queue's VisibilityTimeout attribute."""
    shutdown_grace_seconds: float
    handler_margin_seconds: float
    """The handler's own deadline margin: it starts no record with less time left than this."""
    record_seconds: float
    """The most one record may need (deadline margin, extraction limit, write margin): the time each record
    the handler claims is given, however short the visibility timeout (the heartbeat keeps the lease)."""
    start_wait_seconds: float
    """A message not started after this long while the loop is busy is released for an idle consumer."""
    ack_reserve_seconds: float = 2.0
    """Kept back from the lease for deleting after the handler returns."""
    heartbeat: bool = True
    receive_backoff_base_seconds: float = 1.0
    receive_backoff_cap_seconds: float = 10.0
    failure_backoff_base_seconds: float = 1.0
    failure_backoff_cap_seconds: float = 30.0
    ack_attempts: int = 4
    watch_interval_seconds: float = 0.25

    def visibility_problem(self, visibility_seconds: int) -> str | None:
        """Why no record could start within a lease of `visibility_seconds`, or None."""
        return visibility_problem(
            visibility_seconds,
            heartbeat=self.heartbeat,
            margin_seconds=self.handler_margin_seconds,
            reserve_seconds=self.ack_reserve_seconds,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **mechanics: Any) -> LoopOptions:
        """The options `settings` configure; `mechanics` overrides the loop's own (tests use it)."""
        options = cls(
            queue_url=settings.require_queue(),
            wait_time_seconds=settings.worker_wait_time_seconds,
            batch_size=settings.worker_batch_size,
            visibility_timeout_seconds=settings.worker_visibility_timeout_seconds,
            shutdown_grace_seconds=settings.worker_shutdown_grace_seconds,
            handler_margin_seconds=settings.deadline_margin_seconds,
            record_seconds=settings.deadline_margin_seconds
            + settings.extract_timeout_seconds
            + settings.write_margin_seconds,
            start_wait_seconds=settings.worker_start_wait_seconds,
        )
        return replace(options, **mechanics)


@dataclass(slots=True)
class _RecordBudget:
    ends_at: float
    """Monotonic end of the record in work's time (the delete reserve included), renewed at each claim."""


@dataclass(frozen=True, slots=True)
class BatchReport:
    size: int
    succeeded: int
    reason: str | None
    """Why the failed messages failed (None when all succeeded)."""


@dataclass(slots=True)
class _Tally:
    processed: int = 0
    deleted: int = 0
    released: int = 0


def _no_liveness(_alive_until: float) -> None:
    return None


class PollLoop:
    """One consumer: receive, hand each batch to the handler, delete what succeeded.

    `process_messages` may be called from several threads at once (each call owns its batch).
    """

    def __init__(
        self,
        sqs: SQSClient,
        handler: BatchHandler,
        options: LoopOptions,
        *,
        stop: StopSignal | None = None,
        metrics: WorkerMetrics | None = None,
        liveness: Callable[[float], None] = _no_liveness,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        self._sqs = sqs
        self._handler = handler
        self._options = options
        self._stop = stop or StopSignal(clock)
        self._metrics = metrics or WorkerMetrics(registry=None)
        self._liveness = liveness
        self._clock = clock
        self._pause = pause or self._stop.wait
        jitter = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._receive_backoff = Backoff(
            options.receive_backoff_base_seconds, options.receive_backoff_cap_seconds, rng=jitter
        )
        self._failure_backoff = Backoff(
            options.failure_backoff_base_seconds, options.failure_backoff_cap_seconds, rng=jitter
        )
        self._acknowledger = Acknowledger(sqs, options.queue_url, self._metrics, attempts=options.ack_attempts)
        self._queue: QueueInfo | None = None
        self._queue_lock = threading.Lock()
        self._heartbeat: VisibilityHeartbeat | None = None
        self._in_flight = InFlight(clock)
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._memory_mb = memory_limit_mb()
        self._tally = _Tally()
        self._tally_lock = threading.Lock()
        self._exit_code = EXIT_OK

    @property
    def visibility_timeout(self) -> int:
        queue = self._queue
        if queue is None:
            raise RuntimeError("the queue has not been described yet")
        return self._options.visibility_timeout_seconds or queue.visibility_timeout_seconds

    def run(self) -> int:
        """Poll until a stop is requested; returns the process exit code."""
        try:
            while not self._stop.is_set():
                self.poll_once()
        finally:
            self.close()
            tally = self._tally
            logger.info(
                f"shutdown processed={tally.processed} released={tally.released}",
                extra={
                    "processed": tally.processed,
                    "released": tally.released,
                    "deleted": tally.deleted,
                    "reason": self._stop.reason,
                },
            )
        return self._exit_code

    def close(self) -> None:
        """Stop the visibility heartbeat and the in-flight watcher (run() does this on its way out)."""
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def poll_once(self) -> None:
        """One receive and the processing of what it returned."""
        if self._ensure_queue() is None:
            return
        self._liveness(self._clock() + self._idle_budget())
        received_at = self._clock()
        logger.debug("receive_started")
        try:
            messages = receive(
                self._sqs,
                self._options.queue_url,
                max_messages=self._options.batch_size,
                wait_seconds=self._options.wait_time_seconds,
                visibility_timeout=self._options.visibility_timeout_seconds,
            )
        except SQS_ERRORS as exc:
            self._back_off_after_error("receive", exc, self._receive_backoff)
            return
        self._receive_backoff.reset()
        if not messages:
            return
        reports = self.process_messages(messages, received_at=received_at)
        if any(report.succeeded for report in reports):
            self._failure_backoff.reset()
        elif any(report.size > report.succeeded for report in reports) and not self._stop.is_set():
            delay = self._failure_backoff.next_delay()
            logger.warning(
                "batch_all_failed",
                extra={"retry_in_seconds": round(delay, 3), "consecutive": self._failure_backoff.attempts},
            )
            self._pause(delay)

    def process_messages(self, messages: Sequence[MessageTypeDef], *, received_at: float) -> list[BatchReport]:
        """Handle the messages of one receive; `received_at` is when the receive call started."""
        queue = self._ensure_queue()
        if queue is None:
            raise RuntimeError("the queue cannot be described; nothing was processed")
        received = group_received(messages)
        self._note_received(messages, received)
        leases = [lease for item in received for lease in item.leases]
        if self._stop.is_set():
            # A long poll that was in flight when the stop came: hand its messages straight back (C3: none stranded).
            self._release(leases, "shutdown")
            return []
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.track(leases)
        self._in_flight.add(received, received_at)
        reports: list[BatchReport] = []
        try:
            for planned in plan_batches(received, self._options.batch_size):
                if self._stop.is_set():
                    break
                batch = self._in_flight.offer(planned)
                if batch:
                    reports.append(self._run_batch(batch, queue, received_at))
        finally:
            # What is left was not started: a stop came, or the loop failed. Hand it back now.
            self._hand_back(self._in_flight.take_waiting(among=received), "shutdown")
            if heartbeat is not None:
                heartbeat.untrack(leases)
        return reports

    def _run_batch(self, offered: list[Received], queue: QueueInfo, received_at: float) -> BatchReport:
        if self._heartbeat is not None:
            # The leases may be up to one renewal interval old (more on a busy machine): renew them, so the
            # batch starts with a whole visibility timeout and its records are not refused for lack of time.
            self._heartbeat.renew(_leases(offered))
        started = self._clock()
        # Until the handler claims a record (one that never does keeps the whole batch), the batch's budget.
        budget = _RecordBudget(started + max(self.visibility_timeout, self._options.record_seconds))
        self._note_budget(budget)
        event = build_event(offered, queue.identity)
        context = self._context(queue, self._deadline(received_at, budget))
        message_ids = frozenset(item.message_id for item in offered)
        self._metrics.in_flight.inc(len(offered))
        try:
            failed_ids, reason = self._invoke(event, context, message_ids, self._gate(budget))
        finally:
            self._metrics.in_flight.dec(len(offered))
            seconds = self._clock() - started
            self._metrics.batch_seconds.observe(seconds)
            # Only what this loop still holds: records released while the handler worked are someone else's.
            batch = self._in_flight.finish(offered)
            if self._heartbeat is not None:
                # Before the delete: a renewal of a deleted message would be reported as a lost lease.
                self._heartbeat.untrack(_leases(batch))
        succeeded = [item for item in batch if item.message_id not in failed_ids]
        failed = [item for item in batch if item.message_id in failed_ids]
        deleted = self._acknowledger.delete(_leases(succeeded))
        if failed and self._stop.is_set():
            # Leaving them invisible until the timeout would strand them (celery #8875): hand them back.
            self._release(_leases(failed), "shutdown")
        self._metrics.processed.inc(len(succeeded))
        if failed:
            self._metrics.failed.labels(reason=reason).inc(len(failed))
        with self._tally_lock:
            self._tally.processed += len(batch)
            self._tally.deleted += len(deleted.done)
        logger.info(
            "batch_done",
            extra={
                "request_id": context.aws_request_id,
                "size": len(batch),
                "succeeded": len(succeeded),
                "failed": len(failed),
                "deleted": len(deleted.done),
                "reason": reason if failed else None,
                "seconds": round(seconds, 3),
                "message_ids": sorted(message_ids),
            },
        )
        return BatchReport(len(batch), len(succeeded), reason if failed else None)

    def _gate(self, budget: _RecordBudget) -> RecordGate:
        """The gate the handler asks before each record: a claimed record gets the whole time one record may need."""

        def claim(message_id: str) -> bool:
            if not self._in_flight.claim(message_id):
                return False
            budget.ends_at = self._clock() + self._options.record_seconds + self._options.ack_reserve_seconds
            self._note_budget(budget)
            return True

        return claim

    def _note_budget(self, budget: _RecordBudget) -> None:
        # The loop is stuck if the record in work outlives its budget by another visibility timeout.
        self._liveness(budget.ends_at + self.visibility_timeout)

    def _invoke(
        self, event: dict[str, Any], context: DeadlineContext, message_ids: frozenset[str], gate: RecordGate
    ) -> tuple[frozenset[str], str]:
        """Call the handler; the failed message ids and why. Anything but a valid response fails all."""
        ids = sorted(message_ids)
        try:
            response = self._handler(event, context, gate=gate)
        except ConfigError as exc:
            # Every record would fail the same way: stop receiving rather than spend the queue's receives.
            logger.error("configuration_error", extra={"message_ids": ids, "error": str(exc), "outcome": "failed"})
            self._exit_code = EXIT_CONFIG
            self._stop.request("configuration_error")
            return message_ids, "configuration_error"
        except Exception:  # Lambda's rule: a handler exception fails the whole batch
            logger.exception("handler_failed", extra={"message_ids": ids, "outcome": "failed"})
            return message_ids, "handler_exception"
        except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt: Powertools lets them through
            logger.error(
                "handler_aborted",
                extra={"message_ids": ids, "exception": type(exc).__name__, "outcome": "failed"},
            )
            self._exit_code = EXIT_ABORTED
            self._stop.request("handler_aborted")
            return message_ids, "aborted"
        try:
            return failed_message_ids(response, message_ids), "reported"
        except InvalidBatchResponseError as exc:
            logger.error("invalid_batch_response", extra={"message_ids": ids, "error": str(exc), "outcome": "failed"})
            return message_ids, "invalid_response"

    def _deadline(self, received_at: float, budget: _RecordBudget) -> Callable[[], float]:
        """When the record in work must be done: the earlier of its budget and the shutdown grace.

        Each record the handler claims gets the time one record may need (deadline margin, extraction
        limit, write margin), whatever the visibility timeout: the heartbeat renews the lease meanwhile,
        so the handler computes one budget from it that gives every file its whole extraction limit.
        A lease the heartbeat loses does not stop the work (the write is idempotent). Without a
        heartbeat, the end of the lease comes first. After SIGTERM, the end of the grace period does.
        """
        reserve = self._options.ack_reserve_seconds
        grace = self._options.shutdown_grace_seconds
        lease_end = received_at + self.visibility_timeout if self._heartbeat is None else math.inf

        def deadline() -> float:
            return min(budget.ends_at, lease_end, self._stop.deadline(grace)) - reserve

        return deadline

    def _context(self, queue: QueueInfo, deadline: Callable[[], float]) -> DeadlineContext:
        return worker_context(deadline, queue.identity.arn, self._memory_mb, self._clock)

    def _hand_back(self, items: Sequence[Received], reason: str) -> None:
        """Release messages this loop no longer holds, and stop extending their leases first."""
        leases = _leases(items)
        if self._heartbeat is not None:
            self._heartbeat.untrack(leases)
        self._release(leases, reason)

    def _watch_in_flight(self, max_receives: int | None) -> None:
        """Hand back at once what has not started when a stop comes, and what waits too long behind slow work.

        Waiting messages are released only with a receive to spare before the DLQ, so releasing never
        dead-letters a healthy message; a stop releases everything not started (the process is leaving).
        """

        def spare(item: Received) -> bool:
            return max_receives is None or item.receive_count + 1 < max_receives

        while not self._closed.wait(self._options.watch_interval_seconds):
            try:
                if self._stop.is_set():
                    self._hand_back(self._in_flight.take_waiting(), "shutdown")
                elif self._in_flight.busy():
                    waiting = self._in_flight.take_waiting(waited_seconds=self._options.start_wait_seconds, spare=spare)
                    self._hand_back(waiting, "not_started_in_time")
            except Exception:  # a dead watcher would silently strand messages behind slow work
                logger.exception("in_flight_watcher_failed")

    def _release(self, leases: Sequence[Lease], reason: str) -> None:
        if not leases:
            return
        result = self._acknowledger.release(leases, reason)
        with self._tally_lock:
            self._tally.released += len(result.done)

    def _note_received(self, messages: Sequence[MessageTypeDef], received: Sequence[Received]) -> None:
        self._metrics.received.inc(len(messages))
        for item in received:
            for copy, lease in enumerate(item.leases):
                if copy == 0:
                    logger.info("received", extra=lease.log_fields())
                else:
                    self._metrics.skipped.inc()
                    logger.info("duplicate_in_receive", extra={**lease.log_fields(), "outcome": "skipped"})

    def _ensure_queue(self) -> QueueInfo | None:
        """Describe the queue once (ARN for the records, visibility for deadlines); None after a failure."""
        if self._queue is not None:
            return self._queue
        with self._queue_lock:
            if self._queue is not None:
                return self._queue
            self._liveness(self._clock() + self._idle_budget())
            try:
                queue = describe_queue(self._sqs, self._options.queue_url)
            except SQS_ERRORS as exc:
                self._back_off_after_error("get_queue_attributes", exc, self._receive_backoff)
                return None
            self._receive_backoff.reset()
            self._start(queue)
            self._queue = queue  # published last: other threads read it without the lock
            return queue

    def _start(self, queue: QueueInfo) -> None:
        visibility = self._options.visibility_timeout_seconds or queue.visibility_timeout_seconds
        problem = self._options.visibility_problem(visibility)
        if problem is not None:
            logger.error("visibility_timeout_too_short", extra={"visibility_timeout": visibility, "error": problem})
        if self._options.heartbeat:
            self._heartbeat = VisibilityHeartbeat(
                self._acknowledger,
                interval_seconds=heartbeat_interval(visibility),
                visibility_timeout=visibility,
            )
            self._heartbeat.start()
        self._watcher = threading.Thread(
            target=self._watch_in_flight, args=(queue.max_receive_count,), name="in-flight-watcher", daemon=True
        )
        self._watcher.start()
        logger.info(
            "worker_started",
            extra={
                "queue_arn": queue.identity.arn,
                "visibility_timeout": visibility,
                "wait_time_seconds": self._options.wait_time_seconds,
                "batch_size": self._options.batch_size,
            },
        )

    def _back_off_after_error(self, operation: str, exc: Exception, backoff: Backoff) -> None:
        if queue_missing(exc):
            logger.error("queue_does_not_exist", extra={"queue_url": self._options.queue_url, "hint": QUEUE_HINT})
        self._metrics.sqs_errors.labels(operation=operation).inc()
        delay = backoff.next_delay()
        logger.warning(
            f"{operation}_failed",
            extra={
                "aws_error_code": aws_error_code(exc),
                "retry_in_seconds": round(delay, 3),
                "consecutive": backoff.attempts,
            },
        )
        self._pause(delay)

    def _idle_budget(self) -> float:
        """How long one poll may take before the loop counts as stuck."""
        return self._options.wait_time_seconds + HTTP_SLACK_SECONDS + self._options.receive_backoff_cap_seconds


def _leases(items: Iterable[Received]) -> list[Lease]:
    return [lease for item in items for lease in item.leases]
