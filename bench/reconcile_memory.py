"""Peak memory of `filequeue reconcile` as the bucket grows: it must follow the page size, not the key count.

For each bucket size, moto's server holds that many objects under `uploads/` and a fresh pgserver
database holds documents for 90% of them (same ETag and size: unchanged), plus documents for keys that
are no longer in the bucket (gone) - so both sorted streams of the merge are exercised. `reconcile`
then runs as a dry run (the comparison, without sending events), under tracemalloc, at two page sizes.
The ratios compare the runs of this one process side by side. Results go to
bench/results/reconcile_memory.json.

    python bench/reconcile_memory.py [--small 2000] [--large 16000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from handlers.adapters.migrate import StoreConfig, migrate
from handlers.develop.devstack import MotoServer, aws_client, aws_environment, create_ingest_resources, start_postgres
from handlers.ops.reconcile import reconcile

RESULTS = Path(__file__).parent / "results" / "reconcile_memory.json"


def _body(index: int) -> bytes:
    return f"# Document {index}\n".encode()


def _fill(s3: Any, conn: psycopg.Connection[Any], bucket: str, keys: int) -> None:
    s3.create_bucket(Bucket=bucket)
    for index in range(keys):
        s3.put_object(Bucket=bucket, Key=f"uploads/doc-{index:07d}.md", Body=_body(index))
    with conn.cursor().copy("COPY documents (bucket, key, etag, size, status) FROM STDIN") as copy:
        for index in range(keys):
            if index % 10 == 9:
                continue  # new: in the bucket only
            body = _body(index)
            etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
            copy.write_row((bucket, f"uploads/doc-{index:07d}.md", etag, len(body), "ready"))
        for index in range(keys // 10):
            copy.write_row((bucket, f"uploads/gone-{index:07d}.md", "0", 1, "ready"))


def _measure(
    s3: Any, sqs: Any, conn: psycopg.Connection[Any], *, bucket: str, queue_url: str, page_size: int
) -> dict[str, Any]:
    tracemalloc.start()
    started = time.perf_counter()
    report = reconcile(s3, sqs, conn, bucket=bucket, queue_url=queue_url, dry_run=True, page_size=page_size)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "page_size": page_size,
        "listed": report.listed,
        "unchanged": report.unchanged,
        "new": report.new,
        "gone": report.gone,
        "seconds": round(seconds, 2),
        "peak_bytes": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=16000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="filequeue-bench-reconcile-"))
    url, postgres = start_postgres(root / "pgdata")
    moto = MotoServer.start()
    try:
        environment = aws_environment(moto.endpoint_url)
        s3, sqs = aws_client("s3", environment), aws_client("sqs", environment)
        queue_url = create_ingest_resources(moto.endpoint_url, bucket="bench-notified").queue_url
        runs = []
        for keys in (args.small, args.large):
            database = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            with psycopg.connect(make_conninfo(url, dbname=database), autocommit=True) as conn:
                migrate(conn, StoreConfig("hashing-v1", 256))
                bucket = f"bench-{keys}"
                _fill(s3, conn, bucket, keys)
                for page_size in (100, 1000):
                    runs.append(
                        {
                            "keys": keys,
                            **_measure(s3, sqs, conn, bucket=bucket, queue_url=queue_url, page_size=page_size),
                        }
                    )
        peak = {(run["keys"], run["page_size"]): run["peak_bytes"] for run in runs}
        results = {
            "machine": platform.platform(),
            "runs": runs,
            "keys_ratio": args.large / args.small,
            "peak_ratio_large_over_small_at_page_1000": round(peak[(args.large, 1000)] / peak[(args.small, 1000)], 2),
            "peak_ratio_large_over_small_at_page_100": round(peak[(args.large, 100)] / peak[(args.small, 100)], 2),
            "peak_ratio_page_1000_over_page_100_large": round(peak[(args.large, 1000)] / peak[(args.large, 100)], 2),
        }
        RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(results, indent=2))
    finally:
        moto.stop()
        postgres.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
