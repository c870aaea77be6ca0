"""S3 notifications and the Lambda SQS events that carry them, built as AWS sends them.

`filequeue reconcile` enqueues them for the objects the store missed; `filequeue events`, `events/`
and the tests use them as samples, like `sam local generate-event`.

Every builder returns the shape the real service sends. Identifiers (message ids, receipt handles,
request ids, signatures) come from an `Ids`: random by default, reproducible when it has a seed.
Times are fixed sample values unless given, as in SAM's templates.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from collections.abc import Sequence

SAMPLE_EVENT_TIME = "1970-01-01T00:00:00.000Z"
SAMPLE_SENT_TIMESTAMP_MS = 1523232000000
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_QUEUE_ARN = f"arn:aws:sqs:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:filequeue-queue"
DEFAULT_TOPIC_ARN = f"arn:aws:sns:{DEFAULT_REGION}:{DEFAULT_ACCOUNT}:filequeue-topic"

# The example principal of the SQS events in AWS's documentation and SDK samples.
_SENDER_ID = "AIDAIENQZJOLO23YVJ4VO"
_PRINCIPAL_ID = "EXAMPLE"
_SOURCE_IP = "127.0.0.1"
_CONFIGURATION_ID = "filequeue-notification"


class Ids:
    """Source of identifiers: OS randomness, or a deterministic stream when `seed` is given."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._drawn = 0

    def _bytes(self, size: int) -> bytes:
        if self._seed is None:
            return secrets.token_bytes(size)
        self._drawn += 1
        stream = b""
        block = 0
        while len(stream) < size:
            stream += hashlib.sha256(f"{self._seed}:{self._drawn}:{block}".encode()).digest()
            block += 1
        return stream[:size]

    def uuid(self) -> str:
        return str(uuid.UUID(bytes=self._bytes(16), version=4))

    def hex(self, length: int) -> str:
        """Upper-case hex, like S3 request ids."""
        return self._bytes((length + 1) // 2).hex().upper()[:length]

    def base64(self, size: int) -> str:
        return base64.b64encode(self._bytes(size)).decode("ascii")


def encode_key(key: str) -> str:
    """Encode an object key as S3 writes it into notifications.

    The S3 guide says the key is form-urlencoded ("red flower.jpg" becomes "red+flower.jpg"), and
    recordings from real S3 leave "/" alone: "testupload/dir1/testfile.txt" in
    tests/fixtures/events/localstack-s3-to-sqs-recorded-against-aws.snapshot.json, while "@" becomes
    "%40" (localstack-derived-s3-put-key-a-at-b.json).
    """
    return quote_plus(key, safe="/")


def message_body(payload: dict[str, Any]) -> str:
    """A payload serialized as S3 and EventBridge write message bodies: compact JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def s3_notification(
    bucket: str,
    key: str,
    *,
    event_name: str = "ObjectCreated:Put",
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
    region: str = DEFAULT_REGION,
    event_time: str = SAMPLE_EVENT_TIME,
    ids: Ids | None = None,
) -> dict[str, Any]:
    """An S3 event notification with one record; fields left as None are omitted, as S3 does for deletes."""
    ids = ids or Ids()
    s3_object: dict[str, Any] = {"key": encode_key(key)}
    optional = {"size": size, "eTag": etag, "versionId": version_id, "sequencer": sequencer}
    s3_object.update({name: value for name, value in optional.items() if value is not None})
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": event_time,
        "eventName": event_name,
        "userIdentity": {"principalId": _PRINCIPAL_ID},
        "requestParameters": {"sourceIPAddress": _SOURCE_IP},
        "responseElements": {"x-amz-request-id": ids.hex(16), "x-amz-id-2": ids.base64(48)},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": _CONFIGURATION_ID,
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": _PRINCIPAL_ID},
                "arn": f"arn:{_partition(region)}:s3:::{bucket}",
            },
            "object": s3_object,
        },
    }
    return {"Records": [record]}


def s3_test_event(bucket: str, *, time: str = SAMPLE_EVENT_TIME, ids: Ids | None = None) -> dict[str, Any]:
    """The message S3 sends to a destination when a notification configuration is saved."""
    ids = ids or Ids()
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": time,
        "Bucket": bucket,
        "RequestId": ids.hex(16),
        "HostId": ids.base64(54),
    }


def eventbridge_object_event(
    bucket: str,
    key: str,
    *,
    detail_type: str = "Object Created",
    reason: str = "PutObject",
    deletion_type: str | None = None,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
    sequencer: str | None = None,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    time: str = "1970-01-01T00:00:00Z",
    ids: Ids | None = None,
) -> dict[str, Any]:
    """An S3 event as EventBridge delivers it to an SQS target (field names `etag`, `version-id`).

    The key is encoded as in notifications, matching what `parse_notifications` assumes (see the
    comment there: AWS does not document EventBridge's key encoding).
    """
    ids = ids or Ids()
    s3_object: dict[str, Any] = {"key": encode_key(key)}
    optional = {"size": size, "etag": etag, "version-id": version_id, "sequencer": sequencer}
    s3_object.update({name: value for name, value in optional.items() if value is not None})
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": bucket},
        "object": s3_object,
        "request-id": ids.hex(16),
        "requester": account,
        "source-ip-address": _SOURCE_IP,
        "reason": reason,
    }
    if deletion_type is not None:
        detail["deletion-type"] = deletion_type
    return {
        "version": "0",
        "id": ids.uuid(),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account,
        "time": time,
        "region": region,
        "resources": [f"arn:{_partition(region)}:s3:::{bucket}"],
        "detail": detail,
    }


def sns_wrap(
    message: str,
    *,
    topic_arn: str = DEFAULT_TOPIC_ARN,
    subject: str = "Amazon S3 Notification",
    timestamp: str = SAMPLE_EVENT_TIME,
    ids: Ids | None = None,
) -> str:
    """The SQS body SNS delivers without raw message delivery: an envelope with `message` as a string."""
    ids = ids or Ids()
    endpoint = f"https://sns.{_arn_region(topic_arn)}.amazonaws.com"
    envelope = {
        "Type": "Notification",
        "MessageId": ids.uuid(),
        "TopicArn": topic_arn,
        "Subject": subject,
        "Message": message,
        "Timestamp": timestamp,
        "SignatureVersion": "1",
        "Signature": ids.base64(256),
        "SigningCertURL": f"{endpoint}/SimpleNotificationService-{ids.hex(32).lower()}.pem",
        "UnsubscribeURL": f"{endpoint}/?Action=Unsubscribe&SubscriptionArn={topic_arn}:{ids.uuid()}",
    }
    # SNS lays the envelope out this way ("Type" : "Notification"), as the captured bodies show.
    return json.dumps(envelope, indent=2, separators=(",", " : "))


def sqs_event(
    bodies: Sequence[str],
    *,
    queue_arn: str = DEFAULT_QUEUE_ARN,
    region: str | None = None,
    sent_timestamp_ms: int = SAMPLE_SENT_TIMESTAMP_MS,
    ids: Ids | None = None,
) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping passes to the handler, one record per body."""
    ids = ids or Ids()
    region = region or _arn_region(queue_arn)
    return {"Records": [_sqs_record(body, queue_arn, region, sent_timestamp_ms, ids) for body in bodies]}


def _sqs_record(body: str, queue_arn: str, region: str, sent_timestamp_ms: int, ids: Ids) -> dict[str, Any]:
    return {
        "messageId": ids.uuid(),
        "receiptHandle": "AQEB" + ids.base64(96),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent_timestamp_ms),
            "SenderId": _SENDER_ID,
            "ApproximateFirstReceiveTimestamp": str(sent_timestamp_ms),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or not parts[3]:
        raise ValueError(f"not a regional ARN: {arn!r}")
    return parts[3]


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
