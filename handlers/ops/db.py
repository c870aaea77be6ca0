"""Database access for the command line: a validated URL, an autocommit connection, a schema check."""

from __future__ import annotations

from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, ErrorCode, TransientError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg

    from handlers.settings import Settings


def database_url(settings: Settings) -> str:
    """The URL from FILEQUEUE_DATABASE_URL or the secret, checked to be something libpq can parse."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    from handlers.adapters.postgres import resolve_database_url
    from handlers.adapters.secrets import fetch_secret

    url = resolve_database_url(settings.database_url, settings.database_secret_arn, fetch_secret)
    source = "FILEQUEUE_DATABASE_URL" if settings.database_url else "the secret named by FILEQUEUE_DATABASE_SECRET_ARN"
    try:
        conninfo_to_dict(url)
    except ProgrammingError:
        # libpq's message quotes the string, password included: name the variable instead.
        raise ConfigError(
            f"{source} is not a PostgreSQL URL (postgresql://user:password@host:5432/dbname) or a conninfo string"
        ) from None
    return url


@contextmanager
def connect(url: str, *, timeout_seconds: float) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection that knows the vector type; an unreachable database is a TransientError."""
    import psycopg
    from pgvector.psycopg import register_vector

    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=max(1, int(timeout_seconds)), application_name="filequeue-cli"
        )
    except psycopg.OperationalError as exc:
        raise TransientError(f"database unavailable: {exc}".strip(), code=ErrorCode.DB_UNAVAILABLE) from exc
    with conn:
        # Without the vector extension the database was never migrated, which require_schema reports.
        with suppress(psycopg.ProgrammingError):
            register_vector(conn)
        yield conn


def require_schema(conn: psycopg.Connection[Any]) -> None:
    """A database that was never migrated (or is behind) is a one-line error, not a missing-table traceback."""
    from handlers.adapters.migrate import pending_migrations

    if pending := pending_migrations(conn):
        raise ConfigError(f"database schema is behind ({', '.join(pending)}); run `filequeue migrate` first")
