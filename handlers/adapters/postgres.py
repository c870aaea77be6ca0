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
from datetime import datetime
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, PermanentError, TransientError
from handlers.stages.sequencer import compare_sequencers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import psycopg
    from psycopg_pool import ConnectionPool

    from handlers.model import Chunk, ExtractedText, FetchedObject, Mentions, ObjectRef

# After the database refused a connection, fail fast for a moment instead of making every
# remaining record of the batch wait for its own connect timeout.
_FAIL_FAST_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class StoredState:
    """What is stored for an identity: a live document row or a tombstone."""

    document_id: int | None
    status: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    event_time: datetime | None
    sha256: str | None
    embedding_model: str | None


def stale_reason(ref: ObjectRef, stored: StoredState | None) -> str | None:
    """Why `ref` must not overwrite `stored` (None if it is newer or nothing is stored).

    The S3 sequencer orders events for one key; without it (moto, some replays) an equal version id
    or ETag means the same event, and an older event time means a stale one.
    """
    if stored is None:
        return None
    if ref.sequencer and stored.sequencer:
        order = compare_sequencers(ref.sequencer, stored.sequencer)
        if order < 0:
            return f"stale sequencer {ref.sequencer} < stored {stored.sequencer}"
        if order == 0:
            return f"duplicate event sequencer={ref.sequencer}"
        return None
    if ref.version_id and ref.version_id == stored.version_id:
        return f"duplicate event version_id={ref.version_id}"
    incoming_time = _parse_time(ref.event_time)
    if incoming_time and stored.event_time and incoming_time < stored.event_time:
        return f"stale event time {ref.event_time} < stored {stored.event_time.isoformat()}"
    if not ref.version_id and ref.etag and ref.etag == stored.etag and incoming_time == stored.event_time:
        return f"duplicate event etag={ref.etag}"
    return None


def _other_version_deleted(ref: ObjectRef, stored: StoredState | None) -> str | None:
    """A permanent delete of one version (not a delete marker) leaves the stored version in place."""
    if (
        ref.event_name == "ObjectRemoved:Delete"
        and ref.version_id
        and stored is not None
        and stored.version_id
        and stored.version_id != ref.version_id
    ):
        return f"deleted version {ref.version_id} is not the stored version {stored.version_id}"
    return None


