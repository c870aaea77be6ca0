"""`filequeue reembed`: move the whole store to another embedding model with search answering throughout.

New vectors are built beside the old ones and switched in at the end. Every phase is resumable,
because its state is in the database (the `reembed_target` row of filequeue_meta, the columns and
indexes that exist, and which rows are still NULL):

1. prepare: `embedding_next vector(D2)` on chunks and documents, provenance columns for the new
   vectors (their defaults are the new model and dimension, so no row has to be rewritten for
   them), and a partial index over the chunks still to embed.
2. fill: batches of chunks whose `embedding_next` is NULL, each batch embedded and written in its
   own transaction, which also sets the vector of every document whose chunks are now all done.
   Passes repeat until one finds nothing left.
3. index: HNSW indexes on the new columns, built with CREATE INDEX CONCURRENTLY: one per chunk
   partition that carries vector indexes (the live area and each sealed segment; the growing
   area is searched exactly), and one on documents.
4. switch: one short transaction holding ACCESS EXCLUSIVE locks on documents and chunks: it embeds
   the rows written since the last pass, drops the old vectors and their indexes, renames the new
   ones into place and records the new model in filequeue_meta. The locks are taken with a short
   lock_timeout and retried, so the switch gives way rather than stall searches or deadlock with a
   writer (lock_timeout stays below PostgreSQL's 1 s deadlock_timeout).
5. finish: proves `chunks.embedding` NOT NULL through a constraint validated without blocking
   writers, recomputes each document's `similar` edges with the new vectors (one document per
   transaction, under the same advisory lock as its ingestion), and removes the marker.

Searches read `embedding` until the switch and the new vectors after it; they wait only while the
switch holds its locks.

Segments: a run holds the compaction lock (handlers.ops.compaction), so no segment is sealed
or merged while it works; between runs, a compaction copies `embedding_next` with the rows and
indexes it in the segments it builds.

Ingestion during a run: workers started with the new settings are refused by the startup check
(`check_store_config`) until the switch. Workers on the old settings keep storing documents with
old vectors; their new chunks have a NULL `embedding_next` and are embedded by a later pass or by
the switch itself, under its locks. After the switch those workers are refused on every write (the
repository checks the store's model in the document's transaction), so their messages are retried
until the workers are restarted with the new settings (and so are search clients: a query embedded
with the old model does not fit the new column). Either restart them right after the switch, or
first run with `--no-switch` (everything but the switch), then pause ingestion, run again (it
only embeds what arrived since, and switches) and restart the workers with the new settings.

Cost: every chunk row is updated once, so the old HNSW index takes one more entry per row (the
update cannot be HOT: the row grows by a vector) and the fill leaves dead row versions for
autovacuum; dropped columns keep their space until rows are rewritten.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, LiteralString, TypeVar

from handlers.adapters.graph import update_document_vectors
from handlers.adapters.locks import lock_document
from handlers.adapters.migrate import StoreConfig, read_store_config
from handlers.adapters.rows import column, scalar
from handlers.errors import ConfigError
from handlers.ops.compaction import (
    compaction_lock,
    create_index_concurrently,
    indexed_partitions,
    with_lock_retry,
)
from handlers.ops.graph import DocumentRef
from handlers.ops.similar import SimilarOptions, relink_similar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import psycopg

    from handlers.ports import Embedder
    from handlers.settings import Settings

_T = TypeVar("_T")

REEMBED_LOCK_ID = 0x46515245  # "FQRE": one run at a time
_TARGET = "reembed_target"
_RELINKED_THROUGH = "reembed_relinked_through"
_NOT_NULL = "chunks_embedding_not_null"
_SWITCH_DDL: tuple[LiteralString, ...] = (
    # Dropping the old column drops each partition's HNSW index on it.
    "DROP INDEX chunks_embedding_next_pending, documents_embedding_hnsw",
    "ALTER TABLE chunks DROP COLUMN embedding, DROP COLUMN embedding_model, DROP COLUMN embedding_dimension",
    "ALTER TABLE chunks RENAME COLUMN embedding_next TO embedding",
    "ALTER TABLE chunks RENAME COLUMN embedding_model_next TO embedding_model",
    "ALTER TABLE chunks RENAME COLUMN embedding_dimension_next TO embedding_dimension",
    # NOT VALID: enforced for new rows at once, proven for existing ones later without blocking writers.
    "ALTER TABLE chunks ALTER COLUMN embedding_model DROP DEFAULT, ALTER COLUMN embedding_dimension DROP DEFAULT,"
    " ADD CONSTRAINT chunks_embedding_not_null CHECK (embedding IS NOT NULL) NOT VALID",
    "ALTER TABLE documents DROP COLUMN embedding",
    "ALTER TABLE documents RENAME COLUMN embedding_next TO embedding",
    "ALTER INDEX documents_embedding_next_hnsw RENAME TO documents_embedding_hnsw",
)


@dataclass(frozen=True, slots=True)
class ReembedOptions:
    batch_size: int = 256
    max_batches: int | None = None
    switch: bool = True
    similar: SimilarOptions = field(default_factory=SimilarOptions)
    lock_timeout_seconds: float = 0.5
    lock_attempts: int = 40


@dataclass(frozen=True, slots=True)
class ReembedReport:
    target: StoreConfig
    chunks_embedded: int
    batches: int
    complete: bool  # False: stopped by max_batches or --no-switch; run again to continue
    documents_relinked: int


def reembed(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    options: ReembedOptions,
    on_batch: Callable[[int], None] | None = None,
) -> ReembedReport:
    """Move the store to `embedder`'s model and dimension; resumes an interrupted run.

    `conn` must be in autocommit mode (CREATE INDEX CONCURRENTLY cannot run in a transaction) and
    have the pgvector types registered. `on_batch` is called with the batch count after each
    committed batch. Raises ConfigError if the store already holds this model and dimension.
    """
    if not conn.autocommit:
        raise ValueError("reembed needs a connection in autocommit mode")
    target = StoreConfig(embedder.model, embedder.dimension)
    with _single_run(conn):
        marker = _read_marker(conn)
        if read_store_config(conn) == target:
            if marker != target:
                raise ConfigError(
                    f"the store already holds model {target.embedding_model!r} with dimension "
                    f"{target.embedding_dimension} (FILEQUEUE_EMBEDDING_MODEL/FILEQUEUE_EMBEDDING_DIMENSION); "
                    "nothing to re-embed"
                )
            relinked = _finish(conn, options)
            return ReembedReport(target, 0, 0, True, relinked)
        if marker is not None and marker != target:
            _drop_next(conn, options)
        _prepare(conn, target, options)
        chunks, batches, stopped = _fill(conn, embedder, options, on_batch)
        if stopped:
            return ReembedReport(target, chunks, batches, False, 0)
        _create_next_indexes(conn)
        if not options.switch:
            return ReembedReport(target, chunks, batches, False, 0)
        chunks += _switch(conn, embedder, target, options)
        return ReembedReport(target, chunks, batches, True, _finish(conn, options))


def reembed_store(
    settings: Settings,
    *,
    batch_size: int,
    max_batches: int | None,
    switch: bool,
    on_batch: Callable[[int], None] | None = None,
) -> ReembedReport:
    """`filequeue reembed`: move the configured store to the settings' embedder, on its own session."""
    from handlers.adapters.embedders import build_embedder
    from handlers.ops.db import session
    from handlers.ops.similar import similar_options

    embedder = build_embedder(settings)
    options = ReembedOptions(
        batch_size=batch_size,
        max_batches=max_batches,
        switch=switch,
        similar=similar_options(settings),
    )
    with session(settings, application_name="filequeue-reembed") as conn:
        return reembed(conn, embedder, options, on_batch=on_batch)


