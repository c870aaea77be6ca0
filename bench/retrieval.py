"""Retrieval quality and latency on public test collections (CACM, CISI), through the product's real path.

Per collection and embedder, a fresh embedded stack: every document is uploaded as
`uploads/<collection>/<id>.txt` to moto's S3, whose notifications fill the SQS queue that
`filequeue worker` (2 processes) drains into PostgreSQL (pgserver); compaction then seals the chunks
into an indexed segment and the lexical statistics are counted. Each query is ranked by
`FileQueue.search(..., limit=200)` (chunks deduplicated to their document, first occurrence kept) and
scored against the collection's human judgements: nDCG@10 (binary gains), MRR@10, recall@100.

Rankings side by side:
- bm25_reference: Okapi BM25 by rank_bm25 (BM25Okapi, k1 1.2, b 0.75), tokens lower-cased
  `\\w+` words without PostgreSQL's English stop words (the Snowball list), stemmed by Snowball's
  English stemmer (snowballstemmer);
- vector, hybrid, text: `FileQueue.search(mode="vector"|"hybrid"|"text")` (text: BM25 in PostgreSQL,
  the text side of hybrid search);
- bm25_postgres: BM25 inside PostgreSQL called directly (handlers.ops.lexical.rank);
- fusion rules over vector and bm25_postgres rankings (weighted RRF, min-max score fusion), swept.
Latency p50/p95 per mode for short queries (a query's first 6 words) and long ones (40-60 words:
the query followed by the next queries' words, cut at 50), with `limit` 10, after one warm-up pass.

    python bench/retrieval.py [--collections cacm cisi] [--embedders hashing-v2 local]
                              [--docs N --queries N] [--scale-chunks 100000] [--output FILE]

`local` needs the model built by bench/make_local_model.py in .filequeue/models/minilm-l6-static
(or FILEQUEUE_EMBEDDING_MODEL_PATH); it is skipped with a note when missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ir_collections import Collection, load, verify

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "retrieval.json"
LOCAL_MODEL = ROOT / ".filequeue" / "models" / "minilm-l6-static"
RANKED = 200
LATENCY_LIMIT = 10
UPLOAD_THREADS = 8
UPLOAD_WAVE = 100
LATENCY_QUERIES = 30
SHORT_WORDS = 6
LONG_WORDS = 50
MODES = ("bm25_reference", "text", "vector", "hybrid", "bm25_postgres")
RRF_WEIGHTS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
MINMAX_TEXT_SHARES = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
_WORD = re.compile(r"\w+", re.UNICODE)


# --- the product's moving parts -----------------------------------------------------------------
# Every import of modules that may move (the embedded stack, search internals, compaction) is here.


def _stack() -> Any:
    from handlers.develop import demo

    return demo


def _aws_client(service: str, environment: dict[str, str]) -> Any:
    from handlers.develop.devstack import aws_client

    return aws_client(service, environment)


def _compact(conn: psycopg.Connection[Any]) -> None:
    from handlers.ops.compaction import CompactOptions, compact

    compact(conn, CompactOptions(force_seal=True))


# --- metrics ------------------------------------------------------------------------------------


def ndcg_at(ranking: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    """nDCG@k with binary gains: DCG = sum of 1 / log2(rank + 1) over relevant documents in the top k."""
    wanted = set(relevant)
    dcg = sum(1 / math.log2(rank + 2) for rank, doc in enumerate(ranking[:k]) if doc in wanted)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return dcg / ideal if ideal else 0.0


def mrr_at(ranking: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    wanted = set(relevant)
    return next((1 / (rank + 1) for rank, doc in enumerate(ranking[:k]) if doc in wanted), 0.0)


def recall_at(ranking: Sequence[str], relevant: Iterable[str], k: int = 100) -> float:
    wanted = set(relevant)
    return len(wanted & set(ranking[:k])) / len(wanted) if wanted else 0.0


def evaluate(rankings: dict[str, list[str]], qrels: dict[str, frozenset[str]]) -> dict[str, float]:
    """Mean nDCG@10, MRR@10 and recall@100 over the judged queries (a query never ranked scores 0)."""
    judged = sorted(qrels)
    return {
        "ndcg@10": round(statistics.fmean(ndcg_at(rankings.get(q, []), qrels[q]) for q in judged), 4),
        "mrr@10": round(statistics.fmean(mrr_at(rankings.get(q, []), qrels[q]) for q in judged), 4),
        "recall@100": round(statistics.fmean(recall_at(rankings.get(q, []), qrels[q]) for q in judged), 4),
    }


def first_occurrences(items: Iterable[str]) -> list[str]:
    """`items` with repeats removed, the first occurrence kept (chunks to their document)."""
    return list(dict.fromkeys(items))


# --- fusion -------------------------------------------------------------------------------------


def rrf(rankings: Sequence[tuple[float, Sequence[str]]], k: int = 60) -> list[str]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank) over the rankings a document is in."""
    scores: dict[str, float] = {}
    for weight, ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda doc: (-scores[doc], doc))


