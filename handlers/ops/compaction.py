"""Chunk compaction: cheap writes into an unindexed area, HNSW indexes built once per sealed segment.

Chunks live in a LIST-partitioned table (migration 0003). A document's transaction writes its chunks
into `chunks_growing`, which has no vector index and is searched exactly. Compaction seals the
growing area in place, builds the sealed segment's HNSW index once, and merges sealed segments
size-tiered so that a search touches few of them. This is how Milvus (a growing segment searched by
brute force is sealed and then indexed by a separate step) and Lucene (immutable segments merged by
size tier) keep writes cheap.

A compaction step never changes what a search sees, only how it finds the rows:

1. sealing renames `chunks_growing` to `chunks_segment_N` (N is the partition value its rows were
   written with) and attaches a new, empty `chunks_growing` under a new number, in one short
   transaction under ACCESS EXCLUSIVE on `chunks`. No row moves: a search plans entirely before or
   after it (it waits on the lock) and sees every row once;
2. the sealed segment's HNSW index is built by CREATE INDEX CONCURRENTLY, so writers that replace or
   delete documents are never blocked by the build; until the index is valid the planner scans the
   segment exactly, as it did the growing area;
3. a merge copies the rows of a full size tier into a new table `chunks_segment_M`, not yet a
   partition, so no query reads it, and builds its indexes there, however long that takes; then one
   short transaction under ACCESS EXCLUSIVE on `chunks` drops from it the rows deleted or replaced
   meanwhile, drops the source segments and attaches it as partition M.

Crash safety: a crash during a merge leaves only an unattached `chunks_segment_M`, which the next run
drops; a crash during an index build leaves an invalid index, which the next run drops and builds
again; a sealed segment without its index is indexed by the next run. Sealing and swapping are each
one transaction. Segment numbers come from a sequence and are never reused. One compaction runs at a
time per database (a session advisory lock, released by PostgreSQL when the connection dies), and
`filequeue reembed` takes the same lock.

Three triggers run it, each through `run_compaction` on its own session: `filequeue compact`, the
worker's leader thread, and the scheduled Lambda (`handlers.lambda_entry.compaction_handler`). Any
number may fire: a run that finds the lock held does nothing.
"""

from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from handlers.adapters.postgres import GROWING_TABLE, LIVE_TABLE
from handlers.adapters.rows import scalar
from handlers.errors import ErrorCode, TransientError
from handlers.ops.lexical import refresh_statistics
from handlers.ops.similar import SimilarOptions, link_pending

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import psycopg
    from psycopg.sql import Composable

    from handlers.settings import Settings

_T = TypeVar("_T")

COMPACTION_LOCK_ID = 0x46514350  # "FQCP": one compaction (or re-embedding) at a time per database
SEGMENT_PREFIX = "chunks_segment_"
# Columns holding vectors that get an HNSW index per segment (`embedding_next` exists while a
# `filequeue reembed` run is under way).
VECTOR_COLUMNS = ("embedding", "embedding_next")


@dataclass(frozen=True, slots=True)
class CompactOptions:
    """When to seal and merge.

    `seal_rows`: the growing area is sealed once it holds this many rows (or always with
    `force_seal`); it is the size of the smallest segment. Segments fall in size tiers of
    `merge_factor` (tier t holds seal_rows * merge_factor**t up to the next power); a tier that
    holds `merge_factor` segments is merged into one. `merge_all` seals and then merges every
    sealed segment into one (the fastest store to search, at the cost of rebuilding its index).
    """

    seal_rows: int = 2000
    merge_factor: int = 4
    force_seal: bool = False
    merge_all: bool = False
    maintenance_work_mem: str = "256MB"
    lock_timeout_seconds: float = 0.5
    lock_attempts: int = 40
    # Count the sealed segments' BM25 statistics (False: search counts them at query time, exact but slower).
    statistics: bool = True
    # The `similar` linking pass run after the other steps (None: not run).
    similar: SimilarOptions | None = field(default_factory=SimilarOptions)

    def __post_init__(self) -> None:
        if self.seal_rows < 1:
            raise ValueError("seal_rows must be at least 1")
        if self.merge_factor < 2:
            raise ValueError("merge_factor must be at least 2")


