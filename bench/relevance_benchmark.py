"""Search relevance: top-1 and MRR@10 for plain and hybrid search, per embedder, on a written corpus.

The corpus (bench/relevance/corpus, plus three of the PDFs in tests/fixtures) holds 24 short
documents on distinct topics in Markdown, HTML, CSV, JSON and PDF; bench/relevance/questions.json
holds the questions, each with the document that answers it, in three kinds: `keyword` queries,
natural `question`s, and `paraphrase`s that share no content word with the answer.

Every embedder gets a fresh database on one pgserver, migrated like production; the documents go
through the production stages (extract, chunk, find mentions, embed) and `PostgresRepository`, and
each question through `search_chunks`. A document's rank is the rank of its best chunk among the
first 50 chunks returned. Embedders: `hashing-v1` and `hashing-v2`, and `local` when
FILEQUEUE_EMBEDDING_MODEL_PATH names a model2vec model directory (bench/make_local_model.py builds
one from all-MiniLM-L6-v2 offline).

    python bench/relevance_benchmark.py [--output bench/results/relevance.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import make_conninfo

from handlers.adapters.embedders.hashing import HashingEmbedder, LexicalHashingEmbedder
from handlers.adapters.migrate import StoreConfig, migrate
from handlers.adapters.postgres import PostgresRepository, open_pool
from handlers.develop.devstack import start_postgres
from handlers.model import ChunkingOptions, DocumentLinks, EventKind, ExtractLimits, FetchedObject, ObjectRef
from handlers.ops.search import search_chunks, tuning_for
from handlers.stages.chunking import chunk_document
from handlers.stages.extract import extract_text
from handlers.stages.mentions import document_names, find_mentions

if TYPE_CHECKING:
    from handlers.ports import Embedder

ROOT = Path(__file__).parent.parent
CORPUS = Path(__file__).parent / "relevance" / "corpus"
QUESTIONS = Path(__file__).parent / "relevance" / "questions.json"
RESULTS = Path(__file__).parent / "results" / "relevance.json"
BUCKET = "relevance"
CHUNKS_RETURNED = 50
CUTOFF = 10


def corpus_files() -> dict[str, bytes]:
    """Key (uploads/<name>) to bytes for every document of the corpus, the shipped PDFs included."""
    spec = json.loads(QUESTIONS.read_text(encoding="utf-8"))
    files = {f"uploads/{path.name}": path.read_bytes() for path in sorted(CORPUS.iterdir())}
    files.update({f"uploads/{name}": (ROOT / source).read_bytes() for name, source in spec["pdfs"].items()})
    return files


def questions() -> list[dict[str, str]]:
    listed: list[dict[str, str]] = json.loads(QUESTIONS.read_text(encoding="utf-8"))["questions"]
    return listed


def embedders(dimension: int) -> list[Embedder]:
    found: list[Embedder] = [HashingEmbedder(dimension), LexicalHashingEmbedder(dimension)]
    model_path = os.environ.get("FILEQUEUE_EMBEDDING_MODEL_PATH")
    if model_path:
        from handlers.adapters.embedders.local import LocalEmbedder

        found.append(LocalEmbedder(model_path))
    return found


def ingest(url: str, embedder: Embedder, files: dict[str, bytes]) -> float:
    """Store every file as the worker would; returns the seconds spent embedding."""
    repository = PostgresRepository(open_pool(url, max_size=2, timeout=10))
    embedding_seconds = 0.0
    try:
        for key, data in files.items():
            ref = ObjectRef(BUCKET, key, EventKind.CREATED, "ObjectCreated:Put", sequencer=f"{len(data):016X}")
            extracted = extract_text(data, key=key, declared_content_type=None, limits=ExtractLimits())
            chunks = chunk_document(extracted, ChunkingOptions())
            mentions = find_mentions(extracted.text, bucket=BUCKET, key=key, links=extracted.links)
            links = DocumentLinks(names=document_names(BUCKET, key), mentions=mentions)
            started = time.perf_counter()
            vectors = embedder.embed([chunk.text for chunk in chunks])
            embedding_seconds += time.perf_counter() - started
            fetched = FetchedObject(ref, key, len(data), hashlib.sha256(data).hexdigest(), None, None, None)
            repository.store_document(fetched, extracted, chunks, vectors, embedder.model, links=links)
    finally:
        repository.close()
    return embedding_seconds


def document_rank(keys: list[str], answer: str) -> int | None:
    """1-based rank of `answer` among the distinct documents in `keys` (best chunk first)."""
    seen: list[str] = []
    for key in keys:
        if key not in seen:
            seen.append(key)
    target = f"uploads/{answer}"
    return seen.index(target) + 1 if target in seen else None


def evaluate(conn: psycopg.Connection[Any], embedder: Embedder, asked: list[dict[str, str]]) -> dict[str, Any]:
    scores: dict[str, Any] = {}
    misses: dict[str, list[str]] = {}
    vectors = embedder.embed([question["query"] for question in asked])
    for mode in ("plain", "hybrid"):
        ranks: dict[str, list[int | None]] = defaultdict(list)
        misses[mode] = []
        for question, vector in zip(asked, vectors, strict=True):
            hits = search_chunks(
                conn,
                question["query"],
                vector,
                limit=CHUNKS_RETURNED,
                mode="hybrid" if mode == "hybrid" else "vector",
                tuning=tuning_for(embedder.model),
            )
            rank = document_rank([hit.key for hit in hits], question["answer"])
            ranks[question["kind"]].append(rank)
            ranks["all"].append(rank)
            if rank != 1:
                misses[mode].append(f"{question['query']!r} -> rank {rank}")
        scores[mode] = {kind: _summary(values) for kind, values in sorted(ranks.items())}
    return {"scores": scores, "misses": misses}


def _summary(ranks: list[int | None]) -> dict[str, float]:
    top1 = sum(1 for rank in ranks if rank == 1) / len(ranks)
    mrr = sum(1.0 / rank for rank in ranks if rank is not None and rank <= CUTOFF) / len(ranks)
    return {"top1": round(top1, 3), "mrr10": round(mrr, 3), "n": len(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimension", type=int, default=256, help="hashing embedders' dimension")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # font warnings of the shipped PDFs
    files, asked = corpus_files(), questions()
    data_dir = Path(tempfile.mkdtemp(prefix="filequeue-relevance-"))
    server_url, server = start_postgres(data_dir / "pgdata")
    results: dict[str, Any] = {"documents": len(files), "questions": len(asked), "embedders": {}}
    try:
        for embedder in embedders(args.dimension):
            name = f"relevance_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(server_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            url = make_conninfo(server_url, dbname=name)
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn, StoreConfig(embedder.model, embedder.dimension))
            embedding_seconds = ingest(url, embedder, files)
            with psycopg.connect(url, autocommit=True) as conn:
                from pgvector.psycopg import register_vector

                register_vector(conn)
                outcome = evaluate(conn, embedder, asked)
            outcome["embedding_seconds"] = round(embedding_seconds, 3)
            results["embedders"][embedder.model] = outcome
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{results['documents']} documents, {results['questions']} questions; document rank of the answer")
    width = max(len("embedder"), *(len(model) for model in results["embedders"]))
    print(f"{'embedder':<{width}} {'mode':<7} {'kind':<11} {'top-1':>6} {'MRR@10':>7} {'n':>4}")
    for model, outcome in results["embedders"].items():
        for mode, by_kind in outcome["scores"].items():
            for kind, summary in by_kind.items():
                print(
                    f"{model:<{width}} {mode:<7} {kind:<11} "
                    f"{summary['top1']:>6.3f} {summary['mrr10']:>7.3f} {summary['n']:>4}"
                )


if __name__ == "__main__":
    main()
