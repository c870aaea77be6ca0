"""Events without a sequencer (emulators, replays) are ordered by their time, whatever offset it is written with."""

from __future__ import annotations

import json
from typing import Any

from handlers.batch import handle_batch
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.runtime_context import DeadlineContext
from tests.rows import rows

BUCKET = "ordering-bucket"
KEY = "uploads/notes.md"


def put(s3: Any, body: bytes, event_time: str) -> list[Any]:
    """Upload `body` to an unversioned bucket, hand its event (no sequencer) to the handler; returns its failures."""
    response = s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    notification = s3_notification(BUCKET, KEY, size=len(body), etag=response["ETag"].strip('"'), event_time=event_time)
    return handle_batch(sqs_event([json.dumps(notification)]), DeadlineContext.lasting(300))["batchItemFailures"]


def test_a_later_event_time_without_an_offset_replaces_the_stored_document(s3, handler_env):
    # Given a document stored from an event whose time is written in UTC with a "Z"
    s3.create_bucket(Bucket=BUCKET)
    assert put(s3, b"# Notes\n\nFirst draft.\n", "2026-03-01T12:00:00.000Z") == []

    # When a newer upload's event writes its time without an offset (taken as UTC)
    failures = put(s3, b"# Notes\n\nSecond draft.\n", "2026-03-01T12:00:05")

    # Then it is compared with the stored time and replaces the document, instead of failing the record
    assert failures == []
    assert rows(handler_env, "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id") == [
        ("# Notes\n\nSecond draft.",)
    ]
