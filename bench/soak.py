"""Soak: the worker under faults on the embedded stack, checked key by key at the end (not part of CI).

Run from the repository root: `python -m bench.soak [--messages 10000 --keys 2000 ...]`. It stops by
itself (`--max-minutes`) and uses loopback only. What it does:

- plans a log of S3 events for `--keys` keys: puts (each a new S3 version with its own text), overwrites,
  deletes, duplicate deliveries (the same body sent twice), out-of-order pairs (a newer put of a key sent
  before the older one), every event with an S3-style sequencer; plus poison: bodies that are not S3
  events (they must end in the DLQ, each with an ERROR line) and hostile files (empty, corrupt PDF, an
  image, JSON with NUL and lone surrogates) that must be recorded as failed rows or stored cleaned, and
  never dead-lettered;
- feeds the messages, in the planned order, to a queue that dead-letters after four receives
  (at most FEED_BACKLOG waiting or in flight, as a stream of uploads arrives), and runs `filequeue worker` with
  `--processes` processes against it, with transient failures injected at the client: botocore's
  `before-send` hook answers `--s3-failure-rate` of the worker's S3 requests with 503 SlowDown, and a TCP
  proxy in front of PostgreSQL drops the connection of `--db-failure-rate` of the database transactions
  (at their BEGIN or their COMMIT);
- SIGKILLs or SIGTERMs a worker process every 30-90 s, and cuts the database for 20 s once;
- when the queue is empty (or time is up), compares the store with the final state the event log implies
  (present or absent, version, chunk count), looks for duplicated chunks, reads the DLQ, and writes the
  figures (throughput, redeliveries, peak RSS of the worker's process tree) to `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handlers.runtime_context import RecordGate

REPO_ROOT = Path(__file__).resolve().parent.parent
POISON_BODY_PREFIX = "not an S3 event #"
HOSTILE_FILES: dict[str, tuple[bytes, str | None]] = {
    # name -> (bytes, the error code of its failed row; None: stored, cleaned)
    "empty.txt": (b"", "empty_file"),
    # OCR reads images: a PNG signature over bytes no decoder accepts is a corrupt file.
    "image.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "corrupt_file"),
    "broken.pdf": (b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer <<", "corrupt_file"),
    "nul.json": (b'{"title": "nul\\u0000inside", "note": "lone \\ud800 surrogate and more words"}', None),
}
WORDS = [
    "queue",
    "worker",
    "document",
    "chunk",
    "vector",
    "lease",
    "receipt",
    "handler",
    "batch",
    "retry",
    "sequencer",
    "version",
    "bucket",
    "key",
    "extraction",
    "transaction",
    "index",
    "graph",
    "edge",
    "search",
    "embedding",
    "poison",
    "delivery",
    "visibility",
    "timeout",
    "grace",
]
# Messages waiting or in flight at most, while the feeder sends.
FEED_BACKLOG = 500
# Small limits so a run fits the shared machine: faults cost one visibility timeout each, not minutes.
WORKER_SETTINGS = {
    "FILEQUEUE_DEADLINE_MARGIN_SECONDS": "5",
    "FILEQUEUE_WRITE_MARGIN_SECONDS": "2",
    "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": "20",
    "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS": "25",
    "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "2",
    "FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS": "3",
    "FILEQUEUE_AUTO_MIGRATE": "false",
    "FILEQUEUE_HEALTH_PORT": "0",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
VISIBILITY_TIMEOUT = 12
# The simple-query messages psycopg sends to open and to commit a transaction (type byte, length, text):
# a database call is one transaction, and it fails when either is dropped (half the rate each).
TRANSACTION_EDGES = (b"Q\x00\x00\x00\x0aBEGIN", b"Q\x00\x00\x00\x0bCOMMIT")
MAX_RECEIVE_COUNT = 4


@dataclass
class Event:
    key: str
    sequencer: str
    kind: str  # "put" or "delete"
    version_id: str | None = None
    chunks: int = 0
    body: str = ""


@dataclass
class Plan:
    events: list[Event] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    """In send order: duplicates and out-of-order pairs included."""
    poison_bodies: list[str] = field(default_factory=list)
    hostile_keys: dict[str, str | None] = field(default_factory=dict)

    def expected(self) -> dict[str, Event]:
        """The final event of each key: the highest sequencer wins, whatever the delivery order."""
        final: dict[str, Event] = {}
        for event in self.events:
            if event.key not in final or event.sequencer > final[event.key].sequencer:
                final[event.key] = event
        return final


def text_for(rng: random.Random, key: str, version: int) -> bytes:
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))).capitalize() + "."
        for _ in range(rng.randint(3, 60))
    ]
    return f"# {key} version {version}\n\n{' '.join(sentences)}\n".encode()


def expected_chunks(data: bytes, key: str) -> int:
    from handlers.model import ChunkingOptions, ExtractLimits
    from handlers.settings import Settings
    from handlers.stages.chunking import chunk_document
    from handlers.stages.extract import extract_text

    defaults = Settings()
    extracted = extract_text(data, key=key, declared_content_type=None, limits=ExtractLimits())
    return len(chunk_document(extracted, ChunkingOptions(size=defaults.chunk_size, overlap=defaults.chunk_overlap)))


def build_plan(s3: Any, bucket: str, messages: int, keys: int, rng: random.Random) -> Plan:
    """Put every version in S3 and write the message bodies, `messages` of them in all."""
    from handlers.ops.s3_events import s3_notification

    plan = Plan()
    sequence = 0
    versions: dict[str, int] = {}
    sent_order: list[tuple[str, str]] = []  # (key, body)
    last_position: dict[str, int] = {}  # where the latest-sent event of each key sits in sent_order

    def next_sequencer() -> str:
        nonlocal sequence
        sequence += 1
        return f"{sequence:016X}"

    def put(key: str, data: bytes) -> str:
        response = s3.put_object(Bucket=bucket, Key=key, Body=data)
        event = Event(key, next_sequencer(), "put", response.get("VersionId"))
        notification = s3_notification(
            bucket, key, size=len(data), etag=response["ETag"].strip('"'), version_id=event.version_id
        )
        notification["Records"][0]["s3"]["object"]["sequencer"] = event.sequencer
        event.body = json.dumps(notification)
        plan.events.append(event)
        return event.body

    for name, (data, code) in HOSTILE_FILES.items():
        key = f"hostile/{name}"
        plan.hostile_keys[key] = code
        sent_order.append((key, put(key, data)))
    while len(sent_order) < messages:
        roll = rng.random()
        if roll < 0.01:
            body = f"{POISON_BODY_PREFIX}{len(plan.poison_bodies)}"
            plan.poison_bodies.append(body)
            sent_order.append(("", body))
            continue
        if roll < 0.11 and sent_order:
            sent_order.append(rng.choice(sent_order))  # a duplicate delivery: same body, new message id
            continue
        key = f"soak/key-{rng.randrange(keys):05d}.md"
        if roll < 0.21 and key in versions:
            event = Event(key, next_sequencer(), "delete")
            notification = s3_notification(bucket, key, event_name="ObjectRemoved:Delete")
            notification["Records"][0]["s3"]["object"]["sequencer"] = event.sequencer
            event.body = json.dumps(notification)
            plan.events.append(event)
            sent_order.append((key, event.body))
            last_position[key] = len(sent_order) - 1
            continue
        versions[key] = versions.get(key, 0) + 1
        data = text_for(rng, key, versions[key])
        body = put(key, data)
        plan.events[-1].chunks = expected_chunks(data, key)
        previous = last_position.get(key)
        sent_order.append((key, body))
        if previous is not None and rng.random() < 0.2:
            # Out of order: the newer put takes the older event's place and the older one arrives last.
            sent_order[previous], sent_order[-1] = sent_order[-1], sent_order[previous]
        last_position[key] = len(sent_order) - 1
    plan.bodies = [body for _, body in sent_order]
    return plan


class Feeder:
    """Sends the planned bodies in batches of ten while at most `backlog` messages wait or are in flight.

    A stream, as uploads arrive, rather than one burst: it also keeps moto's queue short, whose every
    send and receive scans all the messages the queue holds (a 10,000-message burst costs moto
    quadratic time). `sent` maps each message id to its body.
    """

    def __init__(self, sqs: Any, queue_url: str, bodies: list[str], backlog: int = FEED_BACKLOG) -> None:
        self.sqs, self.queue_url, self.bodies, self.backlog = sqs, queue_url, bodies, backlog
        self.sent: dict[str, str] = {}
        self.done = threading.Event()
        self.stop = threading.Event()

    def waiting(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def run(self) -> None:
        position = 0
        try:
            while position < len(self.bodies) and not self.stop.is_set():
                room = self.backlog - self.waiting()
                if room < 10:
                    time.sleep(0.5)
                    continue
                for start in range(position, min(position + room, len(self.bodies)), 10):
                    chunk = self.bodies[start : start + 10]
                    response = self.sqs.send_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
                    )
                    for entry in response["Successful"]:
                        self.sent[entry["MessageId"]] = chunk[int(entry["Id"])]
                    position = start + len(chunk)
        finally:
            self.done.set()


def process_tree(root: int) -> list[int]:
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
    return pids


def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Chaos:
    """Kills worker processes now and then and cuts the database once; records what it did."""

    worker_pid: int
    proxy: Any
    rng: random.Random
    outage_at: float
    outage_seconds: float
    stop: threading.Event = field(default_factory=threading.Event)
    actions: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def run(self) -> None:
        started = time.monotonic()
        next_kill = started + self.rng.uniform(30, 90)
        outage_done = False
        while not self.stop.wait(1.0):
            tree = process_tree(self.worker_pid)
            self.peak_rss_mb = max(self.peak_rss_mb, sum(rss_mb(pid) for pid in tree))
            now = time.monotonic()
            if not outage_done and now - started >= self.outage_at:
                outage_done = True
                self.actions.append(f"{now - started:.0f}s database cut for {self.outage_seconds:g}s")
                self.proxy.cut()
                self.stop.wait(self.outage_seconds)
                self.proxy.restore()
            if now >= next_kill:
                next_kill = now + self.rng.uniform(30, 90)
                children = [pid for pid in tree[1:] if _is_worker_child(pid)]
                if children:
                    victim = self.rng.choice(children)
                    sig = self.rng.choice([signal.SIGKILL, signal.SIGTERM])
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, sig)
                    self.actions.append(f"{now - started:.0f}s {sig.name} worker process {victim}")


def _is_worker_child(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def faulty_handle_batch(event: dict[str, Any], context: Any, *, gate: RecordGate | None = None) -> Any:
    """`handle_batch`, with S3 requests failing at the configured rate (installed once per process)."""
    _install_s3_faults()
    from handlers.batch import handle_batch

    return handle_batch(event, context, gate=gate)


_installed: list[bool] = []


def _install_s3_faults() -> None:
    if _installed:
        return
    import boto3

    from tests.faults import s3_error_response

    rate = float(os.environ["SOAK_S3_FAILURE_RATE"])
    rng = random.Random()  # noqa: S311 - fault injection, not cryptography

    def maybe_fail(**_: Any) -> Any:
        return s3_error_response(503, "SlowDown", "injected by the soak") if rng.random() < rate else None

    boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    if session is None:
        raise RuntimeError("boto3 has no default session")
    session.events.register("before-send.s3", maybe_fail)
    _installed.append(True)


def worker_main() -> int:
    """The worker the soak runs: the real supervisor and handler, S3 faults installed in each process."""
    from handlers.settings import get_settings
    from handlers.wiring import check_ready
    from handlers.worker.supervisor import serve

    return serve(get_settings(), faulty_handle_batch, check_ready)


def read_logs(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                records.append(parsed)
    return records


def verify(
    plan: Plan, database_url: str, dead: list[str], sent: dict[str, str], logs: list[dict[str, Any]]
) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        stored = {
            key: (status, version_id, error_code, chunks)
            for key, status, version_id, error_code, chunks in conn.execute(
                "SELECT d.key, d.status, d.version_id, d.error_code, count(c.id) FROM documents d"
                " LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id"
            ).fetchall()
        }
        [(duplicated_chunks,)] = conn.execute(
            "SELECT count(*) FROM (SELECT document_id, ordinal FROM chunks GROUP BY 1, 2 HAVING count(*) > 1) d"
        ).fetchall()
    lost, wrong = [], []
    for key, event in plan.expected().items():
        row = stored.get(key)
        if key in plan.hostile_keys:
            code = plan.hostile_keys[key]
            want = ("ready", None) if code is None else ("failed", code)
            if row is None or (row[0], row[2]) != want:
                wrong.append(f"{key}: {row} (expected {want})")
        elif event.kind == "delete":
            if row is not None:
                wrong.append(f"{key}: present {row} after its last event, a delete")
        elif row is None:
            lost.append(key)
        elif (row[0], row[1], row[3]) != ("ready", event.version_id, event.chunks):
            wrong.append(f"{key}: {row} (expected ready, {event.version_id}, {event.chunks} chunks)")
    poison = set(plan.poison_bodies)
    dead_poison = [body for body in dead if body in poison]
    dead_healthy = [body for body in dead if body not in poison]
    error_ids = {str(r.get("message_id")) for r in logs if r.get("level") == "ERROR"}
    poison_ids = [message_id for message_id, body in sent.items() if body in poison]
    return {
        "keys": len(plan.expected()),
        "lost": lost,
        "wrong": wrong,
        "duplicated_chunks": duplicated_chunks,
        "dlq_poison": len(dead_poison),
        "poison_sent": len(poison_ids),
        "dlq_not_poison": dead_healthy,
        "poison_without_error_line": [m for m in poison_ids if m not in error_ids],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from handlers.develop.devstack import (
        MotoServer,
        aws_client,
        create_ingest_resources,
        local_settings_environment,
        start_postgres,
    )
    from handlers.settings import Settings
    from handlers.wiring import prepare_database
    from tests.faults import PostgresProxy

    rng = random.Random(args.seed)  # noqa: S311 - a reproducible plan, not cryptography
    root = Path(tempfile.mkdtemp(prefix="filequeue-soak-"))
    database_url, postgres = start_postgres(root / "pgdata")
    moto = MotoServer.start()
    try:
        resources = create_ingest_resources(
            moto.endpoint_url,
            bucket="soak",
            queue="soak",
            prefix="notifications-off/",  # the soak writes its own notifications, with sequencers
            max_receive_count=MAX_RECEIVE_COUNT,
            visibility_timeout=VISIBILITY_TIMEOUT,
        )
        environment = local_settings_environment(database_url, moto.endpoint_url, resources.queue_url)
        # The store is built for the embedder the worker will use, read from the same environment.
        settings = Settings.from_env(environment)
        prepare_database(settings, settings.resolved_embedding_model, settings.embedding_dimension, apply=True)
        s3, sqs = aws_client("s3", environment), aws_client("sqs", environment)
        planned_at = time.monotonic()
        plan = build_plan(s3, resources.bucket, args.messages, args.keys, rng)
        print(f"planned {len(plan.bodies)} messages in {time.monotonic() - planned_at:.0f} s", flush=True)
        feeder = Feeder(sqs, resources.queue_url, plan.bodies)

        proxy = PostgresProxy(
            database_url,
            chaos=lambda data: data.startswith(TRANSACTION_EDGES) and rng.random() < args.db_failure_rate / 2,
        )
        env = {name: value for name, value in os.environ.items() if not name.startswith(("FILEQUEUE_", "AWS_"))}
        env.update(environment)
        env.update(WORKER_SETTINGS)
        env.update(
            {
                "FILEQUEUE_DATABASE_URL": proxy.url,
                "FILEQUEUE_WORKER_PROCESSES": str(args.processes),
                "SOAK_S3_FAILURE_RATE": str(args.s3_failure_rate),
            }
        )
        log_path = root / "worker.log"
        elapsed, chaos = run_worker_until_drained(env, log_path, feeder=feeder, proxy=proxy, rng=rng, args=args)
        sent = feeder.sent
        proxy.close()
        logs = read_logs(log_path)
        report = verify(plan, database_url, drain_bodies(sqs, resources.dlq_url), sent, logs)
        received = [r for r in logs if r.get("message") == "received"]
        report.update(
            {
                "configuration": {
                    "messages": len(sent),
                    "keys": args.keys,
                    "processes": args.processes,
                    "s3_failure_rate": args.s3_failure_rate,
                    "db_failure_rate": args.db_failure_rate,
                    "visibility_timeout": VISIBILITY_TIMEOUT,
                    "max_receive_count": MAX_RECEIVE_COUNT,
                    **WORKER_SETTINGS,
                },
                "drained": elapsed < args.max_minutes * 60,
                "seconds": round(elapsed, 1),
                "messages_per_second": round(len(sent) / elapsed, 2),
                "receives": len(received),
                "redeliveries": sum(1 for r in received if int(r.get("receive_count", 1)) > 1),
                "peak_rss_mb": round(chaos.peak_rss_mb, 1),
                "chaos": chaos.actions,
                "warnings_and_errors": _count_messages(logs),
                "worker_log": str(log_path),
            }
        )
        return report
    finally:
        moto.stop()
        postgres.cleanup()


def run_worker_until_drained(
    env: dict[str, str], log_path: Path, *, feeder: Feeder, proxy: Any, rng: random.Random, args: Any
) -> tuple[float, Chaos]:
    """Run the worker under chaos while the feeder sends, until every message was sent and the queue
    stays empty for 5 s, or time is up; (seconds, chaos)."""
    started = time.monotonic()
    with log_path.open("wb") as log:

        def start_worker() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-c", "from bench.soak import worker_main; raise SystemExit(worker_main())"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        worker = start_worker()
        chaos = Chaos(worker.pid, proxy, rng, outage_at=args.outage_after, outage_seconds=args.outage_seconds)
        chaos_thread = threading.Thread(target=chaos.run, daemon=True)
        chaos_thread.start()
        feeder_thread = threading.Thread(target=feeder.run, daemon=True)
        feeder_thread.start()
        try:
            deadline = started + args.max_minutes * 60
            empty_since: float | None = None
            while time.monotonic() < deadline:
                if worker.poll() is not None:
                    # What Kubernetes does when a start-up check fails on a passing fault: start it again.
                    chaos.actions.append(
                        f"{time.monotonic() - started:.0f}s worker exited {worker.returncode}; restarted"
                    )
                    time.sleep(2)
                    worker = start_worker()
                    chaos.worker_pid = worker.pid
                left = feeder.waiting() if feeder.done.is_set() else 1
                empty_since = (empty_since or time.monotonic()) if left == 0 else None
                if empty_since is not None and time.monotonic() - empty_since > 5:
                    break
                time.sleep(2)
            elapsed = time.monotonic() - started
        finally:
            feeder.stop.set()
            feeder_thread.join(timeout=60)
            chaos.stop.set()
            chaos_thread.join(timeout=60)
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                worker.kill()
    return elapsed, chaos


def drain_bodies(sqs: Any, queue_url: str) -> list[str]:
    bodies: list[str] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    ):
        bodies.extend(message["Body"] for message in messages)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    return bodies


def _count_messages(logs: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in logs:
        if record.get("level") in ("WARNING", "ERROR"):
            name = str(record.get("message", ""))
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:25])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=2_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--s3-failure-rate", type=float, default=0.1)
    parser.add_argument("--db-failure-rate", type=float, default=0.1)
    parser.add_argument("--outage-after", type=float, default=120.0, help="seconds into the run")
    parser.add_argument("--outage-seconds", type=float, default=20.0)
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    # A SIGTERM to the soak unwinds like Ctrl-C, so the worker, moto and PostgreSQL are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(args)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "log_lines_by_message"}, indent=2))


if __name__ == "__main__":
    main()
