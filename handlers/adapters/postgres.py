"""The psycopg 3 + pgvector repository: one transaction per document under an advisory lock.

Exactly-once effect from at-least-once delivery rests on three things here: the (bucket, key)
identity is unique, every write first takes `pg_advisory_xact_lock` on that identity (so duplicates
processed at the same moment serialise), and under the lock the incoming event is compared with
what is stored (sequencer, version, time) so stale and duplicate events are skipped.
"""

from __future__ import annotations

import json
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, ErrorCode, PermanentError, TransientError
from handlers.stages.ordering import StoredState, delete_skip_reason, stale_reason

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import psycopg
    from psycopg_pool import ConnectionPool

    from handlers.model import Chunk, DocumentLinks, ExtractedText, FetchedObject, ObjectRef

# After the database refused a connection, fail fast for a moment instead of making every
# remaining record of the batch wait for its own connect timeout.
_FAIL_FAST_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Locked:
    """What is stored for the locked identity, and why the incoming event must not overwrite it (None: it may)."""

    stored: StoredState | None
    skip_reason: str | None

    @property
    def has_row(self) -> bool:
        return self.stored is not None and self.stored.document_id is not None


# The partitions of `chunks` that a document's transaction writes into (handlers.ops.compaction moves
# rows on from the growing one).
GROWING_TABLE = "chunks_growing"
LIVE_TABLE = "chunks_live"


