"""Real worker processes and real signals against moto's server: SIGTERM during a batch (C2) or a long poll
(C3), SIGKILL (C4), scale-down of one of two pods (D5), and the Kubernetes shutdown order (stop receiving,
finish the batch within the grace period, release the rest).

The worker runs the real entry point (`handlers.worker.supervisor.serve`) with a journaling
handler (tests/functional/worker_app.py), so every case is about the runtime, not the pipeline.
End-to-end runs through the real handler and database are in test_worker_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from handlers.develop.devstack import aws_environment
from tests.functional.worker_app import (
    WorkerProcess,
    drain,
    get,
    iter_steps,
    new_queue,
    queue_counts,
    read_journal,
    send_bodies,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def worker_env(moto_server: str, tmp_path: Path):
    def make(queue_url: str, **overrides: str) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("FILEQUEUE_", "AWS_"))}
        env.update(aws_environment(moto_server))
        env.update(
            {
                "FILEQUEUE_QUEUE_URL": queue_url,
                "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "2",
                "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS": "10",
                "FILEQUEUE_HEALTH_PORT": "0",
                # The journaling handler extracts nothing; these limits only have to fit the short grace periods.
                "FILEQUEUE_DEADLINE_MARGIN_SECONDS": "0.5",
                "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": "0.5",
                "FILEQUEUE_WRITE_MARGIN_SECONDS": "0.2",
                "WORKER_APP_JOURNAL": str(tmp_path / "journal.jsonl"),
                "POWERTOOLS_LOG_LEVEL": "DEBUG",
            }
        )
        env.update(overrides)
        return env

    return make


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], processes: int = 1) -> WorkerProcess:
        worker = WorkerProcess.journal_app(env, processes)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def is_message(text: str):
    return lambda record: record.get("message") == text


def test_sigterm_mid_batch_finishes_what_fits_in_the_grace_period_and_leaves_nothing_invisible(
    sqs, worker_env, workers, tmp_path
):
    # Given a 10-message batch of 0.5 s records, a 4 s grace period and a 1 s handler margin (C2)
    queue_url, dlq_url = new_queue(sqs, visibility_timeout=120)
    ids = send_bodies(sqs, queue_url, [{"n": n, "sleep": 0.5} for n in range(10)])
    env = worker_env(
        queue_url,
        FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS="4",
        WORKER_APP_MARGIN_SECONDS="1",
        FILEQUEUE_WORKER_WAIT_TIME_SECONDS="20",
    )
    journal = tmp_path / "journal.jsonl"
    worker = workers(env)

    # When SIGTERM arrives while the third record is in work
    wait_until(lambda: len(list(iter_steps(journal, "start"))) >= 3, timeout=60)
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait()

    # Then the worker exits 0; what it finished is deleted, the rest is visible again at once
    done = {entry["message_id"] for entry in iter_steps(journal, "done")}
    shutdown = worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("shutdown "))
    assert code == 0, worker.output()
    assert 3 <= len(done) < 10
    assert shutdown["message"] == f"shutdown processed=10 released={10 - len(done)}"
    assert queue_counts(sqs, queue_url) == (10 - len(done), 0)
    leftover = {message["MessageId"] for message in drain(sqs, queue_url)}
    assert leftover == set(ids) - done
    assert queue_counts(sqs, dlq_url) == (0, 0)


def test_sigterm_during_the_long_poll_releases_what_the_poll_returns(sqs, worker_env, workers, tmp_path):
    # Given a worker in a 20 s long poll on an empty queue (C3)
    queue_url, _ = new_queue(sqs, visibility_timeout=120)
    worker = workers(worker_env(queue_url, FILEQUEUE_WORKER_WAIT_TIME_SECONDS="20"))
    worker.wait_for_log(is_message("receive_started"))

    # When SIGTERM arrives, then messages arrive while the poll is still open
    worker.process.send_signal(signal.SIGTERM)
    send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    code = worker.wait()

    # Then they were handed straight back, unprocessed: visible now, not after 120 s
    assert code == 0, worker.output()
    assert read_journal(tmp_path / "journal.jsonl") == []
    assert queue_counts(sqs, queue_url) == (3, 0)
    assert worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("shutdown "))["message"] == (
        "shutdown processed=0 released=3"
    )
    released = [record for record in worker.logs() if record.get("message") == "released"]
    assert {record["reason"] for record in released} == {"shutdown"}


@pytest.mark.slow
def test_sigkill_mid_batch_deletes_nothing_and_the_messages_come_back(sqs, worker_env, workers, tmp_path):
    # Given a worker whose lease is 4 s (kept alive by its heartbeat) working through 0.5 s records (C4)
    queue_url, _ = new_queue(sqs, visibility_timeout=120)
    ids = send_bodies(sqs, queue_url, [{"n": n, "sleep": 0.5} for n in range(10)])
    env = worker_env(queue_url, FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS="4")
    journal = tmp_path / "journal.jsonl"
    worker = workers(env)

    # When it is killed with SIGKILL after four records
    wait_until(lambda: len(list(iter_steps(journal, "done"))) >= 4, timeout=60)
    worker.process.kill()
    worker.wait()

    # Then nothing was deleted: all ten are in flight, and come back once the lease runs out
    assert sum(queue_counts(sqs, queue_url)) == 10
    wait_until(lambda: queue_counts(sqs, queue_url) == (10, 0), timeout=60)

    # And a new worker processes all ten (each alone: they were received before)
    second = workers(env)
    wait_until(lambda: len({e["message_id"] for e in iter_steps(journal, "done") if e["receive_count"] == "2"}) == 10)
    second.process.send_signal(signal.SIGTERM)
    assert second.wait() == 0
    assert queue_counts(sqs, queue_url) == (0, 0)
    batch_sizes = [record["size"] for record in second.logs() if record.get("message") == "batch_done"]
    assert batch_sizes == [1] * 10
    assert ids


@pytest.mark.slow
def test_scale_down_of_one_of_two_pods_loses_nothing_and_dead_letters_nothing(sqs, worker_env, workers, tmp_path):
    # Given two worker "pods" sharing 40 messages (D5)
    queue_url, dlq_url = new_queue(sqs, visibility_timeout=60, max_receive_count=3)
    ids = send_bodies(sqs, queue_url, [{"n": n, "sleep": 0.2} for n in range(40)])
    journal = tmp_path / "journal.jsonl"
    env = worker_env(queue_url, FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS="1", WORKER_APP_MARGIN_SECONDS="0.5")
    first, second = workers(env), workers(env)
    wait_until(lambda: len({entry["pid"] for entry in iter_steps(journal, "start")}) == 2, timeout=60)

    # When one of them is scaled down mid-batch
    first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0, first.output()

    # Then the other drains the queue, including what the first one released
    wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), timeout=120)
    second.process.send_signal(signal.SIGTERM)
    assert second.wait() == 0, second.output()
    done = Counter(entry["message_id"] for entry in iter_steps(journal, "done"))
    assert set(done) == set(ids)
    assert queue_counts(sqs, dlq_url) == (0, 0)
    assert max(int(entry["receive_count"]) for entry in read_journal(journal)) <= 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return sum(values)


@pytest.mark.slow
def test_two_processes_share_the_queue_restart_a_crashed_child_and_serve_aggregate_metrics(
    sqs, worker_env, workers, tmp_path
):
    # Given a 2-process worker with a health port, and a message that crashes its process once
    queue_url, _ = new_queue(sqs, visibility_timeout=4, max_receive_count=5)
    bodies: list[dict[str, Any]] = [{"n": n, "sleep": 0.1} for n in range(8)]
    bodies.append({"n": 99, "crash_once": True})
    ids = send_bodies(sqs, queue_url, bodies)
    port = free_port()
    journal = tmp_path / "journal.jsonl"
    worker = workers(worker_env(queue_url, FILEQUEUE_HEALTH_PORT=str(port)), processes=2)

    # When they run until everything is done
    wait_until(lambda: {entry["message_id"] for entry in iter_steps(journal, "done")} == set(ids), timeout=120)
    wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), timeout=60)

    # Then the crashed child was restarted and both processes worked
    exited = worker.wait_for_log(is_message("worker_exited"))
    assert exited["exit_code"] == 3
    assert len({entry["pid"] for entry in iter_steps(journal, "done")}) >= 2
    # And the parent serves health and the metrics of all children, the dead one included
    assert get(port, "/healthz")[0] == 200
    assert get(port, "/readyz") == (200, "ok\n")
    wait_until(lambda: metric(get(port, "/metrics")[1], "filequeue_messages_deleted_total") == len(ids), timeout=30)
    text = get(port, "/metrics")[1]
    assert metric(text, "filequeue_messages_received_total") >= len(ids)
    assert metric(text, "filequeue_messages_processed_total") == len(ids)
    assert get(port, "/nope")[0] == 404

    # And SIGTERM stops everything cleanly
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    stopped = worker.wait_for_log(is_message("supervisor_stopped"))
    assert stopped["exit_codes"] == [0, 0]


def test_one_process_serves_health_and_metrics_in_process(sqs, worker_env, workers, tmp_path):
    queue_url, _ = new_queue(sqs, visibility_timeout=30)
    ids = send_bodies(sqs, queue_url, [{"n": n} for n in range(3)])
    port = free_port()
    worker = workers(worker_env(queue_url, FILEQUEUE_HEALTH_PORT=str(port)), processes=1)

    wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), timeout=60)
    wait_until(lambda: get(port, "/healthz")[0] == 200, timeout=30)
    status, text = get(port, "/metrics")
    assert status == 200
    assert metric(text, "filequeue_messages_deleted_total") == len(ids)
    assert "filequeue_batch_duration_seconds_bucket" in text
    assert get(port, "/readyz")[0] == 200

    worker.process.send_signal(signal.SIGINT)
    assert worker.wait() == 0
    logs = worker.logs()
    assert all(record.get("service") == "filequeue" for record in logs)
    received = [record for record in logs if record.get("message") == "received"]
    assert {record["message_id"] for record in received} == set(ids)
    assert all(record["receive_count"] == 1 for record in received)
    json.dumps(logs)
