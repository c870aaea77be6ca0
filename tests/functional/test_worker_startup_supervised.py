"""With several processes the children start while the parent checks the configuration.

They wait for the checks to pass before their first receive, so a bad configuration still costs
no receive: the command exits with status 2 and one line, and the message stays visible.
"""

from __future__ import annotations

import socket

import pytest

from tests.functional.test_worker_startup import closed_port, error_line, start_worker

__all__ = ["start_worker"]  # the fixture, used by name

SUPERVISED = {"FILEQUEUE_WORKER_PROCESSES": "2"}


def test_an_unreachable_database_stops_the_started_children_before_any_receive(start_worker):
    url = f"postgresql://filequeue@127.0.0.1:{closed_port()}/filequeue"
    completed = start_worker(
        **SUPERVISED,
        FILEQUEUE_DATABASE_URL=url,
        FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS="1",
        FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS="2",
    )
    assert "FILEQUEUE_DATABASE_URL" in error_line(completed)
    # The children had started (they overlap the checks) and were stopped without receiving
    assert completed.stdout.count('"message":"worker_started_process"') == 2
    assert '"message":"supervisor_stopped"' in completed.stdout


def test_an_embedding_dimension_other_than_the_stores_is_named_with_children_started(start_worker):
    line = error_line(start_worker(**SUPERVISED, FILEQUEUE_EMBEDDING_DIMENSION="128"))
    assert "FILEQUEUE_EMBEDDING_DIMENSION" in line


@pytest.mark.parametrize("processes", ["2", "3"])
def test_a_health_port_in_use_is_named_before_the_children_receive(start_worker, processes):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the worker's health server binds every interface
        taken.listen()
        line = error_line(
            start_worker(FILEQUEUE_WORKER_PROCESSES=processes, FILEQUEUE_HEALTH_PORT=str(taken.getsockname()[1]))
        )
    assert "FILEQUEUE_HEALTH_PORT" in line
