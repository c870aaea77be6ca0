"""The SQS calls of the poll loop: receive, delete, change visibility, with per-entry failure handling."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from handlers.worker.backoff import Backoff
from handlers.worker.records import QueueIdentity

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import BatchResultErrorEntryTypeDef, MessageTypeDef

    from handlers.worker.metrics import WorkerMetrics
    from handlers.worker.records import Lease

logger = Logger(service="filequeue")

MAX_BATCH_ENTRIES = 10
LEASE_LOST_CODES = frozenset({"MessageNotInflight", "ReceiptHandleIsInvalid", "InvalidReceiptHandle"})
SQS_ERRORS = (ClientError, BotoCoreError)
"""What a failed SQS call raises: service errors, throttling (after botocore's retries), timeouts, network."""

QUEUE_MISSING_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
Operation = Literal["delete", "release", "extend"]


def make_sqs_client(wait_time_seconds: int) -> SQSClient:
    """A client whose read timeout outlasts the long poll; the endpoint comes from boto3's own settings."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=5,
        read_timeout=wait_time_seconds + 15,
    )
    return boto3.client("sqs", config=config)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    identity: QueueIdentity
    visibility_timeout_seconds: int
    max_receive_count: int | None = None
    """The redrive policy's maxReceiveCount (None: no DLQ, receives are not limited)."""


def describe_queue(sqs: SQSClient, queue_url: str) -> QueueInfo:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn", "VisibilityTimeout", "RedrivePolicy"]
    )["Attributes"]
    return QueueInfo(
        QueueIdentity(attributes["QueueArn"]),
        int(attributes["VisibilityTimeout"]),
        _max_receive_count(attributes.get("RedrivePolicy")),
    )


