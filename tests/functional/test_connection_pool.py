"""The repository's connection pool on the real PostgreSQL: a connection is checked only after a pause."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from handlers.adapters import postgres
from handlers.adapters.postgres import PostgresRepository, open_pool
from handlers.errors import TransientError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from psycopg_pool import ConnectionPool

PAUSE_SECONDS = 0.3


@pytest.fixture
def pool(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectionPool[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    monkeypatch.setattr(postgres, "CHECK_AFTER_IDLE_SECONDS", PAUSE_SECONDS)
    opened = open_pool(database_url, max_size=1, timeout=10)
    opened.wait(timeout=10)
    yield opened
    opened.close()


def backend_pid(pool: ConnectionPool[Any]) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])


def terminate(database_url: str, pid: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_closed_by_the_server_during_a_pause_is_replaced_before_use(pool, database_url):
    """As after a Lambda freeze: the server closed it meanwhile; the check finds out, nobody fails."""
    first = backend_pid(pool)
    terminate(database_url, first)
    time.sleep(PAUSE_SECONDS * 2)

    assert backend_pid(pool) != first


def test_a_connection_handed_out_again_at_once_is_not_checked_and_a_break_fails_one_record(pool, database_url):
    """No round trip per checkout while busy; a break in that moment costs a retry, never a wrong write."""
    repository = PostgresRepository(pool, vector_index="live")
    first = backend_pid(pool)
    terminate(database_url, first)

    with pytest.raises(TransientError) as caught:
        repository.ping()
    assert caught.value.code == "db_unavailable"

    assert backend_pid(pool) != first  # the pool replaced the broken connection
