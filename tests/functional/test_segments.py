"""The segmented chunk store on the real PostgreSQL: growing area, live area, sealed segments, compaction.

Documents are written through `PostgresRepository.store_document` (the handler's write path) with
vectors chosen here, so that searches have exact expected answers.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from handlers.adapters.embedders.hashing import HashingEmbedder
from handlers.adapters.migrate import StoreConfig, migrate
from handlers.errors import ConfigError
from handlers.ops.compaction import (
    COMPACTION_LOCK_ID,
    CompactOptions,
    CompactReport,
    StoreLayout,
    compact,
    compaction_lock,
    layout,
)
from handlers.ops.reembed import ReembedOptions, reembed
from handlers.ops.search import EF_SEARCH, search_chunks, set_ef_search
from tests.functional.store_writer import StoreWriter

if TYPE_CHECKING:
    from collections.abc import Iterator

MODEL = "test-vectors"
DIMENSION = 24


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible data, not secrets


def _vector(rng: random.Random, dimension: int = DIMENSION) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(dimension)]


@pytest.fixture
def store_url(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, StoreConfig(MODEL, DIMENSION))
    return database_url


@pytest.fixture
def conn(store_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(store_url, autocommit=True) as connection:
        register_vector(connection)
        yield connection


class Writer(StoreWriter):
    """Stores documents of given chunk vectors through the repository, one transaction each."""

    def __init__(self, url: str, vector_index: str = "segmented", dimension: int = DIMENSION) -> None:
        super().__init__(url, MODEL, vector_index)
        self.dimension = dimension

    def put(self, key: str, vectors: list[list[float]]) -> None:
        self.put_chunks(key, [f"{key} chunk {ordinal}" for ordinal in range(len(vectors))], vectors)


@pytest.fixture
def writer(store_url: str) -> Iterator[Writer]:
    writer = Writer(store_url)
    yield writer
    writer.close()


def _fill(writer: Writer, rng: random.Random, documents: int, chunks: int, prefix: str = "doc") -> None:
    for number in range(documents):
        writer.put(f"uploads/{prefix}-{number:04d}.txt", [_vector(rng) for _ in range(chunks)])


def _chunks(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every chunk a reader sees, by content (ids and areas aside), sorted."""
    return conn.execute(
        "SELECT document.key, chunk.ordinal, chunk.text, chunk.embedding::text FROM chunks AS chunk"
        " JOIN documents AS document ON document.id = chunk.document_id ORDER BY 1, 2"
    ).fetchall()


def _layout(report: CompactReport) -> StoreLayout:
    assert report.layout is not None
    return report.layout


def _plan(conn: psycopg.Connection[Any]) -> str:
    query = "[" + ",".join(["0.5"] * DIMENSION) + "]"
    rows = conn.execute(f"EXPLAIN SELECT id FROM chunks ORDER BY embedding <=> '{query}' LIMIT 10").fetchall()  # noqa: S608
    return "\n".join(str(row[0]) for row in rows)


def test_new_chunks_land_in_the_growing_area_and_are_searched_at_once(conn, writer):
    rng = _rng(1)
    vectors = [_vector(rng) for _ in range(3)]
    writer.put("uploads/a.txt", vectors)
    assert layout(conn).growing_rows == 3
    hits = search_chunks(conn, "", vectors[1], limit=1)
    assert [hit.key for hit in hits] == ["uploads/a.txt"]
    assert hits[0].score == pytest.approx(1.0)
    assert "Seq Scan on chunks_growing" in _plan(conn)


def test_live_mode_writes_into_the_indexed_area_as_before(store_url, conn):
    live = Writer(store_url, vector_index="live")
    try:
        _fill(live, _rng(2), documents=3, chunks=4)
    finally:
        live.close()
    assert (layout(conn).growing_rows, layout(conn).live_rows) == (0, 12)
    assert compact(conn, CompactOptions(seal_rows=1)).sealed_rows == 0
    conn.execute("SET enable_seqscan = off")
    assert "Index Scan using chunks_live_embedding_hnsw on chunks_live" in _plan(conn)


