"""Chunk compaction as the runtimes trigger it: `filequeue compact`, the worker's leader, a scheduled Lambda.

Each opens its own autocommit connection and calls `handlers.adapters.segments.compact`, which does
nothing when another run holds the database's compaction lock, so any number of triggers may fire.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, ErrorCode, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import psycopg

    from handlers.adapters.segments import CompactOptions, CompactReport
    from handlers.settings import Settings


def compact_options(settings: Settings, **overrides: Any) -> CompactOptions:
    from handlers.adapters.segments import CompactOptions

    return CompactOptions(seal_rows=settings.compaction_seal_rows, **overrides)


def run_compaction(
    settings: Settings,
    options: CompactOptions,
    *,
    on_connect: Callable[[psycopg.Connection[Any]], None] | None = None,
) -> CompactReport:
    """One compaction of the configured database; `on_connect` sees the connection (to cancel it)."""
    from handlers.adapters.segments import compact

    with database_connection(settings) as conn:
        if on_connect is not None:
            on_connect(conn)
        return compact(conn, options)


@contextmanager
def database_connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a database whose schema is up to date; failures are FileQueueErrors."""
    import psycopg

    from handlers.adapters.migrate import pending_migrations
    from handlers.adapters.postgres import resolve_database_url
    from handlers.adapters.secrets import fetch_secret

    settings.require_database()
    url = resolve_database_url(settings.database_url, settings.database_secret_arn, fetch_secret)
    try:
        with psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, int(settings.db_connect_timeout_seconds)),
            application_name="filequeue-compaction",
        ) as conn:
            if pending := pending_migrations(conn):
                raise ConfigError(f"database schema is behind ({', '.join(pending)}); run `filequeue migrate` first")
            yield conn
    except psycopg.OperationalError as exc:
        raise TransientError(f"database unavailable: {exc}", code=ErrorCode.DB_UNAVAILABLE) from exc


def report_as_dict(report: CompactReport) -> dict[str, Any]:
    return asdict(report)
