"""Turn one SQS message body into the S3 object events it carries (pure: no logging, no clients).

Bodies understood (every way S3 can deliver an event to an SQS queue):

- an S3 notification `{"Records": [...]}`: S3 -> SQS, or S3 -> SNS -> SQS with raw message delivery;
- an SNS envelope `{"Type": "Notification", "Message": "<JSON string>"}`: SNS -> SQS without raw
  delivery, whose Message is an S3 notification or an `s3:TestEvent`;
- an EventBridge event `{"source": "aws.s3", "detail-type": ..., "detail": {...}}`: S3 -> EventBridge -> SQS;
- `s3:TestEvent`, which S3 sends once when a notification is configured.

Anything else raises MalformedEventError: the message must reach the DLQ rather than vanish as a
success with nothing done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from handlers.errors import ErrorCode, MalformedEventError
from handlers.model import EventKind, ObjectRef
from handlers.stages.sequencer import is_sequencer

# The reason given for `{"Records": []}`: acknowledged, but worth a warning (something upstream sent it).
NO_RECORDS = "no records"


@dataclass(frozen=True, slots=True)
class Notifications:
    """The objects one message body asks to process, and one reason per thing it acknowledges but skips."""

    refs: tuple[ObjectRef, ...] = ()
    ignored: tuple[str, ...] = ()


# Only the major version is binding: S3 adds fields in minor versions (2.1 ... 2.6 share one layout).
_SUPPORTED_EVENT_VERSION_MAJOR = "2"

# Lifecycle expiration deletes the object (or hides it behind a delete marker, as a DELETE on a
# versioned bucket does), so its document must go exactly as for ObjectRemoved:*.
_REMOVING_EVENT_NAMES = frozenset({"LifecycleExpiration:Delete", "LifecycleExpiration:DeleteMarkerCreated"})

# EventBridge names the cause in `reason` (and `deletion-type`) instead of an eventName. Known values
# are mapped to the notification eventName S3 sends for the same operation, so logs and the database
# see one vocabulary; an unknown or missing value leaves the detail-type itself ("Object Created").
_EVENTBRIDGE_CREATED_REASONS = {
    "PutObject": "Put",
    "POST Object": "Post",
    "PostObject": "Post",
    "CopyObject": "Copy",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}
_EVENTBRIDGE_DELETED_REASONS = {"DeleteObject": "ObjectRemoved", "Lifecycle Expiration": "LifecycleExpiration"}
_EVENTBRIDGE_DELETION_TYPES = {"Permanently Deleted": "Delete", "Delete Marker Created": "DeleteMarkerCreated"}

_PREVIEW_LENGTH = 60


def parse_notifications(body: str) -> Notifications:
    """Parse one SQS message body; raises MalformedEventError (with a stable `code`) if it is not ours."""
    if not body.strip():
        raise MalformedEventError("message body is empty", code=ErrorCode.EMPTY_BODY)
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedEventError(
            f"message body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {_preview(body)}",
            code=ErrorCode.INVALID_JSON,
        ) from exc
    except RecursionError as exc:
        raise MalformedEventError(
            f"message body nests JSON too deeply: {_preview(body)}", code=ErrorCode.INVALID_JSON
        ) from exc
    return _parse_payload(payload, where="message body", inside_sns=False)


def _parse_payload(payload: Any, *, where: str, inside_sns: bool) -> Notifications:
    if not isinstance(payload, dict):
        raise MalformedEventError(
            f"{where} is a JSON {type(payload).__name__}, not an S3 event object", code=ErrorCode.UNKNOWN_SHAPE
        )
    if "Records" in payload:
        return _parse_s3_notification(payload["Records"], where)
    if payload.get("Event") == "s3:TestEvent":
        return Notifications(ignored=(f"s3:TestEvent bucket={payload.get('Bucket')}",))
    if not inside_sns and payload.get("Type") == "Notification" and "Message" in payload:
        return _parse_sns_notification(payload)
    if payload.get("source") == "aws.s3" and "detail-type" in payload:
        return _parse_eventbridge_event(payload, where)
    expected = "an S3 notification, s3:TestEvent or EventBridge S3 event"
    if not inside_sns:
        expected += " (bare or in an SNS notification)"
    keys = ", ".join(sorted(str(key) for key in payload)[:8]) or "none"
    raise MalformedEventError(f"{where} is not {expected}; top-level keys: {keys}", code=ErrorCode.UNKNOWN_SHAPE)


def _parse_sns_notification(envelope: dict[str, Any]) -> Notifications:
    where = f"SNS Message from {envelope.get('TopicArn', 'an unknown topic')}"
    message = envelope["Message"]
    if not isinstance(message, str):
        raise MalformedEventError(f"{where} is a {type(message).__name__}, not a string", code=ErrorCode.UNKNOWN_SHAPE)
    try:
        inner = json.loads(message)
    except (json.JSONDecodeError, RecursionError) as exc:
        # The body itself was valid JSON: this is somebody else's SNS message, not a broken one of ours.
        raise MalformedEventError(
            f"{where} is not JSON, so not an S3 event: {_preview(message)}", code=ErrorCode.UNKNOWN_SHAPE
        ) from exc
    return _parse_payload(inner, where=where, inside_sns=True)


def _parse_s3_notification(records: Any, where: str) -> Notifications:
    if not isinstance(records, list):
        raise MalformedEventError(
            f"{where}: Records is a {type(records).__name__}, not a list", code=ErrorCode.UNKNOWN_SHAPE
        )
    if not records:
        return Notifications(ignored=(NO_RECORDS,))
    refs: list[ObjectRef] = []
    ignored: list[str] = []
    # S3 sends one record per message, but the shape allows several: all of them count.
    for index, record in enumerate(records):
        outcome = _parse_s3_record(record, where, f"Records[{index}]")
        if isinstance(outcome, ObjectRef):
            refs.append(outcome)
        else:
            ignored.append(outcome)
    return Notifications(refs=tuple(refs), ignored=tuple(ignored))


def _parse_s3_record(record: Any, where: str, path: str) -> ObjectRef | str:
    """The record's ObjectRef, or the reason it is acknowledged without processing."""
    if not isinstance(record, dict):
        raise MalformedEventError(
            f"{where}: {path} is a {type(record).__name__}, not an object", code=ErrorCode.UNKNOWN_SHAPE
        )
    if not isinstance(record.get("s3"), dict) and record.get("eventSource") != "aws:s3":
        source = record.get("eventSource", record.get("EventSource"))
        raise MalformedEventError(
            f"{where}: {path} is not an S3 event record (eventSource={source!r})", code=ErrorCode.UNKNOWN_SHAPE
        )
    s3 = _required_object(record, "s3", where, path)
    _check_event_version(record.get("eventVersion"), where, f"{path}.eventVersion")
    # S3 sends eventName without the "s3:" of the configuration syntax, but some SDK samples keep it.
    event_name = _required_str(record, "eventName", where, path).removeprefix("s3:")
    bucket = _required_str(_required_object(s3, "bucket", where, f"{path}.s3"), "name", where, f"{path}.s3.bucket")
    s3_object = _required_object(s3, "object", where, f"{path}.s3")
    key = unquote_plus(_required_str(s3_object, "key", where, f"{path}.s3.object"))
    kind = _kind_of(event_name)
    if kind is None:
        return f"eventName={event_name} key={key}"
    if key.endswith("/"):
        return f"folder marker key={key}"
    return ObjectRef(
        bucket=bucket,
        key=key,
        kind=kind,
        event_name=event_name,
        version_id=_version_id(s3_object.get("versionId"), where, f"{path}.s3.object.versionId"),
        etag=_optional_str(s3_object.get("eTag"), where, f"{path}.s3.object.eTag"),
        size=_size(s3_object.get("size"), where, f"{path}.s3.object.size"),
        sequencer=_sequencer(s3_object.get("sequencer")),
        event_time=_event_time(record.get("eventTime"), where, f"{path}.eventTime"),
    )


