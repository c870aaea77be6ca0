"""The poll loop's Lambda parity pieces without SQS: grouping and planning received messages, the
partial-batch response rules Lambda applies, backoff, the context handed to the handler, worker sizing."""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

import pytest

from handlers.errors import ConfigError
from handlers.runtime_context import DeadlineContext
from handlers.worker.backoff import Backoff
from handlers.worker.context import memory_limit_mb, worker_context
from handlers.worker.poll_loop import EXIT_CONFIG
from handlers.worker.records import Received, describe_body, group_received, plan_batches
from handlers.worker.response import InvalidBatchResponseError, failed_message_ids
from handlers.worker.shutdown import StopSignal
from handlers.worker.supervisor import Supervisor, available_cpus, worker_count


def message(message_id: str, handle: str, receive_count: int = 1, body: str = "{}") -> Any:
    return {
        "MessageId": message_id,
        "ReceiptHandle": handle,
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1",
            "SenderId": "x",
            "ApproximateFirstReceiveTimestamp": "2",
        },
    }


def test_a_message_received_twice_in_one_receive_is_one_record_with_both_handles():
    grouped = group_received([message("m1", "h1"), message("m2", "h2"), message("m1", "h1-again")])

    assert [item.message_id for item in grouped] == ["m1", "m2"]
    assert [lease.receipt_handle for lease in grouped[0].leases] == ["h1", "h1-again"]


def test_redelivered_messages_are_planned_alone_and_fresh_ones_together():
    grouped = group_received(
        [message("a", "ha"), message("b", "hb", receive_count=2), message("c", "hc"), message("d", "hd", 3)]
    )

    batches = plan_batches(grouped, batch_size=10)

    assert [[item.message_id for item in batch] for batch in batches] == [["a", "c"], ["b"], ["d"]]


def test_planned_batches_respect_the_batch_size():
    grouped = group_received([message(f"m{i}", f"h{i}") for i in range(7)])

    assert [len(batch) for batch in plan_batches(grouped, batch_size=3)] == [3, 3, 1]


BATCH = frozenset({"m1", "m2"})


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}, {"m1", "m2"}),
    ],
)
def test_valid_responses_name_the_failed_messages(response, failed):
    assert failed_message_ids(response, BATCH) == failed


@pytest.mark.parametrize(
    "response",
    [
        "ok",
        [],
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"messageId": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        {"batchItemFailures": [{"itemIdentifier": 1}]},
        {"batchItemFailures": ["m1"]},
        {"batchItemFailures": "m1"},
        {"batchItemFailure": [{"itemIdentifier": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "m1", "extra": {1, 2}}]},
    ],
    ids=[
        "string",
        "list",
        "empty-identifier",
        "null-identifier",
        "wrong-key",
        "not-in-batch",
        "number-identifier",
        "bare-string-items",
        "not-a-list",
        "misspelt-top-key",
        "not-json",
    ],
)
def test_invalid_responses_are_rejected_like_lambda_rejects_them(response):
    with pytest.raises(InvalidBatchResponseError):
        failed_message_ids(response, BATCH)


def test_backoff_ceilings_grow_exponentially_up_to_the_cap_and_delays_stay_below_them():
    backoff = Backoff(base_seconds=1.0, cap_seconds=10.0, rng=random.Random(7))  # noqa: S311 - jitter
    ceilings, delays = [], []
    for _ in range(8):
        ceilings.append(backoff.ceiling())
        delays.append(backoff.next_delay())

    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    assert all(0.0 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.ceiling() == 1.0


def test_backoff_survives_thousands_of_attempts():
    backoff = Backoff(base_seconds=0.5, cap_seconds=30.0, attempts=5000)
    assert backoff.ceiling() == 30.0


def test_context_counts_down_to_its_deadline_and_never_below_zero():
    now = [100.0]
    context = DeadlineContext(
        deadline=lambda: 130.0, invoked_function_arn="arn", memory_limit_in_mb=1, clock=lambda: now[0]
    )

    assert context.get_remaining_time_in_millis() == 30_000
    now[0] = 131.0
    assert context.get_remaining_time_in_millis() == 0


def test_context_has_the_attributes_powertools_reads():
    context = worker_context(lambda: 0.0, "arn:aws:sqs:eu-west-1:123456789012:uploads", memory_limit_mb())

    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:filequeue-worker"
    assert context.function_name == "filequeue-worker"
    assert context.memory_limit_in_mb > 0
    assert (
        context.aws_request_id
        != DeadlineContext(deadline=lambda: 0.0, invoked_function_arn="", memory_limit_in_mb=0).aws_request_id
    )
    for name in ("log_group_name", "log_stream_name", "function_version"):
        assert getattr(context, name)


def test_memory_limit_prefers_the_cgroup_limit(tmp_path):
    limit = tmp_path / "memory.max"
    limit.write_text("536870912\n")
    assert memory_limit_mb(limit) == 512
    limit.write_text("max\n")
    assert memory_limit_mb(limit) > 0


def test_stop_signal_deadline_starts_at_the_request():
    now = [10.0]
    stop = StopSignal(clock=lambda: now[0])
    assert stop.deadline(25.0) == float("inf")
    stop.request("SIGTERM")
    now[0] = 50.0
    stop.request("again")
    assert stop.deadline(25.0) == 35.0
    assert stop.reason == "SIGTERM"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "red+flower%3A.jpg"}}}]}),
            ("b", "red flower:.jpg"),
        ),
        (json.dumps({"detail": {"bucket": {"name": "b"}, "object": {"key": "k"}}}), ("b", "k")),
        ("{not json", (None, None)),
        ("[1]", (None, None)),
        (json.dumps({"Records": [{"s3": {"bucket": "b"}}]}), (None, None)),
    ],
)
def test_describe_body_finds_bucket_and_key_for_log_lines(body, expected):
    assert describe_body(body) == expected


def test_received_reports_the_highest_receive_count_of_its_copies():
    grouped = group_received([message("m", "h1", receive_count=1), message("m", "h2", receive_count=2)])
    assert isinstance(grouped[0], Received)
    assert grouped[0].receive_count == 2


def test_the_worker_count_follows_the_cgroup_cpu_quota(tmp_path):
    quota = tmp_path / "cpu.max"
    cpus = len(os.sched_getaffinity(0))
    quota.write_text("150000 100000\n")
    assert available_cpus(quota) == min(cpus, 2)
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == cpus
    assert available_cpus(tmp_path / "missing") == cpus
    assert worker_count(3) == 3


def test_a_negative_worker_count_is_a_configuration_error():
    with pytest.raises(ConfigError, match="worker processes"):
        worker_count(-1)


def exit_with_configuration_error() -> None:
    raise SystemExit(EXIT_CONFIG)


def test_a_child_stopped_by_a_configuration_error_stops_the_supervisor_instead_of_restarting():
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    spawned: list[int] = []

    def spawn(index: int) -> Any:
        spawned.append(index)
        return context.Process(target=exit_with_configuration_error)

    supervisor = Supervisor(spawn, 1, stop=StopSignal(), grace_seconds=5, liveness=[0.0])

    assert supervisor.run() == EXIT_CONFIG
    assert spawned == [0]
