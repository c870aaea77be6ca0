"""Search latency and recall of the segmented chunk store against one HNSW index, at 100,000 chunks.

A deterministic synthetic corpus (topics of generated words over a Zipf-distributed common
vocabulary) is embedded with the hashing embedder (dimension 384) into a fresh pgserver database
migrated like production, twice: database A segmented, database B with one index. 100 short
queries (4 words) and 100 long questions (40-60 words, `Corpus.question`) then run through
`search_chunks` (the code the CLI uses, minus embedding the query), vector and hybrid, on the same
rows in four layouts; each layout's hybrid p95 over its vector p95 is reported for both lengths:

- segmented (A): the rows arrive in batches, as ingestion writes them, and compaction runs after
  each batch with the default policy (seal at FILEQUEUE_COMPACTION_SEAL_ROWS, merge a full size
  tier); the last batch stays in the growing area, searched exactly: the steady state of a store
  under ingestion.
- merged (A): after `filequeue compact --merge-all` (one segment, nothing growing).
- single (B): every row in one table with one HNSW index built after the load (the store before
  segments, and FILEQUEUE_VECTOR_INDEX=live).
- exact: no index used (`enable_indexscan` off, on connections of their own, so no plan made
  without indexes is reused): the ground truth for recall@10, per database.

A layout of A and the single index of B are measured side by side in rounds of alternating order,
and each figure is the median over the rounds of the per-round medians, so that the machine's
noise falls on both alike.

Results go to bench/results/search_latency.json.

    python bench/search_latency.py [--documents 1700] [--chunks-per-document 60] [--queries 100] [--rounds 3]
                                   [--output FILE]
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
from handlers.develop.devstack import start_postgres
from handlers.ops.compaction import CompactOptions, compact, layout
from handlers.ops.search import (
    EF_SEARCH,
    VECTOR_QUERY,
    SearchHit,
    query_params,
    search_chunks,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

SEED = 20240601
DIMENSION = 384
QUERIES = 100
WARM_UP = 10
LIMIT = 10
EF_SEARCH_SWEEP = (40, EF_SEARCH, 200)
RESULTS = Path(__file__).parent / "results" / "search_latency.json"
COPY_COLUMNS = (
    "COPY chunks_growing (document_id, ordinal, page, char_start, char_end, text, embedding_model,"
    " embedding_dimension, embedding) FROM STDIN WITH (FORMAT BINARY)"
)
COPY_LIVE_COLUMNS = COPY_COLUMNS.replace("chunks_growing", "chunks_live")
ROUNDS = 3
FUNCTION_WORDS = ("the", "of", "and", "in", "for", "with", "is", "are", "to", "which", "how", "does", "on", "by")
QUERY_KINDS = ("short", "long")


def seeded_rng(seed: int) -> random.Random:
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

    def question(self) -> str:
        """A long question (40-60 words): a few of one topic's words among common words drawn as chunks
        draw them, and English function words (stop words, which BM25 drops but the embedder reads)."""
        length = self.rng.randint(40, 60)
        topic = self.topics[self.rng.randrange(len(self.topics))]
        words = self.rng.sample(topic, self.rng.randint(3, 6))
        words += self.rng.choices(FUNCTION_WORDS, k=length // 4)
        words += self.rng.choices(self.common, self.common_weights, k=length - len(words))
        self.rng.shuffle(words)
        return "what " + " ".join(words[1:]) + "?"


def load(
    conn: psycopg.Connection[Any], documents: int, chunks_per_document: int, options: CompactOptions | None
) -> dict[str, float]:
    """Write the corpus into the growing area batch by batch, compacting after each full batch.

    Without `options`, into the live area with its HNSW index dropped, then built once.
    """
    if options is None:
        conn.execute("DROP INDEX chunks_live_embedding_hnsw")
    corpus = Corpus(seeded_rng(SEED))
    embedder = HashingEmbedder(DIMENSION)
    inserted = conn.execute(
        "INSERT INTO documents (bucket, key, status, content_type, chunk_count, embedding_model)"
        " SELECT 'bench', format('uploads/doc-%%s.txt', lpad(number::text, 5, '0')), 'ready', 'text/plain', %s, %s"
        " FROM generate_series(0, %s - 1) AS number RETURNING key, id",
        (chunks_per_document, embedder.model, documents),
    ).fetchall()
    ids = [document_id for _, document_id in sorted(inserted)]
    timings = {"embed_seconds": 0.0, "load_seconds": 0.0, "compaction_seconds": 0.0}
    pending = 0
    total = documents * chunks_per_document
    for number, document_id in enumerate(ids):
        texts = [corpus.chunk(number % len(corpus.topics)) for _ in range(chunks_per_document)]
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        embedded = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(COPY_COLUMNS if options else COPY_LIVE_COLUMNS) as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "int4", "text", "text", "int4", "vector"])
            for ordinal, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
                copy.write_row((document_id, ordinal, 1, 0, len(text), text, embedder.model, DIMENSION, Vector(vector)))
        loaded = time.perf_counter()
        timings["embed_seconds"] += embedded - started
        timings["load_seconds"] += loaded - embedded
        pending += chunks_per_document
        # The steady state: the last half batch stays in the growing area.
        if options is None:
            continue
        if pending >= options.seal_rows and (number + 1) * chunks_per_document <= total - options.seal_rows // 2:
            compact(conn, options)
            timings["compaction_seconds"] += time.perf_counter() - loaded
            pending = 0
    if options is None:
        started = time.perf_counter()
        conn.execute("CREATE INDEX chunks_live_embedding_hnsw ON chunks_live USING hnsw (embedding vector_cosine_ops)")
        timings["hnsw_build_seconds"] = time.perf_counter() - started
    conn.execute("VACUUM ANALYZE chunks")
    conn.execute("VACUUM ANALYZE documents")
    return {name: round(value, 2) for name, value in timings.items()}


def measure(
    conn: psycopg.Connection[Any],
    queries: list[tuple[str, list[float]]],
    *,
    hybrid: bool,
    ef_search: int = EF_SEARCH,
) -> tuple[dict[str, float], list[list[SearchHit]]]:
    """Median and p95 milliseconds over the queries (after a warm-up), and each query's hits."""
    for text, vector in queries[:WARM_UP]:
        search_chunks(conn, text, vector, limit=LIMIT, mode="hybrid" if hybrid else "vector", ef_search=ef_search)
    seconds: list[float] = []
    answers: list[list[SearchHit]] = []
    for text, vector in queries:
        started = time.perf_counter()
        answers.append(
            search_chunks(conn, text, vector, limit=LIMIT, mode="hybrid" if hybrid else "vector", ef_search=ef_search)
        )
        seconds.append(time.perf_counter() - started)
    milliseconds = sorted(second * 1000 for second in seconds)
    return {
        "median_ms": round(statistics.median(milliseconds), 2),
        "p95_ms": round(milliseconds[int(len(milliseconds) * 0.95) - 1], 2),
    }, answers


