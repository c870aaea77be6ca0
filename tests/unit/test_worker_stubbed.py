"""What moto cannot produce, with botocore's Stubber: per-entry `Failed[]` results, stale receipt
handles, throttling and credential errors on receive (moto accepts any old receipt handle and never fails an entry)."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from prometheus_client import CollectorRegistry

from handlers.worker.heartbeat import VisibilityHeartbeat
from handlers.worker.metrics import WorkerMetrics
from handlers.worker.poll_loop import PollLoop
from handlers.worker.records import Lease
from handlers.worker.sqs import Acknowledger
from tests.loop_options import loop_options

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/uploads"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:uploads"


@pytest.fixture
def client(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    sqs = boto3.client("sqs", region_name="eu-west-1")
    with Stubber(sqs) as stubber:
        yield sqs, stubber
        stubber.assert_no_pending_responses()


def message(number: int) -> dict[str, Any]:
    body = f'{{"n": {number}}}'
    return {
        "MessageId": f"m{number}",
        "ReceiptHandle": f"h{number}",
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1",
            "SenderId": "AIDA",
            "ApproximateFirstReceiveTimestamp": "2",
        },
    }


def loop_for(sqs: Any, handler: Any, registry: CollectorRegistry, pauses: list[float]) -> PollLoop:
    options = loop_options(QUEUE_URL, wait_time_seconds=20, heartbeat=False, ack_attempts=3)
    return PollLoop(
        sqs,
        handler,
        options,
        metrics=WorkerMetrics(registry),
        rng=random.Random(5),  # noqa: S311 - jitter
        pause=pauses.append,
    )


def expect_describe(stubber: Stubber) -> None:
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": QUEUE_ARN, "VisibilityTimeout": "300"}},
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["QueueArn", "VisibilityTimeout", "RedrivePolicy"]},
    )


def expect_receive(stubber: Stubber, messages: list[dict[str, Any]]) -> None:
    stubber.add_response(
        "receive_message",
        {"Messages": messages},
        {
            "QueueUrl": QUEUE_URL,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": 20,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        },
    )


def succeed_all(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
    return {"batchItemFailures": []}


def test_failed_delete_entries_are_logged_and_only_those_sqs_did_not_blame_on_us_are_retried(client, caplog):
    # Given a delete where SQS fails one entry on its side and rejects one stale handle (B5)
    sqs, stubber = client
    registry, pauses = CollectorRegistry(), list[float]()
    expect_describe(stubber)
    expect_receive(stubber, [message(0), message(1), message(2)])
    stubber.add_response(
        "delete_message_batch",
        {
            "Successful": [{"Id": "0"}],
            "Failed": [
                {"Id": "1", "SenderFault": False, "Code": "InternalError", "Message": "try again"},
                {"Id": "2", "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "stale"},
            ],
        },
        {
            "QueueUrl": QUEUE_URL,
            "Entries": [
                {"Id": "0", "ReceiptHandle": "h0"},
                {"Id": "1", "ReceiptHandle": "h1"},
                {"Id": "2", "ReceiptHandle": "h2"},
            ],
        },
    )
    stubber.add_response(
        "delete_message_batch",
        {"Successful": [{"Id": "0"}], "Failed": []},
        {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "0", "ReceiptHandle": "h1"}]},
    )

    # When the loop processes the batch
    loop = loop_for(sqs, succeed_all, registry, pauses)
    loop.poll_once()

    # Then the server-side failure was retried alone (re-numbered "0"), the stale handle was not
    failed = [r for r in caplog.records if r.getMessage() == "delete_entry_failed"]
    assert sorted((r.message_id, r.aws_error_code, r.sender_fault) for r in failed) == [
        ("m1", "InternalError", False),
        ("m2", "ReceiptHandleIsInvalid", True),
    ]
    assert [r.message_id for r in caplog.records if r.getMessage() == "lease_lost"] == ["m2"]
    assert registry.get_sample_value("filequeue_messages_deleted_total") == 2
    assert registry.get_sample_value("filequeue_lease_lost_total") == 1
    assert len(pauses) == 0  # the retry pause belongs to the acknowledger, not the loop


def test_a_delete_whose_failures_persist_is_given_up_after_the_bounded_attempts(client, caplog):
    sqs, stubber = client
    registry, pauses = CollectorRegistry(), list[float]()
    expect_describe(stubber)
    expect_receive(stubber, [message(0)])
    for _ in range(3):
        stubber.add_response(
            "delete_message_batch",
            {"Successful": [], "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"}]},
            {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "0", "ReceiptHandle": "h0"}]},
        )

    loop_for(sqs, succeed_all, registry, pauses).poll_once()

    assert [r.getMessage() for r in caplog.records].count("delete_entry_failed") == 3
    gave_up = [r for r in caplog.records if r.getMessage() == "delete_gave_up"]
    assert gave_up[0].levelname == "ERROR"
    assert gave_up[0].message_ids == ["m0"]
    assert (registry.get_sample_value("filequeue_messages_deleted_total") or 0) == 0


@pytest.mark.parametrize(
    "code", ["RequestThrottled", "OverLimit", "AccessDenied", "ExpiredToken", "QueueDoesNotExist", "InternalError"]
)
def test_receive_errors_back_off_with_a_cap_and_never_crash_the_loop(client, code):
    # Given a receive that fails five times in a row, then works (B6)
    sqs, stubber = client
    registry, pauses = CollectorRegistry(), list[float]()
    expect_describe(stubber)
    for _ in range(5):
        stubber.add_client_error("receive_message", service_error_code=code, http_status_code=400)
    expect_receive(stubber, [message(0)])
    stubber.add_response("delete_message_batch", {"Successful": [{"Id": "0"}], "Failed": []})
    calls: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        calls.append([record["messageId"] for record in event["Records"]])
        return {"batchItemFailures": []}

    loop = loop_for(sqs, handler, registry, pauses)

    # When the loop polls six times
    for _ in range(6):
        loop.poll_once()

    # Then each failure paused within a doubling ceiling capped at 10 s, the handler never saw an
    # empty batch, and the first good receive was processed
    assert len(pauses) == 5
    assert all(0 <= pause <= ceiling for pause, ceiling in zip(pauses, [1.0, 2.0, 4.0, 8.0, 10.0], strict=True))
    assert calls == [["m0"]]
    assert registry.get_sample_value("filequeue_sqs_errors_total", {"operation": "receive"}) == 5


def test_a_queue_that_cannot_be_described_at_start_is_retried_with_backoff(client):
    sqs, stubber = client
    registry, pauses = CollectorRegistry(), list[float]()
    stubber.add_client_error("get_queue_attributes", service_error_code="AccessDenied", http_status_code=403)
    expect_describe(stubber)
    expect_receive(stubber, [])

    loop = loop_for(sqs, succeed_all, registry, pauses)
    loop.poll_once()
    loop.poll_once()

    assert len(pauses) == 1
    assert registry.get_sample_value("filequeue_sqs_errors_total", {"operation": "get_queue_attributes"}) == 1


def test_the_heartbeat_drops_a_lease_sqs_no_longer_knows_and_keeps_extending_the_others(client, caplog):
    # Given two leases, one of which was received again elsewhere (B7)
    sqs, stubber = client
    registry = CollectorRegistry()
    acknowledger = Acknowledger(sqs, QUEUE_URL, WorkerMetrics(registry), pause=lambda _seconds: None)
    heartbeat = VisibilityHeartbeat(acknowledger, interval_seconds=60, visibility_timeout=90)
    kept, lost = Lease("m0", "h0", 1, "bucket", "a.pdf"), Lease("m1", "h1", 1, "bucket", "b.pdf")
    heartbeat.track([kept, lost])
    stubber.add_response(
        "change_message_visibility_batch",
        {
            "Successful": [{"Id": "0"}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "MessageNotInflight", "Message": "not in flight"}],
        },
        {
            "QueueUrl": QUEUE_URL,
            "Entries": [
                {"Id": "0", "ReceiptHandle": "h0", "VisibilityTimeout": 90},
                {"Id": "1", "ReceiptHandle": "h1", "VisibilityTimeout": 90},
            ],
        },
    )
    stubber.add_response(
        "change_message_visibility_batch",
        {"Successful": [{"Id": "0"}], "Failed": []},
        {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "0", "ReceiptHandle": "h0", "VisibilityTimeout": 90}]},
    )

    # When it beats twice
    heartbeat.beat()
    heartbeat.beat()

    # Then the lost lease was logged with its file, counted, and not extended again
    lost_lines = [r for r in caplog.records if r.getMessage() == "lease_lost"]
    assert [(r.levelname, r.message_id, r.key, r.aws_error_code) for r in lost_lines] == [
        ("WARNING", "m1", "b.pdf", "MessageNotInflight")
    ]
    assert registry.get_sample_value("filequeue_lease_lost_total") == 1
    assert heartbeat.tracked() == [kept]


def test_a_heartbeat_call_that_fails_is_retried_and_never_raises(client, caplog):
    sqs, stubber = client
    acknowledger = Acknowledger(sqs, QUEUE_URL, WorkerMetrics(None), attempts=2, pause=lambda _seconds: None)
    heartbeat = VisibilityHeartbeat(acknowledger, interval_seconds=60, visibility_timeout=90)
    heartbeat.track([Lease("m0", "h0", 1)])
    stubber.add_client_error("change_message_visibility_batch", service_error_code="RequestThrottled")
    stubber.add_client_error("change_message_visibility_batch", service_error_code="RequestThrottled")

    heartbeat.beat()

    assert [r.getMessage() for r in caplog.records].count("extend_call_failed") == 2
    assert [r.getMessage() for r in caplog.records].count("extend_gave_up") == 1
    assert len(heartbeat.tracked()) == 1