def test_after_a_seal_both_modes_still_write_where_they_should(store_url, conn, writer):
    rng = _rng(19)
    writer.put("uploads/sealed.txt", [_vector(rng)])
    compact(conn, CompactOptions(force_seal=True))
    live = Writer(store_url, vector_index="live")
    try:
        live.put("uploads/live.txt", [_vector(rng)])
    finally:
        live.close()
    writer.put("uploads/growing.txt", [_vector(rng)])
    conn.execute(
        "INSERT INTO chunks (document_id, ordinal, page, char_start, char_end, text, embedding_model,"
        " embedding_dimension, embedding) SELECT document_id, 1, 1, 0, 1, 'x', embedding_model,"
        " embedding_dimension, embedding FROM chunks_growing"
    )
    current = layout(conn)
    assert (current.live_rows, current.growing_rows, [segment.rows for segment in current.segments]) == (1, 2, [1])


def test_an_unknown_vector_index_mode_is_a_config_error(store_url):
    with pytest.raises(ConfigError, match="FILEQUEUE_VECTOR_INDEX"):
        Writer(store_url, vector_index="lazy")


def test_compaction_seals_at_the_threshold_and_merges_a_full_tier(conn, writer):
    rng = _rng(3)
    _fill(writer, rng, documents=2, chunks=5, prefix="first")
    options = CompactOptions(seal_rows=20, merge_factor=3)
    assert compact(conn, options).sealed_rows == 0  # 10 rows: below the threshold
    before = _chunks(conn)
    for round_number in range(3):
        _fill(writer, rng, documents=4, chunks=5, prefix=f"round{round_number}")
        report = compact(conn, options)
        assert report.sealed_rows >= 20
    # The third segment of the smallest tier made the tier full: the three became one.
    assert report.merges == 1
    assert [segment.rows for segment in _layout(report).segments] == [70]
    assert _layout(report).growing_rows == 0
    assert set(before) <= set(_chunks(conn))
    conn.execute("SET enable_seqscan = off")
    plan = _plan(conn)
    assert f"Index Scan using chunks_segment_{_layout(report).segments[0].number}_embedding_hnsw" in plan
    assert "chunks_growing" in plan


def test_compaction_is_idempotent(conn, writer):
    _fill(writer, _rng(4), documents=5, chunks=4)
    first = compact(conn, CompactOptions(force_seal=True))
    contents = _chunks(conn)
    second = compact(conn, CompactOptions(force_seal=True))
    assert (second.sealed_rows, second.merges) == (0, 0)
    assert second.layout == first.layout
    assert _chunks(conn) == contents


def test_merge_all_leaves_one_segment(conn, writer):
    rng = _rng(5)
    for round_number in range(3):
        _fill(writer, rng, documents=2, chunks=3, prefix=f"r{round_number}")
        compact(conn, CompactOptions(force_seal=True, merge_factor=10))
    assert len(layout(conn).segments) == 3
    _fill(writer, rng, documents=1, chunks=3, prefix="last")
    report = compact(conn, CompactOptions(merge_all=True))
    assert [segment.rows for segment in _layout(report).segments] == [21]
    assert _layout(report).growing_rows == 0


def test_search_during_compaction_sees_every_chunk_exactly_once(conn, writer, store_url):
    rng = _rng(6)
    _fill(writer, rng, documents=30, chunks=10, prefix="base")
    compact(conn, CompactOptions(force_seal=True))
    _fill(writer, rng, documents=30, chunks=10, prefix="more")
    expected = {row[0] for row in conn.execute("SELECT id FROM chunks")}
    probe = _vector(rng)
    observations: list[tuple[int, int]] = []
    failures: list[str] = []
    done = threading.Event()

    def search_until_done() -> None:
        with psycopg.connect(store_url, autocommit=True) as reader:
            register_vector(reader)
            while not done.is_set():
                # A limit as large as the store makes every area return all its rows.
                hits = search_chunks(reader, "", probe, limit=len(expected), ef_search=len(expected))
                ids = [hit.chunk_id for hit in hits]
                observations.append((len(ids), len(set(ids))))
                if sorted(ids) != sorted(expected):
                    failures.append(f"saw {len(ids)} hits, {len(set(ids))} distinct, of {len(expected)}")

    reader = threading.Thread(target=search_until_done)
    reader.start()
    try:
        # Seals the second 300 rows, then merges the two segments of one tier.
        report = compact(conn, CompactOptions(seal_rows=1, merge_factor=2))
    finally:
        done.set()
        reader.join()
    assert (report.sealed_rows, report.merges) == (300, 1)
    assert observations
    assert failures == []
    assert [segment.rows for segment in layout(conn).segments] == [600]


