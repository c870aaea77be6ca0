"""Turn `ReceiveMessage` results into the records Lambda's SQS event source would pass.

Every field Lambda's records carry (messageId, receiptHandle, body, attributes, camelCase
messageAttributes, md5OfBody, eventSource, eventSourceARN, awsRegion) is filled in, so the handler
cannot tell the two runtimes apart.

Pure functions: message dictionaries in, Lambda-shaped dictionaries out.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

EVENT_SOURCE = "aws:sqs"


@dataclass(frozen=True, slots=True)
class QueueIdentity:
    """What every record of one queue shares."""

    arn: str

    @property
    def region(self) -> str:
        # arn:partition:sqs:region:account:name
        return self.arn.split(":")[3]


@dataclass(frozen=True, slots=True)
class Lease:
    """One receipt handle of one received message: the unit that is deleted, extended or released."""

    message_id: str
    receipt_handle: str
    receive_count: int
    bucket: str | None = None
    key: str | None = None

    def log_fields(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "receive_count": self.receive_count,
            "bucket": self.bucket,
            "key": self.key,
        }


@dataclass(frozen=True, slots=True)
class Received:
    """One distinct message of a receive: the message given to the handler and all its receipt handles.

    SQS very rarely returns the same message twice in one receive, with two receipt handles
    (aws-sdk-ruby #2913). The handler sees the message once; every handle is deleted or released.
    """

    message: MessageTypeDef
    leases: tuple[Lease, ...]

    @property
    def message_id(self) -> str:
        return self.leases[0].message_id

    @property
    def receive_count(self) -> int:
        return max(lease.receive_count for lease in self.leases)


def receive_count(message: MessageTypeDef) -> int:
    raw = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
    try:
        return int(raw)
    except ValueError:
        return 1


def group_received(messages: Iterable[MessageTypeDef]) -> list[Received]:
    """Group messages by MessageId, keeping the first copy as the one the handler sees."""
    order: list[str] = []
    first: dict[str, MessageTypeDef] = {}
    leases: dict[str, list[Lease]] = {}
    for message in messages:
        message_id = message["MessageId"]
        if message_id not in first:
            order.append(message_id)
            first[message_id] = message
            leases[message_id] = []
        bucket, key = describe_body(message.get("Body", ""))
        leases[message_id].append(
            Lease(message_id, message["ReceiptHandle"], receive_count(message), bucket=bucket, key=key)
        )
    return [Received(first[message_id], tuple(leases[message_id])) for message_id in order]


def plan_batches(received: Sequence[Received], batch_size: int) -> list[list[Received]]:
    """Fresh messages together; redelivered ones (receive count > 1) one per batch.

    A message seen before may be the poison that crashed or timed out its last batch; alone, it
    cannot spend the receives of its batch-mates (fault case C5: only the poison message reaches the DLQ).
    """
    fresh = [item for item in received if item.receive_count <= 1]
    batches = [fresh[start : start + batch_size] for start in range(0, len(fresh), batch_size)]
    batches.extend([item] for item in received if item.receive_count > 1)
    return batches


def build_event(batch: Iterable[Received], queue: QueueIdentity) -> dict[str, Any]:
    return {"Records": [build_record(item.message, queue) for item in batch]}


def build_record(message: MessageTypeDef, queue: QueueIdentity) -> dict[str, Any]:
    """One record exactly as Lambda's SQS event source shapes it."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes"),
        "eventSource": EVENT_SOURCE,
        "eventSourceARN": queue.arn,
        "awsRegion": queue.region,
    }


def _message_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [_b64(item) for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = _b64(value["BinaryValue"])
    return shaped


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def describe_body(body: str) -> tuple[str | None, str | None]:
    """Best-effort (bucket, key) of an S3 notification body, for log lines only; never raises."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    records = document.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        s3 = records[0].get("s3")
        if isinstance(s3, dict):
            key = _dig(s3, "object", "key")
            return _dig(s3, "bucket", "name"), unquote_plus(key) if key is not None else None
    detail = document.get("detail")
    if isinstance(detail, dict):
        return _dig(detail, "bucket", "name"), _dig(detail, "object", "key")
    return None, None


def _dig(document: Mapping[str, Any], outer: str, inner: str) -> str | None:
    section = document.get(outer)
    if not isinstance(section, dict):
        return None
    value = section.get(inner)
    return value if isinstance(value, str) else None
