"""Transaction-scoped advisory locks: the names on which File Queue's writers take turns.

Each lock is held until the caller's transaction ends, so it must be taken inside one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg


def lock_document(conn: psycopg.Connection[Any], bucket: str, key: str) -> None:
    """The lock on one document identity: every write to the document (store, fail, delete, relink) holds it."""
    _lock(conn, f"{bucket}/{key}")


def lock_file_name(conn: psycopg.Connection[Any], name: str) -> None:
    """The lock on one file name, so two documents arriving with the same name each see the other."""
    _lock(conn, f"filequeue-name:{name}")


def _lock(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
