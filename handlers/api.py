"""The Python API: search the store, read documents, walk the graph, see what failed and what is queued.

One import for applications, notebooks and web apps; the same settings as the `filequeue` command
(`FILEQUEUE_*` environment variables, or a `Settings` object)::

    from handlers.api import FileQueue

    with FileQueue.from_env() as fq:
        for hit in fq.search("how do I feed a sourdough starter", hybrid=True, limit=3):
            print(hit.key, hit.page, round(hit.score, 4), hit.snippet)
        print(fq.document("uploads/sourdough.md").status)

Every method returns frozen dataclasses. Reads only: nothing here changes the store.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar

from handlers.adapters.graph import RELATIONS, Neighbour
from handlers.adapters.search import SearchFilter, SearchHit
from handlers.errors import ErrorCode, TransientError
from handlers.ops.failed import FailedDocument
from handlers.ops.status import QueueStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from datetime import datetime
    from types import TracebackType

    import psycopg

    from handlers.ports import Embedder
    from handlers.settings import Settings

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _database_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A lost or refused database connection surfaces as TransientError, like everywhere in File Queue."""

    @functools.wraps(method)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import psycopg

        try:
            return method(*args, **kwargs)
        except psycopg.OperationalError as error:
            raise TransientError(f"database unavailable: {error}", code=ErrorCode.DB_UNAVAILABLE) from error

    return translated


__all__ = [
    "ChunkText",
    "Document",
    "FailedDocument",
    "FileQueue",
    "Neighbour",
    "QueueStatus",
    "SearchHit",
    "StoreStatus",
]


@dataclass(frozen=True, slots=True)
class ChunkText:
    ordinal: int
    page: int
    char_start: int
    char_end: int
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document: its row, its chunks in order (none if it failed) and its graph neighbours."""

    bucket: str
    key: str
    status: str
    content_type: str | None
    title: str | None
    pages: int | None
    size: int | None
    error_code: str | None
    error: str | None
    updated_at: str
    chunks: tuple[ChunkText, ...]
    neighbours: tuple[Neighbour, ...]

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Documents by status, chunk count, the embedding model recorded, and the queue if one is configured."""

    documents: dict[str, int]
    chunks: int
    embedding_model: str
    embedding_dimension: int
    queue: QueueStatus | None


class FileQueue:
    """A read-only client of one store. Close it (or use it as a context manager) to release the connection."""

    def __init__(self, settings: Settings) -> None:
        from handlers.adapters.embedders import build_embedder
        from handlers.wiring import prepare_database

        settings.require_database()
        self._settings = settings
        self._embedder: Embedder = build_embedder(settings)
        url, _ = prepare_database(settings, self._embedder.model, self._embedder.dimension, apply=False)
        self._conn = _connect(url, settings.db_connect_timeout_seconds)

    @classmethod
    def from_env(cls) -> FileQueue:
        """A client configured like the `filequeue` command, from the `FILEQUEUE_*` variables."""
        from handlers.settings import get_settings

        return cls(get_settings())

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @_database_errors
    def search(
        self,
        query: str,
        *,
        hybrid: bool = False,
        limit: int = 10,
        prefix: str = "",
        content_type: str | None = None,
        min_score: float | None = None,
    ) -> list[SearchHit]:
        """The best chunks for `query`, optionally only under a key prefix, of one content type, above a score.

        The score is the cosine similarity for plain search and the fused reciprocal-rank score for
        hybrid search (`SearchHit.vector_rank` and `text_rank` explain it).
        """
        from handlers.adapters.search import search

        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        where = SearchFilter(key_prefix=prefix, content_type=content_type)
        hits = search(self._conn, self._embedder, query, limit=limit, hybrid=hybrid, where=where)
        return [hit for hit in hits if min_score is None or hit.score >= min_score]

    @_database_errors
    def document(self, key: str, *, bucket: str | None = None, hops: int = 1) -> Document:
        """The document a key, `s3://` URI or unique file name names; LookupError (with suggestions) if none."""
        from handlers.adapters.graph import find_document

        found = find_document(self._conn, key, bucket)
        row = self._conn.execute(
            "SELECT content_type, title, pages, size, updated_at FROM documents WHERE id = %s", (found.id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"document {key!r} was deleted meanwhile")
        content_type, title, pages, size, updated_at = row
        chunks = tuple(
            ChunkText(*chunk)
            for chunk in self._conn.execute(
                "SELECT ordinal, page, char_start, char_end, text FROM chunks WHERE document_id = %s ORDER BY ordinal",
                (found.id,),
            )
        )
        return Document(
            bucket=found.bucket,
            key=found.key,
            status=found.status,
            content_type=content_type,
            title=title,
            pages=pages,
            size=size,
            error_code=found.error_code,
            error=found.error,
            updated_at=updated_at.isoformat(),
            chunks=chunks,
            neighbours=tuple(self.neighbours(found.key, bucket=found.bucket, hops=hops)),
        )

    @_database_errors
    def neighbours(
        self, key: str, *, bucket: str | None = None, hops: int = 1, relations: Collection[str] = RELATIONS
    ) -> list[Neighbour]:
        """Documents linked to this one within `hops` steps, each once with the path that reaches it."""
        from handlers.adapters.graph import find_document, neighbours

        found = find_document(self._conn, key, bucket)
        return neighbours(self._conn, found.id, hops=hops, relations=relations)

    @_database_errors
    def object_url(self, key: str, *, bucket: str | None = None, expires_seconds: int = 300) -> str:
        """A presigned GET URL of the stored document's object (signed locally: no request is made)."""
        from handlers.adapters.graph import find_document
        from handlers.adapters.s3 import build_s3_client

        found = find_document(self._conn, key, bucket)
        url: str = build_s3_client().generate_presigned_url(
            "get_object", Params={"Bucket": found.bucket, "Key": found.key}, ExpiresIn=expires_seconds
        )
        return url

    @_database_errors
    def failed(
        self, *, prefix: str = "", code: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[FailedDocument]:
        """Documents whose processing failed for good, newest first, with their error (as `filequeue failed`)."""
        from handlers.ops.failed import failed_documents

        return list(itertools.islice(failed_documents(self._conn, prefix=prefix, code=code, since=since), limit))

    @_database_errors
    def status(self) -> StoreStatus:
        """Counts of documents by status and of chunks, the store's model, and the queue and DLQ depths."""
        from handlers.ops import aws
        from handlers.ops.status import queue_status, store_status

        store = store_status(self._conn)
        queue_url = self._settings.queue_url
        return StoreStatus(
            documents=store.documents,
            chunks=store.chunks,
            embedding_model=store.embedding_model or "",
            embedding_dimension=store.embedding_dimension or 0,
            queue=queue_status(aws.client("sqs"), aws.client("cloudwatch"), queue_url) if queue_url else None,
        )


def _connect(url: str, timeout_seconds: float) -> psycopg.Connection[Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=max(1, int(timeout_seconds)), application_name="filequeue-api"
        )
    except psycopg.OperationalError as error:
        raise TransientError(f"database unavailable: {error}", code=ErrorCode.DB_UNAVAILABLE) from error
    register_vector(conn)
    return conn