def scans_in_plan(conn: psycopg.Connection[Any], vector: list[float]) -> list[str]:
    """The scan nodes of the vector search's plan (as `search_chunks` runs it)."""
    params = query_params("", vector, limit=LIMIT)
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(EF_SEARCH),))
        rows = conn.execute(f"EXPLAIN {VECTOR_QUERY}", params).fetchall()
    scans = [str(row[0]).strip().removeprefix("->  ").split("  (cost")[0] for row in rows]
    return [scan for scan in scans if "Scan" in scan and "chunks chunk" not in scan and "documents" not in scan]


def recall(approximate: list[list[SearchHit]], exact: list[list[SearchHit]]) -> float:
    """Mean recall@10 of the answers against the exact ones.

    Hashing vectors are close to random directions, the hard case for a graph index (no clusters to
    descend into); models trained for retrieval give clustered vectors and higher recall.
    """
    found = [
        len({hit.chunk_id for hit in answer} & {hit.chunk_id for hit in truth}) / len(truth)
        for answer, truth in zip(approximate, exact, strict=True)
    ]
    return round(statistics.mean(found), 3)


def side_by_side(
    pair: dict[str, psycopg.Connection[Any]],
    queries: list[tuple[str, list[float]]],
    exact: dict[str, list[list[SearchHit]]] | None,
    *,
    hybrid: bool,
    ef_search: int = EF_SEARCH,
    rounds: int = ROUNDS,
) -> dict[str, dict[str, float]]:
    """Each layout's median and p95 ms over `rounds` rounds in alternating order, and its recall@10 (given `exact`)."""
    names = list(pair)
    per_round: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    answers: dict[str, list[list[SearchHit]]] = {}
    for round_number in range(rounds):
        for name in names if round_number % 2 == 0 else names[::-1]:
            stats, answers[name] = measure(pair[name], queries, hybrid=hybrid, ef_search=ef_search)
            per_round[name].append(stats)
    result: dict[str, dict[str, float]] = {}
    for name in names:
        result[name] = {
            key: round(statistics.median(stats[key] for stats in per_round[name]), 2) for key in ("median_ms", "p95_ms")
        }
        if not hybrid and exact is not None:
            result[name]["recall_at_10"] = recall(answers[name], exact[name])
    return result


