"""The worker end to end: real S3 notifications in moto -> queue -> the worker -> the real handler -> PostgreSQL.

Fault cases where the database matters: a stop during a batch (C2) and a killed worker (C4) with the real
pipeline (nothing lost, nothing duplicated), concurrent batches through the real handler that never mix
their answers (D4), and
the DLQ rules (a persistent transient failure dead-letters after 3 receives with nothing written; a
permanent failure never does), and slow files: one slower than its extraction limit is recorded as
`extract_timeout`, one slower than the visibility timeout but within its limit is stored, neither
dead-lettered.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import pytest
from prometheus_client import CollectorRegistry

from handlers.batch import handle_batch
from handlers.settings import get_settings
from handlers.wiring import reset_deps
from handlers.worker.metrics import WorkerMetrics
from handlers.worker.poll_loop import PollLoop
from tests.faults import PostgresProxy, slow_pdf
from tests.functional.worker_app import WorkerProcess, drain, queue_counts, wait_until
from tests.loop_options import loop_options
from tests.paths import PDF_FIXTURES
from tests.rows import rows

if TYPE_CHECKING:
    from handlers.develop.devstack import IngestResources

TEXT_PDFS = [
    "pdfjs-tamreview.pdf",
    "pdfjs-tracemonkey-14-pages-two-column.pdf",
    "pdfjs-issue13201-bitcoin-paper.pdf",
    "pdfjs-basicapi-3-pages.pdf",
    "pdfjs-issue11913-legal-judgment.pdf",
    "pdfminer-pagelabels.pdf",
    "pdfjs-bug2013793-paragraphs.pdf",
    "pdfjs-french-diacritics.pdf",
    "pdfjs-copy-paste-ligatures.pdf",
    "pdfjs-issue16221-hello-world.pdf",
]
CORRUPT_PDF = "pdfjs-bug1020226-severely-corrupt.pdf"


def document_count(url: str) -> int:
    return int(rows(url, "SELECT count(*) FROM documents")[0][0])


def upload_pdfs(s3: Any, ingest: IngestResources, names: list[str]) -> list[str]:
    keys = []
    for index, name in enumerate(names):
        key = f"{ingest.prefix}{index:02d}-{name}"
        s3.put_object(Bucket=ingest.bucket, Key=key, Body=(PDF_FIXTURES / name).read_bytes())
        keys.append(key)
    return keys


def worker_process(ingest: IngestResources, processes: int, **overrides: str) -> WorkerProcess:
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "FILEQUEUE_QUEUE_URL": ingest.queue_url,
            "FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS": "30",
            "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "2",
            "FILEQUEUE_HEALTH_PORT": "0",
        }
    )
    env.update(overrides)
    return WorkerProcess([sys.executable, "-m", "handlers.worker", "--processes", str(processes)], env)


@pytest.fixture
def started():
    workers: list[WorkerProcess] = []
    yield workers
    for worker in workers:
        worker.kill()


def test_uploads_flow_through_notifications_and_a_two_process_worker_into_the_database(
    s3, sqs, ingest, handler_env, started
):
    # Given text PDFs and one corrupt PDF uploaded to the bucket
    keys = upload_pdfs(s3, ingest, [*TEXT_PDFS[2:6], CORRUPT_PDF])

    # When a two-process worker runs until the queue is empty
    worker = worker_process(ingest, processes=2)
    started.append(worker)
    wait_until(lambda: document_count(handler_env) == len(keys), timeout=180)
    wait_until(lambda: queue_counts(sqs, ingest.queue_url) == (0, 0), timeout=60)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()

    # Then every upload is a document; the corrupt one is recorded as failed and never dead-lettered
    statuses = dict(rows(handler_env, "SELECT key, status FROM documents"))
    assert set(statuses) == set(keys)
    assert statuses.pop(keys[-1]) == "failed"
    assert set(statuses.values()) == {"ready"}
    assert queue_counts(sqs, ingest.dlq_url) == (0, 0)
    outcomes = {record.get("outcome") for record in worker.logs() if record.get("key") in keys}
    assert {"stored", "failed"} <= outcomes  # the handler logs each record's outcome with its key


def test_sigterm_mid_batch_with_the_real_handler_loses_nothing_and_leaves_nothing_invisible(
    s3, sqs, ingest, handler_env, started
):
    # Given ten uploads and a one-process worker (C2)
    keys = upload_pdfs(s3, ingest, TEXT_PDFS)
    worker = worker_process(
        ingest, processes=1, FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS="12", FILEQUEUE_EXTRACT_TIMEOUT_SECONDS="8"
    )
    started.append(worker)

    # When SIGTERM arrives once the first document is stored
    wait_until(lambda: document_count(handler_env) >= 1, timeout=120)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()

    # Then nothing is in flight; every upload is either stored (and its message deleted) or visible again
    visible, in_flight = queue_counts(sqs, ingest.queue_url)
    assert in_flight == 0
    stored = {key for (key,) in rows(handler_env, "SELECT key FROM documents")}
    waiting = set()
    for message in drain(sqs, ingest.queue_url):
        for record in json.loads(message["Body"]).get("Records", []):
            waiting.add(unquote_plus(record["s3"]["object"]["key"]))
    assert stored | waiting == set(keys)
    assert not stored & waiting
    shutdown = worker.wait_for_log(lambda record: str(record.get("message", "")).startswith("shutdown "))
    assert shutdown["released"] <= visible  # the rest were never received


@pytest.mark.slow
def test_sigkill_mid_batch_then_a_new_worker_stores_every_document_exactly_once(s3, sqs, ingest, handler_env, started):
    # Given ten uploads and a worker with a 6 s lease (C4)
    keys = upload_pdfs(s3, ingest, TEXT_PDFS)
    settings = {
        "FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS": "6",
        "FILEQUEUE_DEADLINE_MARGIN_SECONDS": "1",
        "FILEQUEUE_WRITE_MARGIN_SECONDS": "0.5",
    }
    first = worker_process(ingest, processes=1, **settings)
    started.append(first)

    # When it is SIGKILLed after it stored some documents, and a new worker takes over
    wait_until(lambda: document_count(handler_env) >= 2, timeout=120)
    first.process.kill()
    first.wait()
    stored_before = document_count(handler_env)
    second = worker_process(ingest, processes=1, **settings)
    started.append(second)
    wait_until(lambda: document_count(handler_env) == len(keys), timeout=180, explain=second.output)
    wait_until(lambda: queue_counts(sqs, ingest.queue_url) == (0, 0), timeout=60, explain=second.output)
    second.process.send_signal(signal.SIGTERM)
    assert second.wait() == 0, second.output()

    # Then each document exists once, with one set of chunks, and the redelivered ones were skipped
    assert 2 <= stored_before < len(keys)  # killed mid-batch
    assert rows(handler_env, "SELECT key, count(*) FROM documents GROUP BY key HAVING count(*) > 1") == []
    assert (
        rows(handler_env, "SELECT document_id, ordinal FROM chunks GROUP BY document_id, ordinal HAVING count(*) > 1")
        == []
    )
    assert queue_counts(sqs, ingest.dlq_url) == (0, 0)


def test_two_batches_in_work_at_once_get_only_their_own_failures(s3, sqs, ingest, handler_env):
    # Given two batches from one receive, each with one body that is not an event (D4)
    upload_pdfs(s3, ingest, TEXT_PDFS[6:10])
    for text in ("{not json", "[also not an event]"):
        sqs.send_message(QueueUrl=ingest.queue_url, MessageBody=text)
    wait_until(lambda: queue_counts(sqs, ingest.queue_url)[0] == 7, timeout=30)
    messages = sqs.receive_message(
        QueueUrl=ingest.queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        VisibilityTimeout=120,
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    assert len(messages) == 7
    bad = [message for message in messages if message["Body"] in ("{not json", "[also not an event]")]
    good = [message for message in messages if message not in bad]
    batches = [[bad[0], *good[:3]], [bad[-1], *good[3:]]]
    barrier = threading.Barrier(2)
    answers: list[tuple[set[str], set[str]]] = []

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> Any:
        barrier.wait(timeout=30)  # both batches are inside the handler at the same time
        response = handle_batch(event, context, gate=gate)
        ids = {record["messageId"] for record in event["Records"]}
        answers.append((ids, {str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]}))
        return response

    loop = PollLoop(
        sqs,
        handler,
        loop_options(ingest.queue_url, visibility_timeout_seconds=60, heartbeat=False),
        metrics=WorkerMetrics(CollectorRegistry()),
    )

    # When both are processed by two threads at once
    threads = [
        threading.Thread(target=loop.process_messages, args=(batch,), kwargs={"received_at": time.monotonic()})
        for batch in batches
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    # Then each answer names exactly its own bad message, and everything else was stored and deleted
    assert len(answers) == 2
    for ids, failures in answers:
        assert failures <= ids
        assert failures == {message["MessageId"] for message in bad} & ids
    assert document_count(handler_env) == 4
    assert queue_counts(sqs, ingest.queue_url) == (0, 2)


@pytest.mark.slow
def test_a_database_outage_dead_letters_after_three_receives_with_nothing_written(
    s3, sqs, ingest, handler_env, monkeypatch
):
    # Given the database behind a proxy that is cut, a 4 s lease (B3 persisting), and a message that
    # came back waiting an outage out in place for 2 s
    proxy = PostgresProxy(handler_env)
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", proxy.url)
    monkeypatch.setenv("FILEQUEUE_DEADLINE_MARGIN_SECONDS", "1")
    monkeypatch.setenv("FILEQUEUE_OUTAGE_WAIT_SECONDS", "2")
    get_settings.cache_clear()
    reset_deps()
    proxy.cut()
    keys = upload_pdfs(s3, ingest, TEXT_PDFS[8:9])
    pauses: list[float] = []
    loop = PollLoop(
        sqs,
        handle_batch,
        loop_options(ingest.queue_url, wait_time_seconds=1, visibility_timeout_seconds=4),
        metrics=WorkerMetrics(CollectorRegistry()),
        rng=random.Random(2),  # noqa: S311 - jitter
        pause=pauses.append,
    )

    # When the worker keeps receiving it
    def dead_lettered() -> bool:
        loop.poll_once()
        return queue_counts(sqs, ingest.dlq_url)[0] == 1

    try:
        wait_until(dead_lettered, timeout=120, interval=0)
    finally:
        loop.close()
        proxy.close()

    # Then it is in the DLQ after its third receive, nothing was written, and the loop backed off
    (message,) = drain(sqs, ingest.dlq_url)
    assert unquote_plus(json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"]) == keys[0]
    assert int(message["Attributes"]["ApproximateReceiveCount"]) >= 3
    assert rows(handler_env, "SELECT count(*) FROM documents") == [(0,)]
    assert rows(handler_env, "SELECT count(*) FROM chunks") == [(0,)]
    assert len(pauses) >= 2  # every receive failed entirely but the first (it also held the S3 test event)


def test_a_message_released_by_a_shutdown_is_processed_normally_on_its_next_delivery(s3, sqs, aws_env, handler_env):
    import boto3

    from handlers.develop.devstack import REGION, create_ingest_resources
    from handlers.worker.shutdown import StopSignal

    # Given a queue that dead-letters on the second receive, and one upload waiting in it
    ingest = create_ingest_resources(
        aws_env, bucket="released-bucket", queue="released-queue", max_receive_count=2, visibility_timeout=30
    )
    key = upload_pdfs(s3, ingest, TEXT_PDFS[3:4])[0]
    wait_until(lambda: queue_counts(sqs, ingest.queue_url)[0] >= 1, timeout=30)

    # When a worker is stopped while its receive is in flight: what it receives goes straight back
    stopping_client = boto3.client("sqs", region_name=REGION)
    stop = StopSignal()
    stopping_client.meta.events.register("after-call.sqs.ReceiveMessage", lambda **_: stop.request("SIGTERM"))
    options = loop_options(ingest.queue_url, wait_time_seconds=1)
    first = PollLoop(stopping_client, handle_batch, options, stop=stop, metrics=WorkerMetrics(CollectorRegistry()))
    assert first.run() == 0
    visible, in_flight = queue_counts(sqs, ingest.queue_url)
    assert visible >= 1
    assert in_flight == 0

    # Then the next worker processes it on its next delivery (its last one here), and nothing is dead-lettered
    second = PollLoop(sqs, handle_batch, options, metrics=WorkerMetrics(CollectorRegistry()))

    def drained() -> bool:
        second.poll_once()
        return queue_counts(sqs, ingest.queue_url) == (0, 0)

    try:
        wait_until(drained, timeout=120, interval=0)
    finally:
        second.close()
    assert rows(handler_env, "SELECT key, status FROM documents") == [(key, "ready")]
    assert queue_counts(sqs, ingest.dlq_url) == (0, 0)


def run_worker_until_recorded(
    s3: Any, sqs: Any, ingest: IngestResources, database_url: str, data: bytes, **settings: str
) -> tuple[str, str | None, WorkerProcess]:
    """Upload `data`, run a one-process worker until its document row exists and the queue is empty.

    A message dead-lettered instead ends the wait at once (the test then fails on the missing row).
    """
    key = f"{ingest.prefix}slow.pdf"
    s3.put_object(Bucket=ingest.bucket, Key=key, Body=data)
    worker = worker_process(ingest, processes=1, **settings)

    def settled() -> bool:
        return document_count(database_url) == 1 or queue_counts(sqs, ingest.dlq_url) != (0, 0)

    try:
        wait_until(settled, timeout=240, explain=worker.output)
        wait_until(lambda: queue_counts(sqs, ingest.queue_url) == (0, 0), timeout=60, explain=worker.output)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    finally:
        worker.kill()
    found = rows(database_url, "SELECT status, error_code FROM documents WHERE key = %s", key)
    assert len(found) == 1, f"no document row; dead-lettered: {queue_counts(sqs, ingest.dlq_url)}"
    [(status, error_code)] = found
    return status, error_code, worker


@pytest.mark.slow
def test_a_file_slower_than_its_extraction_limit_is_recorded_as_extract_timeout_not_dead_lettered(
    s3, sqs, ingest, handler_env
):
    # Given a PDF that needs about 12 s and a 3 s extraction limit, with a 20 s lease
    data = slow_pdf(12)

    # When a worker processes it
    status, error_code, worker = run_worker_until_recorded(
        s3,
        sqs,
        ingest,
        handler_env,
        data,
        FILEQUEUE_EXTRACT_TIMEOUT_SECONDS="3",
        FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS="20",
    )

    # Then it is recorded once as too slow, on its first receive, and nothing reaches the DLQ
    assert (status, error_code) == ("failed", "extract_timeout")
    assert queue_counts(sqs, ingest.dlq_url) == (0, 0)
    assert not [record for record in worker.logs() if record.get("error_code") == "deadline"]


@pytest.mark.slow
def test_a_file_slower_than_the_visibility_timeout_but_within_its_limit_is_stored(s3, sqs, ingest, handler_env):
    # Given a PDF that needs about 15 s, a 10 s lease and a 45 s extraction limit
    data = slow_pdf(15)

    # When a worker processes it
    status, error_code, worker = run_worker_until_recorded(
        s3,
        sqs,
        ingest,
        handler_env,
        data,
        FILEQUEUE_EXTRACT_TIMEOUT_SECONDS="45",
        FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS="10",
    )

    # Then the heartbeat held the lease for the record's whole budget: it is stored, on its first receive
    assert (status, error_code) == ("ready", None)
    assert queue_counts(sqs, ingest.dlq_url) == (0, 0)
    outcomes = [record for record in worker.logs() if record.get("outcome") == "stored"]
    assert [record["receive_count"] for record in outcomes] == ["1"]
