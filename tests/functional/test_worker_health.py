"""`/healthz`, `/readyz` and `/metrics`: what makes the worker unhealthy or not ready (B6: sustained failure shows)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from handlers.worker.health import HealthServer, ReadinessProbe
from handlers.worker.metrics import WorkerMetrics
from handlers.worker.shutdown import StopSignal
from tests.functional.worker_app import get, new_queue


def test_readiness_needs_the_database_and_the_queue_and_caches_its_answer(sqs):
    queue_url, _ = new_queue(sqs)
    now = [0.0]
    calls: list[int] = []
    database_up = [True]

    def check_ready() -> None:
        calls.append(1)
        if not database_up[0]:
            raise ConnectionError("connection refused")

    stop = StopSignal()
    probe = ReadinessProbe(check_ready, sqs, queue_url, stop, cache_seconds=5.0, clock=lambda: now[0])

    assert probe.probe() == (True, "ok")
    database_up[0] = False
    assert probe.probe() == (True, "ok")  # cached
    assert len(calls) == 1
    now[0] = 6.0
    assert probe.probe() == (False, "database: connection refused")
    stop.request("SIGTERM")
    assert probe.probe() == (False, "stopping")


def test_readiness_fails_when_sqs_does_not_answer(sqs):
    queue_url, _ = new_queue(sqs)
    sqs.delete_queue(QueueUrl=queue_url)

    ok, reason = ReadinessProbe(lambda: None, sqs, queue_url, StopSignal()).probe()

    assert not ok
    assert reason == f"sqs: FILEQUEUE_QUEUE_URL names a queue that does not exist: {queue_url}"


def test_the_server_answers_each_endpoint_with_the_right_status():
    registry = CollectorRegistry()
    WorkerMetrics(registry).received.inc(3)
    alive = [True]
    server = HealthServer(
        0,
        liveness=lambda: (alive[0], "ok" if alive[0] else "stuck"),
        readiness=lambda: (False, "database: down"),
        registry=registry,
        host="127.0.0.1",
    )
    server.start()
    try:
        assert get(server.port, "/healthz") == (200, "ok\n")
        alive[0] = False
        assert get(server.port, "/healthz") == (503, "stuck\n")
        assert get(server.port, "/readyz") == (503, "database: down\n")
        status, text = get(server.port, "/metrics")
        assert status == 200
        assert "filequeue_messages_received_total 3.0" in text
        assert get(server.port, "/other")[0] == 404
    finally:
        server.stop()
