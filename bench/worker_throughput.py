"""Files per second through the worker with 1 and 2 processes, and the poll loop's overhead.

Each run starts a fresh embedded stack (moto + pgserver), uploads COPIES x the demo set under
distinct keys (real S3 notifications fill the queue), then starts the clock and the worker and
stops the clock when every file has its row: worker start-up (spawn, imports, connections) counts.
The direct run feeds the same notifications straight into `handle_batch`, ten per batch, in this
process, from a cold start too: the difference is the cost of receiving, deleting and supervising.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.develop.demo import (
    DEMO_FILES,
    demo_file_bytes,
    running_worker,
    start_local_stack,
    wait_until_processed,
)
from handlers.develop.devstack import aws_client

if TYPE_CHECKING:
    from collections.abc import Callable


def _files(copies: int) -> dict[str, bytes]:
    return {
        key.replace("uploads/", f"uploads/copy{copy}/"): demo_file_bytes(source)
        for copy in range(copies)
        for key, source in DEMO_FILES.items()
    }


def through_worker(files: dict[str, bytes], processes: int) -> float:
    stack = start_local_stack()
    try:
        s3 = aws_client("s3", stack.environment)
        for key, body in files.items():
            s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=body)
        started = time.monotonic()
        with running_worker(stack.environment, processes) as worker:
            wait_until_processed(stack.database_url, len(files), timeout=900, worker=worker)
            return time.monotonic() - started
    finally:
        stack.stop()


def direct(files: dict[str, bytes]) -> float:
    """Time `handle_batch` on the same notifications, in a child process like the worker's.

    moto's server runs in this process; calling the handler here would make it share a GIL with
    moto and look slower than it is.
    """
    from handlers.ops.s3_events import s3_notification

    stack = start_local_stack()
    try:
        s3 = aws_client("s3", stack.environment)
        bodies: list[str] = []
        for key, body in files.items():
            response: dict[str, Any] = s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=body)
            notification = s3_notification(
                stack.resources.bucket, key, size=len(body), version_id=response.get("VersionId")
            )
            bodies.append(json.dumps(notification))
        with tempfile.NamedTemporaryFile("w", suffix=".json") as batch_file:
            json.dump(bodies, batch_file)
            batch_file.flush()
            child = subprocess.run(
                [sys.executable, __file__, "--direct-child", batch_file.name],
                env={**os.environ, **stack.environment},
                capture_output=True,
                text=True,
                check=True,
            )
        return float(child.stdout.strip().splitlines()[-1])
    finally:
        stack.stop()


def direct_child(batch_file: str) -> None:
    from handlers.batch import handle_batch
    from handlers.ops.s3_events import sqs_event
    from handlers.runtime_context import DeadlineContext

    bodies: list[str] = json.loads(Path(batch_file).read_text())
    started = time.monotonic()
    for start in range(0, len(bodies), 10):
        handle_batch(sqs_event(bodies[start : start + 10]), DeadlineContext.lasting(900))
    print(time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=5, help="copies of the demo set (8 files each)")
    parser.add_argument("--direct-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_child:
        direct_child(args.direct_child)
        return
    files = _files(args.copies)
    results: dict[str, Any] = {"files": len(files), "cpus": os.cpu_count()}
    runs: list[tuple[str, Callable[[], float]]] = [
        ("worker_1_process", lambda: through_worker(files, 1)),
        ("worker_2_processes", lambda: through_worker(files, 2)),
        ("direct_handler", lambda: direct(files)),
    ]
    for name, run in runs:
        seconds = run()
        results[name] = {"seconds": round(seconds, 2), "files_per_second": round(len(files) / seconds, 2)}
        print(f"{name:20} {seconds:7.2f} s  {len(files) / seconds:6.2f} files/s")
    overhead = results["worker_1_process"]["seconds"] / results["direct_handler"]["seconds"] - 1
    results["poll_loop_overhead_percent"] = round(overhead * 100, 1)
    print(f"poll loop overhead (1 process vs direct): {overhead * 100:.1f} %")
    out = Path(__file__).parent / "results" / "worker_throughput.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