def minmax(scored: Sequence[tuple[float, Sequence[tuple[str, float]]]]) -> list[str]:
    """Score fusion: each ranking's scores scaled to [0, 1] by its min and max, weighted, summed."""
    scores: dict[str, float] = {}
    for weight, ranking in scored:
        if not ranking:
            continue
        values = [score for _, score in ranking]
        low, high = min(values), max(values)
        for doc, score in ranking:
            scaled = (score - low) / (high - low) if high > low else 1.0
            scores[doc] = scores.get(doc, 0.0) + weight * scaled
    return sorted(scores, key=lambda doc: (-scores[doc], doc))


def _rrf_rule(weight: float) -> Callable[[list[tuple[str, float]], list[tuple[str, float]]], list[str]]:
    return lambda vector, text: rrf([(1.0, [doc for doc, _ in vector]), (weight, [doc for doc, _ in text])])


def _minmax_rule(share: float) -> Callable[[list[tuple[str, float]], list[tuple[str, float]]], list[str]]:
    return lambda vector, text: minmax([(1 - share, vector), (share, text)])


def fusion_rules() -> dict[str, Callable[[list[tuple[str, float]], list[tuple[str, float]]], list[str]]]:
    """Rule name -> fuse(vector ranking, text ranking), both as (document, score) best first."""
    rules = {f"rrf60 text x{weight}": _rrf_rule(weight) for weight in RRF_WEIGHTS}
    rules.update({f"minmax text {share}": _minmax_rule(share) for share in MINMAX_TEXT_SHARES})
    return rules


# --- the BM25 reference -------------------------------------------------------------------------


def english_stop_words() -> frozenset[str]:
    """PostgreSQL's English stop words (the Snowball list), from the pgserver installation."""
    import pgserver

    [path] = Path(pgserver.__file__).parent.glob("pginstall/share/postgresql/tsearch_data/english.stop")
    return frozenset(path.read_text(encoding="utf-8").split())


class Bm25Reference:
    def __init__(self, docs: dict[str, str]) -> None:
        import snowballstemmer
        from rank_bm25 import BM25Okapi

        self.stop = english_stop_words()
        self.stemmer = snowballstemmer.stemmer("english")
        self.ids = list(docs)
        self.index = BM25Okapi([self.tokens(docs[doc]) for doc in self.ids], k1=1.2, b=0.75)

    def tokens(self, text: str) -> list[str]:
        words = [word for word in _WORD.findall(text.lower()) if word not in self.stop]
        return list(self.stemmer.stemWords(words))

    def rank(self, query: str, limit: int = RANKED) -> list[str]:
        scores = self.index.get_scores(self.tokens(query))
        order = sorted(range(len(self.ids)), key=lambda index: (-scores[index], index))
        return [self.ids[index] for index in order[:limit] if scores[index] > 0]


# --- running ------------------------------------------------------------------------------------


@dataclass
class Run:
    rankings: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # mode -> query -> documents
    scored: dict[str, dict[str, list[tuple[str, float]]]] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    ingest_seconds: float = 0.0
    chunks: int = 0


def embedder_environment(embedder: str) -> dict[str, str] | None:
    """FILEQUEUE_* variables of an embedder, or None when its model is missing."""
    if embedder == "hashing-v2":
        return {"FILEQUEUE_EMBEDDER": "hashing", "FILEQUEUE_EMBEDDING_MODEL": "hashing-v2"}
    if embedder == "local":
        path = Path(os.environ.get("FILEQUEUE_EMBEDDING_MODEL_PATH", LOCAL_MODEL))
        if not (path / "config.json").is_file():
            return None
        return {"FILEQUEUE_EMBEDDER": "local", "FILEQUEUE_EMBEDDING_MODEL_PATH": str(path)}
    raise ValueError(f"unknown embedder {embedder!r}")


def doc_id(key: str, collection: str) -> str:
    return key.removeprefix(f"uploads/{collection}/").removesuffix(".txt")