@contextmanager
def _single_run(conn: psycopg.Connection[Any]) -> Iterator[None]:
    if not scalar(conn, "SELECT pg_try_advisory_lock(%s)", (REEMBED_LOCK_ID,)):
        raise ConfigError("another `filequeue reembed` is running on this database")
    try:
        with compaction_lock(conn) as acquired:
            if not acquired:
                raise ConfigError("a chunk compaction is running on this database; run `filequeue reembed` again")
            yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (REEMBED_LOCK_ID,))


def _read_marker(conn: psycopg.Connection[Any]) -> StoreConfig | None:
    value = scalar(conn, "SELECT value FROM filequeue_meta WHERE name = %s", (_TARGET,))
    if value is None:
        return None
    model, dimension = str(value).rsplit("\n", 1)
    return StoreConfig(model, int(dimension))


def _drop_next(conn: psycopg.Connection[Any], options: ReembedOptions) -> None:
    """Remove what an unfinished run toward another model built."""

    def drop() -> None:
        # The partitions' indexes on embedding_next go with the column.
        conn.execute("DROP INDEX IF EXISTS chunks_embedding_next_pending, documents_embedding_next_hnsw")
        conn.execute(
            "ALTER TABLE chunks DROP COLUMN IF EXISTS embedding_next, DROP COLUMN IF EXISTS embedding_model_next,"
            " DROP COLUMN IF EXISTS embedding_dimension_next"
        )
        conn.execute("ALTER TABLE documents DROP COLUMN IF EXISTS embedding_next")
        conn.execute("DELETE FROM filequeue_meta WHERE name IN (%s, %s)", (_TARGET, _RELINKED_THROUGH))

    _with_lock_retry(conn, options, drop)


