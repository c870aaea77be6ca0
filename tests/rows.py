"""Read back what the store holds, for assertions: each call opens and closes its own connection."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def rows(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Every row `query` returns, as tuples."""
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def document(url: str, key: str) -> dict[str, Any] | None:
    """The documents row stored under `key`, by column name; None when there is none."""
    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM documents WHERE key = %s", (key,)).fetchone()


def counts(url: str) -> tuple[int, int, int]:
    """How many documents, chunks and edges the store holds."""
    [(documents, chunks, edges)] = rows(
        url, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks), (SELECT count(*) FROM edges)"
    )
    return documents, chunks, edges
