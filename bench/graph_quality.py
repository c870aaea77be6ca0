"""Quality and cost of the `similar` relation on public test collections (CACM, CISI), through the product's real path.

Per collection and embedder, a fresh embedded stack: every document is uploaded to moto's S3, whose
notifications fill the SQS queue that `filequeue worker` (2 processes, its compaction off so that
ingestion is timed alone) drains into PostgreSQL (pgserver), as bench/retrieval.py does. Then
compaction seals the chunks, the lexical statistics are counted, and the linking pass
(`handlers.ops.similar.link_pending`) computes every document's `similar` neighbours; its
database CPU is read from /proc for the backend that ran it.

Neighbour lists compared (each document's first 5, best first):
- product: the `similar` edges the pass wrote (BM25 "more like this" inside PostgreSQL, shared
  nearest neighbours, floor applied), in the order graph reads list them: the document's own
  choices by weight, then the documents that chose it;
- vector: the 5 nearest documents by `documents.embedding` (the HNSW index), no floor: the signal
  the product used before, for each embedder;
- fused: reciprocal rank fusion (k 60) of the product's BM25 ranking and the vector ranking (each
  the first 20);
- bm25_reference: rank_bm25 (BM25Okapi, k1 1.2, b 0.75) with each document's text as the query, the
  document itself left out, tokenised as bench/retrieval.py's reference.
Metrics: coverage = share of documents with text that have >= 1 neighbour; co-relevance@1 = share of
judged documents (relevant to >= 1 query) whose first neighbour is relevant to a query the document
is relevant to (a document without neighbours counts as a miss); co-relevance@5 = share of the
neighbours among judged documents' first 5 that are (micro-averaged over the neighbours listed).

    python bench/graph_quality.py [--collections cacm cisi] [--embedders hashing-v2 local] [--docs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ir_collections import Collection, load, verify
from bench.retrieval import (
    Bm25Reference,
    _stack,
    doc_id,
    embedder_environment,
    ingest,
    subset,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

RESULTS = Path(__file__).parent / "results" / "graph_quality.json"
NEIGHBOURS = 5
FUSED_DEPTH = 20
RRF_K = 60
LISTS = ("product", "vector", "fused", "bm25_reference")


def relevant_queries(collection: Collection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for query, documents in collection.qrels.items():
        for document in documents:
            found.setdefault(document, set()).add(query)
    return found


def score_lists(lists: dict[str, list[str]], collection: Collection) -> dict[str, float]:
    """Coverage, co-relevance at 1 and 5 of neighbour lists (document -> neighbours, best first)."""
    with_text = [document for document, text in collection.docs.items() if text.strip()]
    queries = relevant_queries(collection)
    judged = [document for document in with_text if document in queries]
    first = [
        bool(lists.get(document) and queries.get(lists[document][0], set()) & queries[document]) for document in judged
    ]
    five = [
        bool(queries.get(neighbour, set()) & queries[document])
        for document in judged
        for neighbour in lists.get(document, [])[:NEIGHBOURS]
    ]
    return {
        "coverage": round(sum(bool(lists.get(document)) for document in with_text) / len(with_text), 4),
        "co_relevance_at_1": round(sum(first) / len(first), 4),
        "co_relevance_at_5": round(sum(five) / max(len(five), 1), 4),
        "neighbours_per_document": round(
            sum(len(lists.get(d, [])[:NEIGHBOURS]) for d in with_text) / len(with_text), 2
        ),
    }


def backend_cpu_seconds(pid: int) -> float:
    """User + system CPU of a PostgreSQL backend (same machine: pgserver)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def product_lists(conn: psycopg.Connection[Any], keys: dict[int, str], name: str) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for source, target in conn.execute(
        "SELECT source_id, target_id FROM edges WHERE relation = 'similar'"
        " ORDER BY source_id, owner_document_id <> source_id, weight DESC, target_id"
    ):
        lists.setdefault(doc_id(keys[int(source)], name), []).append(doc_id(keys[int(target)], name))
    return lists


def vector_ranking(conn: psycopg.Connection[Any], document: int, depth: int) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM documents WHERE id <> %(id)s AND status = 'ready' AND embedding IS NOT NULL"
        " ORDER BY embedding <=> (SELECT embedding FROM documents WHERE id = %(id)s) LIMIT %(depth)s",
        {"id": document, "depth": depth},
    ).fetchall()
    return [int(row[0]) for row in rows]


def rrf(rankings: Sequence[Sequence[int]]) -> list[int]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores, key=lambda item: (-scores[item], item))


