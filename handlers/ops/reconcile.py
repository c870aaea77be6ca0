"""`filequeue reconcile`: make the store match a bucket, like a knowledge base sync.

The bucket listing (sorted by key, one page at a time) and the documents of that bucket (read in
the same byte order, one page at a time) are merged like two sorted files, so memory stays bounded
by the page size whatever the number of keys. What differs becomes an S3-shaped event sent through
the ingestion queue, so the same handler applies it under the same fencing as live events:

- a key in the bucket but not in the store, or with another ETag or size: `ObjectCreated:Put` whose
  event time is the object's LastModified (an older event than one already stored is skipped);
- a key in the store but no longer in the bucket: `ObjectRemoved:Delete` whose event time is the
  moment the run started, so an upload made after that moment wins over the delete.

Nothing is written to the store directly. A run interrupted halfway has only sent events; running it
again sends the remaining differences, and the copies of events already sent are duplicates that
the handler skips. Running it while events flow is safe for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from handlers.errors import TransientError
from handlers.ops.aws import queue_arn, translated

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg

DEFAULT_PAGE_SIZE = 1000
_SEND_BATCH = 10


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class StoredDocument:
    key: str
    etag: str | None
    size: int | None


@dataclass
class ReconcileReport:
    bucket: str
    prefix: str
    dry_run: bool
    listed: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    gone: int = 0
    enqueued: int = 0
    last_key: str | None = None
    samples: dict[str, list[str]] = field(default_factory=lambda: {"new": [], "changed": [], "gone": []})


def reconcile(
    s3: Any,
    sqs: Any,
    conn: psycopg.Connection[Any],
    *,
    bucket: str,
    queue_url: str,
    prefix: str = "",
    dry_run: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
    start_after: str = "",
) -> ReconcileReport:
    """Compare `bucket` under `prefix` with the store and enqueue the differences (or only count them)."""
    queue_arn(sqs, queue_url)  # a missing queue is reported before a long listing, not after it
    started = datetime.now(UTC)
    report = ReconcileReport(bucket, prefix, dry_run)
    outbox = _Outbox(sqs, queue_url, dry_run)
    listed = _listing(s3, bucket, prefix, page_size, start_after)
    stored = _stored(conn, bucket, prefix, page_size, start_after)
    current, document = next(listed, None), next(stored, None)
    while current is not None or document is not None:
        if document is None or (current is not None and _order(current.key) < _order(document.key)):
            assert current is not None  # noqa: S101 - one of the two streams is not exhausted
            _note(report, "new", current.key)
            outbox.put(_created(bucket, current))
            report.listed += 1
            report.last_key, current = current.key, next(listed, None)
        elif current is None or _order(document.key) < _order(current.key):
            _note(report, "gone", document.key)
            outbox.put(_removed(bucket, document.key, started))
            document = next(stored, None)
        else:
            if current.etag == document.etag and current.size == document.size:
                report.unchanged += 1
            else:
                _note(report, "changed", current.key)
                outbox.put(_created(bucket, current))
            report.listed += 1
            report.last_key = current.key
            current, document = next(listed, None), next(stored, None)
    outbox.flush()
    report.enqueued = outbox.sent
    return report


def _order(key: str) -> bytes:
    """S3 lists keys in the byte order of their UTF-8 encoding; the store is read in the same order."""
    return key.encode("utf-8")


def _note(report: ReconcileReport, kind: str, key: str) -> None:
    setattr(report, kind, getattr(report, kind) + 1)
    if len(report.samples[kind]) < 10:
        report.samples[kind].append(key)


def _listing(s3: Any, bucket: str, prefix: str, page_size: int, start_after: str) -> Iterator[ListedObject]:
    paginator = s3.get_paginator("list_objects_v2")
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if start_after:
        request["StartAfter"] = start_after
    with translated(bucket):
        for page in paginator.paginate(**request):
            for entry in page.get("Contents", []):
                key = str(entry["Key"])
                if key.endswith("/"):
                    continue  # a folder marker, skipped by the handler too
                yield ListedObject(key, str(entry["ETag"]).strip('"'), int(entry["Size"]), entry["LastModified"])


def _stored(
    conn: psycopg.Connection[Any], bucket: str, prefix: str, page_size: int, start_after: str
) -> Iterator[StoredDocument]:
    """Documents of `bucket` under `prefix` in key byte order, by keyset pages (one short query each)."""
    after = start_after
    while True:
        rows = conn.execute(
            'SELECT key, etag, size FROM documents WHERE bucket = %s AND starts_with(key, %s) AND key COLLATE "C" > %s'
            ' ORDER BY key COLLATE "C" LIMIT %s',
            (bucket, prefix, after, page_size),
        ).fetchall()
        for key, etag, size in rows:
            yield StoredDocument(str(key), etag, None if size is None else int(size))
        if len(rows) < page_size:
            return
        after = str(rows[-1][0])


def _created(bucket: str, listed: ListedObject) -> str:
    from handlers.ops.s3_events import message_body, s3_notification

    return message_body(
        s3_notification(
            bucket,
            listed.key,
            event_name="ObjectCreated:Put",
            size=listed.size,
            etag=listed.etag,
            event_time=_event_time(listed.last_modified),
        )
    )


def _removed(bucket: str, key: str, observed_at: datetime) -> str:
    from handlers.ops.s3_events import message_body, s3_notification

    return message_body(
        s3_notification(bucket, key, event_name="ObjectRemoved:Delete", event_time=_event_time(observed_at))
    )


def _event_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Outbox:
    """Sends bodies to the queue ten at a time; a batch entry SQS refuses fails the run (re-run to resume)."""

    def __init__(self, sqs: Any, queue_url: str, dry_run: bool) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._dry_run = dry_run
        self._pending: list[str] = []
        self.sent = 0

    def put(self, body: str) -> None:
        self._pending.append(body)
        if len(self._pending) >= _SEND_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self._dry_run:
            self._pending.clear()
            return
        entries = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(self._pending)]
        with translated(self._queue_url):
            response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        if failed := response.get("Failed"):
            codes = ", ".join(sorted({str(entry.get("Code")) for entry in failed}))
            raise TransientError(f"SQS refused {len(failed)} of {len(entries)} events ({codes}); run reconcile again")
        self.sent += len(entries)
        self._pending.clear()
