"""Reading single values and single columns by name of the row factory, not by position in a tuple."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, LiteralString

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg


def scalar(conn: psycopg.Connection[Any], query: LiteralString, params: Sequence[object] = ()) -> Any:
    """The one value `query` selects, or None when it finds no row."""
    from psycopg.rows import scalar_row

    with conn.cursor(row_factory=scalar_row) as cursor:
        return cursor.execute(query, params).fetchone()


def column(conn: psycopg.Connection[Any], query: LiteralString, params: Sequence[object] = ()) -> list[Any]:
    """The values of the one column `query` selects, in order."""
    from psycopg.rows import scalar_row

    with conn.cursor(row_factory=scalar_row) as cursor:
        return cursor.execute(query, params).fetchall()
