"""Hostile file content and bad configuration through the real handler, S3 (moto) and PostgreSQL.

A file's own content never reaches the DLQ: it is stored cleaned, or recorded as a permanent failure.
Every failed record has an ERROR line naming the message, the key and the error code. Configuration
that fails every record fails the invocation as a whole, so the messages wait for a fixed deployment.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from handlers.batch import handle_batch
from handlers.errors import ConfigError
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.runtime_context import DeadlineContext
from handlers.settings import get_settings
from tests.rows import document, rows

BUCKET = "hostile-bucket"


@pytest.fixture
def bucket(s3: Any, handler_env: str) -> str:
    s3.create_bucket(Bucket=BUCKET)
    return BUCKET


def put(s3: Any, key: str, body: bytes) -> dict[str, Any]:
    response = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return s3_notification(BUCKET, key, size=len(body), etag=response["ETag"].strip('"'))


def invoke(notifications: list[dict[str, Any]], seconds: float = 120) -> tuple[dict[str, Any], list[str]]:
    event = sqs_event([json.dumps(notification) for notification in notifications])
    response = handle_batch(event, DeadlineContext.lasting(seconds))
    return event, [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]


def chunk_texts(url: str, key: str) -> list[str]:
    found = rows(
        url,
        "SELECT chunks.text FROM chunks JOIN documents ON documents.id = chunks.document_id"
        " WHERE documents.key = %s ORDER BY chunks.ordinal",
        key,
    )
    return [text for (text,) in found]


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno == logging.ERROR]


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("uploads/nul.json", b'{"title": "nul\\u0000inside", "note": "a NUL character in a JSON string"}'),
        ("uploads/surrogate.json", b'{"title": "lone \\ud800 surrogate", "note": "half of a UTF-16 pair"}'),
        ("uploads/nul.txt", b"plain text with a NUL \x00 byte in the middle"),
        (
            "uploads/nul.html",
            b"<html><head><title>t\x00itle</title></head><body><p>NUL \x00 in markup</p></body></html>",
        ),
    ],
)
def test_text_postgresql_rejects_is_cleaned_and_the_file_is_stored(s3, bucket, handler_env, key, body):
    _, failures = invoke([put(s3, key, body)])

    assert failures == []
    stored = document(handler_env, key)
    assert stored is not None
    assert stored["status"] == "ready"
    texts = chunk_texts(handler_env, key)
    assert texts
    assert not any("\x00" in text or any("\ud800" <= char <= "\udfff" for char in text) for text in texts)


def test_an_unexpected_error_is_logged_at_error_with_the_message_key_code_and_traceback(
    s3, bucket, handler_env, boto_session, caplog
):
    # Given a client-side failure botocore does not know: an exception raised while sending GetObject
    notification = put(s3, "uploads/notes.txt", b"some text worth storing")

    def explode(**_: Any) -> None:
        raise RuntimeError("injected client failure")

    boto_session.events.register("before-send.s3.GetObject", explode)

    # When the record is handled
    event, failures = invoke([notification])

    # Then it is retried, and one ERROR line says which message, which key, which code, with the traceback
    assert failures == [event["Records"][0]["messageId"]]
    [line] = errors(caplog)
    assert line.message_id == event["Records"][0]["messageId"]  # type: ignore[attr-defined]
    assert line.key == "uploads/notes.txt"  # type: ignore[attr-defined]
    assert line.error_code == "unexpected"  # type: ignore[attr-defined]
    assert line.exc_info is not None
    assert "injected client failure" in str(line.exc_info[1])


def test_a_permanent_failure_is_an_error_line_and_a_failed_row(s3, bucket, handler_env, caplog):
    _, failures = invoke([put(s3, "uploads/empty.txt", b"")])

    assert failures == []
    assert document(handler_env, "uploads/empty.txt")["status"] == "failed"  # type: ignore[index]
    [line] = errors(caplog)
    assert (line.key, line.error_code) == ("uploads/empty.txt", "empty_file")  # type: ignore[attr-defined]


def test_a_configuration_error_fails_the_invocation_as_a_whole(s3, bucket, handler_env, monkeypatch, caplog):
    # Given settings that fail every record (a chunk size that is not a number)
    notifications = [put(s3, f"uploads/file-{n}.txt", b"text") for n in range(3)]
    monkeypatch.setenv("FILEQUEUE_CHUNK_SIZE", "big")
    get_settings.cache_clear()

    # When the batch is handled, then the invocation raises (no partial response: SQS keeps every message)
    with pytest.raises(ConfigError, match="FILEQUEUE_CHUNK_SIZE"):
        invoke(notifications)

    # And each record said why, at ERROR
    assert len(errors(caplog)) == 3
    assert {line.error_code for line in errors(caplog)} == {"config"}  # type: ignore[attr-defined]


def test_an_extraction_cut_short_by_the_time_left_is_retried_not_recorded(s3, bucket, handler_env, monkeypatch):
    # Given a file that takes seconds to extract, and a record that starts with one second of work time
    monkeypatch.setenv("FILEQUEUE_DEADLINE_MARGIN_SECONDS", "2")
    monkeypatch.setenv("FILEQUEUE_WRITE_MARGIN_SECONDS", "1.5")
    get_settings.cache_clear()
    markup = b"<html><body>" + b"<div><p>slow</p><p>markup</p></div>\n" * 150_000 + b"</body></html>"
    notification = put(s3, "uploads/slow.html", markup)

    # When the handler runs with 2.5 s left (the work time is 2.5 - 1.5 = 1 s, the limit is 120 s)
    event, failures = invoke([notification], seconds=2.5)

    # Then the record is retried, and nothing is recorded against the file
    assert failures == [event["Records"][0]["messageId"]]
    assert document(handler_env, "uploads/slow.html") is None

    # And with the time it needs, the same event is stored
    assert invoke([notification])[1] == []
    assert document(handler_env, "uploads/slow.html")["status"] == "ready"  # type: ignore[index]


def test_the_lambda_entry_refuses_a_timeout_that_cannot_fit_one_extraction(handler_env):
    from handlers.lambda_entry import lambda_handler

    # Given the default limits (120 s extraction, 15 s write margin) and a 60 s function timeout
    event = sqs_event([json.dumps(s3_notification(BUCKET, "uploads/a.txt", size=1))])

    # When the function is invoked, then the whole invocation fails naming the limits
    with pytest.raises(ConfigError, match="FILEQUEUE_EXTRACT_TIMEOUT_SECONDS") as caught:
        lambda_handler(event, DeadlineContext.lasting(60))  # type: ignore[arg-type]
    assert "the function timeout (60 s)" in str(caught.value)


def test_a_record_refused_for_lack_of_time_names_its_object_at_error(s3, bucket, handler_env, caplog):
    event, failures = invoke([put(s3, "uploads/late.txt", b"text that never gets its turn")], seconds=1)

    assert failures == [event["Records"][0]["messageId"]]
    [line] = errors(caplog)
    assert (line.key, line.error_code) == ("uploads/late.txt", "deadline")  # type: ignore[attr-defined]