def _prepare(conn: psycopg.Connection[Any], target: StoreConfig, options: ReembedOptions) -> None:
    from psycopg import sql

    vector_type = sql.SQL("vector({})").format(sql.Literal(target.embedding_dimension))

    def add_columns() -> None:
        # A nullable column, or one with a constant default, changes only the catalog: no rewrite.
        conn.execute(
            sql.SQL(
                "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS embedding_next {vector_type},"
                " ADD COLUMN IF NOT EXISTS embedding_model_next text NOT NULL DEFAULT {model},"
                " ADD COLUMN IF NOT EXISTS embedding_dimension_next integer NOT NULL DEFAULT {dimension}"
            ).format(
                vector_type=vector_type,
                model=sql.Literal(target.embedding_model),
                dimension=sql.Literal(target.embedding_dimension),
            )
        )
        # Kept in the row like `embedding` (see migration 0003), so exact scans stay cheap after the switch.
        conn.execute("ALTER TABLE chunks ALTER COLUMN embedding_next SET STORAGE MAIN")
        conn.execute(sql.SQL("ALTER TABLE documents ADD COLUMN IF NOT EXISTS embedding_next {}").format(vector_type))
        conn.execute(
            "INSERT INTO filequeue_meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
            (_TARGET, f"{target.embedding_model}\n{target.embedding_dimension}"),
        )

    _with_lock_retry(conn, options, add_columns)
    # On the partitioned parent, so every partition (and every segment compaction attaches later)
    # has it; a partitioned index cannot be built CONCURRENTLY, but a partial btree over ids is quick.
    conn.execute("CREATE INDEX IF NOT EXISTS chunks_embedding_next_pending ON chunks (id) WHERE embedding_next IS NULL")


def _fill(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    options: ReembedOptions,
    on_batch: Callable[[int], None] | None,
) -> tuple[int, int, bool]:
    """Embed pending chunks in batches; returns (chunks, batches, stopped by max_batches)."""
    chunks = batches = 0
    while True:
        # A pass walks the ids upwards; rows that a slower writer commits behind it are found by
        # the next pass, and a pass that finds nothing ends the phase.
        found, after_id = 0, 0
        while pending := _pending_chunks(conn, after_id, options.batch_size):
            if options.max_batches is not None and batches >= options.max_batches:
                return chunks, batches, True
            with conn.transaction():
                _embed_chunks(conn, embedder, pending)
            chunks, batches, found, after_id = chunks + len(pending), batches + 1, found + len(pending), pending[-1].id
            if on_batch is not None:
                on_batch(batches)
        if found == 0:
            return chunks, batches, False


@dataclass(frozen=True, slots=True)
class _PendingChunk:
    id: int
    text: str


def _pending_chunks(conn: psycopg.Connection[Any], after_id: int, limit: int) -> list[_PendingChunk]:
    from psycopg.rows import class_row

    with conn.cursor(row_factory=class_row(_PendingChunk)) as cursor:
        return cursor.execute(
            "SELECT id, text FROM chunks WHERE embedding_next IS NULL AND id > %s ORDER BY id LIMIT %s",
            (after_id, limit),
        ).fetchall()


def _embed_chunks(conn: psycopg.Connection[Any], embedder: Embedder, pending: Sequence[_PendingChunk]) -> None:
    """Write new vectors for `pending` chunks, then for each of their documents now complete.

    A chunk deleted meanwhile (its document was replaced) is simply not updated: chunk ids are
    never reused and a chunk's text never changes.
    """
    from pgvector import Vector

    vectors = embedder.embed([chunk.text for chunk in pending])
    wrong = {len(vector) for vector in vectors} - {embedder.dimension}
    if wrong:
        raise ConfigError(f"the embedder returned vectors of dimension {sorted(wrong)}, not {embedder.dimension}")
    ids = [chunk.id for chunk in pending]
    with conn.cursor() as cursor:
        cursor.executemany(
            "UPDATE chunks SET embedding_next = %s WHERE id = %s AND embedding_next IS NULL",
            [(Vector(list(vector)), chunk_id) for vector, chunk_id in zip(vectors, ids, strict=True)],
        )
    complete = column(
        conn,
        "SELECT DISTINCT chunk.document_id FROM chunks AS chunk WHERE chunk.id = ANY(%s) AND NOT EXISTS ("
        " SELECT 1 FROM chunks AS other WHERE other.document_id = chunk.document_id AND other.embedding_next IS NULL)",
        (ids,),
    )
    update_document_vectors(conn, complete, column="embedding_next")


def _create_next_indexes(conn: psycopg.Connection[Any]) -> None:
    """HNSW indexes on the new vectors: each chunk partition that carries vector indexes, and documents."""
    from psycopg import sql

    definition = sql.SQL("USING hnsw (embedding_next vector_cosine_ops)")
    for partition in indexed_partitions(conn):
        create_index_concurrently(conn, f"{partition}_embedding_next_hnsw", partition, definition)
    create_index_concurrently(conn, "documents_embedding_next_hnsw", "documents", definition)