class PostgresRepository:
    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        similar_top_k: int = 5,
        similar_threshold: float = 0.75,
        vector_index: str = "segmented",
    ) -> None:
        from handlers.adapters.segments import GROWING_TABLE, LIVE_TABLE

        # Segmented: chunks land in the unindexed growing area and compaction indexes them in bulk.
        # Live: they land in the area whose HNSW index takes each row as it is written.
        tables = {"segmented": GROWING_TABLE, "live": LIVE_TABLE}
        if vector_index not in tables:
            raise ConfigError(f"FILEQUEUE_VECTOR_INDEX must be one of {', '.join(tables)}, got {vector_index!r}")
        self._pool = pool
        self._chunk_table = tables[vector_index]
        self._unavailable_until = 0.0
        self._similar_top_k = similar_top_k
        self._similar_threshold = similar_threshold

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
            return self._mark_unchanged_locked(conn, ref, sha256)

    @staticmethod
    def _mark_unchanged_locked(conn: psycopg.Connection[Any], ref: ObjectRef, sha256: str) -> bool:
        with conn.transaction():
            _lock(conn, ref)
            stored = _load_state(conn, ref)
            if stored is None or stored.document_id is None or stored.status != "ready" or stored.sha256 != sha256:
                return False
            if stale_reason(ref, stored) is not None:
                return True
            conn.execute(
                "UPDATE documents SET version_id = %s, etag = %s, sequencer = %s, event_time = %s, updated_at = now()"
                " WHERE id = %s",
                (ref.version_id, ref.etag, ref.sequencer, _parse_time(ref.event_time), stored.document_id),
            )
            return True

    def store_document(
        self,
        fetched: FetchedObject,
        extracted: ExtractedText,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        embedding_model: str,
        *,
        mentions: Mentions,
    ) -> str | None:
        from pgvector import Vector
        from psycopg import sql

        from handlers.adapters.graph import link_document
        from handlers.adapters.migrate import StoreConfig, check_store_config, read_store_config

        ref = fetched.ref
        with self._connection() as conn, conn.transaction():
            _lock(conn, ref)
            stored = _load_state(conn, ref)
            reason = stale_reason(ref, stored)
            if reason:
                return reason
            document_id = _upsert_document(
                conn,
                ref,
                status="ready",
                sha256=fetched.sha256,
                content_type=extracted.content_type,
                size=fetched.size,
                title=extracted.title,
                pages=extracted.page_count,
                chunk_count=len(chunks),
                embedding_model=embedding_model,
            )
            if stored is not None and stored.document_id is not None:
                # A new row has a new id: nothing can refer to it yet, so there is nothing to clear.
                _clear_content(conn, document_id)
            if vectors:
                # Under the document row's lock a `filequeue reembed` switch has either committed (and
                # this worker, still on the old model, is refused) or waits for this transaction.
                check_store_config(read_store_config(conn), StoreConfig(embedding_model, len(vectors[0])))
            with conn.cursor().copy(
                sql.SQL(
                    "COPY {} (document_id, ordinal, page, char_start, char_end, text, embedding_model,"
                    " embedding_dimension, embedding) FROM STDIN WITH (FORMAT BINARY)"
                ).format(sql.Identifier(self._chunk_table))
            ) as copy:
                copy.set_types(["int8", "int4", "int4", "int4", "int4", "text", "text", "int4", "vector"])
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
                        )
                    )
            _write_structure_edges(conn, document_id)
            link_document(
                conn,
                document_id,
                bucket=ref.bucket,
                key=ref.key,
                mentions=mentions,
                top_k=self._similar_top_k,
                threshold=self._similar_threshold,
            )
            conn.execute("DELETE FROM tombstones WHERE bucket = %s AND key = %s", (ref.bucket, ref.key))
            return None

    def record_failure(self, ref: ObjectRef, code: str, message: str, sha256: str | None = None) -> str | None:
        with self._connection() as conn, conn.transaction():
            _lock(conn, ref)
            stored = _load_state(conn, ref)
            reason = stale_reason(ref, stored)
            if reason:
                return reason
            document_id = _upsert_document(
                conn,
                ref,
                status="failed",
                sha256=sha256,
                size=ref.size,
                error_code=code,
                error=message,
            )
            if stored is not None and stored.document_id is not None:
                # A new row has a new id: nothing can refer to it yet, so there is nothing to clear.
                _clear_content(conn, document_id)
            conn.execute("DELETE FROM tombstones WHERE bucket = %s AND key = %s", (ref.bucket, ref.key))
            return None

    def delete_document(self, ref: ObjectRef) -> str | None:
        with self._connection() as conn, conn.transaction():
            _lock(conn, ref)
            stored = _load_state(conn, ref)
            reason = stale_reason(ref, stored) or _other_version_deleted(ref, stored)
            if reason:
                return reason
            if stored is not None and stored.document_id is not None:
                _clear_content(conn, stored.document_id)
                conn.execute("DELETE FROM documents WHERE id = %s", (stored.document_id,))
            conn.execute(
                "INSERT INTO tombstones (bucket, key, version_id, sequencer, event_time) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (bucket, key) DO UPDATE SET version_id = EXCLUDED.version_id,"
                " sequencer = EXCLUDED.sequencer, event_time = EXCLUDED.event_time, deleted_at = now()",
                (ref.bucket, ref.key, ref.version_id, ref.sequencer, _parse_time(ref.event_time)),
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

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pool connection whose driver failures become TransientError (the record is retried)."""
        import psycopg
        import psycopg_pool

        if time.monotonic() < self._unavailable_until:
            raise TransientError(
                "database unavailable (a connection failed moments ago)", code="db_recently_unavailable"
            )
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolTimeout as exc:  # no connection could be made: fail fast for a while
            self._unavailable_until = time.monotonic() + _FAIL_FAST_SECONDS
            raise TransientError(f"database unavailable: {exc}", code="db_unavailable") from exc
        except psycopg.OperationalError as exc:  # one connection broke; the pool replaces it
            raise TransientError(f"database unavailable: {exc}", code="db_unavailable") from exc
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
            raise TransientError(f"database conflict: {exc}", code="db_conflict") from exc
        except psycopg.DataError as exc:  # the values themselves are invalid: retrying cannot help
            raise PermanentError(f"the database rejected the content: {exc}", code="content_rejected") from exc


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


def iter_rows(conn: psycopg.Connection[Any], query: str, params: Sequence[object] = ()) -> Iterator[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cursor:
        yield from cursor.execute(query, params)


def _lock(conn: psycopg.Connection[Any], ref: ObjectRef) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{ref.bucket}/{ref.key}",))


def _stored_with_content(conn: psycopg.Connection[Any], ref: ObjectRef, sha256: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM documents WHERE bucket = %s AND key = %s AND status = 'ready' AND sha256 = %s",
        (ref.bucket, ref.key, sha256),
    ).fetchone()
    return row is not None


def _load_state(conn: psycopg.Connection[Any], ref: ObjectRef) -> StoredState | None:
    row = conn.execute(
        "SELECT id, status, version_id, etag, sequencer, event_time, sha256, embedding_model FROM documents"
        " WHERE bucket = %s AND key = %s",
        (ref.bucket, ref.key),
    ).fetchone()
    if row is not None:
        return StoredState(*row)
    tombstone = conn.execute(
        "SELECT version_id, sequencer, event_time FROM tombstones WHERE bucket = %s AND key = %s",
        (ref.bucket, ref.key),
    ).fetchone()
    if tombstone is not None:
        return StoredState(None, "deleted", tombstone[0], None, tombstone[1], tombstone[2], None, None)
    return None


def _upsert_document(conn: psycopg.Connection[Any], ref: ObjectRef, **values: object) -> int:
    columns = {
        "version_id": ref.version_id,
        "etag": ref.etag,
        "sequencer": ref.sequencer,
        "event_time": _parse_time(ref.event_time),
        "sha256": None,
        "content_type": None,
        "size": None,
        "title": None,
        "pages": None,
        "status": None,
        "error_code": None,
        "error": None,
        "chunk_count": 0,
        "embedding_model": None,
    } | values
    names = ", ".join(columns)
    placeholders = ", ".join(["%s"] * len(columns))
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns)
    row = conn.execute(
        f"INSERT INTO documents (bucket, key, {names}) VALUES (%s, %s, {placeholders})"  # noqa: S608
        f" ON CONFLICT (bucket, key) DO UPDATE SET {updates}, updated_at = now() RETURNING id",
        (ref.bucket, ref.key, *columns.values()),
    ).fetchone()
    assert row is not None  # noqa: S101 - INSERT ... RETURNING always yields the row
    return int(row[0])


def _clear_content(conn: psycopg.Connection[Any], document_id: int) -> None:
    """Remove the document's chunks, its vector, its names and mentions, and every edge that touches it.

    Edges between two documents may be owned by the other one (it found this one when it was linked),
    so they are matched by both ends, not only by owner. Documents that mention its file name have
    that mention resolved again without it.
    """
    from handlers.adapters.graph import file_names_of, resolve_name_mentions_again

    file_names = file_names_of(conn, document_id)
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


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