def _parse_eventbridge_event(event: dict[str, Any], where: str) -> Notifications:
    detail_type = _required_str(event, "detail-type", where, "event")
    detail = _required_object(event, "detail", where, "event")
    bucket = _required_str(_required_object(detail, "bucket", where, "detail"), "name", where, "detail.bucket")
    s3_object = _required_object(detail, "object", where, "detail")
    # Whether EventBridge URL-encodes keys is not documented, and the real captures we hold cannot tell:
    # their keys ("__init__.py" in tests/fixtures/events/powertools-pr4069-real-sqs-wrapping-eventbridge-s3.json,
    # "s3-eb-template.yaml" in powertools-pr4069-real-eventbridge-s3-object-created.json) have no
    # character that encoding would change. Powertools' S3EventBridgeNotificationObject.key and
    # LocalStack's EventBridge notifier treat them like notification keys, and unquote_plus leaves a raw
    # key unchanged unless it contains "+" or "%", so decoding is the choice that fails least often.
    key = unquote_plus(_required_str(s3_object, "key", where, "detail.object"))
    classified = _classify_eventbridge(detail_type, detail)
    if classified is None:
        return Notifications(ignored=(f"detail-type={detail_type} key={key}",))
    if key.endswith("/"):
        return Notifications(ignored=(f"folder marker key={key}",))
    kind, event_name = classified
    ref = ObjectRef(
        bucket=bucket,
        key=key,
        kind=kind,
        event_name=event_name,
        version_id=_version_id(s3_object.get("version-id"), where, "detail.object.version-id"),
        etag=_optional_str(s3_object.get("etag"), where, "detail.object.etag"),
        size=_size(s3_object.get("size"), where, "detail.object.size"),
        sequencer=_sequencer(s3_object.get("sequencer")),
        event_time=_event_time(event.get("time"), where, "event.time"),
    )
    return Notifications(refs=(ref,))


