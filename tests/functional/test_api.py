"""The Python API on the real store: typed results for search, documents, neighbours, failures and status."""

from __future__ import annotations

import dataclasses

import pytest

from handlers.api import ChunkText, Document, FileQueue, Neighbour, QueueStatus, SearchHit, StoreStatus
from handlers.errors import ConfigError
from handlers.settings import Settings, get_settings
from tests.functional.ingest_helpers import Uploads

NOTES = {
    "uploads/bread.md": b"# Bread\n\nFeed the sourdough starter with flour and water. The oven notes: oven.md.\n",
    "uploads/oven.md": b"# Oven\n\nBake the loaf in a hot Dutch oven.\n",
    "uploads/empty.md": b"",
}


def test_search_document_neighbours_and_failures_come_back_as_typed_values(s3, handler_env):
    Uploads(s3).put(NOTES)
    with FileQueue.from_env() as store:
        [best, *_] = store.search("how do I feed a sourdough starter", hybrid=True)
        document = store.document("bread.md")
        failed = store.failed()

    assert isinstance(best, SearchHit)
    assert (best.key, best.page, best.text_rank) == ("uploads/bread.md", 1, 1)
    assert isinstance(document, Document)
    assert (document.uri, document.status, document.content_type, document.title) == (
        "s3://graph-bucket/uploads/bread.md",
        "ready",
        "text/markdown",
        "Bread",
    )
    assert [type(chunk) for chunk in document.chunks] == [ChunkText]
    assert "sourdough starter" in document.chunks[0].text
    assert [(n.key, n.relations, n.weight) for n in document.neighbours] == [("uploads/oven.md", ("references",), 1.0)]
    assert all(isinstance(neighbour, Neighbour) for neighbour in document.neighbours)
    assert [(f.key, f.error_code) for f in failed] == [("uploads/empty.md", "empty_file")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        document.status = "failed"  # type: ignore[misc]


def test_status_counts_documents_and_reads_the_queue_and_its_dead_letter_queue(s3, handler_env, ingest, sqs):
    Uploads(s3).put(NOTES)
    sqs.send_message(QueueUrl=ingest.dlq_url, MessageBody="a message that failed four times")
    settings = dataclasses.replace(get_settings(), queue_url=ingest.queue_url)
    with FileQueue(settings) as store:
        status = store.status()
    assert isinstance(status, StoreStatus)
    assert status.documents == {"ready": 2, "failed": 1}
    assert (status.embedding_model, status.embedding_dimension) == ("hashing-v2", 256)
    assert isinstance(status.queue, QueueStatus)
    assert status.queue.dead_letter_url == ingest.dlq_url
    assert status.queue.dead_letters == 1
    # The s3:TestEvent S3 sent when the bucket notification was configured waits in the queue.
    assert (status.queue.visible, status.queue.in_flight) == (1, 0)


def test_unknown_documents_get_suggestions_and_settings_must_name_a_database(s3, handler_env):
    Uploads(s3).put(NOTES)
    with FileQueue.from_env() as store, pytest.raises(LookupError, match=r"did you mean uploads/oven\.md\?"):
        store.document("uploads/oven")
    with pytest.raises(ConfigError, match="FILEQUEUE_DATABASE_URL"):
        FileQueue(Settings())


def test_console_command_refuses_a_public_address_without_a_token(handler_env, capsys):
    from handlers.cli import main

    assert main(["console", "--host", "0.0.0.0"]) == 2  # noqa: S104 - the address refused
    assert "refuses to listen on 0.0.0.0 (not loopback) without a token" in capsys.readouterr().err


def test_a_lost_database_connection_is_a_transient_error(s3, handler_env):
    import psycopg

    from handlers.errors import TransientError

    Uploads(s3).put(NOTES)
    with FileQueue.from_env() as store:
        with psycopg.connect(handler_env, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'filequeue-api'"
            )
        with pytest.raises(TransientError, match="database unavailable"):
            store.failed()