class PostgresRepository:
    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        vector_index: str = "segmented",
    ) -> None:
        # Segmented: chunks land in the unindexed growing area and compaction indexes them in bulk.
        # Live: they land in the area whose HNSW index takes each row as it is written.
        tables = {"segmented": GROWING_TABLE, "live": LIVE_TABLE}
        if vector_index not in tables:
            raise ConfigError(f"FILEQUEUE_VECTOR_INDEX must be one of {', '.join(tables)}, got {vector_index!r}")
        self._pool = pool
        self._chunk_table = tables[vector_index]
        self._unavailable_until = 0.0

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1")

    def should_process(self, ref: ObjectRef) -> str | None:
        with self._connection() as conn:
            return stale_reason(ref, _load_state(conn, ref))

    def mark_unchanged(self, ref: ObjectRef, sha256: str) -> bool:
        with self._connection() as conn:
            # Most files are new or changed: one read without the lock tells, and only a match is
            # confirmed under the lock (a write that lands in between is fenced by store_document).
            if not _stored_with_content(conn, ref, sha256):
                return False
            return _confirm_unchanged(conn, ref, sha256)

    def store_document(
        self,
        fetched: FetchedObject,
        extracted: ExtractedText,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        embedding_model: str,
        *,
        links: DocumentLinks,
    ) -> str | None:
        from handlers.adapters.graph import link_document

        ref = fetched.ref
        with self._connection() as conn, _locked(conn, ref) as held:
            if held.skip_reason:
                return held.skip_reason
            document_id = _replace_document(
                conn,
                ref,
                held,
                status="ready",
                sha256=fetched.sha256,
                content_type=extracted.content_type,
                size=fetched.size,
                title=extracted.title,
                pages=extracted.page_count,
                ocr_pages=extracted.ocr_pages,
                chunk_count=len(chunks),
                embedding_model=embedding_model,
            )
            self._write_chunks(conn, document_id, chunks, vectors, embedding_model)
            _write_structure_edges(conn, document_id)
            link_document(conn, document_id, links=links)
            return None

    def record_failure(self, ref: ObjectRef, code: str, message: str, sha256: str | None = None) -> str | None:
        with self._connection() as conn, _locked(conn, ref) as held:
            if held.skip_reason:
                return held.skip_reason
            _replace_document(
                conn, ref, held, status="failed", sha256=sha256, size=ref.size, error_code=code, error=message
            )
            return None

    def delete_document(self, ref: ObjectRef) -> str | None:
        with self._connection() as conn, _locked(conn, ref, delete_skip_reason) as held:
            if held.skip_reason:
                return held.skip_reason
            if held.stored is not None and held.stored.document_id is not None:
                _clear_content(conn, held.stored.document_id)
                conn.execute("DELETE FROM documents WHERE id = %s", (held.stored.document_id,))
            conn.execute(
                "INSERT INTO tombstones (bucket, key, version_id, sequencer, event_time) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (bucket, key) DO UPDATE SET version_id = EXCLUDED.version_id,"
                " sequencer = EXCLUDED.sequencer, event_time = EXCLUDED.event_time, deleted_at = now()",
                (ref.bucket, ref.key, ref.version_id, ref.sequencer, ref.event_time),
            )
            return None

    def note_message_failure(self, message_id: str, receive_count: int, code: str, message: str) -> None:
        """Keep why a message is being redelivered, by message id, for `filequeue dlq list`."""
        with self._connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO message_failures (message_id, receive_count, error_code, error) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (message_id) DO UPDATE SET receive_count = EXCLUDED.receive_count,"
                " error_code = EXCLUDED.error_code, error = EXCLUDED.error, last_failed_at = now()",
                (message_id, receive_count, code, message),
            )
            conn.execute("DELETE FROM message_failures WHERE last_failed_at < now() - interval '14 days'")

    def _write_chunks(
        self,
        conn: psycopg.Connection[Any],
        document_id: int,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        embedding_model: str,
    ) -> None:
        """COPY the chunks with their vectors into the area new chunks land in."""
        from pgvector import Vector
        from psycopg import sql

        from handlers.adapters.migrate import StoreConfig, check_store_config, read_store_config

        if vectors:
            # Under the document row's lock a `filequeue reembed` switch has either committed (and
            # this worker, still on the old model, is refused) or waits for this transaction.
            check_store_config(read_store_config(conn), StoreConfig(embedding_model, len(vectors[0])))
        with conn.cursor().copy(
            sql.SQL(
                "COPY {} (document_id, ordinal, page, char_start, char_end, text, embedding_model,"
                " embedding_dimension, embedding, origin, ocr_confidence) FROM STDIN WITH (FORMAT BINARY)"
            ).format(sql.Identifier(self._chunk_table))
        ) as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "int4", "text", "text", "int4", "vector", "text", "float4"])
            for chunk, vector in zip(chunks, vectors, strict=True):
                copy.write_row(
                    (
                        document_id,
                        chunk.ordinal,
                        chunk.page,
                        chunk.char_start,
                        chunk.char_end,
                        chunk.text,
                        embedding_model,
                        len(vector),
                        Vector(list(vector)),
                        chunk.origin,
                        chunk.ocr_confidence,
                    )
                )

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pool connection whose driver failures become TransientError (the record is retried)."""
        import psycopg
        import psycopg_pool

        if time.monotonic() < self._unavailable_until:
            raise TransientError(
                "database unavailable (a connection failed moments ago)", code=ErrorCode.DB_RECENTLY_UNAVAILABLE
            )
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:  # no connection could be made: fail fast for a while
            self._unavailable_until = time.monotonic() + _FAIL_FAST_SECONDS
            raise TransientError(f"database unavailable: {exc}", code=ErrorCode.DB_UNAVAILABLE) from exc
        except psycopg.OperationalError as exc:  # one connection broke; the pool replaces it
            raise TransientError(f"database unavailable: {exc}", code=ErrorCode.DB_UNAVAILABLE) from exc
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
            raise TransientError(f"database conflict: {exc}", code=ErrorCode.DB_CONFLICT) from exc
        except psycopg.DataError as exc:  # the values themselves are invalid: retrying cannot help
            raise PermanentError(f"the database rejected the content: {exc}", code=ErrorCode.CONTENT_REJECTED) from exc


@contextmanager
def _locked(
    conn: psycopg.Connection[Any],
    ref: ObjectRef,
    skip_reason: Callable[[ObjectRef, StoredState | None], str | None] = stale_reason,
) -> Iterator[_Locked]:
    """A transaction holding the identity's lock, with what is stored and whether `ref` may overwrite it.

    The lock serialises the writers of one document, and what is stored is read under it, so the
    ordering check sees the last committed write; the transaction commits when the block ends.
    """
    from handlers.adapters.locks import lock_document

    with conn.transaction():
        lock_document(conn, ref.bucket, ref.key)
        stored = _load_state(conn, ref)
        yield _Locked(stored, skip_reason(ref, stored))


# What libpq says when the server answered and refused this configuration: the URL names a host that does
# not resolve, a database or role that does not exist, or credentials the server does not accept. Anything
# else (refused, timed out, unreachable, a server starting up or failing over) may pass by itself.
_CONFIGURATION_FAULTS = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "could not translate host name",
    "invalid connection option",
    "invalid sslmode value",
)


def configuration_fault(error: psycopg.OperationalError) -> bool:
    """Whether a failed connection is the configuration's fault, so that retrying cannot help.

    libpq reports no SQLSTATE for a refused connection, so its message is read.
    """
    message = str(error)
    return any(fault in message for fault in _CONFIGURATION_FAULTS)


def open_pool(conninfo: str, *, max_size: int, timeout: float) -> ConnectionPool[Any]:
    """A small pool whose connections know the vector type and are checked before use after a pause.

    The check matters in Lambda: a frozen sandbox wakes with connections the server has closed.
    """
    from pgvector.psycopg import register_vector
    from psycopg_pool import ConnectionPool

    pool: ConnectionPool[Any] = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=max_size,
        timeout=timeout,
        configure=register_vector,
        check=_CheckAfterPause(CHECK_AFTER_IDLE_SECONDS),
        # Autocommit: a single read is one round trip; every write runs in an explicit transaction.
        kwargs={"connect_timeout": max(1, int(timeout)), "application_name": "filequeue", "autocommit": True},
        open=False,
    )
    pool.open(wait=False)
    return pool


# A connection handed out again within this time is used as it is: a busy handler would otherwise
# pay one round trip per checkout, several per document. One broken in between fails its record,
# which is retried (db_unavailable).
CHECK_AFTER_IDLE_SECONDS = 5.0


class _CheckAfterPause:
    """psycopg_pool's `check`: ping a connection only when it was last handed out long enough ago."""

    def __init__(self, idle_seconds: float) -> None:
        self._idle_seconds = idle_seconds
        self._handed_out: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()

    def __call__(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg_pool import ConnectionPool

        now = time.monotonic()
        last = self._handed_out.get(conn)
        if last is None or now - last > self._idle_seconds:
            ConnectionPool.check_connection(conn)
        self._handed_out[conn] = now


def resolve_database_url(database_url: str | None, secret_arn: str | None, fetch_secret: Callable[[str], str]) -> str:
    """The connection string: given directly, or read from a Secrets Manager secret.

    The secret holds either a `postgresql://` URL or the JSON that RDS writes for managed secrets
    (username, password, host, port, dbname).
    """
    if database_url:
        return database_url
    if not secret_arn:
        raise ConfigError("FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN) is required")
    from psycopg.conninfo import make_conninfo

    raw = fetch_secret(secret_arn).strip()
    if raw.startswith(("postgres://", "postgresql://")):
        return raw
    try:
        fields = json.loads(raw)
        return make_conninfo(
            host=fields["host"],
            port=str(fields.get("port", 5432)),
            user=fields["username"],
            password=fields["password"],
            dbname=fields.get("dbname", "postgres"),
            sslmode=fields.get("sslmode", "require"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            "the secret named by FILEQUEUE_DATABASE_SECRET_ARN must hold a postgresql:// URL or the RDS JSON "
            "shape with username, password and host"
        ) from exc


def _stored_with_content(conn: psycopg.Connection[Any], ref: ObjectRef, sha256: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM documents WHERE bucket = %s AND key = %s AND status = 'ready' AND sha256 = %s",
        (ref.bucket, ref.key, sha256),
    ).fetchone()
    return row is not None


def _confirm_unchanged(conn: psycopg.Connection[Any], ref: ObjectRef, sha256: str) -> bool:
    """Under the lock: if the ready row still has these bytes, record the event's version on it."""
    with _locked(conn, ref) as held:
        stored = held.stored
        if stored is None or stored.document_id is None or stored.status != "ready" or stored.sha256 != sha256:
            return False
        if held.skip_reason is None:
            conn.execute(
                "UPDATE documents SET version_id = %s, etag = %s, sequencer = %s, event_time = %s, updated_at = now()"
                " WHERE id = %s",
                (ref.version_id, ref.etag, ref.sequencer, ref.event_time, stored.document_id),
            )
        return True


# A document row and a tombstone never exist together (a write removes the tombstone, a delete the
# row), so one statement reads whichever there is.
_LOAD_STATE = """
SELECT id AS document_id, status, version_id, etag, sequencer, event_time, sha256, embedding_model
FROM documents WHERE bucket = %(bucket)s AND key = %(key)s
UNION ALL
SELECT NULL, 'deleted', version_id, NULL, sequencer, event_time, NULL, NULL
FROM tombstones WHERE bucket = %(bucket)s AND key = %(key)s
LIMIT 1
"""


def _load_state(conn: psycopg.Connection[Any], ref: ObjectRef) -> StoredState | None:
    from psycopg.rows import class_row

    with conn.cursor(row_factory=class_row(StoredState)) as cursor:
        return cursor.execute(_LOAD_STATE, {"bucket": ref.bucket, "key": ref.key}).fetchone()


def _replace_document(conn: psycopg.Connection[Any], ref: ObjectRef, held: _Locked, **values: object) -> int:
    """Write the document row for `ref` with `values`, its previous content and any tombstone removed."""
    document_id = _upsert_document(conn, ref, values)
    if held.has_row:
        # A new row has a new id: nothing can refer to it yet, so there is nothing to clear.
        _clear_content(conn, document_id)
    conn.execute("DELETE FROM tombstones WHERE bucket = %s AND key = %s", (ref.bucket, ref.key))
    return document_id


def _upsert_document(conn: psycopg.Connection[Any], ref: ObjectRef, values: dict[str, object]) -> int:
    """Insert or overwrite the row of (bucket, key): the event's identity and version, then `values`."""
    from psycopg import sql
    from psycopg.rows import scalar_row

    columns = {
        "version_id": ref.version_id,
        "etag": ref.etag,
        "sequencer": ref.sequencer,
        "event_time": ref.event_time,
        "sha256": None,
        "content_type": None,
        "size": None,
        "title": None,
        "pages": None,
        "ocr_pages": 0,
        "status": None,
        "error_code": None,
        "error": None,
        "chunk_count": 0,
        "embedding_model": None,
    } | values
    names = [sql.Identifier(name) for name in columns]
    query = sql.SQL(
        "INSERT INTO documents (bucket, key, {names}) VALUES (%s, %s, {placeholders})"
        " ON CONFLICT (bucket, key) DO UPDATE SET {updates}, updated_at = now() RETURNING id"
    ).format(
        names=sql.SQL(", ").join(names),
        placeholders=sql.SQL(", ").join(sql.Placeholder() * len(names)),
        updates=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(name) for name in names),
    )
    with conn.cursor(row_factory=scalar_row) as cursor:
        [document_id] = cursor.execute(query, (ref.bucket, ref.key, *columns.values())).fetchall()
    return int(document_id)


def _clear_content(conn: psycopg.Connection[Any], document_id: int) -> None:
    """Remove the document's chunks, its vector, its names and mentions, and every edge that touches it.

    Its former `similar` neighbours are queued for the linking pass: their lists lose this document.

    Edges between two documents may be owned by the other one (it found this one when it was linked),
    so they are matched by both ends, not only by owner. Documents that mention its file name have
    that mention resolved again without it.
    """
    from handlers.adapters.graph import file_names_of, queue_former_neighbours, resolve_name_mentions_again

    file_names = file_names_of(conn, document_id)
    queue_former_neighbours(conn, document_id)
    conn.execute(
        "DELETE FROM edges WHERE owner_document_id = %s OR (target_kind = 'document' AND target_id = %s)"
        " OR (source_kind = 'document' AND source_id = %s)",
        (document_id, document_id, document_id),
    )
    conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))
    conn.execute("DELETE FROM document_mentions WHERE document_id = %s", (document_id,))
    conn.execute("DELETE FROM document_names WHERE document_id = %s", (document_id,))
    conn.execute("UPDATE documents SET embedding = NULL WHERE id = %s AND embedding IS NOT NULL", (document_id,))
    resolve_name_mentions_again(conn, file_names)


def _write_structure_edges(conn: psycopg.Connection[Any], document_id: int) -> None:
    conn.execute(
        "INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id)"
        " SELECT document_id, 'document', document_id, 'has_chunk', 'chunk', id FROM chunks WHERE document_id = %s",
        (document_id,),
    )
    conn.execute(
        "INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id)"
        " SELECT %s, 'chunk', id, 'next', 'chunk', next_id FROM ("
        "  SELECT id, lead(id) OVER (ORDER BY ordinal) AS next_id FROM chunks WHERE document_id = %s"
        " ) pairs WHERE next_id IS NOT NULL",
        (document_id, document_id),
    )