def _switch(conn: psycopg.Connection[Any], embedder: Embedder, target: StoreConfig, options: ReembedOptions) -> int:
    """Put the new vectors in place in one transaction; returns the chunks embedded inside it."""
    from psycopg import sql

    def switch() -> int:
        conn.execute("LOCK TABLE documents, chunks IN ACCESS EXCLUSIVE MODE")
        embedded = 0
        while pending := _pending_chunks(conn, 0, options.batch_size):
            _embed_chunks(conn, embedder, pending)
            embedded += len(pending)
        conn.execute(
            "UPDATE documents SET embedding_next = NULL WHERE status <> 'ready' AND embedding_next IS NOT NULL"
        )
        missing = column(conn, "SELECT id FROM documents WHERE status = 'ready' AND embedding_next IS NULL")
        update_document_vectors(conn, missing, column="embedding_next")
        partitions = indexed_partitions(conn)
        for statement in _SWITCH_DDL:
            conn.execute(statement)
        for partition in partitions:
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    sql.Identifier(f"{partition}_embedding_next_hnsw"), sql.Identifier(f"{partition}_embedding_hnsw")
                )
            )
        conn.execute(
            "UPDATE documents SET embedding_model = %s WHERE status = 'ready' AND embedding_model IS DISTINCT FROM %s",
            (target.embedding_model, target.embedding_model),
        )
        conn.execute(
            "UPDATE filequeue_meta SET value = CASE name WHEN 'embedding_model' THEN %s ELSE %s END"
            " WHERE name IN ('embedding_model', 'embedding_dimension')",
            (target.embedding_model, str(target.embedding_dimension)),
        )
        conn.execute(
            "INSERT INTO filequeue_meta (name, value) VALUES (%s, '0') ON CONFLICT (name) DO NOTHING",
            (_RELINKED_THROUGH,),
        )
        return embedded

    return _with_lock_retry(conn, options, switch)


def _finish(conn: psycopg.Connection[Any], options: ReembedOptions) -> int:
    """NOT NULL on the new column, `similar` edges from the new vectors, marker removed."""
    if scalar(
        conn, "SELECT true FROM pg_constraint WHERE conname = %s AND conrelid = 'chunks'::regclass", (_NOT_NULL,)
    ):
        # VALIDATE takes a lock that lets reads and writes go on; SET NOT NULL then relies on the
        # valid constraint instead of scanning the table under an exclusive lock.
        conn.execute("ALTER TABLE chunks VALIDATE CONSTRAINT chunks_embedding_not_null")

        def set_not_null() -> None:
            conn.execute("ALTER TABLE chunks ALTER COLUMN embedding SET NOT NULL")
            conn.execute("ALTER TABLE chunks DROP CONSTRAINT chunks_embedding_not_null")

        _with_lock_retry(conn, options, set_not_null)
    relinked = _relink_all(conn, options)
    conn.execute("DELETE FROM filequeue_meta WHERE name IN (%s, %s)", (_TARGET, _RELINKED_THROUGH))
    return relinked


def _relink_all(conn: psycopg.Connection[Any], options: ReembedOptions) -> int:
    """Recompute every ready document's `similar` edges, in id order, resuming where a run stopped."""
    from psycopg.rows import class_row

    relinked = 0
    while True:
        with conn.transaction(), conn.cursor(row_factory=class_row(DocumentRef)) as cursor:
            document = cursor.execute(
                "SELECT id, bucket, key, status, error_code, error FROM documents WHERE status = 'ready' AND id > ("
                " SELECT value::bigint FROM filequeue_meta WHERE name = %s) ORDER BY id LIMIT 1",
                (_RELINKED_THROUGH,),
            ).fetchone()
            if document is None:
                return relinked
            # The lock every write of this document holds, so a concurrent ingestion of it and this
            # recomputation do not interleave.
            lock_document(conn, document.bucket, document.key)
            if scalar(conn, "SELECT true FROM documents WHERE id = %s AND status = 'ready'", (document.id,)):
                relink_similar(conn, document.id, options=options.similar)
            conn.execute("UPDATE filequeue_meta SET value = %s WHERE name = %s", (str(document.id), _RELINKED_THROUGH))
        relinked += 1


def _with_lock_retry(conn: psycopg.Connection[Any], options: ReembedOptions, work: Callable[[], _T]) -> _T:
    return with_lock_retry(
        conn,
        work,
        timeout_seconds=options.lock_timeout_seconds,
        attempts=options.lock_attempts,
        retry_hint="run `filequeue reembed` again",
    )
