"""Documents written straight through the repository, one transaction each: the write path without S3 or extraction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.adapters.postgres import PostgresRepository, open_pool
from handlers.model import Chunk, DocumentLinks, EventKind, ExtractedText, FetchedObject, Mentions, ObjectRef, Page

if TYPE_CHECKING:
    from collections.abc import Sequence


class StoreWriter:
    """Puts and deletes documents of given chunk texts and vectors, each event newer than the last."""

    def __init__(self, url: str, model: str, vector_index: str = "segmented") -> None:
        self.repository = PostgresRepository(open_pool(url, max_size=2, timeout=5), vector_index=vector_index)
        self.model = model
        self.sequence = 0

    def put_chunks(self, key: str, texts: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
        self.sequence += 1
        ref = ObjectRef("bucket", key, EventKind.CREATED, "ObjectCreated:Put", sequencer=f"{self.sequence:016X}")
        body = "\n".join(texts)
        chunks = [Chunk(ordinal, text, 1, 0, len(text)) for ordinal, text in enumerate(texts)]
        fetched = FetchedObject(ref, "/nonexistent", len(body), f"sha-{key}-{self.sequence}", "text/plain", None, None)
        extracted = ExtractedText("text/plain", (Page(1, body),))
        links = DocumentLinks(names=Mentions(), mentions=Mentions())
        assert self.repository.store_document(fetched, extracted, chunks, vectors, self.model, links=links) is None

    def delete(self, key: str) -> None:
        self.sequence += 1
        ref = ObjectRef("bucket", key, EventKind.REMOVED, "ObjectRemoved:Delete", sequencer=f"{self.sequence:016X}")
        assert self.repository.delete_document(ref) is None

    def close(self) -> None:
        self.repository.close()
