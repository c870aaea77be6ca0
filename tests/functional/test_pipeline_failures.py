"""A permanent failure at any step of the pipeline is recorded on the document row; the message is acknowledged."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
