"""Plain SQL migrations, applied in order, recorded, and safe under concurrent cold starts.

Every migration runs inside one transaction that first takes a transaction-scoped advisory lock, so
when many Lambda instances start at once exactly one applies the pending files and the others wait,
then find nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError

if TYPE_CHECKING:
    import psycopg

MIGRATION_LOCK_ID = 0x46494C4551  # "FILEQ": one constant lock id shared by every migrating process
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """What the database was built for: vectors of one model and one dimension."""

    embedding_model: str
    embedding_dimension: int


def load_migrations() -> list[Migration]:
    folder = resources.files("handlers.adapters").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def migrate(conn: psycopg.Connection[Any], wanted: StoreConfig) -> list[str]:
    """Apply pending migrations; returns the names applied. `conn` must not be in a transaction."""
    from psycopg import sql

    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        config = wanted if not done else read_store_config(conn)
        for migration in load_migrations():
            if migration.version in done:
                continue
            statement = migration.sql.replace("{dimension}", str(int(config.embedding_dimension)))
            conn.execute(sql.SQL(statement))
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (migration.version, migration.name)
            )
            applied.append(migration.name)
        if not done:
            conn.execute(
                "INSERT INTO filequeue_meta (name, value) VALUES ('embedding_model', %s), ('embedding_dimension', %s)",
                (config.embedding_model, str(config.embedding_dimension)),
            )
    return applied


def pending_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done: set[int] = set()
    if exists and exists[0]:
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [migration.name for migration in load_migrations() if migration.version not in done]


def read_store_config(conn: psycopg.Connection[Any]) -> StoreConfig:
    values = dict(conn.execute("SELECT name, value FROM filequeue_meta").fetchall())
    return StoreConfig(str(values["embedding_model"]), int(str(values["embedding_dimension"])))


def check_store_config(stored: StoreConfig, wanted: StoreConfig) -> None:
    """A database built for other vectors is a startup error, never silent corruption."""
    if stored != wanted:
        raise ConfigError(
            f"the database holds embeddings of model {stored.embedding_model!r} with dimension "
            f"{stored.embedding_dimension}, but FILEQUEUE_EMBEDDING_MODEL/FILEQUEUE_EMBEDDING_DIMENSION "
            f"ask for {wanted.embedding_model!r} with dimension {wanted.embedding_dimension}; "
            "change the settings back or run `filequeue reembed` to move the store to the new model"
        )
