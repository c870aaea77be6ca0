"""The one database session of the read and maintenance side: URL resolved once, schema checked once.

`session(settings)` is the only `psycopg.connect` outside the handler's pool (`adapters/postgres.py`):
the command line, the Python API, compaction, re-embedding and the start-up checks of `wiring` all
open their connection here, so a bad URL, an unreachable server and an unmigrated database read the
same everywhere.
"""

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

    settings.require_database()
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
def session(
    settings: Settings,
    *,
    allow_pending_migrations: bool = False,
    url: str | None = None,
    application_name: str = "filequeue",
) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to an up-to-date store that knows the vector type.

    `allow_pending_migrations=True` skips the schema check: `filequeue migrate`, the start-up
    migrations and `filequeue status` (which reports them) need a connection to a database that is
    behind. A database that cannot be reached, or that drops the connection during the block, is a
    TransientError. `url` is one `database_url` resolved already (for a caller that also opens a pool
    on it), so a secret is read once.
    """
    import psycopg
    from pgvector.psycopg import register_vector

    from handlers.adapters.postgres import configuration_fault

    url = url or database_url(settings)
    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, int(settings.db_connect_timeout_seconds)),
            application_name=application_name,
        )
    except psycopg.OperationalError as exc:
        if configuration_fault(exc):
            reason = " ".join(str(exc).split())  # libpq's messages span lines
            raise ConfigError(
                f"FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN) names a database that refuses it: {reason}"
            ) from None
        raise TransientError(f"database unavailable: {exc}".strip(), code=ErrorCode.DB_UNAVAILABLE) from exc
    try:
        with conn:
            # Without the vector extension the database was never migrated, which require_schema reports.
            with suppress(psycopg.ProgrammingError):
                register_vector(conn)
            if not allow_pending_migrations:
                require_schema(conn)
            yield conn
    except psycopg.OperationalError as exc:
        raise TransientError(f"database unavailable: {exc}".strip(), code=ErrorCode.DB_UNAVAILABLE) from exc


def require_schema(conn: psycopg.Connection[Any]) -> None:
    """A server the store cannot use, or a database that was never migrated (or is behind), is a one-line error."""
    from handlers.adapters.migrate import check_prerequisites, pending_migrations

    check_prerequisites(conn)
    if pending := pending_migrations(conn):
        raise ConfigError(f"database schema is behind ({', '.join(pending)}); run `filequeue migrate` first")


def migrate_store(settings: Settings) -> list[str]:
    """Apply the pending migrations for the configured embedder (`filequeue migrate`); the names applied."""
    from handlers.adapters.embedders import build_embedder
    from handlers.adapters.migrate import StoreConfig, check_store_config, migrate, read_store_config

    embedder = build_embedder(settings)
    wanted = StoreConfig(embedder.model, embedder.dimension)
    with session(settings, allow_pending_migrations=True, application_name="filequeue-migrate") as conn:
        applied = migrate(conn, wanted)
        check_store_config(read_store_config(conn), wanted)
    return applied