def measure_pair(
    pair: dict[str, psycopg.Connection[Any]],
    queries: list[tuple[str, list[float]]],
    questions: list[tuple[str, list[float]]],
    exact: dict[str, list[list[SearchHit]]],
    *,
    sweep: bool,
    rounds: int = ROUNDS,
) -> dict[str, dict[str, Any]]:
    """Short queries (with recall@10) and long questions, vector and hybrid, each layout beside the other."""
    vector = side_by_side(pair, queries, exact, hybrid=False, rounds=rounds)
    hybrid = side_by_side(pair, queries, exact, hybrid=True, rounds=rounds)
    long_vector = side_by_side(pair, questions, None, hybrid=False, rounds=rounds)
    long_hybrid = side_by_side(pair, questions, None, hybrid=True, rounds=rounds)
    result: dict[str, dict[str, Any]] = {
        name: {
            "vector": vector[name],
            "hybrid": hybrid[name],
            "long": {"vector": long_vector[name], "hybrid": long_hybrid[name]},
            "plan": scans_in_plan(conn, queries[0][1]),
            "layout": _describe(conn),
        }
        for name, conn in pair.items()
    }
    if sweep:
        for ef in EF_SEARCH_SWEEP:
            swept = side_by_side(pair, queries, exact, hybrid=False, ef_search=ef, rounds=rounds)
            for name in pair:
                result[name].setdefault("ef_search_sweep", {})[str(ef)] = swept[name]
    return result