def run_collection(collection: Collection, embedder_env: dict[str, str]) -> dict[str, Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    from handlers.adapters.rows import scalar
    from handlers.ops import lexical
    from handlers.ops.compaction import CompactOptions, compact
    from handlers.ops.similar import SimilarOptions, link_pending, rank_document

    demo = _stack()
    stack = demo.start_local_stack()
    try:
        env = {**stack.environment, **embedder_env, "FILEQUEUE_COMPACTION_INTERVAL_SECONDS": "0"}
        ingest_seconds = ingest(collection, stack, env)
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            register_vector(conn)
            compact(conn, CompactOptions(force_seal=True, similar=None))
            lexical.refresh_statistics(conn)
            pid = conn.info.backend_pid
            cpu_before = backend_cpu_seconds(pid)
            report = link_pending(conn, SimilarOptions())
            link_cpu = backend_cpu_seconds(pid) - cpu_before
            keys = {int(i): str(k) for i, k in conn.execute("SELECT id, key FROM documents WHERE status = 'ready'")}
            lists: dict[str, dict[str, list[str]]] = {"product": product_lists(conn, keys, collection.name)}
            vector: dict[str, list[str]] = {}
            fused: dict[str, list[str]] = {}
            for document, key in keys.items():
                by_vector = vector_ranking(conn, document, FUSED_DEPTH)
                by_bm25 = list(rank_document(conn, document).neighbours)
                name = doc_id(key, collection.name)
                vector[name] = [doc_id(keys[n], collection.name) for n in by_vector[:NEIGHBOURS] if n in keys]
                fused[name] = [
                    doc_id(keys[n], collection.name) for n in rrf([by_vector, by_bm25])[:NEIGHBOURS] if n in keys
                ]
            lists["vector"], lists["fused"] = vector, fused
            edges = int(scalar(conn, "SELECT count(*) FROM edges WHERE relation = 'similar'"))
    finally:
        stack.stop()
    documents = len(keys)
    return {
        "documents": documents,
        "similar_edges": edges,
        "lists": {name: score_lists(found, collection) for name, found in lists.items()},
        "cost": {
            "ingest_seconds_without_linking": round(ingest_seconds, 1),
            "link_seconds": report.seconds,
            "link_db_cpu_seconds_per_document": round(link_cpu / max(documents, 1), 5),
            "ingest_documents_per_second_without_linking": round(documents / ingest_seconds, 2),
            "ingest_documents_per_second_with_linking": round(documents / (ingest_seconds + report.seconds), 2),
        },
    }


def reference_lists(collection: Collection) -> dict[str, list[str]]:
    with_text = {document: text for document, text in collection.docs.items() if text.strip()}
    reference = Bm25Reference(with_text)
    return {
        document: [found for found in reference.rank(text, NEIGHBOURS + 1) if found != document][:NEIGHBOURS]
        for document, text in with_text.items()
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| collection | embedder | list | coverage | co-rel@1 | co-rel@5 | neighbours/doc |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name, collection in results["collections"].items():
        reference = collection["bm25_reference"]
        lines.append(
            f"| {name} | - | bm25_reference | {reference['coverage']:.3f} | {reference['co_relevance_at_1']:.3f}"
            f" | {reference['co_relevance_at_5']:.3f} | {reference['neighbours_per_document']} |"
        )
        for embedder, run in collection["embedders"].items():
            for label, scores in run["lists"].items():
                lines.append(
                    f"| {name} | {embedder} | {label} | {scores['coverage']:.3f} | {scores['co_relevance_at_1']:.3f}"
                    f" | {scores['co_relevance_at_5']:.3f} | {scores['neighbours_per_document']} |"
                )
    lines += [
        "",
        "| collection | embedder | ingest docs/s (no linking) | with linking | link DB CPU s/doc |",
        "|---|---|---:|---:|---:|",
    ]
    for name, collection in results["collections"].items():
        for embedder, run in collection["embedders"].items():
            cost = run["cost"]
            lines.append(
                f"| {name} | {embedder} | {cost['ingest_documents_per_second_without_linking']}"
                f" | {cost['ingest_documents_per_second_with_linking']} | {cost['link_db_cpu_seconds_per_document']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", nargs="+", default=["cacm", "cisi"])
    parser.add_argument("--embedders", nargs="+", default=["hashing-v2", "local"])
    parser.add_argument("--docs", type=int, default=None, help="only the first N documents (a quick run)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if wrong := verify():
        raise SystemExit(f"sha256 mismatch: {', '.join(wrong)}")
    results: dict[str, Any] = {"collections": {}, "notes": []}
    for name in args.collections:
        collection = subset(load(name), args.docs, None)
        entry: dict[str, Any] = {
            "bm25_reference": score_lists(reference_lists(collection), collection),
            "embedders": {},
        }
        for embedder in args.embedders:
            environment = embedder_environment(embedder)
            if environment is None:
                results["notes"].append(f"{embedder}: no model at .filequeue/models/minilm-l6-static; skipped")
                continue
            entry["embedders"][embedder] = run_collection(collection, environment)
        results["collections"][name] = entry
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    for note in results["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