def test_each_indexed_segment_searches_with_its_share_of_the_budget(conn, writer):
    def share() -> int:
        with conn.transaction():
            value = set_ef_search(conn, 100, 10)
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == (str(value),)
        return value

    rng = _rng(17)
    assert share() == 110  # no segment yet: one index's whole budget, plus the rows asked for
    for round_number in range(3):
        _fill(writer, rng, documents=2, chunks=3, prefix=f"r{round_number}")
        compact(conn, CompactOptions(force_seal=True, merge_factor=10))
    _fill(writer, rng, documents=1, chunks=3, prefix="growing")  # searched exactly: no share
    assert share() == 10 + 34  # three segments: ceil(100 / 3) each
    writer.delete("uploads/r0-0000.txt")
    writer.delete("uploads/r0-0001.txt")
    compact(conn, CompactOptions(merge_factor=10))
    conn.execute("ANALYZE chunks")
    assert share() == 10 + 50  # an emptied segment is not searched
    assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("40",)  # the setting ended with the transaction
    with conn.transaction():
        assert set_ef_search(conn, 2000, 10) == 1000  # pgvector's maximum


def test_replace_and_delete_reach_every_area(store_url, conn, writer):
    rng = _rng(7)
    live = Writer(store_url, vector_index="live")
    try:
        live.put("uploads/in-live.txt", [_vector(rng) for _ in range(3)])
    finally:
        live.close()
    writer.put("uploads/in-segment.txt", [_vector(rng) for _ in range(3)])
    writer.put("uploads/gone-segment.txt", [_vector(rng) for _ in range(3)])
    compact(conn, CompactOptions(force_seal=True))
    writer.put("uploads/in-growing.txt", [_vector(rng) for _ in range(3)])
    writer.put("uploads/gone-growing.txt", [_vector(rng) for _ in range(3)])
    areas = dict(
        conn.execute(
            "SELECT document.key, min(area.relname) FROM chunks AS chunk"
            " JOIN pg_class AS area ON area.oid = chunk.tableoid"
            " JOIN documents AS document ON document.id = chunk.document_id GROUP BY 1"
        ).fetchall()
    )
    assert areas["uploads/in-live.txt"] == "chunks_live"
    assert areas["uploads/in-segment.txt"].startswith("chunks_segment_")
    assert areas["uploads/in-growing.txt"] == "chunks_growing"

    replacement = [_vector(rng) for _ in range(2)]
    for key in ("uploads/in-live.txt", "uploads/in-segment.txt", "uploads/in-growing.txt"):
        writer.put(key, replacement)
    writer.delete("uploads/gone-segment.txt")
    writer.delete("uploads/gone-growing.txt")
    counts = conn.execute(
        "SELECT document.key, count(*) FROM chunks AS chunk JOIN documents AS document"
        " ON document.id = chunk.document_id GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert counts == [("uploads/in-growing.txt", 2), ("uploads/in-live.txt", 2), ("uploads/in-segment.txt", 2)]
    assert conn.execute(
        "SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)"
    ).fetchone() == (0,)
    hits = search_chunks(conn, "", replacement[0], limit=3)
    assert sorted(hit.key for hit in hits) == [
        "uploads/in-growing.txt",
        "uploads/in-live.txt",
        "uploads/in-segment.txt",
    ]


def _counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(
        conn.execute(
            "SELECT document.key, count(*) FROM chunks AS chunk JOIN documents AS document"
            " ON document.id = chunk.document_id GROUP BY 1"
        ).fetchall()
    )


def test_sealing_renames_the_growing_area_and_moves_no_row(conn, writer):
    _fill(writer, _rng(13), documents=3, chunks=4)
    growing_oid = conn.execute("SELECT 'chunks_growing'::regclass::oid").fetchone()
    places = conn.execute("SELECT id, ctid::text FROM chunks ORDER BY id").fetchall()
    report = compact(conn, CompactOptions(force_seal=True))
    [segment] = _layout(report).segments
    assert (report.sealed_rows, segment.rows, segment.indexed) == (12, 12, True)
    assert conn.execute(f"SELECT '{segment.table}'::regclass::oid").fetchone() == growing_oid
    assert conn.execute("SELECT id, ctid::text FROM chunks ORDER BY id").fetchall() == places
    assert conn.execute("SELECT 'chunks_growing'::regclass::oid").fetchone() != growing_oid
    indexes = {
        row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", (segment.table,))
    }
    assert f"{segment.table}_embedding_hnsw" in indexes
    assert not [name for name in indexes if name.startswith("chunks_growing")]
    writer.put("uploads/after.txt", [_vector(_rng(14))])
    assert layout(conn).growing_rows == 1  # the writers' next COPY lands in the new growing area


def test_rows_replaced_while_a_segment_is_sealed_or_merged_do_not_come_back(conn, writer):
    rng = _rng(8)
    _fill(writer, rng, documents=4, chunks=3)
    compact(conn, CompactOptions(force_seal=True))
    _fill(writer, rng, documents=2, chunks=3, prefix="later")
    replacement = [_vector(rng)]

    def replace_while_compacting(step: str) -> None:
        if step == "sealed":  # the sealed segment has no index yet
            writer.put("uploads/doc-0001.txt", replacement)
            writer.delete("uploads/doc-0002.txt")
        if step == "copied":  # the merged segment holds copies of rows now replaced or deleted
            writer.put("uploads/later-0000.txt", replacement)
            writer.delete("uploads/later-0001.txt")

    report = compact(conn, CompactOptions(force_seal=True, merge_factor=2), checkpoint=replace_while_compacting)
    assert (report.sealed_rows, report.merges) == (6, 1)
    assert _counts(conn) == {
        "uploads/doc-0000.txt": 3,
        "uploads/doc-0001.txt": 1,
        "uploads/doc-0003.txt": 3,
        "uploads/later-0000.txt": 1,
    }
    assert _layout(report).growing_rows == 2  # the replacements arrived after the seal
    assert [segment.rows for segment in _layout(report).segments] == [6]


def test_a_sealed_segment_is_searched_exactly_until_its_index_is_valid(conn, writer, store_url):
    rng = _rng(15)
    _fill(writer, rng, documents=3, chunks=4)
    probe = _vector(rng)
    seen: list[tuple[str, list[int]]] = []

    def search_at(step: str) -> None:
        with psycopg.connect(store_url, autocommit=True) as reader:
            register_vector(reader)
            seen.append((step, sorted(hit.chunk_id for hit in search_chunks(reader, "", probe, limit=12))))

    expected = sorted(row[0] for row in conn.execute("SELECT id FROM chunks"))
    compact(conn, CompactOptions(force_seal=True, merge_factor=10), checkpoint=search_at)
    assert seen == [("sealed", expected), ("indexed", expected)]


def test_an_index_build_killed_midway_leaves_an_invalid_index_the_next_run_rebuilds(conn, writer, store_url):
    _fill(writer, _rng(16), documents=3, chunks=4)
    contents = _chunks(conn)

    def stop_before_index(step: str) -> None:
        if step == "sealed":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compact(conn, CompactOptions(force_seal=True), checkpoint=stop_before_index)
    [segment] = layout(conn).segments
    assert not segment.indexed
    # CREATE INDEX CONCURRENTLY commits its (invalid) catalog entry, then waits for the transactions
    # that may write the table: hold one open, start the build, and end its backend while it waits.
    with psycopg.connect(store_url) as older:
        older.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(sql.Identifier(segment.table)))
        builder = threading.Thread(target=lambda: _build_index_ignoring_termination(store_url, segment.table))
        builder.start()
        with psycopg.connect(store_url, autocommit=True) as admin:
            for _ in range(200):
                row = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%'"
                    " AND wait_event_type = 'Lock'"
                ).fetchone()
                if row:
                    admin.execute("SELECT pg_terminate_backend(%s)", row)
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("the index build never waited")
        builder.join(timeout=30)
    assert conn.execute(
        "SELECT index.indisvalid FROM pg_index AS index JOIN pg_class AS class ON class.oid = index.indexrelid"
        " WHERE class.relname = %s",
        (f"{segment.table}_embedding_hnsw",),
    ).fetchall() == [(False,)]
    assert not layout(conn).segments[0].indexed

    report = compact(conn, CompactOptions())
    assert report.layout is not None
    assert report.layout.segments[0].indexed
    assert _chunks(conn) == contents
    conn.execute("SET enable_seqscan = off")
    assert f"Index Scan using {segment.table}_embedding_hnsw" in _plan(conn)