def _describe(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    current = layout(conn)
    return {
        "growing_rows": current.growing_rows,
        "live_rows": current.live_rows,
        "segments": [segment.rows for segment in current.segments],
    }


def exact_answers(
    url: str, queries: list[tuple[str, list[float]]]
) -> tuple[dict[str, float], dict[str, float], list[list[SearchHit]]]:
    """Latency of the exact search (vector, hybrid) and its answers, on a connection of its own."""
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET enable_indexscan = off")
        vector, answers = measure(conn, queries, hybrid=False)
        hybrid, _ = measure(conn, queries, hybrid=True)
    return vector, hybrid, answers


def _open(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    migrate(conn, StoreConfig("hashing-v1", DIMENSION))
    register_vector(conn)
    conn.execute("SET maintenance_work_mem = '256MB'")
    return conn


def run(
    urls: dict[str, str], documents: int, chunks_per_document: int, queries_count: int = QUERIES, rounds: int = ROUNDS
) -> dict[str, Any]:
    options = CompactOptions()
    with _open(urls["segmented"]) as segmented, _open(urls["single"]) as single:
        build = load(segmented, documents, chunks_per_document, options)
        build["single_hnsw_build_seconds"] = load(single, documents, chunks_per_document, None)["hnsw_build_seconds"]
        # The corpus's vocabulary (its seed), queries drawn with a seed of their own.
        corpus = Corpus(seeded_rng(SEED))
        corpus.rng = seeded_rng(SEED + 1)
        embedder = HashingEmbedder(DIMENSION)
        texts = [corpus.query() for _ in range(QUERIES)][:queries_count]
        queries = list(zip(texts, embedder.embed(texts), strict=True))
        long_texts = [corpus.question() for _ in range(QUERIES)][:queries_count]
        questions = list(zip(long_texts, embedder.embed(long_texts), strict=True))
        _, _, exact_segmented = exact_answers(urls["segmented"], queries)
        exact_vector, exact_hybrid, exact_single = exact_answers(urls["single"], queries)
        exact = {"segmented": exact_segmented, "merged": exact_segmented, "single": exact_single}
        layouts = measure_pair(
            {"segmented": segmented, "single": single}, queries, questions, exact, sweep=True, rounds=rounds
        )
        started = time.perf_counter()
        compact(segmented, CompactOptions(merge_all=True))
        build["merge_all_seconds"] = round(time.perf_counter() - started, 2)
        beside_merged = measure_pair(
            {"merged": segmented, "single": single}, queries, questions, exact, sweep=False, rounds=rounds
        )
        [(chunks,)] = segmented.execute("SELECT count(*) FROM chunks").fetchall()
        [(server,)] = segmented.execute("SHOW server_version").fetchall()
        [(pgvector,)] = segmented.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchall()
    layouts["merged"] = beside_merged["merged"]
    layouts["single_beside_merged"] = beside_merged["single"]
    layouts["exact"] = {"vector": exact_vector, "hybrid": exact_hybrid}
    ratios = {
        name: {
            kind: round(layouts[name][kind]["median_ms"] / layouts[reference][kind]["median_ms"], 2)
            for kind in ("vector", "hybrid")
        }
        for name, reference in (("segmented", "single"), ("merged", "single_beside_merged"))
    }
    hybrid_over_vector = {
        name: {
            kind: round(figures["hybrid"]["p95_ms"] / figures["vector"]["p95_ms"], 2)
            for kind, figures in (("short", layouts[name]), ("long", layouts[name]["long"]))
        }
        for name in ("segmented", "single", "merged", "single_beside_merged")
    }
    return {
        "chunks": chunks,
        "documents": documents,
        "dimension": DIMENSION,
        "queries": queries_count,
        "limit": LIMIT,
        "rounds": rounds,
        "hnsw_ef_search": EF_SEARCH,
        "hnsw_params": "m=16, ef_construction=64 (pgvector defaults)",
        "compaction": {"seal_rows": options.seal_rows, "merge_factor": options.merge_factor},
        "postgres": server,
        "pgvector": pgvector,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "build": build,
        "layouts": layouts,
        "latency_ratio_to_single_index": ratios,
        "hybrid_over_vector_p95": hybrid_over_vector,
        "query_words": {"short": "2 topic words + 2 of the 200 commonest", "long": "40-60 (3-6 topic words)"},
        "measured": "search_chunks() wall time per query (SQL round trip, ranking, snippets); not the query embedding",
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"{report['chunks']} chunks, {report['queries']} queries, top {report['limit']}, dim {report['dimension']}")
    print(f"{'layout':<21} {'vector ms':>10} {'p95':>7} {'recall@10':>10} {'hybrid ms':>10} {'p95':>7}  layout")
    for name, row in report["layouts"].items():
        vector, hybrid = row["vector"], row["hybrid"]
        print(
            f"{name:<21} {vector['median_ms']:>10.2f} {vector['p95_ms']:>7.2f} {vector.get('recall_at_10', 1.0):>10.3f}"
            f" {hybrid['median_ms']:>10.2f} {hybrid['p95_ms']:>7.2f}  {row.get('layout', '')}"
        )
    print(f"{'long questions':<21} {'vector ms':>10} {'p95':>7} {'hybrid ms':>10} {'p95':>7}")
    for name, row in report["layouts"].items():
        if "long" in row:
            vector, hybrid = row["long"]["vector"], row["long"]["hybrid"]
            print(
                f"{name:<21} {vector['median_ms']:>10.2f} {vector['p95_ms']:>7.2f}"
                f" {hybrid['median_ms']:>10.2f} {hybrid['p95_ms']:>7.2f}"
            )
    for name, ratios in report["hybrid_over_vector_p95"].items():
        print(f"{name} hybrid p95 / vector p95: short {ratios['short']:.2f}x, long {ratios['long']:.2f}x")
    for name, ratios in report["latency_ratio_to_single_index"].items():
        print(f"{name} / single beside it: vector {ratios['vector']:.2f}x, hybrid {ratios['hybrid']:.2f}x")
    for name in ("segmented", "single"):
        for ef, row in report["layouts"][name]["ef_search_sweep"].items():
            print(f"{name} ef_search {ef:>4}: {row['median_ms']:.2f} ms, recall@10 {row['recall_at_10']:.3f}")
        print(f"plan {name}: {'; '.join(report['layouts'][name]['plan'])}")


@contextmanager
def bench_databases(names: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Fresh databases: on FILEQUEUE_BENCH_DATABASE_URL's server if set, else on a new pgserver."""
    server_url = os.environ.get("FILEQUEUE_BENCH_DATABASE_URL")
    data_dir = None
    server = None
    if not server_url:
        data_dir = Path(tempfile.mkdtemp(prefix="filequeue-bench-pg-"))
        server_url, server = start_postgres(data_dir / "pgdata")
    databases = {name: f"bench_search_{name}_{os.getpid()}" for name in names}
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            for database in databases.values():
                admin.execute(f'CREATE DATABASE "{database}"')
        yield {name: make_conninfo(server_url, dbname=database) for name, database in databases.items()}
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            for database in databases.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if server is not None:
            server.cleanup()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1700)
    parser.add_argument("--chunks-per-document", type=int, default=60)
    parser.add_argument("--queries", type=int, default=QUERIES, help="only the first N queries of each length")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS.name})")
    args = parser.parse_args()
    with bench_databases(("segmented", "single")) as urls:
        report = run(urls, args.documents, args.chunks_per_document, args.queries, args.rounds)
    print_table(report)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
