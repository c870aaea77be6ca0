"""Search latency on a store of at least 10,000 chunks, with and without the HNSW index.

A deterministic synthetic corpus (topics of generated words over a Zipf-distributed common
vocabulary) is embedded with the hashing embedder (dimension 256) and COPYed into a fresh pgserver
database migrated like production. 100 queries then run through `search_chunks` (the code the CLI
uses, minus embedding the query), vector and hybrid, first with the HNSW index and then after
dropping it, so PostgreSQL scans every vector. Vector search with the index also runs at several
`hnsw.ef_search` values, with its recall@10 against the exact answers. Results go to
bench/results/search_latency.json.

    python bench/search_latency.py [--documents 200] [--chunks-per-document 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo

from handlers.adapters.embedders.hashing import HashingEmbedder
from handlers.adapters.migrate import StoreConfig, migrate
from handlers.adapters.search import (
    EF_SEARCH,
    HYBRID_QUERY,
    VECTOR_QUERY,
    SearchHit,
    query_params,
    search_chunks,
)
from handlers.devstack import start_postgres

if TYPE_CHECKING:
    from collections.abc import Iterator

SEED = 20240601
DIMENSION = 256
QUERIES = 100
WARM_UP = 10
LIMIT = 10
EF_SEARCH_SWEEP = (40, EF_SEARCH, 200, 400)
RESULTS = Path(__file__).parent / "results" / "search_latency.json"


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - a reproducible corpus, not secrets


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))


class Corpus:
    """Topics of their own words over a shared vocabulary whose frequencies follow Zipf's law."""

    def __init__(self, rng: random.Random, topics: int = 100) -> None:
        self.rng = rng
        self.common = [_word(rng) for _ in range(3000)]
        self.common_weights = [1.0 / rank for rank in range(1, len(self.common) + 1)]
        self.topics = [[_word(rng) for _ in range(40)] for _ in range(topics)]

    def chunk(self, topic: int) -> str:
        words = self.rng.choices(self.common, self.common_weights, k=self.rng.randint(80, 140))
        for _ in range(self.rng.randint(15, 30)):
            words.insert(self.rng.randrange(len(words)), self.rng.choice(self.topics[topic]))
        return " ".join(words) + "."

    def query(self) -> str:
        topic = self.topics[self.rng.randrange(len(self.topics))]
        return " ".join(self.rng.sample(topic, 2) + self.rng.sample(self.common[:200], 2))


def build_store(conn: psycopg.Connection[Any], documents: int, chunks_per_document: int) -> dict[str, float]:
    """Fill the store; returns how long embedding, loading and the index build took."""
    corpus = Corpus(_rng(SEED))
    embedder = HashingEmbedder(DIMENSION)
    texts = [
        [corpus.chunk(number % len(corpus.topics)) for _ in range(chunks_per_document)] for number in range(documents)
    ]
    started = time.perf_counter()
    vectors = [embedder.embed(chunks) for chunks in texts]
    embedded = time.perf_counter()
    # Loading into an indexed table inserts row by row into the HNSW graph; building it once after
    # the load is what a bulk import would do.
    conn.execute("DROP INDEX chunks_embedding_hnsw")
    with conn.transaction():
        inserted = conn.execute(
            "INSERT INTO documents (bucket, key, status, content_type, chunk_count, embedding_model)"
            " SELECT 'bench', format('uploads/doc-%%s.txt', lpad(number::text, 5, '0')), 'ready', 'text/plain', %s, %s"
            " FROM generate_series(0, %s - 1) AS number RETURNING key, id",
            (chunks_per_document, embedder.model, documents),
        ).fetchall()
        ids = [document_id for _, document_id in sorted(inserted)]
        with conn.cursor().copy(
            "COPY chunks (document_id, ordinal, page, char_start, char_end, text, embedding_model,"
            " embedding_dimension, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "int4", "text", "text", "int4", "vector"])
            for document_id, chunks, chunk_vectors in zip(ids, texts, vectors, strict=True):
                for ordinal, (text, vector) in enumerate(zip(chunks, chunk_vectors, strict=True)):
                    copy.write_row(
                        (document_id, ordinal, 1, 0, len(text), text, embedder.model, DIMENSION, Vector(vector))
                    )
    loaded = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '256MB'")
    create_hnsw(conn)
    indexed = time.perf_counter()
    conn.execute("VACUUM ANALYZE chunks")
    conn.execute("VACUUM ANALYZE documents")
    return {
        "embed_seconds": round(embedded - started, 2),
        "load_seconds": round(loaded - embedded, 2),
        "hnsw_build_seconds": round(indexed - loaded, 2),
    }


def create_hnsw(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)")


def measure(
    conn: psycopg.Connection[Any],
    queries: list[tuple[str, list[float]]],
    *,
    hybrid: bool,
    ef_search: int = EF_SEARCH,
) -> tuple[dict[str, float], list[list[SearchHit]]]:
    """Median and p95 milliseconds over the queries (after a warm-up), and each query's hits."""
    for text, vector in queries[:WARM_UP]:
        search_chunks(conn, text, vector, limit=LIMIT, hybrid=hybrid, ef_search=ef_search)
    seconds: list[float] = []
    answers: list[list[SearchHit]] = []
    for text, vector in queries:
        started = time.perf_counter()
        answers.append(search_chunks(conn, text, vector, limit=LIMIT, hybrid=hybrid, ef_search=ef_search))
        seconds.append(time.perf_counter() - started)
    milliseconds = sorted(second * 1000 for second in seconds)
    return {
        "median_ms": round(statistics.median(milliseconds), 2),
        "p95_ms": round(milliseconds[int(len(milliseconds) * 0.95) - 1], 2),
        "mean_results": round(statistics.mean(len(answer) for answer in answers), 1),
    }, answers


def scans_in_plan(conn: psycopg.Connection[Any], query: str, vector: list[float], *, hybrid: bool) -> list[str]:
    """The scan nodes of the plan of the search query itself (as `search_chunks` runs it)."""
    sql = HYBRID_QUERY if hybrid else VECTOR_QUERY
    params = query_params(query, vector, limit=LIMIT)
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(EF_SEARCH),))
        rows = conn.execute(f"EXPLAIN {sql}", params).fetchall()
    return [str(row[0]).strip().removeprefix("->  ").split("  (cost")[0] for row in rows if "Scan" in str(row[0])]