def _build_index_ignoring_termination(url: str, table: str) -> None:
    with psycopg.connect(url, autocommit=True) as builder:
        try:
            builder.execute(
                sql.SQL("CREATE INDEX CONCURRENTLY {} ON {} USING hnsw (embedding vector_cosine_ops)").format(
                    sql.Identifier(f"{table}_embedding_hnsw"), sql.Identifier(table)
                )
            )
        except psycopg.OperationalError:
            return


def test_a_merge_copies_each_chunks_full_text_vector_instead_of_computing_it(conn, writer):
    rng = _rng(18)
    for round_number in range(2):
        _fill(writer, rng, documents=2, chunks=3, prefix=f"r{round_number}")
        compact(conn, CompactOptions(force_seal=True, merge_factor=10))
    stale = "SELECT count(*) FROM chunks WHERE tsv IS DISTINCT FROM to_tsvector('english', text)"
    assert conn.execute(stale).fetchone() == (0,)  # filled as the writers' COPY stored each row
    [(marked,)] = conn.execute("SELECT min(id) FROM chunks").fetchall()
    conn.execute("UPDATE chunks SET tsv = 'copied'::tsvector WHERE id = %s", (marked,))
    report = compact(conn, CompactOptions(merge_all=True))
    assert report.merges == 1
    assert conn.execute("SELECT tsv::text FROM chunks WHERE id = %s", (marked,)).fetchone() == ("'copied'",)
    conn.execute("UPDATE chunks SET text = 'feeding the starters' WHERE id = %s", (marked,))
    assert conn.execute("SELECT tsv::text FROM chunks WHERE id = %s", (marked,)).fetchone() == ("'feed':1 'starter':3",)
    assert conn.execute(stale).fetchone() == (0,)