def compact_options(settings: Settings, **overrides: Any) -> CompactOptions:
    from handlers.ops.similar import similar_options

    return CompactOptions(seal_rows=settings.compaction_seal_rows, **{"similar": similar_options(settings)} | overrides)


def run_compaction(
    settings: Settings,
    options: CompactOptions,
    *,
    on_connect: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> CompactReport:
    """One compaction of the configured database; `on_connect` sees the connection (to cancel it)."""
    from handlers.ops.db import session

    with session(settings, application_name="filequeue-compaction") as conn:
        if on_connect is not None:
            on_connect(conn)
        return compact(conn, options)


def scheduled_compaction(settings: Settings) -> dict[str, Any]:
    """What the scheduled function runs: one compaction with the settings' options, as a JSON-ready report.

    A run stopped by the function's timeout leaves only a half-built segment that the next run drops.
    """
    return asdict(run_compaction(settings, compact_options(settings)))


@dataclass(frozen=True, slots=True)
class Segment:
    """A sealed segment; `indexed` is False from its sealing until its HNSW index is valid."""

    number: int
    rows: int
    indexed: bool = True

    @property
    def table(self) -> str:
        return f"{SEGMENT_PREFIX}{self.number}"


@dataclass(frozen=True, slots=True)
class StoreLayout:
    growing_rows: int
    live_rows: int
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class CompactReport:
    """What one run did; `skipped` says why it did nothing (another run holds the lock)."""

    sealed_rows: int = 0
    merges: int = 0
    merged_rows: int = 0
    layout: StoreLayout | None = None
    skipped: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    linked_documents: int = 0


def compact(
    conn: psycopg.Connection[Any],
    options: CompactOptions | None = None,
    checkpoint: Callable[[str], None] | None = None,
) -> CompactReport:
    """Seal the growing area and merge segments as `options` say; safe to run at any time, any number of times.

    `conn` must be in autocommit mode (each step commits on its own, and indexes are built
    CONCURRENTLY). `checkpoint` is called with the name of each step after it committed (`sealed`;
    for a merge `copied`, `indexed`, `swapped`; `indexed` again after a sealed segment's index) and
    once inside a merge's swap transaction before it commits (`swapping`), so a test can stop the
    run there.
    """
    if not conn.autocommit:
        raise ValueError("compaction needs a connection in autocommit mode")
    options = options or CompactOptions()
    step = checkpoint or (lambda _name: None)
    with compaction_lock(conn) as acquired:
        if not acquired:
            return CompactReport(skipped="another compaction or re-embedding holds the lock on this database")
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (options.maintenance_work_mem,))
        drop_unattached(conn)
        seconds: dict[str, float] = {}
        started = time.perf_counter()
        sealed = _seal(conn, options, step)
        seconds["seal"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        merges = merged_rows = 0
        while group := next_merge(layout(conn).segments, options):
            merged_rows += _build_segment(conn, group, options, step)
            merges += 1
        seconds["merge"] = round(time.perf_counter() - started, 3)
        # After the merges, so that a segment sealed only to be merged at once is never indexed.
        started = time.perf_counter()
        _index_sealed(conn, step)
        seconds["index"] = round(time.perf_counter() - started, 3)
        # Inside the lock, which keeps two counts of one segment apart; BM25 is exact without it, only slower.
        if options.statistics:
            started = time.perf_counter()
            refresh_statistics(conn)
            seconds["statistics"] = round(time.perf_counter() - started, 3)
        # After the statistics: linking ranks documents by BM25.
        linked = 0
        if options.similar is not None:
            report = link_pending(conn, options.similar)
            seconds["link"] = report.seconds
            linked = report.documents
        return CompactReport(sealed, merges, merged_rows, layout(conn), seconds=seconds, linked_documents=linked)


@contextmanager
def compaction_lock(conn: psycopg.Connection[Any]) -> Iterator[bool]:
    """Try the database's compaction lock for the life of the block; yields whether it was taken."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (COMPACTION_LOCK_ID,)).fetchone()
    acquired = bool(row and row[0])
    try:
        yield acquired
    finally:
        if acquired:
            conn.execute("SELECT pg_advisory_unlock(%s)", (COMPACTION_LOCK_ID,))


def layout(conn: psycopg.Connection[Any]) -> StoreLayout:
    """Row counts of the growing area, the live area and every sealed segment (in segment order)."""
    rows = conn.execute(
        "SELECT area.relname, count(*) FROM chunks JOIN pg_class AS area ON area.oid = chunks.tableoid"
        " GROUP BY area.relname"
    ).fetchall()
    counts = {str(name): int(count) for name, count in rows}
    numbers = sealed_segment_numbers(conn)  # a segment emptied by deletes still counts
    unindexed = set(_unindexed_segments(conn, numbers))
    segments = tuple(
        Segment(number, counts.get(f"{SEGMENT_PREFIX}{number}", 0), number not in unindexed) for number in numbers
    )
    return StoreLayout(counts.get(GROWING_TABLE, 0), counts.get(LIVE_TABLE, 0), segments)


def sealed_segment_numbers(conn: psycopg.Connection[Any]) -> list[int]:
    return sorted(
        int(name.removeprefix(SEGMENT_PREFIX)) for name in _partitions(conn) if name.startswith(SEGMENT_PREFIX)
    )


def indexed_partitions(conn: psycopg.Connection[Any]) -> list[str]:
    """The partitions that carry HNSW indexes: the live area and every sealed segment."""
    return [name for name in _partitions(conn) if name != GROWING_TABLE]


def drop_unattached(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop the half-built segments an interrupted run left behind (no query ever reads them)."""
    from psycopg import sql

    rows = conn.execute(
        "SELECT class.relname FROM pg_class AS class WHERE class.relkind = 'r' AND class.relname LIKE %s"
        " AND NOT class.relispartition AND pg_table_is_visible(class.oid)",
        (SEGMENT_PREFIX.replace("_", r"\_") + "%",),
    ).fetchall()
    names = [str(row[0]) for row in rows]
    for name in names:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return names


def _partitions(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT child.relname FROM pg_inherits JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid"
        " WHERE pg_inherits.inhparent = 'chunks'::regclass ORDER BY child.relname"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _seal(conn: psycopg.Connection[Any], options: CompactOptions, step: Callable[[str], None]) -> int:
    [(growing,)] = conn.execute("SELECT count(*) FROM chunks_growing").fetchall()
    if growing == 0 or (growing < options.seal_rows and not (options.force_seal or options.merge_all)):
        return 0
    sealed = with_lock_retry(
        conn,
        lambda: _seal_in_place(conn),
        timeout_seconds=options.lock_timeout_seconds,
        attempts=options.lock_attempts,
        retry_hint="the next compaction retries",
    )
    step("sealed")
    return sealed


def _seal_in_place(conn: psycopg.Connection[Any]) -> int:
    """Make the growing area a sealed segment and attach an empty one; returns the rows sealed."""
    from psycopg import sql

    # The parent first, as writers and searches lock it before its partitions.
    conn.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
    [(bound,)] = conn.execute(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'chunks_growing'::regclass"
    ).fetchall()
    number = _partition_value(str(bound))
    [(rows,)] = conn.execute("SELECT count(*) FROM chunks_growing").fetchall()
    [(successor,)] = conn.execute("SELECT nextval('chunk_segment_seq')").fetchall()
    sealed = f"{SEGMENT_PREFIX}{number}"
    conn.execute(sql.SQL("ALTER TABLE chunks_growing RENAME TO {}").format(sql.Identifier(sealed)))
    indexes = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s AND starts_with(indexname, %s)", (sealed, GROWING_TABLE)
    ).fetchall()
    for (index,) in indexes:
        conn.execute(
            sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(index), sql.Identifier(sealed + str(index).removeprefix(GROWING_TABLE))
            )
        )
    # The partition's own default routes the writers' COPY (which names no segment) to its value;
    # the parent's default does the same for an INSERT through the parent.
    conn.execute(
        sql.SQL("CREATE TABLE chunks_growing PARTITION OF chunks (segment DEFAULT {}) FOR VALUES IN ({})").format(
            sql.Literal(successor), sql.Literal(successor)
        )
    )
    # ONLY: without it the default would reach every partition, the live area's (1) included.
    conn.execute(sql.SQL("ALTER TABLE ONLY chunks ALTER COLUMN segment SET DEFAULT {}").format(sql.Literal(successor)))
    return int(rows)