def _classify_eventbridge(detail_type: str, detail: dict[str, Any]) -> tuple[EventKind, str] | None:
    reason = detail.get("reason")
    if detail_type == "Object Created":
        action = _EVENTBRIDGE_CREATED_REASONS.get(reason) if isinstance(reason, str) else None
        return EventKind.CREATED, f"ObjectCreated:{action}" if action else detail_type
    if detail_type == "Object Deleted":
        deletion_type = detail.get("deletion-type")
        family = _EVENTBRIDGE_DELETED_REASONS.get(reason) if isinstance(reason, str) else None
        action = _EVENTBRIDGE_DELETION_TYPES.get(deletion_type) if isinstance(deletion_type, str) else None
        return EventKind.REMOVED, f"{family}:{action}" if family and action else detail_type
    return None


def _kind_of(event_name: str) -> EventKind | None:
    if event_name.startswith("ObjectCreated:"):
        return EventKind.CREATED
    if event_name.startswith("ObjectRemoved:") or event_name in _REMOVING_EVENT_NAMES:
        return EventKind.REMOVED
    return None


def _check_event_version(value: Any, where: str, path: str) -> None:
    if value is None:
        raise MalformedEventError(f"{where}: {path} is missing", code=ErrorCode.INVALID_RECORD)
    if not isinstance(value, str) or value.split(".", 1)[0] != _SUPPORTED_EVENT_VERSION_MAJOR:
        raise MalformedEventError(
            f"{where}: {path} {value!r} is not supported (major version must be {_SUPPORTED_EVENT_VERSION_MAJOR})",
            code=ErrorCode.INVALID_RECORD,
        )


def _required_object(container: dict[str, Any], name: str, where: str, path: str) -> dict[str, Any]:
    value = container.get(name)
    if not isinstance(value, dict):
        problem = "is missing" if value is None else f"is a {type(value).__name__}, not an object"
        raise MalformedEventError(f"{where}: {path}.{name} {problem}", code=ErrorCode.INVALID_RECORD)
    return value


def _required_str(container: dict[str, Any], name: str, where: str, path: str) -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value:
        if value is None:
            problem = "is missing"
        elif isinstance(value, str):
            problem = "is empty"
        else:
            problem = f"is a {type(value).__name__}, not a string"
        raise MalformedEventError(f"{where}: {path}.{name} {problem}", code=ErrorCode.INVALID_RECORD)
    return value


def _optional_str(value: Any, where: str, path: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedEventError(
            f"{where}: {path} is a {type(value).__name__}, not a string", code=ErrorCode.INVALID_RECORD
        )
    return value


def _version_id(value: Any, where: str, path: str) -> str | None:
    # Unversioned buckets leave versionId out; some producers write "" or the literal "null" instead.
    version_id = _optional_str(value, where, path)
    return None if version_id == "null" else version_id


def _size(value: Any, where: str, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEventError(
            f"{where}: {path} must be a non-negative integer, got {value!r}", code=ErrorCode.INVALID_RECORD
        )
    return value


def _event_time(value: Any, where: str, path: str) -> datetime | None:
    # S3 writes ISO 8601 in UTC ("2024-05-01T12:00:00.000Z"); a time without an offset is taken as UTC.
    # A placeholder that is no time at all (emulator snapshots write "date") cannot order events, so it
    # counts as missing, like a placeholder sequencer.
    text = _optional_str(value, where, path)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _sequencer(value: Any) -> str | None:
    # S3 always sends hex here. Emulators and SDK samples use placeholders ("sequencer", "Happy
    # Sequencer"); those cannot be ordered, so they count as missing and the event is treated as
    # unordered, exactly as when S3 (or moto) leaves the field out or empty.
    return value if isinstance(value, str) and is_sequencer(value) else None


def _preview(text: str) -> str:
    return repr(text if len(text) <= _PREVIEW_LENGTH else text[:_PREVIEW_LENGTH] + "...")