_KILL_AT = """
import os, signal, sys
import psycopg
from handlers.ops.compaction import CompactOptions, compact

def die_at(step):
    if step == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    compact(conn, CompactOptions(force_seal=True, merge_factor=int(sys.argv[3])), checkpoint=die_at)
"""


@pytest.mark.parametrize(
    ("step", "merge_factor"),
    [
        ("sealed", 10),  # before the sealed segment's index
        ("indexed", 10),  # after it
        ("sealed", 2),  # before merging the two segments
        ("copied", 2),
        ("indexed", 2),
        ("swapping", 2),
        ("swapped", 2),
    ],
)
def test_compaction_killed_at_a_step_then_run_again_gives_the_same_store(conn, writer, store_url, step, merge_factor):
    rng = _rng(9)
    _fill(writer, rng, documents=5, chunks=4, prefix="sealed")
    compact(conn, CompactOptions(force_seal=True))
    _fill(writer, rng, documents=5, chunks=4, prefix="growing")
    contents = _chunks(conn)
    ids = sorted(row[0] for row in conn.execute("SELECT id FROM chunks"))

    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AT, store_url, step, str(merge_factor)], check=False, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL
    assert _chunks(conn) == contents  # a reader never sees the interruption
    leftovers = conn.execute(
        "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND relname LIKE 'chunks_segment_%%'"
    ).fetchone()
    merging = merge_factor == 2 and step in ("copied", "indexed", "swapping")
    assert leftovers == ((1,) if merging else (0,))

    report = compact(conn, CompactOptions(force_seal=True, merge_factor=merge_factor))
    assert report.skipped is None  # the killed run's lock died with its connection
    assert _chunks(conn) == contents
    assert sorted(row[0] for row in conn.execute("SELECT id FROM chunks")) == ids
    expected = [40] if merge_factor == 2 else [20, 20]
    assert [(segment.rows, segment.indexed) for segment in layout(conn).segments] == [(rows, True) for rows in expected]
    assert layout(conn).growing_rows == 0
    assert conn.execute(
        "SELECT count(*) FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND relname LIKE 'chunks_segment_%%'"
    ).fetchone() == (0,)