def _max_receive_count(redrive_policy: str | None) -> int | None:
    if not redrive_policy:
        return None
    try:
        return int(json.loads(redrive_policy)["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        logger.warning("unreadable_redrive_policy", extra={"redrive_policy": redrive_policy})
        return None


def queue_missing(exc: Exception) -> bool:
    """True if the call failed because the queue does not exist (a wrong FILEQUEUE_QUEUE_URL)."""
    return aws_error_code(exc) in QUEUE_MISSING_CODES


def receive(
    sqs: SQSClient, queue_url: str, *, max_messages: int, wait_seconds: int, visibility_timeout: int
) -> list[MessageTypeDef]:
    request: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max_messages,
        "WaitTimeSeconds": wait_seconds,
        "MessageSystemAttributeNames": ["All"],
        "MessageAttributeNames": ["All"],
    }
    if visibility_timeout > 0:
        request["VisibilityTimeout"] = visibility_timeout
    return sqs.receive_message(**request).get("Messages", [])


@dataclass(slots=True)
class AckResult:
    done: list[Lease] = field(default_factory=list)
    lost: dict[Lease, str] = field(default_factory=dict)
    """Leases SQS no longer accepts, with the error code."""
    failed: list[Lease] = field(default_factory=list)


class Acknowledger:
    """Batched DeleteMessage / ChangeMessageVisibility with positional entry ids.

    Positional ids ("0".."9") never collide, even when one message id arrives with two receipt
    handles (the cause of `BatchEntryIdsNotDistinct` in aws-sdk-ruby #2913). Every `Failed` entry is
    logged; entries SQS did not blame on us (`SenderFault=false`) and whole-call errors are retried
    with backoff, a bounded number of times. A stale receipt handle means the lease is lost: never
    retried, and for deletes and releases counted and logged as `lease_lost` (the heartbeat reports
    its own, as only it knows whether the lease was still wanted).
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        metrics: WorkerMetrics,
        *,
        attempts: int = 4,
        backoff: Backoff | None = None,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._metrics = metrics
        self._attempts = attempts
        self._backoff_template = backoff or Backoff(base_seconds=0.2, cap_seconds=2.0)
        self._pause = pause

    def delete(self, leases: Sequence[Lease]) -> AckResult:
        result = self._each_chunk("delete", leases, None)
        self._metrics.deleted.inc(len(result.done))
        for lease in result.done:
            logger.debug("deleted", extra={**lease.log_fields(), "outcome": "deleted"})
        return result

    def release(self, leases: Sequence[Lease], reason: str) -> AckResult:
        result = self._each_chunk("release", leases, 0)
        self._metrics.released.inc(len(result.done))
        for lease in result.done:
            logger.info("released", extra={**lease.log_fields(), "outcome": "released", "reason": reason})
        return result

    def extend(self, leases: Sequence[Lease], visibility_timeout: int) -> AckResult:
        return self._each_chunk("extend", leases, visibility_timeout)

    def _each_chunk(self, operation: Operation, leases: Sequence[Lease], visibility: int | None) -> AckResult:
        total = AckResult()
        for start in range(0, len(leases), MAX_BATCH_ENTRIES):
            part = self._with_retries(operation, leases[start : start + MAX_BATCH_ENTRIES], visibility)
            total.done.extend(part.done)
            total.lost.update(part.lost)
            total.failed.extend(part.failed)
        return total

    def _with_retries(self, operation: Operation, leases: Sequence[Lease], visibility: int | None) -> AckResult:
        result = AckResult()
        pending = list(leases)
        backoff = Backoff(self._backoff_template.base_seconds, self._backoff_template.cap_seconds)
        for attempt in range(1, self._attempts + 1):
            if not pending:
                break
            if attempt > 1:
                self._pause(backoff.next_delay())
            try:
                failures = self._call(pending, visibility)
            except SQS_ERRORS as exc:
                self._metrics.sqs_errors.labels(operation=operation).inc()
                logger.warning(
                    f"{operation}_call_failed",
                    extra={"attempt": attempt, "aws_error_code": aws_error_code(exc), "entries": len(pending)},
                )
                continue
            failed_positions = {int(failure["Id"]) for failure in failures}
            result.done.extend(lease for position, lease in enumerate(pending) if position not in failed_positions)
            retry: list[Lease] = []
            for failure in failures:
                lease = pending[int(failure["Id"])]
                self._log_entry_failure(operation, lease, failure, attempt)
                if failure["Code"] in LEASE_LOST_CODES:
                    if operation != "extend":
                        self.report_lease_lost(operation, lease, failure["Code"])
                    result.lost[lease] = failure["Code"]
                elif failure["SenderFault"]:
                    result.failed.append(lease)
                else:
                    retry.append(lease)
            pending = retry
        if pending:
            logger.error(
                f"{operation}_gave_up",
                extra={"attempts": self._attempts, "message_ids": [lease.message_id for lease in pending]},
            )
            result.failed.extend(pending)
        return result

    def _call(self, leases: Sequence[Lease], visibility: int | None) -> list[BatchResultErrorEntryTypeDef]:
        """DeleteMessageBatch when `visibility` is None, else ChangeMessageVisibilityBatch."""
        if visibility is None:
            return self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(position), "ReceiptHandle": lease.receipt_handle}
                    for position, lease in enumerate(leases)
                ],
            ).get("Failed", [])
        return self._sqs.change_message_visibility_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(position), "ReceiptHandle": lease.receipt_handle, "VisibilityTimeout": visibility}
                for position, lease in enumerate(leases)
            ],
        ).get("Failed", [])

    def _log_entry_failure(
        self, operation: Operation, lease: Lease, failure: BatchResultErrorEntryTypeDef, attempt: int
    ) -> None:
        logger.warning(
            f"{operation}_entry_failed",
            extra={
                **lease.log_fields(),
                "aws_error_code": failure["Code"],
                "sender_fault": failure["SenderFault"],
                "error_message": failure.get("Message", ""),
                "attempt": attempt,
            },
        )

    def report_lease_lost(self, operation: Operation, lease: Lease, code: str) -> None:
        self._metrics.lease_lost.inc()
        logger.warning("lease_lost", extra={**lease.log_fields(), "operation": operation, "aws_error_code": code})


def aws_error_code(exc: Exception) -> str:
    """The AWS error code of a failed call, or the exception's class name for network errors."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
