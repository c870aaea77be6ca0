"""Operator commands against moto and PostgreSQL, in process: reconcile, the DLQ, status, failed."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import psycopg
import pytest
from botocore.stub import Stubber

from handlers.batch import handle_batch
from handlers.develop.devstack import REGION, create_ingest_resources
from handlers.errors import ConfigError
from handlers.ops import dlq
from handlers.ops.failed import failed_documents, parse_since
from handlers.ops.reconcile import reconcile
from handlers.ops.s3_events import message_body, s3_notification, sqs_event
from handlers.ops.status import healthy, queue_status, store_report
from handlers.runtime_context import DeadlineContext
from handlers.settings import get_settings
from handlers.wiring import reset_deps
from tests.functional.ops_helpers import documents, drain
from tests.rows import rows


class CrashAfter:
    """A real boto3 client whose `operation` raises after `calls` successful calls: a process dying there."""

    def __init__(self, client: Any, operation: str, calls: int) -> None:
        self._client = client
        self._operation = operation
        self._left = calls

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name != self._operation:
            return attribute

        def call(**kwargs: Any) -> Any:
            if self._left == 0:
                raise KeyboardInterrupt(f"process killed during {name}")
            self._left -= 1
            return attribute(**kwargs)

        return call


@pytest.fixture
def plain_bucket(s3, sqs, ingest, handler_env):
    """A bucket with no notification: objects in it were uploaded before the notification existed.

    The ingestion queue starts empty (the test event of its own bucket's notification is consumed).
    """
    drain(sqs, ingest.queue_url)
    name = f"plain-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def _put_many(s3, bucket: str, count: int, *, start: int = 0) -> None:
    for index in range(start, start + count):
        s3.put_object(Bucket=bucket, Key=f"uploads/doc-{index:03d}.md", Body=f"# Doc {index}\n\nText {index}.".encode())


def _bucket_state(s3, bucket: str) -> dict[str, str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="uploads/")
    return {
        item["Key"]: item["ETag"].strip('"') for item in listed.get("Contents", []) if not item["Key"].endswith("/")
    }


def _store_state(url: str) -> dict[str, str | None]:
    return {key: etag for key, (_status, etag) in documents(url).items()}


def test_reconcile_streams_pages_and_enqueues_new_changed_and_gone(s3, sqs, ingest, handler_env, plain_bucket):
    _put_many(s3, plain_bucket, 25)
    s3.put_object(Bucket=plain_bucket, Key="uploads/folder/", Body=b"")
    s3.put_object(Bucket=plain_bucket, Key="elsewhere/skip.md", Body=b"# not under the prefix")
    list_calls: list[int] = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: list_calls.append(1))

    with psycopg.connect(handler_env) as conn:
        first = reconcile(
            s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url, prefix="uploads/", page_size=3
        )
    assert (first.listed, first.new, first.changed, first.gone, first.enqueued) == (25, 25, 0, 0, 25)
    assert len(list_calls) >= 9, "a page size of 3 must list 25 keys in at least 9 requests"
    assert drain(sqs, ingest.queue_url)["failed"] == 0
    assert _store_state(handler_env) == _bucket_state(s3, plain_bucket)

    s3.put_object(Bucket=plain_bucket, Key="uploads/doc-003.md", Body=b"# Doc 3\n\nRewritten.")
    s3.put_object(Bucket=plain_bucket, Key="uploads/doc-007.md", Body=b"# Doc 7\n\nRewritten too.")
    for index in (1, 12, 24):
        s3.delete_object(Bucket=plain_bucket, Key=f"uploads/doc-{index:03d}.md")
    _put_many(s3, plain_bucket, 1, start=30)
    with psycopg.connect(handler_env) as conn:
        second = reconcile(
            s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url, prefix="uploads/", page_size=2
        )
    assert (second.unchanged, second.new, second.changed, second.gone) == (20, 1, 2, 3)
    assert second.samples["gone"] == ["uploads/doc-001.md", "uploads/doc-012.md", "uploads/doc-024.md"]
    drain(sqs, ingest.queue_url)
    assert _store_state(handler_env) == _bucket_state(s3, plain_bucket)
    with psycopg.connect(handler_env) as conn:
        tombstones = {row[0] for row in conn.execute("SELECT key FROM tombstones")}
        third = reconcile(s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url, prefix="uploads/")
    assert tombstones == {"uploads/doc-001.md", "uploads/doc-012.md", "uploads/doc-024.md"}
    assert (third.unchanged, third.enqueued) == (23, 0)


def test_reconcile_dry_run_counts_and_sends_nothing(s3, sqs, ingest, handler_env, plain_bucket):
    _put_many(s3, plain_bucket, 4)
    with psycopg.connect(handler_env) as conn:
        report = reconcile(s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url, dry_run=True, page_size=1)
    assert (report.new, report.enqueued) == (4, 0)
    assert drain(sqs, ingest.queue_url)["handled"] == 0


def test_reconcile_resumes_after_a_key(s3, sqs, ingest, handler_env, plain_bucket):
    _put_many(s3, plain_bucket, 6)
    with psycopg.connect(handler_env) as conn:
        report = reconcile(
            s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url, start_after="uploads/doc-003.md"
        )
    assert (report.new, report.last_key) == (2, "uploads/doc-005.md")
    drain(sqs, ingest.queue_url)
    assert sorted(documents(handler_env)) == ["uploads/doc-004.md", "uploads/doc-005.md"]


def test_reconcile_killed_halfway_and_run_again_ends_in_the_same_store(s3, sqs, ingest, handler_env, plain_bucket):
    _put_many(s3, plain_bucket, 30)
    with psycopg.connect(handler_env) as conn, pytest.raises(KeyboardInterrupt):
        reconcile(
            s3,
            CrashAfter(sqs, "send_message_batch", calls=1),
            conn,
            bucket=plain_bucket,
            queue_url=ingest.queue_url,
            page_size=4,
        )
    with psycopg.connect(handler_env) as conn:
        rerun = reconcile(s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url, page_size=4)
    assert rerun.new == 30, "nothing was stored yet: the first run only sent events"
    outcome = drain(sqs, ingest.queue_url)
    assert outcome == {"handled": 40, "failed": 0}, "ten events were sent twice, and the copies are harmless"
    assert _store_state(handler_env) == _bucket_state(s3, plain_bucket)
    assert rows(handler_env, "SELECT count(*) FROM chunks") == [(30,)]


def test_an_upload_after_reconcile_listed_wins_over_its_delete(s3, sqs, ingest, handler_env, plain_bucket):
    _put_many(s3, plain_bucket, 1)
    key = "uploads/doc-000.md"
    with psycopg.connect(handler_env) as conn:
        reconcile(s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url)
    drain(sqs, ingest.queue_url)
    s3.delete_object(Bucket=plain_bucket, Key=key)
    with psycopg.connect(handler_env) as conn:
        report = reconcile(s3, sqs, conn, bucket=plain_bucket, queue_url=ingest.queue_url)
    assert report.gone == 1
    # The file comes back and its live event is handled before the reconcile's delete is.
    body = b"# Doc 0\n\nBack again."
    etag = s3.put_object(Bucket=plain_bucket, Key=key, Body=body)["ETag"].strip('"')
    now = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    live = s3_notification(plain_bucket, key, size=len(body), etag=etag, event_time=now)
    assert handle_batch(sqs_event([message_body(live)]), DeadlineContext.lasting(60)) == {"batchItemFailures": []}
    drain(sqs, ingest.queue_url)
    assert documents(handler_env) == {key: ("ready", etag)}


def _dead_letter(sqs, ingest, body: str) -> str:
    return str(sqs.send_message(QueueUrl=ingest.dlq_url, MessageBody=body)["MessageId"])


def _depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _visible(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_dlq_list_decodes_each_message_and_leaves_it_visible(s3, sqs, ingest, handler_env):
    s3.put_object(Bucket=ingest.bucket, Key="uploads/bad.pdf", Body=b"%PDF-")
    put = s3_notification(ingest.bucket, "uploads/bad.pdf", size=5, etag="e")
    assert handle_batch(sqs_event([message_body(put)]), None) == {"batchItemFailures": []}
    stored_failure = _dead_letter(sqs, ingest, message_body(put))
    malformed = _dead_letter(sqs, ingest, '{"Records": [')
    ignored = _dead_letter(sqs, ingest, message_body({"Records": []}))

    with psycopg.connect(handler_env) as conn:
        listed = dlq.list_dead_letters(
            sqs,
            ingest.dlq_url,
            recorded=lambda message_id, bucket, key: dlq.recorded_failure(conn, message_id, bucket, key),
        )
    letters = {letter.message_id: letter for letter in listed}
    assert set(letters) == {stored_failure, malformed, ignored}
    assert (letters[stored_failure].key, letters[stored_failure].event_name) == ("uploads/bad.pdf", "ObjectCreated:Put")
    assert str(letters[stored_failure].reason).startswith("corrupt_file: corrupt PDF")
    assert letters[stored_failure].receive_count == 1
    assert letters[stored_failure].first_received_at is not None
    assert str(letters[malformed].reason).startswith("invalid_json")
    assert str(letters[ignored].reason).startswith("ignored")
    assert _visible(sqs, ingest.dlq_url) == 3, "listing made every message visible again"


@pytest.mark.slow
def test_dlq_list_shows_the_reason_the_handler_kept_for_a_transient_failure(
    s3, sqs, aws_env, database_url, monkeypatch
):
    suffix = uuid.uuid4().hex[:10]
    ingest = create_ingest_resources(
        aws_env, bucket=f"bucket-{suffix}", queue=f"queue-{suffix}", max_receive_count=1, visibility_timeout=1
    )
    with socket.socket() as probe:  # a port nothing listens on: the embedding server is down
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    for name, value in {
        "FILEQUEUE_DATABASE_URL": database_url,
        "FILEQUEUE_EMBEDDER": "openai",
        "FILEQUEUE_OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port}/v1",
        "FILEQUEUE_DEADLINE_MARGIN_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_deps()
    try:
        drain(sqs, ingest.queue_url)  # the test event
        s3.put_object(Bucket=ingest.bucket, Key="uploads/later.md", Body=b"# Later\n\nEmbedded once the server is up.")
        assert drain(sqs, ingest.queue_url) == {"handled": 1, "failed": 1}
        assert drain(sqs, ingest.queue_url) == {"handled": 0, "failed": 0}, "moved to the DLQ after one receive"
        with psycopg.connect(database_url) as conn:
            [letter] = dlq.list_dead_letters(
                sqs,
                ingest.dlq_url,
                recorded=lambda message_id, bucket, key: dlq.recorded_failure(conn, message_id, bucket, key),
            )
    finally:
        get_settings.cache_clear()
        reset_deps()
    assert letter.key == "uploads/later.md"
    assert str(letter.reason).startswith("embedding_unavailable: "), letter.reason
    assert letter.last_failed_at is not None


def test_redrive_killed_between_send_and_delete_duplicates_and_never_loses(s3, sqs, ingest, handler_env):
    body = b"# Redriven\n\nBack from the DLQ."
    etag = s3.put_object(Bucket=ingest.bucket, Key="uploads/redriven.md", Body=body)["ETag"].strip('"')
    drain(sqs, ingest.queue_url)  # the live notification: stored once
    event = message_body(s3_notification(ingest.bucket, "uploads/redriven.md", size=len(body), etag=etag))
    message_id = _dead_letter(sqs, ingest, event)

    with pytest.raises(KeyboardInterrupt):
        dlq.redrive(
            CrashAfter(sqs, "delete_message", calls=0), ingest.dlq_url, ingest.queue_url, message_ids=[message_id]
        )
    assert _depth(sqs, ingest.queue_url) == 1, "the copy was sent"
    assert _visible(sqs, ingest.dlq_url) == 1, "the original was not deleted, and is visible again"

    report = dlq.redrive(sqs, ingest.dlq_url, ingest.queue_url, message_ids=[message_id])
    assert (report.method, report.moved, report.not_found) == (dlq.RECEIVE_SEND_DELETE, [message_id], [])
    assert _depth(sqs, ingest.dlq_url) == 0
    assert drain(sqs, ingest.queue_url) == {"handled": 2, "failed": 0}
    stored = rows(handler_env, "SELECT key, chunk_count FROM documents")
    assert stored == [("uploads/redriven.md", 1)], "the duplicate is skipped by the handler's fencing"


def test_redrive_all_falls_back_where_there_is_no_move_task_and_dry_run_moves_nothing(sqs, ingest, caplog):
    queued = _depth(sqs, ingest.queue_url)  # the test event S3 sent when the notification was configured
    ids = {_dead_letter(sqs, ingest, message_body({"Records": []})) for _ in range(12)}
    dry = dlq.redrive(sqs, ingest.dlq_url, ingest.queue_url, dry_run=True)
    assert (dry.method, set(dry.moved)) == (dlq.RECEIVE_SEND_DELETE, ids)
    assert _visible(sqs, ingest.dlq_url) == 12
    report = dlq.redrive(sqs, ingest.dlq_url, ingest.queue_url)
    assert report.method == dlq.RECEIVE_SEND_DELETE
    assert report.fallback_reason is not None
    assert "StartMessageMoveTask unavailable" in report.fallback_reason
    werkzeug = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert any("moto: NotImplementedError: The start_message_move_task action" in line for line in werkzeug)
    assert not any("Traceback" in line for line in werkzeug), "the dev stack's terminal gets one line"
    assert set(report.moved) == ids
    assert (_depth(sqs, ingest.dlq_url), _depth(sqs, ingest.queue_url)) == (0, queued + 12)


def test_dlq_delete_drops_only_the_chosen_poison_message_and_dry_run_drops_nothing(sqs, ingest):
    poison = _dead_letter(sqs, ingest, '{"Records": [')
    kept = _dead_letter(sqs, ingest, message_body({"Records": []}))

    heard: list[str] = []
    dry = dlq.drop_dead_letters(
        sqs,
        ingest.dlq_url,
        message_ids=[poison, "no-such-id"],
        dry_run=True,
        on_dropped=lambda letter: heard.append(letter.message_id),
    )
    assert [letter.message_id for letter in dry.dropped] == [poison]
    assert heard == [], "a dry run drops nothing, so reports no drop"
    assert dry.dropped[0].reason is not None
    assert dry.dropped[0].reason.startswith("invalid_json: ")
    assert dry.not_found == ["no-such-id"]
    assert _visible(sqs, ingest.dlq_url) == 2

    report = dlq.drop_dead_letters(
        sqs, ingest.dlq_url, message_ids=[poison], on_dropped=lambda letter: heard.append(letter.message_id)
    )
    assert [letter.message_id for letter in report.dropped] == [poison]
    assert heard == [poison]
    assert [letter.message_id for letter in dlq.list_dead_letters(sqs, ingest.dlq_url)] == [kept]


def test_dlq_purge_drops_every_message_it_names(sqs, ingest):
    ids = {_dead_letter(sqs, ingest, message_body({"Records": []})) for _ in range(12)}

    assert {letter.message_id for letter in dlq.drop_dead_letters(sqs, ingest.dlq_url, dry_run=True).dropped} == ids
    assert _depth(sqs, ingest.dlq_url) == 12
    assert {letter.message_id for letter in dlq.drop_dead_letters(sqs, ingest.dlq_url).dropped} == ids
    assert _depth(sqs, ingest.dlq_url) == 0


def test_redrive_all_uses_the_move_task_where_sqs_offers_it(aws_env):
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = "https://sqs.us-east-1.amazonaws.com/123456789012/uploads-dlq"
    source_url = "https://sqs.us-east-1.amazonaws.com/123456789012/uploads"
    with Stubber(sqs) as stub:
        for url in (dlq_url, source_url):
            arn = "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[1]
            stub.add_response(
                "get_queue_attributes",
                {"Attributes": {"QueueArn": arn}},
                {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
            )
        stub.add_response(
            "start_message_move_task",
            {"TaskHandle": "task-1"},
            {
                "SourceArn": "arn:aws:sqs:us-east-1:123456789012:uploads-dlq",
                "DestinationArn": "arn:aws:sqs:us-east-1:123456789012:uploads",
            },
        )
        report = dlq.redrive(sqs, dlq_url, source_url)
    assert (report.method, report.task_handle) == (dlq.MOVE_TASK, "task-1")


def test_status_reports_pending_migrations_then_counts_and_the_dlq(sqs, ingest, database_url):
    from handlers.adapters.migrate import StoreConfig, migrate

    with psycopg.connect(database_url, autocommit=True) as conn:
        before = store_report(conn)
        migrate(conn, StoreConfig("hashing-v1", 256))
        after = store_report(conn)
    assert before.pending_migrations
    assert not healthy(before, None)
    assert (after.pending_migrations, after.embedding_model, after.embedding_dimension) == ([], "hashing-v1", 256)
    queue = queue_status(sqs, boto3.client("cloudwatch", region_name=REGION), ingest.queue_url)
    assert (queue.dead_letter_url, queue.dead_letters, queue.oldest_message_age_seconds) == (ingest.dlq_url, 0, None)
    assert healthy(after, queue)
    _dead_letter(sqs, ingest, "{}")
    assert not healthy(after, queue_status(sqs, boto3.client("cloudwatch", region_name=REGION), ingest.queue_url))


def test_status_reads_the_age_of_the_oldest_message_from_cloudwatch(sqs, ingest):
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    name = ingest.queue_url.rsplit("/", 1)[1]
    for minutes_ago, age in ((3, 40.0), (1, 95.0)):
        cloudwatch.put_metric_data(
            Namespace="AWS/SQS",
            MetricData=[
                {
                    "MetricName": "ApproximateAgeOfOldestMessage",
                    "Dimensions": [{"Name": "QueueName", "Value": name}],
                    "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago),
                    "Value": age,
                    "Unit": "Seconds",
                }
            ],
        )
    assert queue_status(sqs, cloudwatch, ingest.queue_url).oldest_message_age_seconds == 95.0


def test_failed_filters_by_prefix_code_and_time(s3, handler_env):
    bucket = f"failed-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    objects = {"uploads/a/empty.md": b"", "uploads/b/broken.pdf": b"%PDF-1.4 broken", "uploads/a/ok.md": b"# fine"}
    notifications = []
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        notifications.append(message_body(s3_notification(bucket, key, size=len(body), etag=key)))
    assert handle_batch(sqs_event(notifications), None) == {"batchItemFailures": []}
    with psycopg.connect(handler_env) as conn:
        every = {failure.key: failure.error_code for failure in failed_documents(conn)}
        in_a = [failure.key for failure in failed_documents(conn, prefix="uploads/a/")]
        corrupt = [failure.key for failure in failed_documents(conn, code="corrupt_file")]
        future = list(failed_documents(conn, since=datetime.now(UTC) + timedelta(hours=1)))
    assert every == {"uploads/a/empty.md": "empty_file", "uploads/b/broken.pdf": "corrupt_file"}
    assert (in_a, corrupt, future) == (["uploads/a/empty.md"], ["uploads/b/broken.pdf"], [])


def test_since_takes_durations_and_times_and_names_the_flag_otherwise():
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now=now) == datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    assert parse_since("2d", now=now) == datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    assert parse_since("2026-01-01T08:00:00") == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday")
