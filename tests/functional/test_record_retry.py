"""A passing fault costs a short in-process retry, not a receive of the message."""

from __future__ import annotations

import json
import logging
import threading
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


def _outage_event(s3, key: str, receive_count: int) -> dict[str, Any]:
    s3.create_bucket(Bucket=BUCKET)
    body = f"a document that meets a database outage on receive {receive_count}".encode()
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    event = sqs_event([json.dumps(s3_notification(BUCKET, key, size=len(body), etag=etag))])
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return event


class _RetryWatch(logging.Handler):
    """Sets `seen` once the handler logs a record retried with the given error code."""

    def __init__(self, error_code: str) -> None:
        super().__init__()
        self.error_code = error_code
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "record retried" and getattr(record, "error_code", None) == self.error_code:
            self.seen.set()


def _through_an_outage(
    handler_env: str, monkeypatch, event: dict[str, Any], *, ends: threading.Event
) -> dict[str, Any]:
    """The handler's answer while the database refuses connections, until `ends` is set."""
    proxy = PostgresProxy(handler_env)
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", proxy.url)
    get_settings.cache_clear()
    reset_deps()
    get_deps()
    proxy.cut()
    done = threading.Event()

    def restore_when_ended() -> None:
        while not done.wait(0.05):
            if ends.is_set():
                proxy.restore()
                return

    threading.Thread(target=restore_when_ended, daemon=True).start()
    try:
        return dict(handle_batch(event, DeadlineContext.lasting(120)))
    finally:
        done.set()
        proxy.close()


def test_a_message_that_came_back_waits_out_a_database_outage_within_its_budget(s3, handler_env, monkeypatch):
    # Given a message on its second receive and a database that stays down until the handler has
    # retried the record with the database known down (where a first receive gives it back)
    event = _outage_event(s3, "uploads/back.txt", receive_count=2)
    watch = _RetryWatch("db_recently_unavailable")
    service_logger = logging.getLogger("filequeue")
    service_logger.addHandler(watch)

    # When the handler runs
    try:
        response = _through_an_outage(handler_env, monkeypatch, event, ends=watch.seen)
    finally:
        service_logger.removeHandler(watch)

    # Then it was retried in place past the outage and stored: no receive spent, so an outage
    # cannot walk a healthy message to the dead-letter queue
    assert watch.seen.is_set()
    assert response["batchItemFailures"] == []
    assert rows(handler_env, "SELECT status FROM documents WHERE key = 'uploads/back.txt'") == [("ready",)]


def test_a_first_receive_gives_a_database_known_down_back_at_once(s3, handler_env, monkeypatch):
    # Given a message on its first receive and a database that stays down
    event = _outage_event(s3, "uploads/first.txt", receive_count=1)

    # When the handler runs
    response = _through_an_outage(handler_env, monkeypatch, event, ends=threading.Event())

    # Then the record is reported failed for redelivery, without waiting the outage out
    assert [failure["itemIdentifier"] for failure in response["batchItemFailures"]] == [
        event["Records"][0]["messageId"]
    ]
