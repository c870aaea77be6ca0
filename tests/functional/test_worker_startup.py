"""The worker refuses to start on configuration that would fail every record, naming the variable.

Each case runs the real command (`python -m handlers.worker`) against moto's server and PostgreSQL,
and expects it to exit with status 2 and one line on stderr, before it receives anything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults import PostgresProxy
from tests.functional.worker_app import WorkerProcess, get, new_queue, queue_counts, send_bodies, wait_until
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.fixture
def start_worker(sqs: Any, handler_env: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the worker on a fresh queue holding one message; it must exit by itself."""
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    send_bodies(sqs, queue_url, [{"n": 1}])

    def run(**overrides: str) -> subprocess.CompletedProcess[str]:
        env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({"FILEQUEUE_QUEUE_URL": queue_url, "FILEQUEUE_HEALTH_PORT": "0", "FILEQUEUE_WORKER_PROCESSES": "1"})
        env.update(overrides)
        completed = subprocess.run(
            [sys.executable, "-m", "handlers.worker"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Nothing was received: the message is still visible, no receive was spent on it
        assert queue_counts(sqs, queue_url) == (1, 0)
        return completed

    return run


def error_line(completed: subprocess.CompletedProcess[str]) -> str:
    assert completed.returncode == 2, completed.stdout + completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr  # one line, no traceback
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_queue_that_does_not_exist_is_named(start_worker, aws_env):
    missing = f"{aws_env}/123456789012/no-such-queue"
    line = error_line(start_worker(FILEQUEUE_QUEUE_URL=missing))
    assert "FILEQUEUE_QUEUE_URL" in line
    assert missing in line


def test_a_health_port_in_use_is_named(start_worker):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the worker's health server binds every interface
        taken.listen()
        line = error_line(start_worker(FILEQUEUE_HEALTH_PORT=str(taken.getsockname()[1])))
    assert "FILEQUEUE_HEALTH_PORT" in line


def test_a_database_that_refuses_connections_is_retried_for_the_configured_wait_then_named(start_worker):
    # Given a database URL whose port refuses connections (a server restarting, or failing over)
    url = f"postgresql://filequeue@127.0.0.1:{closed_port()}/filequeue"

    # When the worker starts with a 3 s wait for its database
    completed = start_worker(
        FILEQUEUE_DATABASE_URL=url, FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS="1", FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS="3"
    )

    # Then it retried with back-off before it gave up, and its one line names what to change
    line = error_line(completed)
    assert "FILEQUEUE_DATABASE_URL" in line
    assert "FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS" in line
    assert '"message":"database_unavailable"' in completed.stdout


def test_a_database_that_does_not_exist_is_named_at_once_without_waiting(start_worker, handler_env):
    from psycopg.conninfo import make_conninfo

    # Given a URL naming a database the server does not have, and a long wait for an unavailable one
    url = make_conninfo(handler_env, dbname="no_such_database")

    # When the worker starts
    completed = start_worker(FILEQUEUE_DATABASE_URL=url, FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS="600")

    # Then it exits at once: waiting cannot create the database
    line = error_line(completed)
    assert "FILEQUEUE_DATABASE_URL" in line
    assert "no_such_database" in line
    assert "does not exist" in line
    assert "database_unavailable" not in completed.stdout


@pytest.mark.slow
def test_a_worker_started_while_its_database_is_down_says_starting_then_polls_once_it_is_back(
    sqs, handler_env, monkeypatch
):
    # Given the database behind a cut proxy, and a worker started on it with its health server
    proxy = PostgresProxy(handler_env)
    proxy.cut()
    queue_url, _ = new_queue(sqs, visibility_timeout=60)
    port = closed_port()
    env = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "FILEQUEUE_QUEUE_URL": queue_url,
            "FILEQUEUE_DATABASE_URL": proxy.url,
            "FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS": "1",
            "FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS": "120",
            "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "1",
            "FILEQUEUE_HEALTH_PORT": str(port),
        }
    )
    worker = WorkerProcess([sys.executable, "-m", "handlers.worker", "--processes", "1"], env)
    try:
        # When it waits: alive, not ready, and both endpoints say why
        worker.wait_for_log(lambda record: record.get("message") == "database_unavailable")
        status, body = get(port, "/readyz")
        assert (status, body.startswith("starting: waiting for the database")) == (503, True)
        status, body = get(port, "/healthz")
        assert (status, body.startswith("starting")) == (200, True)

        # and the database comes back
        proxy.restore()

        # Then it starts polling, becomes ready, and stops cleanly
        worker.wait_for_log(lambda record: record.get("message") == "worker_started", timeout=60)
        wait_until(lambda: get(port, "/readyz") == (200, "ok\n"), timeout=30)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    finally:
        worker.kill()
        proxy.close()


def test_a_database_url_that_is_not_a_url_is_named(start_worker):
    line = error_line(start_worker(FILEQUEUE_DATABASE_URL="not a url"))
    assert "FILEQUEUE_DATABASE_URL is not a PostgreSQL URL" in line


def test_an_embedding_dimension_other_than_the_stores_is_named(start_worker):
    line = error_line(start_worker(FILEQUEUE_EMBEDDING_DIMENSION="128"))
    assert "FILEQUEUE_EMBEDDING_DIMENSION" in line


def test_a_visibility_timeout_no_lease_survives_between_renewals_is_named(start_worker):
    line = error_line(start_worker(FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS="3"))
    assert "FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS" in line
    assert "leases would run out between renewals" in line


def test_a_shutdown_grace_shorter_than_one_record_is_named(start_worker):
    line = error_line(start_worker(FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS="25"))
    assert "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS (25 s)" in line
    assert "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS" in line


def test_an_invalid_setting_is_one_line_naming_it(start_worker):
    line = error_line(start_worker(FILEQUEUE_CHUNK_SIZE="big"))
    assert "FILEQUEUE_CHUNK_SIZE must be a whole number, got 'big'" in line
