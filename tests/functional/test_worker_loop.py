"""The poll loop in this process against moto's server (real boto3 calls), with injected handlers.

Fault cases: a message received twice in one receive (A8), handler answers Lambda rejects (A9), every
record failing (B2), a lost delete (B5), receive network errors (B6), a lease lost during work (B7), a
poison message (C5), work longer than the lease (C6), a BaseException in the handler (C7), and the
in-process half of a stop during a batch or a long poll (C2/C3). Subprocess and signal cases are in
test_worker_process.py; SQS errors that moto cannot produce are stubbed in tests/unit/test_worker_stubbed.py.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from prometheus_client import CollectorRegistry

from handlers.worker.metrics import WorkerMetrics
from handlers.worker.poll_loop import EXIT_ABORTED, EXIT_CONFIG, PollLoop
from handlers.worker.shutdown import StopSignal
from tests.functional.worker_app import drain, new_queue, queue_counts, send_bodies, wait_until
from tests.loop_options import loop_options


@dataclass
class Harness:
    loop: PollLoop
    registry: CollectorRegistry
    pauses: list[float]
    stop: StopSignal

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@dataclass
class Recorder:
    """A handler that records its calls and answers from a script."""

    fail: set[str] = field(default_factory=set)
    calls: list[tuple[list[str], Any]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        ids = [record["messageId"] for record in event["Records"]]
        self.calls.append((ids, context))
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in ids if message_id in self.fail]}

    @property
    def seen(self) -> list[str]:
        return [message_id for ids, _ in self.calls for message_id in ids]


@pytest.fixture
def harness(sqs):
    made: list[PollLoop] = []

    def make(
        queue_url: str, handler: Any, *, client: Any = None, stop: StopSignal | None = None, **overrides: Any
    ) -> Harness:
        registry = CollectorRegistry()
        stop = stop or StopSignal()
        pauses: list[float] = []
        options = loop_options(queue_url, wait_time_seconds=1, **overrides)
        loop = PollLoop(
            client or sqs,
            handler,
            options,
            stop=stop,
            metrics=WorkerMetrics(registry),
            rng=random.Random(3),  # noqa: S311 - jitter
            pause=pauses.append,
        )
        made.append(loop)
        return Harness(loop, registry, pauses, stop)

    yield make
    for loop in made:
        loop.close()


def receive(sqs: Any, queue_url: str, visibility: int | None = None) -> list[Any]:
    extra = {} if visibility is None else {"VisibilityTimeout": visibility}
    messages: list[Any] = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"], **extra
    ).get("Messages", [])
    return messages


def test_successes_are_deleted_and_reported_failures_stay_in_flight(sqs, harness):
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    ids = send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    handler = Recorder(fail={ids[1]})
    h = harness(queue_url, handler)

    h.loop.poll_once()

    assert sorted(handler.seen) == sorted(ids)
    assert queue_counts(sqs, queue_url) == (0, 1)  # the failure waits for its visibility timeout, as in Lambda
    assert h.value("filequeue_messages_received_total") == 3
    assert h.value("filequeue_messages_processed_total") == 2
    assert h.value("filequeue_messages_deleted_total") == 2
    assert h.value("filequeue_messages_failed_total", reason="reported") == 1
    assert h.value("filequeue_messages_in_flight") == 0
    assert h.value("filequeue_batch_duration_seconds_count") == 1


def test_each_claimed_record_gets_the_time_one_record_needs_however_short_the_lease(sqs, harness):
    # Given a 45 s lease, and settings whose record needs 30 s margin + 120 s extraction + 15 s write
    queue_url, _ = new_queue(sqs, visibility_timeout=45)
    send_bodies(sqs, queue_url, [{"n": 1}, {"n": 2}])
    seen: list[int] = []

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        for record in event["Records"]:
            assert gate(record["messageId"])
            seen.append(context.get_remaining_time_in_millis())
            time.sleep(0.5)
        return {"batchItemFailures": []}

    h = harness(queue_url, handler, ack_reserve_seconds=2.0)

    # When the loop hands both to the handler, which claims each before it starts it
    h.loop.poll_once()

    # Then each record, the second too, starts with the whole 165 s (the heartbeat keeps the lease meanwhile)
    assert len(seen) == 2
    assert all(160_000 < remaining <= 165_000 for remaining in seen), seen


def test_without_a_heartbeat_the_context_counts_down_the_visibility_lease(sqs, harness):
    queue_url, _ = new_queue(sqs, visibility_timeout=45)
    send_bodies(sqs, queue_url, [{"n": 1}])
    seen: list[int] = []

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        assert gate(event["Records"][0]["messageId"])
        seen.append(context.get_remaining_time_in_millis())
        return {"batchItemFailures": []}

    h = harness(queue_url, handler, ack_reserve_seconds=2.0, heartbeat=False)

    h.loop.poll_once()

    assert 30_000 < seen[0] <= 43_000  # 45 s lease, 2 s kept back for the delete


def fail_all(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in event["Records"]]}


def test_an_explicit_visibility_timeout_overrides_the_queues(sqs, harness):
    queue_url, _ = new_queue(sqs, visibility_timeout=2)
    send_bodies(sqs, queue_url, [{"n": 1}])
    h = harness(queue_url, fail_all, visibility_timeout_seconds=40)

    h.loop.poll_once()
    time.sleep(2.5)

    assert queue_counts(sqs, queue_url) == (0, 1)  # still leased: the worker's 40 s, not the queue's 2 s


def test_the_handler_is_never_called_with_an_empty_batch(sqs, harness):
    queue_url, _ = new_queue(sqs)
    handler = Recorder()
    h = harness(queue_url, handler)

    h.loop.poll_once()
    h.loop.poll_once()

    assert handler.calls == []


def test_a_message_received_twice_in_one_receive_is_handled_once_and_both_handles_deleted(sqs, harness):
    # Given the same message id with two receipt handles in one receive (https://github.com/aws/aws-sdk-ruby/issues/2913)
    queue_url, _ = new_queue(sqs)
    send_bodies(sqs, queue_url, [{"n": 1}])
    first = receive(sqs, queue_url)[0]
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0)
    second = receive(sqs, queue_url)[0]
    assert first["MessageId"] == second["MessageId"]
    assert first["ReceiptHandle"] != second["ReceiptHandle"]
    deletes: list[Any] = []
    sqs.meta.events.register("provide-client-params.sqs.DeleteMessageBatch", lambda params, **_: deletes.append(params))
    handler = Recorder()
    h = harness(queue_url, handler)
    h.loop.poll_once()  # describes the queue (nothing to receive)

    # When the loop processes that receive
    h.loop.process_messages([first, second], received_at=time.monotonic())

    # Then the handler saw one record, and both handles went out with distinct positional ids
    assert handler.seen == [first["MessageId"]]
    entries = deletes[-1]["Entries"]
    assert [entry["Id"] for entry in entries] == ["0", "1"]
    assert {entry["ReceiptHandle"] for entry in entries} == {first["ReceiptHandle"], second["ReceiptHandle"]}
    assert queue_counts(sqs, queue_url) == (0, 0)
    assert h.value("filequeue_messages_skipped_total") == 1
    assert h.value("filequeue_messages_deleted_total") == 2


def raising(event: dict[str, Any], context: Any, *, gate: Any = None) -> Any:
    raise RuntimeError("handler bug")


@pytest.mark.parametrize(
    "case",
    [
        (
            lambda event, context, gate=None: {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]},
            "invalid_response",
            "invalid_batch_response",
        ),
        (
            lambda event, context, gate=None: {"batchItemFailures": [{"itemIdentifier": None}]},
            "invalid_response",
            "invalid_batch_response",
        ),
        (
            lambda event, context, gate=None: {"batchItemFailures": [{"messageId": event["Records"][0]["messageId"]}]},
            "invalid_response",
            "invalid_batch_response",
        ),
        (lambda event, context, gate=None: "done", "invalid_response", "invalid_batch_response"),
        (raising, "handler_exception", "handler_failed"),
    ],
    ids=["identifier-not-in-batch", "null-identifier", "wrong-key", "not-an-object", "exception"],
)
def test_an_invalid_response_or_an_exception_deletes_nothing(sqs, harness, caplog, case):
    handler, reason, log = case
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(4)])
    h = harness(queue_url, handler)

    h.loop.poll_once()

    assert queue_counts(sqs, queue_url) == (0, 4)
    assert h.value("filequeue_messages_deleted_total") == 0
    assert h.value("filequeue_messages_failed_total", reason=reason) == 4
    errors = [record for record in caplog.records if record.getMessage() == log]
    assert len(errors) == 1
    assert errors[0].levelname == "ERROR"


def test_batches_where_everything_failed_back_off_with_growing_jittered_delays(sqs, harness):
    # Given a handler that fails everything (S3 AccessDenied for all objects, B2) and a 1 s lease
    queue_url, _ = new_queue(sqs, visibility_timeout=1, max_receive_count=10)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    h = harness(queue_url, fail_all, failure_backoff_base_seconds=1.0, failure_backoff_cap_seconds=4.0)

    # When four receives in a row fail entirely
    for _ in range(4):
        wait_until(lambda: queue_counts(sqs, queue_url)[0] == 3, timeout=30)
        h.loop.poll_once()

    # Then nothing was deleted and the loop paused after each, within growing, capped ceilings
    assert h.value("filequeue_messages_deleted_total") == 0
    assert h.value("filequeue_messages_failed_total", reason="reported") == 12
    assert len(h.pauses) == 4
    assert all(0 <= pause <= ceiling for pause, ceiling in zip(h.pauses, [1.0, 2.0, 4.0, 4.0], strict=True))


def test_delete_network_errors_are_retried_then_succeed(sqs, harness):
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(2)])
    failures = {"left": 2}

    def flaky(**_: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise EndpointConnectionError(endpoint_url="http://sqs.invalid")

    client = boto3.client("sqs", region_name="us-east-1", config=_no_retries())
    client.meta.events.register("before-send.sqs.DeleteMessageBatch", flaky)
    h = harness(queue_url, Recorder(), client=client)

    h.loop.poll_once()

    assert queue_counts(sqs, queue_url) == (0, 0)
    assert h.value("filequeue_messages_deleted_total") == 2
    assert h.value("filequeue_sqs_errors_total", operation="delete") == 2


def test_a_delete_that_never_gets_through_is_given_up_without_crashing_the_loop(sqs, harness, caplog):
    # Given the commit happened but the ack is lost for good (B5)
    queue_url, _ = new_queue(sqs, visibility_timeout=1)
    ids = send_bodies(sqs, queue_url, [{"n": 1}])

    def down(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://sqs.invalid")

    client = boto3.client("sqs", region_name="us-east-1", config=_no_retries())
    client.meta.events.register("before-send.sqs.DeleteMessageBatch", down)
    handler = Recorder()
    h = harness(queue_url, handler, client=client, ack_attempts=3)

    # When the loop processes it, and the message comes back after its visibility timeout
    h.loop.poll_once()
    client.meta.events.unregister("before-send.sqs.DeleteMessageBatch", down)
    wait_until(lambda: queue_counts(sqs, queue_url)[0] == 1, timeout=30)
    h.loop.poll_once()

    # Then the loop logged the lost ack, kept going, and the redelivery was handled and deleted
    assert handler.seen == [ids[0], ids[0]]
    assert [r.getMessage() for r in caplog.records].count("delete_gave_up") == 1
    assert queue_counts(sqs, queue_url) == (0, 0)


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://sqs.invalid"),
        ReadTimeoutError(endpoint_url="http://sqs.invalid"),
    ],
    ids=["connection", "read-timeout"],
)
def test_receive_network_errors_back_off_and_the_loop_keeps_going(sqs, harness, error):
    queue_url, _ = new_queue(sqs)
    ids = send_bodies(sqs, queue_url, [{"n": 1}])
    left = {"n": 3}

    def broken(**_: Any) -> None:
        if left["n"] > 0:
            left["n"] -= 1
            raise error

    client = boto3.client("sqs", region_name="us-east-1", config=_no_retries())
    client.meta.events.register("before-send.sqs.ReceiveMessage", broken)
    handler = Recorder()
    h = harness(queue_url, handler, client=client, receive_backoff_base_seconds=1.0, receive_backoff_cap_seconds=10.0)

    for _ in range(4):
        h.loop.poll_once()

    assert handler.seen == ids
    assert h.value("filequeue_sqs_errors_total", operation="receive") == 3
    assert len(h.pauses) == 3
    assert all(0 <= pause <= ceiling for pause, ceiling in zip(h.pauses, [1.0, 2.0, 4.0], strict=True))


def test_a_lost_lease_during_work_is_logged_counted_and_work_goes_on(sqs, harness, caplog):
    # Given a handler during whose work the message is deleted behind the worker's back (B7)
    queue_url, _ = new_queue(sqs, visibility_timeout=3)
    ids = send_bodies(sqs, queue_url, [{"n": 1}])
    other = boto3.client("sqs", region_name="us-east-1")
    finished: list[bool] = []

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        other.delete_message(QueueUrl=queue_url, ReceiptHandle=event["Records"][0]["receiptHandle"])
        wait_until(lambda: any(r.getMessage() == "lease_lost" for r in caplog.records), timeout=30)
        finished.append(True)
        return {"batchItemFailures": []}

    h = harness(queue_url, handler)

    # When the loop processes it, its heartbeat beating every second
    h.loop.poll_once()

    # Then the heartbeat reported the lost lease, and the handler still finished
    assert finished == [True]
    lost = [record for record in caplog.records if record.getMessage() == "lease_lost"]
    assert lost[0].levelname == "WARNING"
    assert lost[0].message_id == ids[0]
    assert lost[0].aws_error_code == "ReceiptHandleIsInvalid"
    assert h.value("filequeue_lease_lost_total") >= 1


def test_the_heartbeat_keeps_a_long_running_message_from_being_redelivered(sqs, harness):
    # Given a 2 s lease and a handler that works for 5 s (C6)
    queue_url, _ = new_queue(sqs, visibility_timeout=2)
    ids = send_bodies(sqs, queue_url, [{"n": 1}])
    working = threading.Event()
    stolen: list[Any] = []

    def slow(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        working.set()
        time.sleep(5)
        return {"batchItemFailures": []}

    def other_consumer() -> None:
        working.wait(30)
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            stolen.extend(receive(sqs, queue_url))

    h = harness(queue_url, slow)
    thief = threading.Thread(target=other_consumer)
    thief.start()

    # When the loop processes it while another consumer polls the same queue
    h.loop.poll_once()
    thief.join(60)

    # Then nobody else received it, and it was deleted once the work was done
    assert stolen == []
    assert queue_counts(sqs, queue_url) == (0, 0)
    assert h.value("filequeue_messages_deleted_total") == 1
    assert ids


def test_without_the_heartbeat_a_long_running_message_is_redelivered(sqs, harness):
    # The contrast case: proves the previous test measures the heartbeat, not moto's timing.
    queue_url, _ = new_queue(sqs, visibility_timeout=2)
    send_bodies(sqs, queue_url, [{"n": 1}])
    stolen: list[Any] = []

    def slow(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not stolen:
            stolen.extend(receive(sqs, queue_url, visibility=60))
        return {"batchItemFailures": []}

    h = harness(queue_url, slow, heartbeat=False)
    h.loop.poll_once()

    assert len(stolen) == 1


def test_a_poison_message_alone_reaches_the_dlq_and_its_batch_mates_are_processed(sqs, harness):
    # Given 10 messages, one of which fails any batch it is part of (a crash or timeout, C5)
    queue_url, dlq_url = new_queue(sqs, visibility_timeout=1, max_receive_count=3)
    ids = send_bodies(sqs, queue_url, [{"n": n, "poison": n == 4} for n in range(10)])
    poison = ids[4]
    done: list[tuple[str, str]] = []

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        if any(record["messageId"] == poison for record in event["Records"]):
            raise RuntimeError("the whole batch dies with the poison message")
        done.extend((r["messageId"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"])
        return {"batchItemFailures": []}

    h = harness(queue_url, handler)

    # When the loop runs until the poison message is dead-lettered
    def dead_lettered() -> bool:
        h.loop.poll_once()
        return queue_counts(sqs, dlq_url)[0] == 1

    wait_until(dead_lettered, timeout=90, interval=0)

    # Then only the poison message is in the DLQ; every batch-mate was processed on its 2nd receive
    assert [m["MessageId"] for m in drain(sqs, dlq_url)] == [poison]
    assert sorted(message_id for message_id, _ in done) == sorted(set(ids) - {poison})
    assert {count for _, count in done} == {"2"}
    assert queue_counts(sqs, queue_url) == (0, 0)


@pytest.mark.parametrize("abort", [SystemExit(2), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_a_base_exception_in_the_handler_deletes_nothing_and_stops_cleanly(sqs, harness, caplog, abort):
    # Given a handler that raises what Powertools does not catch (C7)
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])

    def aborting(event: dict[str, Any], context: Any, *, gate: Any = None) -> Any:
        raise abort

    h = harness(queue_url, aborting)

    # When the loop runs
    code = h.loop.run()

    # Then it stopped by itself with a failure code, deleted nothing and handed the batch back
    assert code == EXIT_ABORTED
    assert h.value("filequeue_messages_deleted_total") == 0
    assert h.value("filequeue_messages_failed_total", reason="aborted") == 3
    assert queue_counts(sqs, queue_url) == (3, 0)
    assert [r.levelname for r in caplog.records if r.getMessage() == "handler_aborted"] == ["ERROR"]
    assert any(r.getMessage() == "shutdown processed=3 released=3" for r in caplog.records)


def test_a_stop_during_a_batch_finishes_it_shortens_the_deadline_and_releases_the_rest(sqs, harness, caplog):
    # Given three redelivered messages (each is its own batch) and a 4 s grace period
    queue_url, _ = new_queue(sqs, visibility_timeout=60, max_receive_count=10)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    first_receive = receive(sqs, queue_url)
    sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(first_receive)
        ],
    )
    remaining: list[int] = []
    stop = StopSignal()

    def handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        remaining.append(context.get_remaining_time_in_millis())
        stop.request("SIGTERM")  # the signal arrives while this batch is in work
        remaining.append(context.get_remaining_time_in_millis())
        return {"batchItemFailures": []}

    h = harness(queue_url, handler, stop=stop, shutdown_grace_seconds=4.0)

    # When the loop runs
    code = h.loop.run()

    # Then the batch in work finished and was deleted, the others were released: nothing is left in flight
    assert code == 0
    assert remaining[0] > 50_000
    assert remaining[1] <= 4_000
    assert h.value("filequeue_messages_deleted_total") == 1
    assert h.value("filequeue_messages_released_total") == 2
    assert queue_counts(sqs, queue_url) == (2, 0)
    assert any(r.getMessage() == "shutdown processed=1 released=2" for r in caplog.records)


def test_messages_returned_by_a_receive_that_was_in_flight_at_stop_are_released_unprocessed(sqs, harness, caplog):
    # Given a stop that arrives while the long poll is running (C3)
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    handler = Recorder()
    client = boto3.client("sqs", region_name="us-east-1")
    h = harness(queue_url, handler, client=client)
    client.meta.events.register("after-call.sqs.ReceiveMessage", lambda **_: h.stop.request("SIGTERM"))

    # When the loop runs
    assert h.loop.run() == 0

    # Then the handler never ran and the messages are visible again at once
    assert handler.calls == []
    assert queue_counts(sqs, queue_url) == (3, 0)
    assert h.value("filequeue_messages_released_total") == 3
    assert any(r.getMessage() == "shutdown processed=0 released=3" for r in caplog.records)


def _no_retries() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 1})


def redelivered(sqs: Any, queue_url: str, count: int) -> list[str]:
    """`count` messages received once and handed back, so the loop plans each in a batch of its own."""
    ids = send_bodies(sqs, queue_url, [{"n": n} for n in range(count)])
    first_receive = receive(sqs, queue_url)
    assert len(first_receive) == count
    sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(first_receive)
        ],
    )
    return ids


@dataclass
class Claiming:
    """A handler that, like the real one, claims each record before it starts it, and skips the released."""

    slow: dict[str, float] = field(default_factory=dict)
    on_start: Any = None
    started: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            message_id = record["messageId"]
            if gate is None or not gate(message_id):
                self.refused.append(message_id)
                failures.append({"itemIdentifier": message_id})
                continue
            self.started.append(message_id)
            if self.on_start is not None:
                self.on_start(message_id)
            time.sleep(self.slow.get(message_id, 0))
        return {"batchItemFailures": failures}


def test_a_deleted_message_is_no_longer_extended_so_no_false_lease_lost(sqs, harness, caplog):
    # Given two redelivered messages (two batches of one), the second slow, and a 3 s lease (1 s heartbeat)
    queue_url, _ = new_queue(sqs, visibility_timeout=3, max_receive_count=10)
    first, second = redelivered(sqs, queue_url, 2)
    handler = Recorder()

    def slow_second(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
        if event["Records"][0]["messageId"] == second:
            time.sleep(3.5)
        return handler(event, context, gate=gate)

    h = harness(queue_url, slow_second)

    # When the loop processes the receive: the first is deleted while the second is still in work
    h.loop.poll_once()

    # Then the heartbeat never tried to extend the deleted one: no lease was reported lost
    assert handler.seen == [first, second]
    assert [r for r in caplog.records if r.getMessage() == "lease_lost"] == []
    assert h.value("filequeue_lease_lost_total") == 0
    assert h.value("filequeue_messages_deleted_total") == 2


def test_messages_waiting_behind_slow_work_are_released_for_an_idle_consumer(sqs, harness):
    # Given four redelivered messages, the first of which takes 6 s, and a 1 s start wait
    queue_url, dlq_url = new_queue(sqs, visibility_timeout=30, max_receive_count=10)
    slow, *others = redelivered(sqs, queue_url, 4)
    taken: list[str] = []

    def idle_consumer(message_id: str) -> None:
        if message_id != slow:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(taken) < len(others):
            for message in receive(sqs, queue_url, visibility=60):
                taken.append(message["MessageId"])
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    handler = Claiming(slow={slow: 0}, on_start=idle_consumer)
    h = harness(queue_url, handler, start_wait_seconds=1.0)

    # When the loop works on the slow one (the idle consumer polls meanwhile)
    h.loop.poll_once()

    # Then the three others were handed back within seconds and taken by the idle consumer, not started here
    assert sorted(taken) == sorted(others)
    assert handler.started == [slow]
    assert h.value("filequeue_messages_released_total") == 3
    assert queue_counts(sqs, dlq_url) == (0, 0)


def test_a_message_without_a_receive_to_spare_is_not_released_for_waiting(sqs, harness):
    # Given two redelivered messages (receive count 2) on a queue that dead-letters after 3 receives
    queue_url, dlq_url = new_queue(sqs, visibility_timeout=30, max_receive_count=3)
    slow, other = redelivered(sqs, queue_url, 2)
    handler = Claiming(slow={slow: 2.5})
    h = harness(queue_url, handler, start_wait_seconds=0.5)

    # When the first takes longer than the start wait
    h.loop.poll_once()

    # Then the second still waited and was processed here: releasing it would have spent its last receive
    assert handler.started == [slow, other]
    assert h.value("filequeue_messages_released_total") == 0
    assert queue_counts(sqs, queue_url) == (0, 0)
    assert queue_counts(sqs, dlq_url) == (0, 0)


def test_a_stop_releases_the_records_a_claiming_handler_has_not_reached_at_once(sqs, harness):
    # Given three fresh messages in one batch, and a stop that comes while the first record is in work
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    first, *rest = send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    visible_during_work: list[tuple[int, int]] = []
    stop = StopSignal()

    def on_start(message_id: str) -> None:
        if message_id == first:
            stop.request("SIGTERM")
            wait_until(lambda: queue_counts(sqs, queue_url)[0] == len(rest), timeout=10)
            visible_during_work.append(queue_counts(sqs, queue_url))

    handler = Claiming(on_start=on_start)
    h = harness(queue_url, handler, stop=stop, shutdown_grace_seconds=30.0)

    # When the loop runs
    assert h.loop.run() == 0

    # Then the two unreached records were visible again while the first was still in work, and never started
    assert visible_during_work == [(2, 1)]
    assert handler.started == [first]
    assert sorted(handler.refused) == sorted(rest)
    assert h.value("filequeue_messages_deleted_total") == 1
    assert h.value("filequeue_messages_released_total") == 2
    assert queue_counts(sqs, queue_url) == (2, 0)


def test_a_configuration_error_in_the_handler_stops_receiving_and_hands_the_batch_back(sqs, harness, caplog):
    from handlers.errors import ConfigError

    # Given a handler that fails on configuration (every record would)
    queue_url, dlq_url = new_queue(sqs, visibility_timeout=60, max_receive_count=2)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    calls: list[int] = []

    def misconfigured(event: dict[str, Any], context: Any, *, gate: Any = None) -> Any:
        calls.append(len(event["Records"]))
        raise ConfigError("FILEQUEUE_EMBEDDING_DIMENSION is 128 but the store holds 256")

    h = harness(queue_url, misconfigured)

    # When the loop runs
    runner = threading.Thread(target=lambda: calls.append(h.loop.run()))
    runner.start()
    runner.join(30)
    stopped = not runner.is_alive()
    h.stop.request("test over")
    runner.join(30)

    # Then it stopped by itself with a failure code after one batch, and the messages are visible again
    assert stopped
    assert calls == [3, EXIT_CONFIG]
    assert queue_counts(sqs, queue_url) == (3, 0)
    assert queue_counts(sqs, dlq_url) == (0, 0)
    [line] = [r for r in caplog.records if r.getMessage() == "configuration_error"]
    assert "FILEQUEUE_EMBEDDING_DIMENSION" in line.error
