"""Put objects in moto's S3 and run the handler on their notifications, as the graph, search and
re-embedding tests need; and read back what the store holds."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from handlers.batch import handle_batch
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.runtime_context import DeadlineContext
from tests.paths import PDF_FIXTURES
from tests.rows import rows

if TYPE_CHECKING:
    from collections.abc import Mapping

BUCKET = "graph-bucket"


class Uploads:
    """Objects put in one versioned bucket and handed to the handler in batches of up to ten."""

    def __init__(self, s3: Any, bucket: str = BUCKET) -> None:
        self.s3 = s3
        self.bucket = bucket
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(self, objects: Mapping[str, bytes]) -> None:
        """Upload `objects` (key -> bytes) and run the handler; every record must succeed."""
        notifications = []
        for key, body in objects.items():
            response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            notifications.append(
                s3_notification(
                    self.bucket,
                    key,
                    size=len(body),
                    etag=response["ETag"].strip('"'),
                    version_id=response["VersionId"],
                )
            )
        self._handle(notifications)

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        self._handle([s3_notification(self.bucket, key, event_name="ObjectRemoved:Delete") for key in keys])

    def _handle(self, notifications: list[dict[str, Any]]) -> None:
        for start in range(0, len(notifications), 10):
            bodies = [json.dumps(notification) for notification in notifications[start : start + 10]]
            response = handle_batch(sqs_event(bodies), DeadlineContext.lasting(300))
            assert response["batchItemFailures"] == []


def pdf(name: str) -> bytes:
    return (PDF_FIXTURES / name).read_bytes()


def document_edges(url: str, relation: str) -> set[tuple[str, str]]:
    """(source key, target key) of every document-level edge of `relation`."""
    found = rows(
        url,
        "SELECT source.key, target.key FROM edges"
        " JOIN documents AS source ON source.id = edges.source_id"
        " JOIN documents AS target ON target.id = edges.target_id"
        " WHERE edges.relation = %s AND edges.source_kind = 'document' AND edges.target_kind = 'document'",
        relation,
    )
    return {(source, target) for source, target in found}


def both_ways(*pairs: tuple[str, str]) -> set[tuple[str, str]]:
    return {pair for a, b in pairs for pair in ((a, b), (b, a))}


def markdown(title: str, sentences: list[str], repeat: int = 3) -> bytes:
    """A Markdown file: a title and paragraphs made of `sentences`."""
    paragraphs = [" ".join(sentences[i:] + sentences[:i]) for i in range(repeat)]
    return ("# " + title + "\n\n" + "\n\n".join(paragraphs) + "\n").encode()


def link_similar_now(url: str) -> None:
    """Run the `similar` linking pass (what compaction runs after ingestion)."""
    import psycopg
    from pgvector.psycopg import register_vector

    from handlers.ops.similar import link_pending

    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        link_pending(conn)


def similar_edges(url: str) -> set[tuple[str, str]]:
    """(source key, target key) of every `similar` edge, after a linking pass."""
    link_similar_now(url)
    return document_edges(url, "similar")