def _partition_value(bound: str) -> int:
    match = re.fullmatch(r"FOR VALUES IN \((\d+)\)", bound)
    if match is None:
        raise ValueError(f"chunks_growing has an unexpected partition bound: {bound}")
    return int(match.group(1))


def _unindexed_segments(conn: psycopg.Connection[Any], numbers: Sequence[int]) -> list[int]:
    """The sealed segments among `numbers` some vector column of which has no valid HNSW index yet."""
    columns = _vector_columns(conn)
    valid = {
        str(row[0])
        for row in conn.execute(
            "SELECT class.relname FROM pg_index AS index JOIN pg_class AS class ON class.oid = index.indexrelid"
            " WHERE index.indisvalid AND class.relname LIKE %s AND pg_table_is_visible(class.oid)",
            (SEGMENT_PREFIX.replace("_", r"\_") + "%",),
        ).fetchall()
    }
    return [
        number
        for number in numbers
        if any(f"{SEGMENT_PREFIX}{number}_{column}_hnsw" not in valid for column in columns)
    ]


def _index_sealed(conn: psycopg.Connection[Any], step: Callable[[str], None]) -> None:
    """Build the missing HNSW indexes of sealed segments, without blocking the writers."""
    from psycopg import sql

    columns = _vector_columns(conn)
    for number in _unindexed_segments(conn, sealed_segment_numbers(conn)):
        table = f"{SEGMENT_PREFIX}{number}"
        for column in columns:
            create_index_concurrently(
                conn,
                f"{table}_{column}_hnsw",
                table,
                sql.SQL("USING hnsw ({} vector_cosine_ops)").format(sql.Identifier(column)),
            )
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        step("indexed")


