"""The client behind the public API (`handlers.api.FileQueue`): one session, reads of the store and queue."""

from __future__ import annotations

import functools
import itertools
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, Self, TypeVar

from handlers.errors import ErrorCode, TransientError
from handlers.ops.graph import RELATIONS

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from datetime import datetime
    from types import TracebackType

    from handlers.ops.failed import FailedDocument
    from handlers.ops.graph import Neighbour
    from handlers.ops.search import SearchHit, SearchMode
    from handlers.ops.similar import LinkReport
    from handlers.ops.status import QueueStatus
    from handlers.ports import Embedder
    from handlers.settings import Settings

# The `documents.status` values the schema allows.
DOCUMENT_STATUSES = ("ready", "failed")

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


@dataclass(frozen=True, slots=True)
class ChunkText:
    """One chunk of a document; `ocr_confidence` (0-100) is set when its text was read by OCR."""

    ordinal: int
    page: int
    char_start: int
    char_end: int
    text: str
    ocr_confidence: float | None = None

    @property
    def origin(self) -> str:
        """`ocr` for text read from an image, `text` otherwise."""
        return "text" if self.ocr_confidence is None else "ocr"


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document: its row, its chunks in order (none if it failed) and its graph neighbours.

    `ocr_pages` counts the pages OCR read (docs/ocr.md); 0 for a document with a text layer on every page.
    """

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
    ocr_pages: int = 0

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class DocumentSummary:
    """One row of a document listing: where it is, whether it is searchable, and why not."""

    bucket: str
    key: str
    status: str
    content_type: str | None
    error_code: str | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class DocumentList:
    """One page of the stored documents in key order; `total` counts every match, not only this page."""

    documents: tuple[DocumentSummary, ...]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Documents by status, chunk count, the embedding model recorded, and the queue if one is configured."""

    documents: dict[str, int]
    chunks: int
    embedding_model: str
    embedding_dimension: int
    queue: QueueStatus | None


