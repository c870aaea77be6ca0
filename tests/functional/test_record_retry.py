"""A passing fault costs a short in-process retry, not a receive of the message."""

from __future__ import annotations

import json
from typing import Any

from handlers.batch import handle_batch
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.runtime_context import DeadlineContext
from handlers.settings import get_settings
from handlers.wiring import get_deps, reset_deps
from tests.faults import PostgresProxy
from tests.rows import rows

BUCKET = "retry-bucket"


def test_a_dropped_database_connection_is_retried_within_the_delivery(s3, handler_env, monkeypatch, caplog):
    # Given the database behind a proxy that drops a connection once, when the document's chunks are copied
    armed = [False]

    def drop_once(data: bytes) -> bool:
        if armed[0] and b"COPY" in data:
            armed[0] = False
            return True
        return False

    proxy = PostgresProxy(handler_env, chaos=drop_once)
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", proxy.url)
    get_settings.cache_clear()
    reset_deps()
    get_deps()  # a warm process: its pool holds a connection
    s3.create_bucket(Bucket=BUCKET)
    body = b"a document whose write meets a dropped connection"
    etag = s3.put_object(Bucket=BUCKET, Key="uploads/a.txt", Body=body)["ETag"].strip('"')
    event = sqs_event([json.dumps(s3_notification(BUCKET, "uploads/a.txt", size=len(body), etag=etag))])

    # When the handler runs with the drop armed
    armed[0] = True
    try:
        response: dict[str, Any] = dict(handle_batch(event, DeadlineContext.lasting(120)))
    finally:
        proxy.close()

    # Then the record was retried in place and stored: no failure reported, no receive spent
    assert response["batchItemFailures"] == []
    assert not armed[0]
    assert rows(handler_env, "SELECT status FROM documents WHERE key = 'uploads/a.txt'") == [("ready",)]
    retried = [r for r in caplog.records if r.getMessage() == "record retried"]
    assert [r.error_code for r in retried] == ["db_unavailable"]
