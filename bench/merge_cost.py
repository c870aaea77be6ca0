"""What a merge costs when it copies each chunk's full-text vector, against computing it again.

Side by side on one pgserver, in rounds of alternating order, each round on two fresh databases:

- generated: the schema up to migration 0006, where `tsv` is a generated column, so every row a
  merge copies has its `to_tsvector('english', text)` computed again;
- copied: every migration, where `tsv` is a plain column filled by a trigger when a row arrives
  without one, so a merge copies it.

Each database gets the same rows (a deterministic synthetic corpus embedded by the hashing
embedder), written through the growing area and sealed into `--segments` segments, which one
`compact --merge-all` then merges. Measured: the PostgreSQL server's CPU seconds for the load (the
writers' COPY, where the trigger replaces the generated column) and for the merge, and the merge's
wall seconds split at its steps: copying the rows into the new table, then building its indexes.

Results go to bench/results/merge_cost.json.

    python -m bench.merge_cost [--rows 20000] [--segments 20] [--rounds 3] [--output FILE]   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo

from bench.ingest import server_cpu_seconds
from bench.search_latency import COPY_COLUMNS, DIMENSION, SEED, Corpus, seeded_rng
from handlers.adapters import migrate as migrate_module
from handlers.adapters.embedders.hashing import HashingEmbedder
from handlers.adapters.migrate import StoreConfig, migrate
from handlers.develop.devstack import start_postgres
from handlers.ops.compaction import CompactOptions, compact

RESULTS = Path(__file__).parent / "results" / "merge_cost.json"
GENERATED_UP_TO = 6  # the last migration with `tsv` as a generated column
# Only the steps both schemas have: BM25 statistics and similar links came after the generated column.
ONLY_SEGMENTS = CompactOptions(statistics=False, similar=None)
CHUNKS_PER_DOCUMENT = 50


def corpus(rows: int) -> tuple[list[str], list[list[float]]]:
    generator = Corpus(seeded_rng(SEED))
    texts = [generator.chunk(number % len(generator.topics)) for number in range(rows)]
    return texts, HashingEmbedder(DIMENSION).embed(texts)


def migrate_variant(conn: psycopg.Connection[Any], variant: str) -> None:
    everything = migrate_module.load_migrations
    if variant == "generated":
        migrate_module.load_migrations = lambda: [m for m in everything() if m.version <= GENERATED_UP_TO]
    try:
        migrate(conn, StoreConfig("hashing-v1", DIMENSION))
    finally:
        migrate_module.load_migrations = everything


def load(conn: psycopg.Connection[Any], texts: list[str], vectors: list[list[float]], segments: int) -> None:
    """Write the rows document by document, sealing a segment after every rows / segments of them."""
    documents = len(texts) // CHUNKS_PER_DOCUMENT
    ids = [
        row[0]
        for row in conn.execute(
            "INSERT INTO documents (bucket, key, status, content_type, chunk_count, embedding_model)"
            " SELECT 'bench', format('uploads/doc-%%s.txt', number), 'ready', 'text/plain', %s, 'hashing-v1'"
            " FROM generate_series(1, %s) AS number RETURNING id",
            (CHUNKS_PER_DOCUMENT, documents),
        ).fetchall()
    ]
    per_segment = max(1, documents // segments)
    for number, document_id in enumerate(ids):
        first = number * CHUNKS_PER_DOCUMENT
        with conn.transaction(), conn.cursor().copy(COPY_COLUMNS) as copy:
            copy.set_types(["int8", "int4", "int4", "int4", "int4", "text", "text", "int4", "vector"])
            for ordinal in range(CHUNKS_PER_DOCUMENT):
                text = texts[first + ordinal]
                vector = Vector(vectors[first + ordinal])
                copy.write_row((document_id, ordinal, 1, 0, len(text), text, "hashing-v1", DIMENSION, vector))
        if (number + 1) % per_segment == 0:
            compact(conn, replace(ONLY_SEGMENTS, force_seal=True, merge_factor=1000))


def measure(
    server_url: str, pgdata: Path, variant: str, *, texts: list[str], vectors: list[list[float]], segments: int
) -> dict[str, float]:
    name = f"bench_merge_{variant}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(make_conninfo(server_url, dbname=name), autocommit=True) as conn:
            migrate_variant(conn, variant)
            register_vector(conn)
            cpu = server_cpu_seconds(pgdata)
            load(conn, texts, vectors, segments)
            load_cpu = server_cpu_seconds(pgdata) - cpu
            steps: dict[str, float] = {}
            started = time.perf_counter()

            def note(step: str) -> None:
                steps.setdefault(step, time.perf_counter() - started)

            cpu = server_cpu_seconds(pgdata)
            report = compact(conn, replace(ONLY_SEGMENTS, merge_all=True), checkpoint=note)
            merge_seconds = time.perf_counter() - started
            merge_cpu = server_cpu_seconds(pgdata) - cpu
            if report.merged_rows != len(texts):
                raise RuntimeError(f"{variant}: merged {report.merged_rows} of {len(texts)} rows")
            return {
                "load_db_cpu_seconds": load_cpu,
                "merge_seconds": merge_seconds,
                "merge_db_cpu_seconds": merge_cpu,
                "copy_seconds": steps["copied"],
                "index_seconds": steps["indexed"] - steps["copied"],
            }
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(rows: int, segments: int, rounds: int) -> dict[str, Any]:
    texts, vectors = corpus(rows)
    root = Path(tempfile.mkdtemp(prefix="filequeue-bench-merge-"))
    server_url, server = start_postgres(root / "pgdata")
    measured: dict[str, list[dict[str, float]]] = {"generated": [], "copied": []}
    try:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET maintenance_work_mem = '256MB'")
            admin.execute("SELECT pg_reload_conf()")
        for round_number in range(rounds):
            order = ["generated", "copied"] if round_number % 2 == 0 else ["copied", "generated"]
            for variant in order:
                result = measure(server_url, root / "pgdata", variant, texts=texts, vectors=vectors, segments=segments)
                measured[variant].append(result)
                print(
                    f"round {round_number + 1} {variant:<10} " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()),
                    flush=True,
                )
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    medians = {
        variant: {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
        for variant, runs in measured.items()
    }
    return {
        "rows": rows,
        "segments_merged": segments,
        "rounds": rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "medians": medians,
        "copied_over_generated": {
            key: round(medians["copied"][key] / medians["generated"][key], 2) for key in medians["copied"]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS.name})")
    args = parser.parse_args()
    report = run(args.rows, args.segments, args.rounds)
    print(json.dumps(report, indent=2))
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