class FileQueue:
    """A read-only client of one store; close it (or use it as a context manager) to release its session.

    `handlers.api` is its public import path.
    """

    def __init__(self, settings: Settings) -> None:
        from handlers.adapters.embedders import build_embedder
        from handlers.adapters.migrate import StoreConfig, check_store_config, read_store_config
        from handlers.ops.db import session

        self._settings = settings
        self._embedder: Embedder = build_embedder(settings)
        self._session = ExitStack()
        self._conn = self._session.enter_context(session(settings, application_name="filequeue-api"))
        try:
            check_store_config(
                read_store_config(self._conn), StoreConfig(self._embedder.model, self._embedder.dimension)
            )
        except BaseException:
            self._session.close()
            raise

    @classmethod
    def from_env(cls) -> FileQueue:
        """A client configured like the `filequeue` command, from the `FILEQUEUE_*` variables."""
        from handlers.settings import get_settings

        return cls(get_settings())

    def close(self) -> None:
        self._session.close()

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
        mode: SearchMode | None = None,
        limit: int = 10,
        prefix: str = "",
        content_type: str | None = None,
        min_score: float | None = None,
    ) -> list[SearchHit]:
        """The best chunks for `query`, optionally only under a key prefix, of one content type, above a score.

        `mode` is `vector` (the default; `hybrid=True` is short for `mode="hybrid"`), `hybrid` or `text`.
        The score is the cosine similarity in vector mode; in hybrid and text mode the fused score in
        [0, 1] (handlers.ops.search says how it is made). An empty list means nothing matched:
        `no_match_message` says why.
        """
        from handlers.ops.search import SEARCH_MODES, SearchFilter, search

        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        chosen = self._mode(hybrid, mode)
        if chosen not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {chosen!r}; expected one of {', '.join(SEARCH_MODES)}")
        where = SearchFilter(key_prefix=prefix, content_type=content_type)
        hits = search(self._conn, self._embedder, query, limit=limit, mode=chosen, where=where)
        return [hit for hit in hits if min_score is None or hit.score >= min_score]

    def no_match_message(self, *, hybrid: bool = False, mode: SearchMode | None = None) -> str:
        """The sentence to show when `search` with these arguments returned nothing."""
        from handlers.ops.search import no_match_message, tuning_for

        return no_match_message(self._mode(hybrid, mode), tuning_for(self._embedder.model))

    def score_formula(self, *, hybrid: bool = False, mode: SearchMode | None = None) -> str:
        """How `search` with these arguments makes a hit's score, in words."""
        from handlers.ops.search import score_formula, tuning_for

        return score_formula(self._mode(hybrid, mode), tuning_for(self._embedder.model))

    @staticmethod
    def _mode(hybrid: bool, mode: SearchMode | None) -> SearchMode:
        if mode is not None and hybrid and mode != "hybrid":
            raise ValueError(f"hybrid=True contradicts mode={mode!r}")
        return mode or ("hybrid" if hybrid else "vector")

    @_database_errors
    def documents(self, *, status: str | None = None, offset: int = 0, limit: int = 50) -> DocumentList:
        """The stored documents in key order, one page at a time, optionally only those of one status."""
        if status is not None and status not in DOCUMENT_STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(DOCUMENT_STATUSES)}")
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be at least 1 and offset at least 0, got {limit} and {offset}")
        params = {"status": status, "offset": offset, "limit": limit}
        total_row = self._conn.execute(
            "SELECT count(*) FROM documents WHERE %(status)s::text IS NULL OR status = %(status)s", params
        ).fetchone()
        rows = self._conn.execute(
            "SELECT bucket, key, status, content_type, error_code, updated_at FROM documents"
            " WHERE %(status)s::text IS NULL OR status = %(status)s"
            " ORDER BY key, bucket OFFSET %(offset)s LIMIT %(limit)s",
            params,
        ).fetchall()
        return DocumentList(
            documents=tuple(
                DocumentSummary(bucket, key, row_status, content_type, error_code, updated_at.isoformat())
                for bucket, key, row_status, content_type, error_code, updated_at in rows
            ),
            total=total_row[0] if total_row else 0,
            offset=offset,
            limit=limit,
        )

    @_database_errors
    def failed_count(self) -> int:
        """How many documents failed for good (they are not searchable)."""
        from handlers.ops.failed import count_failed

        return count_failed(self._conn)

    @_database_errors
    def document(self, key: str, *, bucket: str | None = None, hops: int = 1) -> Document:
        """The document a key, `s3://` URI or unique file name names; LookupError (with suggestions) if none."""
        from handlers.ops.graph import find_document

        found = find_document(self._conn, key, bucket)
        row = self._conn.execute(
            "SELECT content_type, title, pages, size, updated_at, ocr_pages FROM documents WHERE id = %s", (found.id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"document {key!r} was deleted meanwhile")
        content_type, title, pages, size, updated_at, ocr_pages = row
        chunks = tuple(
            ChunkText(*chunk)
            for chunk in self._conn.execute(
                "SELECT ordinal, page, char_start, char_end, text, ocr_confidence FROM chunks"
                " WHERE document_id = %s ORDER BY ordinal",
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
            ocr_pages=ocr_pages,
        )

    @_database_errors
    def neighbours(
        self, key: str, *, bucket: str | None = None, hops: int = 1, relations: Collection[str] = RELATIONS
    ) -> list[Neighbour]:
        """Documents linked to this one within `hops` steps, each once with the path that reaches it.

        `weight` is explained by `handlers.ops.graph.WEIGHT_LEGEND` (for `similar`: the neighbour's
        BM25 score for the document's text over the document's own score, in (0, 1]).
        """
        from handlers.ops.graph import find_document, neighbours

        found = find_document(self._conn, key, bucket)
        return neighbours(self._conn, found.id, hops=hops, relations=relations)

    @_database_errors
    def link_similar(self) -> LinkReport:
        """Compute now the `similar` neighbours of the documents waiting for them (compaction also does)."""
        from handlers.ops.graph import link

        return link(self._conn, self._settings)

    @_database_errors
    def object_url(self, key: str, *, bucket: str | None = None, expires_seconds: int = 300) -> str:
        """A presigned GET URL of the stored document's object (signed locally: no request is made)."""
        from handlers.adapters.s3 import build_s3_client
        from handlers.ops.graph import find_document

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
        from handlers.ops.status import queue_status, store_report

        store = store_report(self._conn)
        queue_url = self._settings.queue_url
        return StoreStatus(
            documents=store.documents,
            chunks=store.chunks,
            embedding_model=store.embedding_model or "",
            embedding_dimension=store.embedding_dimension or 0,
            queue=queue_status(aws.client("sqs"), aws.client("cloudwatch"), queue_url) if queue_url else None,
        )
