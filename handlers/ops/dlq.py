"""`filequeue dlq list`, `redrive`, `delete` and `purge`: read the dead-letter queue, send messages back, drop them.

Listing receives the messages (SQS has no peek), holds them invisible for a moment and makes them
visible again at once. Redrive uses SQS's own `StartMessageMoveTask` when it moves everything and
the service offers it; otherwise, and for chosen message ids, each message is received, sent to the
source queue and only then deleted from the DLQ. A crash between the send and the delete leaves a
copy in both queues: a duplicate, never a loss, and the handler skips the duplicate because it
compares the event with what is stored.

Deleting drops chosen messages (a poison message that would only come back) after receiving them
by id, and purging drops every message: both can be tried first with a dry run that only lists.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from handlers.errors import MalformedEventError
from handlers.ops.aws import queue_arn, translated

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator

    import psycopg

MOVE_TASK = "StartMessageMoveTask"
RECEIVE_SEND_DELETE = "receive-send-delete"
_HOLD_SECONDS = 30


@dataclass(frozen=True)
class RecordedFailure:
    """What the handler or the store recorded about a message: the reason, and when (if known)."""

    reason: str
    failed_at: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    bucket: str | None
    key: str | None
    event_name: str | None
    receive_count: int
    sent_at: str | None
    first_received_at: str | None
    last_failed_at: str | None
    reason: str | None


def _no_record(_message_id: str, _bucket: str | None, _key: str | None) -> RecordedFailure | None:
    return None


@dataclass
class RedriveReport:
    method: str
    dry_run: bool
    moved: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    task_handle: str | None = None
    fallback_reason: str | None = None


def list_dead_letters(
    sqs: Any,
    dlq_url: str,
    *,
    recorded: Callable[[str, str | None, str | None], RecordedFailure | None] = _no_record,
) -> list[DeadLetter]:
    """Every message in the DLQ, decoded; `recorded(message_id, bucket, key)` adds what was kept about it."""
    letters: list[DeadLetter] = []
    with _held(sqs, dlq_url) as messages:
        for message in messages:
            letters.append(_describe(message, recorded))
    return sorted(letters, key=lambda letter: (letter.sent_at or "", letter.message_id))


def redrive(
    sqs: Any,
    dlq_url: str,
    source_url: str,
    *,
    message_ids: Collection[str] | None = None,
    dry_run: bool = False,
) -> RedriveReport:
    """Send the chosen messages (all when `message_ids` is None) from the DLQ back to `source_url`."""
    from botocore.exceptions import ClientError

    fallback_reason = None
    if message_ids is None and not dry_run:
        source_arn, destination_arn = queue_arn(sqs, dlq_url), queue_arn(sqs, source_url)
        try:
            response = sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=destination_arn)
        except ClientError as error:
            # Not offered by every endpoint (moto answers 500): move the messages one by one instead.
            fallback_reason = f"{MOVE_TASK} unavailable: {error.response.get('Error', {}).get('Code', 'Unknown')}"
        else:
            return RedriveReport(MOVE_TASK, dry_run, task_handle=str(response["TaskHandle"]))
    report = RedriveReport(RECEIVE_SEND_DELETE, dry_run, fallback_reason=fallback_reason)
    wanted = None if message_ids is None else set(message_ids)
    with _held(sqs, dlq_url) as messages:
        for message in messages:
            if wanted is not None and message["MessageId"] not in wanted:
                continue
            if not dry_run:
                _move(sqs, message, dlq_url, source_url)
            report.moved.append(message["MessageId"])
    if wanted is not None:
        report.not_found = sorted(wanted - set(report.moved))
    return report


@dataclass
class DropReport:
    """The messages a delete or purge dropped (or, on a dry run, would drop), and the ids not found."""

    dry_run: bool
    dropped: list[DeadLetter] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


def drop_dead_letters(
    sqs: Any,
    dlq_url: str,
    *,
    message_ids: Collection[str] | None = None,
    dry_run: bool = False,
    recorded: Callable[[str, str | None, str | None], RecordedFailure | None] = _no_record,
    on_dropped: Callable[[DeadLetter], None] = lambda letter: None,
) -> DropReport:
    """Delete the chosen messages (all when `message_ids` is None) from the DLQ, each described first.

    `on_dropped` hears of each message as soon as it is deleted, so a run interrupted halfway has
    reported exactly what went.

    Receive and delete rather than `PurgeQueue`: the report names exactly what went, and a message sent
    to the DLQ meanwhile is never dropped unseen (SQS purges what arrives during its 60 seconds too).
    """
    report = DropReport(dry_run)
    wanted = None if message_ids is None else set(message_ids)
    with _held(sqs, dlq_url) as messages:
        for message in messages:
            if wanted is not None and message["MessageId"] not in wanted:
                continue
            report.dropped.append(_describe(message, recorded))
            if not dry_run:
                with translated(dlq_url):
                    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                message["ReceiptHandle"] = None
                on_dropped(report.dropped[-1])
    if wanted is not None:
        report.not_found = sorted(wanted - {letter.message_id for letter in report.dropped})
    return report


def _move(sqs: Any, message: dict[str, Any], dlq_url: str, source_url: str) -> None:
    request: dict[str, Any] = {"QueueUrl": source_url, "MessageBody": message["Body"]}
    attributes = {
        name: {kind: value for kind, value in attribute.items() if value}
        for name, attribute in message.get("MessageAttributes", {}).items()
    }
    if attributes:
        request["MessageAttributes"] = attributes
    with translated(source_url):
        sqs.send_message(**request)
    # Deleted only once the copy is in the source queue: an interruption here duplicates, never loses.
    with translated(dlq_url):
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    message["ReceiptHandle"] = None


class _Held:
    """Messages received from a queue, each once; the ones not consumed are made visible again."""

    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs = sqs
        self._url = url
        self._messages: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        while True:
            with translated(self._url):
                received = self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=0,
                    VisibilityTimeout=_HOLD_SECONDS,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            fresh = [message for message in received if message["MessageId"] not in seen]
            self._messages.extend(received)
            if not fresh:
                return
            for message in fresh:
                seen.add(message["MessageId"])
                yield message

    def release(self) -> None:
        handles = [message["ReceiptHandle"] for message in self._messages if message.get("ReceiptHandle")]
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for index, handle in enumerate(handles[start : start + 10])
            ]
            with translated(self._url):
                self._sqs.change_message_visibility_batch(QueueUrl=self._url, Entries=entries)


@contextmanager
def _held(sqs: Any, url: str) -> Iterator[_Held]:
    held = _Held(sqs, url)
    try:
        yield held
    finally:
        held.release()


def _describe(
    message: dict[str, Any], recorded: Callable[[str, str | None, str | None], RecordedFailure | None]
) -> DeadLetter:
    from handlers.stages.events import parse_notifications

    attributes = message.get("Attributes", {})
    bucket = key = event_name = None
    reason: str | None = None
    try:
        notifications = parse_notifications(message["Body"])
    except MalformedEventError as error:
        reason = f"{error.code}: {error}"
    else:
        if notifications.refs:
            ref = notifications.refs[0]
            bucket, key, event_name = ref.bucket, ref.key, ref.event_name
        elif notifications.ignored:
            reason = f"ignored: {notifications.ignored[0]}"
    kept = recorded(message["MessageId"], bucket, key)
    return DeadLetter(
        message_id=message["MessageId"],
        bucket=bucket,
        key=key,
        event_name=event_name,
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        sent_at=_timestamp(attributes.get("SentTimestamp")),
        first_received_at=_timestamp(attributes.get("ApproximateFirstReceiveTimestamp")),
        last_failed_at=kept.failed_at if kept else None,
        reason=kept.reason if kept else reason,
    )


def _timestamp(milliseconds: str | None) -> str | None:
    if not milliseconds:
        return None
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC).isoformat(timespec="seconds")


def recorded_failure(
    conn: psycopg.Connection[Any], message_id: str, bucket: str | None, key: str | None
) -> RecordedFailure | None:
    """Why the handler last failed this message id; else the permanent failure stored for its key."""
    exists = conn.execute("SELECT to_regclass('message_failures') IS NOT NULL").fetchone()
    if exists and exists[0]:
        row = conn.execute(
            "SELECT error_code, error, last_failed_at FROM message_failures WHERE message_id = %s", (message_id,)
        ).fetchone()
        if row is not None:
            return RecordedFailure(f"{row[0]}: {row[1]}", row[2].isoformat(timespec="seconds"))
    if bucket is None or key is None:
        return None
    row = conn.execute(
        "SELECT error_code, error, updated_at FROM documents WHERE bucket = %s AND key = %s AND status = 'failed'",
        (bucket, key),
    ).fetchone()
    return RecordedFailure(f"{row[0]}: {row[1]}", row[2].isoformat(timespec="seconds")) if row else None