def latency_queries(queries: Sequence[str]) -> dict[str, list[str]]:
    """Short queries (first words of each) and long ones (each continued by the next ones, cut at 50 words)."""
    words = [_WORD.findall(query) for query in queries]
    short = [" ".join(query[:SHORT_WORDS]) for query in words if query]
    long: list[str] = []
    for index in range(len(words)):
        joined: list[str] = []
        offset = 0
        while len(joined) < LONG_WORDS and any(words):
            joined += words[(index + offset) % len(words)]
            offset += 1
        long.append(" ".join(joined[:LONG_WORDS]))
    return {"short": short[:LATENCY_QUERIES], "long": long[:LATENCY_QUERIES]}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 2),
    }


def ingest(collection: Collection, stack: Any, env: dict[str, str]) -> float:
    """Upload every document of `collection` through S3 while `filequeue worker` drains the queue; seconds taken.

    The worker drains the queue while the uploads fill it, as in production, in waves that keep the
    queue short: moto's ReceiveMessage costs time in proportion to the messages queued.
    """
    demo = _stack()
    s3 = _aws_client("s3", env)
    started = time.monotonic()
    with Path(os.devnull).open("wb") as log, demo.running_worker(env, 2, log=log) as worker:

        def upload(item: tuple[str, str]) -> object:
            doc, text = item
            key = f"uploads/{collection.name}/{doc}.txt"
            return s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=text.encode())

        items = list(collection.docs.items())
        with ThreadPoolExecutor(UPLOAD_THREADS) as uploads:
            for start in range(0, len(items), UPLOAD_WAVE):
                list(uploads.map(upload, items[start : start + UPLOAD_WAVE]))  # re-raises an upload's error
                done = min(len(items), start + UPLOAD_WAVE)
                demo.wait_until_processed(stack.database_url, done, timeout=3600, worker=worker)
    return time.monotonic() - started


def run_collection(collection: Collection, environment: dict[str, str], *, scale_chunks: int = 0) -> Run:
    """Ingest `collection` through S3 -> SQS -> worker on a fresh stack and rank every query in every mode."""
    import psycopg
    from pgvector.psycopg import register_vector

    from handlers.api import FileQueue
    from handlers.ops import lexical
    from handlers.settings import Settings

    demo = _stack()
    stack = demo.start_local_stack()
    run = Run()
    try:
        env = {**stack.environment, **environment}
        run.ingest_seconds = round(ingest(collection, stack, env), 1)
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            register_vector(conn)
            _compact(conn)
            lexical.refresh_statistics(conn)
            keys = {
                int(chunk): str(key)
                for chunk, key in conn.execute(
                    "SELECT chunk.id, document.key FROM chunks AS chunk JOIN documents AS document"
                    " ON document.id = chunk.document_id"
                )
            }
            run.chunks = len(keys)
            with FileQueue(Settings.from_env(env)) as fq:
                _rank_all(run, collection, fq, conn, keys)
                _time_all(run, collection, fq, conn, "at_collection_size")
                if scale_chunks:
                    _grow_to(conn, scale_chunks)
                    _time_all(run, collection, fq, conn, f"at_{scale_chunks}_chunks")
    finally:
        stack.stop()
    return run


def _rank_all(run: Run, collection: Collection, fq: Any, conn: psycopg.Connection[Any], keys: dict[int, str]) -> None:
    from handlers.ops import lexical

    prefix = f"uploads/{collection.name}/"
    reference = Bm25Reference(collection.docs)
    for mode in MODES:
        run.rankings[mode] = {}
    run.scored = {"vector": {}, "bm25_postgres": {}}
    for query_id in sorted(collection.qrels):
        query = collection.queries[query_id]
        run.rankings["bm25_reference"][query_id] = reference.rank(query)
        for mode in ("vector", "hybrid", "text"):
            hits = fq.search(query, mode=mode, limit=RANKED, prefix=prefix)
            scored = _first_scores((doc_id(hit.key, collection.name), hit.score) for hit in hits)
            run.rankings[mode][query_id] = [doc for doc, _ in scored]
            if mode == "vector":
                run.scored["vector"][query_id] = scored
        bm25 = _first_scores(
            (doc_id(keys[hit.chunk_id], collection.name), hit.score)
            for hit in lexical.rank(conn, query, limit=RANKED, key_prefix=prefix)
        )
        run.rankings["bm25_postgres"][query_id] = [doc for doc, _ in bm25]
        run.scored["bm25_postgres"][query_id] = bm25