def test_one_compaction_at_a_time_and_reembed_waits_for_it(conn, writer, store_url):
    _fill(writer, _rng(10), documents=2, chunks=2)
    with psycopg.connect(store_url, autocommit=True) as other, compaction_lock(other) as acquired:
        assert acquired
        report = compact(conn, CompactOptions(force_seal=True))
        assert report.skipped is not None
        assert layout(conn).growing_rows == 4
        with pytest.raises(ConfigError, match="compaction is running"):
            reembed(conn, HashingEmbedder(8, "other-model"), ReembedOptions())
    assert conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s", (COMPACTION_LOCK_ID,)
    ).fetchone() == (0,)
    assert compact(conn, CompactOptions(force_seal=True)).sealed_rows == 4


def _recall(conn: psycopg.Connection[Any], queries: list[list[float]], exact: list[set[int]], ef_search: int) -> float:
    found = 0
    for query, truth in zip(queries, exact, strict=True):
        hits = search_chunks(conn, "", query, limit=10, ef_search=ef_search)
        found += len({hit.chunk_id for hit in hits} & truth)
    return found / (10 * len(queries))


def _exact(conn: psycopg.Connection[Any], queries: list[list[float]]) -> list[set[int]]:
    from pgvector import Vector

    answers = []
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        for query in queries:
            rows = conn.execute("SELECT id FROM chunks ORDER BY embedding <=> %s LIMIT 10", (Vector(query),))
            answers.append({row[0] for row in rows})
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("ef_search", [20, EF_SEARCH])
def test_recall_of_segments_is_at_least_that_of_one_hnsw_index(database_url, second_database_url, ef_search):
    """Fixed data: 4,000 vectors of 48 random dimensions (the hard case for HNSW), 50 queries.

    The single index examines `ef_search` candidates; each of the four segments its share of them.
    """
    dimension = 48
    rng = _rng(11)
    documents = [[_vector(rng, dimension) for _ in range(40)] for _ in range(100)]
    queries = [_vector(rng, dimension) for _ in range(50)]
    recalls = {}
    for mode in ("live", "segmented"):
        url = database_url if mode == "live" else second_database_url
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn, StoreConfig(MODEL, dimension))
            register_vector(conn)
            writer = Writer(url, vector_index=mode, dimension=dimension)
            try:
                for number, vectors in enumerate(documents):
                    writer.put(f"uploads/{number:03d}.txt", vectors)
                    if mode == "segmented" and number % 25 == 24:
                        compact(conn, CompactOptions(force_seal=True, merge_factor=10))
            finally:
                writer.close()
            if mode == "segmented":
                assert len(layout(conn).segments) == 4
            recalls[mode] = _recall(conn, queries, _exact(conn, queries), ef_search=ef_search)
    assert recalls["segmented"] >= recalls["live"], recalls


@pytest.fixture
def second_database_url(postgres_url: str, database_url: str) -> Iterator[str]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = str(conninfo_to_dict(database_url)["dbname"]) + "_b"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(postgres_url, dbname=name)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_vectors_stay_in_the_row_in_every_area(conn, writer):
    writer.put("uploads/a.txt", [_vector(_rng(12)) for _ in range(2)])
    compact(conn, CompactOptions(force_seal=True))
    storage = conn.execute(
        "SELECT class.relname, attribute.attstorage FROM pg_attribute AS attribute"
        " JOIN pg_class AS class ON class.oid = attribute.attrelid"
        " WHERE attribute.attname = 'embedding' AND class.relname LIKE 'chunks%%' AND class.relkind IN ('r', 'p')"
        " ORDER BY 1"
    ).fetchall()
    assert [mode for _, mode in storage] == ["m"] * len(storage)
    assert {name for name, _ in storage} >= {"chunks", "chunks_growing", "chunks_live"}
    assert len(storage) == 4