def recall(approximate: list[list[SearchHit]], exact: list[list[SearchHit]]) -> float:
    """Mean recall@10 of the HNSW answers against the exact ones.

    Hashing vectors are close to random directions in 256 dimensions, the hard case for a graph
    index (no clusters to descend into); models trained for retrieval give clustered vectors and
    higher recall at the same ef_search.
    """
    found = [
        len({hit.chunk_id for hit in answer} & {hit.chunk_id for hit in truth}) / len(truth)
        for answer, truth in zip(approximate, exact, strict=True)
    ]
    return round(statistics.mean(found), 3)


def run(conn: psycopg.Connection[Any], documents: int, chunks_per_document: int) -> dict[str, Any]:
    migrate(conn, StoreConfig("hashing-v1", DIMENSION))
    register_vector(conn)
    timings = build_store(conn, documents, chunks_per_document)
    corpus = Corpus(_rng(SEED + 1))
    embedder = HashingEmbedder(DIMENSION)
    texts = [corpus.query() for _ in range(QUERIES)]
    queries = list(zip(texts, embedder.embed(texts), strict=True))
    [(chunks,)] = conn.execute("SELECT count(*) FROM chunks").fetchall()
    [(server,)] = conn.execute("SHOW server_version").fetchall()
    [(pgvector,)] = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchall()

    plans: dict[str, dict[str, list[str]]] = {"with_hnsw": {}, "without_hnsw": {}}
    for mode in ("vector", "hybrid"):
        plans["with_hnsw"][mode] = scans_in_plan(conn, *queries[0], hybrid=mode == "hybrid")
    vector_hnsw, _ = measure(conn, queries, hybrid=False)
    hybrid_hnsw, _ = measure(conn, queries, hybrid=True)
    sweep = {ef: measure(conn, queries, hybrid=False, ef_search=ef) for ef in EF_SEARCH_SWEEP}
    conn.execute("DROP INDEX chunks_embedding_hnsw")
    for mode in ("vector", "hybrid"):
        plans["without_hnsw"][mode] = scans_in_plan(conn, *queries[0], hybrid=mode == "hybrid")
    vector_exact, exact_answers = measure(conn, queries, hybrid=False)
    hybrid_exact, _ = measure(conn, queries, hybrid=True)
    create_hnsw(conn)
    return {
        "chunks": chunks,
        "documents": documents,
        "dimension": DIMENSION,
        "queries": QUERIES,
        "limit": LIMIT,
        "hnsw_ef_search": EF_SEARCH,
        "hnsw_params": "m=16, ef_construction=64 (pgvector defaults)",
        "postgres": server,
        "pgvector": pgvector,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "build": timings,
        "plans": plans,
        "results": {
            "vector_with_hnsw": vector_hnsw,
            "vector_without_hnsw": vector_exact,
            "hybrid_with_hnsw": hybrid_hnsw,
            "hybrid_without_hnsw": hybrid_exact,
        },
        "ef_search_sweep": {
            str(ef): {**stats, "recall_at_10": recall(answers, exact_answers)} for ef, (stats, answers) in sweep.items()
        },
        "measured": "search_chunks() wall time per query (SQL round trip, ranking, snippets); not the query embedding",
    }


def print_table(report: dict[str, Any]) -> None:
    results = report["results"]
    print(f"{report['chunks']} chunks, {report['queries']} queries, top {report['limit']}, dim {report['dimension']}")
    print(f"{'search':<8} {'index':<8} {'median ms':>10} {'p95 ms':>8}")
    for name, label in (("vector", "vector"), ("hybrid", "hybrid")):
        for suffix, index in (("with_hnsw", "HNSW"), ("without_hnsw", "none")):
            row = results[f"{name}_{suffix}"]
            print(f"{label:<8} {index:<8} {row['median_ms']:>10.2f} {row['p95_ms']:>8.2f}")
    print(f"{'ef_search':>9} {'median ms':>10} {'p95 ms':>8} {'recall@10':>10}")
    for ef, row in report["ef_search_sweep"].items():
        print(f"{ef:>9} {row['median_ms']:>10.2f} {row['p95_ms']:>8.2f} {row['recall_at_10']:>10.3f}")
    for index, modes in report["plans"].items():
        for mode, scans in modes.items():
            print(f"plan {mode} {index}: {'; '.join(scans)}")


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh database: on FILEQUEUE_BENCH_DATABASE_URL's server if set, else on a new pgserver."""
    server_url = os.environ.get("FILEQUEUE_BENCH_DATABASE_URL")
    data_dir = None
    server = None
    if not server_url:
        data_dir = Path(tempfile.mkdtemp(prefix="filequeue-bench-pg-"))
        server_url, server = start_postgres(data_dir / "pgdata")
    name = f"bench_search_{os.getpid()}"
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if server is not None:
            server.cleanup()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--chunks-per-document", type=int, default=60)
    args = parser.parse_args()
    with bench_database() as url, psycopg.connect(url, autocommit=True) as conn:
        report = run(conn, args.documents, args.chunks_per_document)
    print_table(report)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
