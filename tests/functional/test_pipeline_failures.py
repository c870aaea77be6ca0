"""A permanent failure at any step of the pipeline is recorded on the document row; the message is acknowledged.

One that no document row can hold is kept by message id in the message failure table instead.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from handlers.batch import handle_batch
from handlers.cli import main
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.runtime_context import DeadlineContext
from handlers.settings import get_settings
from handlers.wiring import reset_deps
from tests.functional.ingest_helpers import Uploads
from tests.rows import rows
from tests.unit.test_embedder_openai import server  # noqa: F401 - the fixture: a real OpenAI-format HTTP server

if TYPE_CHECKING:
    import pytest

    from tests.unit.test_embedder_openai import EmbeddingServer


def test_a_vector_without_direction_from_the_embedder_fails_the_document_instead_of_retrying_the_message(
    s3,
    handler_env,
    server: EmbeddingServer,  # noqa: F811 - the imported fixture, requested by name
    monkeypatch: pytest.MonkeyPatch,
):
    # Given an embedding endpoint that answers every text with a zero vector (no direction: unusable)
    server.scale = 0.0
    stored_model = get_settings().resolved_embedding_model
    monkeypatch.setenv("FILEQUEUE_EMBEDDER", "openai")
    monkeypatch.setenv("FILEQUEUE_OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("FILEQUEUE_EMBEDDING_MODEL", stored_model)
    get_settings.cache_clear()
    reset_deps()

    # When a file is processed (Uploads.put fails the test if any record is reported for redelivery)
    Uploads(s3).put({"uploads/notes.md": b"# Notes\n\nSome text worth embedding.\n"})

    # Then the document row says why, and nothing half-written is left
    [(status, code, error)] = rows(handler_env, "SELECT status, error_code, error FROM documents")
    assert (status, code) == ("failed", "embedding_invalid")
    assert "vector without a direction" in error
    assert rows(handler_env, "SELECT count(*) FROM chunks") == [(0,)]


def test_a_permanent_failure_no_document_row_can_hold_is_kept_by_message_id_and_acknowledged(s3, handler_env, capsys):
    # Given a notification for a key holding a NUL character (%00): the database refuses it in every row
    s3.create_bucket(Bucket="nul-bucket")
    event = sqs_event([json.dumps(s3_notification("nul-bucket", "uploads/bad\x00name.txt", size=4))])
    message_id = event["Records"][0]["messageId"]
    assert "%00" in event["Records"][0]["body"]

    # When the handler processes it
    response = handle_batch(event, DeadlineContext.lasting(60))

    # Then it is decided once: acknowledged (not retried into the DLQ), its reason kept by message id
    assert response["batchItemFailures"] == []
    [(code, error)] = rows(
        handler_env, "SELECT error_code, error FROM message_failures WHERE message_id = %s", message_id
    )
    assert code == "content_rejected"
    assert "uploads/bad\\x00name.txt" in error
    assert rows(handler_env, "SELECT count(*) FROM documents") == [(0,)]

    # And `filequeue failed` lists it by message id, since no document row holds it
    assert main(["failed", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["message_id"], listed["key"], listed["error_code"]) == (message_id, None, "content_rejected")