def create_index_concurrently(conn: psycopg.Connection[Any], name: str, table: str, definition: Composable) -> None:
    """CREATE INDEX CONCURRENTLY on `table` unless a valid index of that name exists.

    An invalid index of that name (left by an interrupted build) is dropped first.
    """
    from psycopg import sql

    valid = scalar(
        conn,
        "SELECT index.indisvalid FROM pg_index AS index JOIN pg_class AS class ON class.oid = index.indexrelid"
        " WHERE class.relname = %s AND pg_table_is_visible(class.oid)",
        (name,),
    )
    if valid:
        return
    if valid is not None:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.Identifier(name)))
    conn.execute(
        sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} {}").format(sql.Identifier(name), sql.Identifier(table), definition)
    )


def next_merge(segments: Sequence[Segment], options: CompactOptions) -> list[int]:
    """The segments to merge next: all of them with `merge_all`, else a full tier (the smallest first)."""
    if options.merge_all:
        return [segment.number for segment in segments] if len(segments) > 1 else []
    tiers: dict[int, list[Segment]] = {}
    for segment in segments:
        tier = int(math.log(max(segment.rows, options.seal_rows) / options.seal_rows, options.merge_factor))
        tiers.setdefault(tier, []).append(segment)
    for tier in sorted(tiers):
        if len(tiers[tier]) >= options.merge_factor:
            smallest = sorted(tiers[tier], key=lambda segment: (segment.rows, segment.number))
            return sorted(segment.number for segment in smallest[: options.merge_factor])
    return []