def _first_scores(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    seen: dict[str, float] = {}
    for doc, score in pairs:
        seen.setdefault(doc, score)
    return list(seen.items())


def _time_all(run: Run, collection: Collection, fq: Any, conn: psycopg.Connection[Any], label: str) -> None:
    from handlers.ops import lexical

    queries = latency_queries([collection.queries[q] for q in sorted(collection.qrels)])
    searches: dict[str, Callable[[str], object]] = {
        "vector": lambda q: fq.search(q, mode="vector", limit=LATENCY_LIMIT),
        "hybrid": lambda q: fq.search(q, mode="hybrid", limit=LATENCY_LIMIT),
        "text": lambda q: fq.search(q, mode="text", limit=LATENCY_LIMIT),
        "bm25_postgres": lambda q: lexical.rank(conn, q, limit=LATENCY_LIMIT),
    }
    result: dict[str, dict[str, float]] = {}
    for kind, texts in queries.items():
        for mode, search in searches.items():
            for text in texts[:5]:
                search(text)  # warm the caches
            samples: list[float] = []
            for text in texts:
                started = time.perf_counter()
                search(text)
                samples.append((time.perf_counter() - started) * 1000)
            result[f"{mode} {kind}"] = percentiles(samples)
    run.latency_ms[label] = result


def _grow_to(conn: psycopg.Connection[Any], target: int) -> None:
    """Copy the stored chunks (text and vector) under new documents until `target` chunks, then compact."""
    from handlers.ops import lexical

    [(chunks,)] = conn.execute("SELECT count(*) FROM chunks").fetchall()
    copy = 0
    while chunks < target:
        copy += 1
        conn.execute(
            "INSERT INTO documents (bucket, key, status, chunk_count)"
            " SELECT bucket, 'scale/' || %s || '/' || key, status, chunk_count FROM documents"
            " WHERE key NOT LIKE 'scale/%%'",
            (copy,),
        )
        conn.execute(
            "INSERT INTO chunks (document_id, ordinal, page, char_start, char_end, text, embedding_model,"
            " embedding_dimension, embedding)"
            " SELECT copy.id, chunk.ordinal, chunk.page, chunk.char_start, chunk.char_end, chunk.text,"
            " chunk.embedding_model, chunk.embedding_dimension, chunk.embedding"
            " FROM chunks AS chunk JOIN documents AS source ON source.id = chunk.document_id"
            " JOIN documents AS copy ON copy.key = 'scale/' || %s || '/' || source.key"
            " WHERE source.key NOT LIKE 'scale/%%' LIMIT %s",
            (copy, target - chunks),
        )
        [(chunks,)] = conn.execute("SELECT count(*) FROM chunks").fetchall()
        if chunks % 20_000 < 5_000:
            _compact(conn)
    from handlers.ops.compaction import CompactOptions, compact

    compact(conn, CompactOptions(force_seal=True))
    conn.execute("ANALYZE chunks")
    lexical.refresh_statistics(conn)


# --- reporting ----------------------------------------------------------------------------------


def summarise(collection: Collection, runs: dict[str, Run]) -> dict[str, Any]:
    """Metrics per embedder and mode, the fusion sweep, and latencies, for one collection."""
    result: dict[str, Any] = {"documents": len(collection.docs), "queries": len(collection.qrels), "embedders": {}}
    for embedder, run in runs.items():
        metrics = {mode: evaluate(run.rankings[mode], collection.qrels) for mode in MODES}
        fused = {
            name: evaluate(
                {q: rule(run.scored["vector"][q], run.scored["bm25_postgres"][q]) for q in collection.qrels},
                collection.qrels,
            )
            for name, rule in fusion_rules().items()
        }
        result["embedders"][embedder] = {
            "chunks": run.chunks,
            "ingest_seconds": run.ingest_seconds,
            "metrics": metrics,
            "fusion": fused,
            "latency_ms": run.latency_ms,
            "scored_rankings": run.scored,
        }
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| collection | embedder | mode | nDCG@10 | MRR@10 | recall@100 | x BM25 (nDCG) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, collection in results["collections"].items():
        for embedder, data in collection["embedders"].items():
            reference = data["metrics"]["bm25_reference"]["ndcg@10"] or 1.0
            rows = list(data["metrics"].items())
            best = max(data["fusion"].items(), key=lambda item: item[1]["ndcg@10"])
            rows.append((f"best fusion: {best[0]}", best[1]))
            for mode, metric in rows:
                lines.append(
                    f"| {name} | {embedder} | {mode} | {metric['ndcg@10']:.3f} | {metric['mrr@10']:.3f}"
                    f" | {metric['recall@100']:.3f} | {metric['ndcg@10'] / reference:.2f} |"
                )
    lines += ["", "| collection | embedder | size | mode | query | p50 ms | p95 ms |", "|---|---|---|---|---|---|---|"]
    for name, collection in results["collections"].items():
        for embedder, data in collection["embedders"].items():
            for size, modes in data["latency_ms"].items():
                for mode, figures in modes.items():
                    mode_name, kind = mode.split()
                    lines.append(
                        f"| {name} | {embedder} | {size} | {mode_name} | {kind} | {figures['p50']} | {figures['p95']} |"
                    )
    return "\n".join(lines)


def fusion_table(results: dict[str, Any]) -> str:
    """Per embedder, each fusion rule's nDCG@10 per collection and whether it is never below its best component."""
    lines = ["| embedder | rule | " + " | ".join(results["collections"]) + " | never below best component |"]
    lines.append("|---|---|" + "---|" * len(results["collections"]) + "---|")
    embedders = {e for c in results["collections"].values() for e in c["embedders"]}
    for embedder in sorted(embedders):
        collections = [c["embedders"][embedder] for c in results["collections"].values() if embedder in c["embedders"]]
        if len(collections) != len(results["collections"]):
            continue
        for rule in fusion_rules():
            values = [data["fusion"][rule]["ndcg@10"] for data in collections]
            floor = [
                max(data["metrics"]["vector"]["ndcg@10"], data["metrics"]["bm25_postgres"]["ndcg@10"])
                for data in collections
            ]
            ok = all(value >= best for value, best in zip(values, floor, strict=True))
            lines.append(
                f"| {embedder} | {rule} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {'yes' if ok else 'no'} |"
            )
    return "\n".join(lines)


def subset(collection: Collection, docs: int | None, queries: int | None) -> Collection:
    """The first `queries` judged queries and `docs` documents, their relevant documents first."""
    chosen_queries = sorted(collection.qrels, key=int)[:queries] if queries else sorted(collection.qrels, key=int)
    if not docs:
        return Collection(
            collection.name, collection.docs, collection.queries, {q: collection.qrels[q] for q in chosen_queries}
        )
    relevant = first_occurrences(doc for q in chosen_queries for doc in sorted(collection.qrels[q], key=int))
    kept = first_occurrences([*relevant, *collection.docs])[:docs]
    qrels = {q: frozenset(collection.qrels[q] & set(kept)) for q in chosen_queries}
    qrels = {q: found for q, found in qrels.items() if found}
    return Collection(collection.name, {d: collection.docs[d] for d in kept}, collection.queries, qrels)


def run(
    collections: Sequence[str],
    embedders: Sequence[str],
    *,
    docs: int | None = None,
    queries: int | None = None,
    scale_chunks: int = 0,
) -> dict[str, Any]:
    wrong = verify()
    if wrong:
        raise SystemExit(f"the vendored collections do not match their sha256 digests: {', '.join(wrong)}")
    results: dict[str, Any] = {"cpus": os.cpu_count(), "collections": {}, "skipped": {}}
    for name in collections:
        collection = subset(load(name), docs, queries)
        runs: dict[str, Run] = {}
        for embedder in embedders:
            environment = embedder_environment(embedder)
            if environment is None:
                results["skipped"][embedder] = (
                    "no model at .filequeue/models/minilm-l6-static (bench/make_local_model.py)"
                )
                continue
            print(
                f"{name} / {embedder}: {len(collection.docs)} documents, {len(collection.qrels)} queries",
                file=sys.stderr,
            )
            runs[embedder] = run_collection(collection, environment, scale_chunks=scale_chunks)
        results["collections"][name] = summarise(collection, runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", nargs="+", default=["cacm", "cisi"])
    parser.add_argument("--embedders", nargs="+", default=["hashing-v2", "local"])
    parser.add_argument("--docs", type=int, help="only this many documents (the judged ones first)")
    parser.add_argument("--queries", type=int, help="only this many queries")
    parser.add_argument("--scale-chunks", type=int, default=0, help="also time every mode at this many chunks")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--rankings", type=Path, help="also write each query's vector and BM25 rankings here")
    args = parser.parse_args()
    results = run(
        args.collections, args.embedders, docs=args.docs, queries=args.queries, scale_chunks=args.scale_chunks
    )
    rankings = {
        name: {embedder: data.pop("scored_rankings") for embedder, data in collection["embedders"].items()}
        for name, collection in results["collections"].items()
    }
    if args.rankings:
        args.rankings.write_text(json.dumps(rankings) + "\n")
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print()
    print(fusion_table(results))


if __name__ == "__main__":
    main()