def _build_segment(
    conn: psycopg.Connection[Any], sources: list[int], options: CompactOptions, step: Callable[[str], None]
) -> int:
    """Copy the rows of the segments `sources` into a new one, index it, swap it in; returns its rows."""
    from psycopg import sql

    [(number,)] = conn.execute("SELECT nextval('chunk_segment_seq')").fetchall()
    segment = sql.Identifier(f"{SEGMENT_PREFIX}{number}")
    columns = _stored_columns(conn)
    column_list = sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    with conn.transaction():
        # LIKE ... INCLUDING ALL gives the segment the parent's indexes, so ATTACH adopts them
        # instead of building any under its lock.
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE chunks INCLUDING ALL)").format(segment))
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (segment = {})").format(
                segment, sql.Identifier(f"{SEGMENT_PREFIX}{number}_segment"), sql.Literal(number)
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {} ({}, segment) SELECT {}, {} FROM chunks WHERE segment = ANY(%s)").format(
                segment, column_list, column_list, sql.Literal(number)
            ),
            (sources,),
        )
    step("copied")
    for column in _vector_columns(conn):
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} USING hnsw ({} vector_cosine_ops)").format(
                sql.Identifier(f"{SEGMENT_PREFIX}{number}_{column}_hnsw"), segment, sql.Identifier(column)
            )
        )
    # VACUUM, not only ANALYZE: it also merges the GIN index's pending list, which the bulk insert
    # filled, and sets the visibility map for index-only scans.
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(segment))
    step("indexed")
    rows = with_lock_retry(
        conn,
        lambda: _swap(conn, number, sources, step),
        timeout_seconds=options.lock_timeout_seconds,
        attempts=options.lock_attempts,
        retry_hint="the next compaction retries",
    )
    step("swapped")
    return rows


def _swap(conn: psycopg.Connection[Any], number: int, sources: list[int], step: Callable[[str], None]) -> int:
    """Replace the rows of `sources` by segment `number` in one transaction; returns its rows."""
    from psycopg import sql

    segment = sql.Identifier(f"{SEGMENT_PREFIX}{number}")
    conn.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
    # Rows deleted (their document replaced or removed) since the copy must not come back.
    conn.execute(
        sql.SQL(
            "DELETE FROM {} AS fresh WHERE NOT EXISTS ("
            " SELECT 1 FROM chunks AS current WHERE current.id = fresh.id AND current.segment = ANY(%s))"
        ).format(segment),
        (sources,),
    )
    for source in sources:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(f"{SEGMENT_PREFIX}{source}")))
    conn.execute(
        sql.SQL("ALTER TABLE chunks ATTACH PARTITION {} FOR VALUES IN ({})").format(segment, sql.Literal(number))
    )
    [(rows,)] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(segment)).fetchall()
    step("swapping")
    return int(rows)


def _stored_columns(conn: psycopg.Connection[Any]) -> list[str]:
    """The parent's columns that hold data (not generated, not the partition key), in table order."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attnum > 0"
        " AND NOT attisdropped AND attgenerated = '' AND attname <> 'segment' ORDER BY attnum"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _vector_columns(conn: psycopg.Connection[Any]) -> list[str]:
    return [name for name in _stored_columns(conn) if name in VECTOR_COLUMNS]


def with_lock_retry(
    conn: psycopg.Connection[Any], work: Callable[[], _T], *, timeout_seconds: float, attempts: int, retry_hint: str
) -> _T:
    """Run `work` in a transaction whose lock waits give up after `timeout_seconds`, and retry.

    A short lock timeout (below PostgreSQL's 1 s deadlock_timeout) keeps searches and writers from
    queueing long behind a statement that needs an exclusive lock, and lets it give way rather
    than deadlock.
    """
    import psycopg

    timeout = f"{max(1, int(timeout_seconds * 1000))}ms"
    for attempt in range(attempts):
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                return work()
        except psycopg.errors.LockNotAvailable:
            time.sleep(min(2.0, 0.05 * 2**attempt))
    raise TransientError(
        f"could not take the table locks in {attempts} attempts; {retry_hint}", code=ErrorCode.DB_CONFLICT
    )
