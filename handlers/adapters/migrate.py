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
# BEFORE ROW triggers on a partitioned table and `ALTER COLUMN ... DROP EXPRESSION` (the chunk store's
# full-text column) arrived in PostgreSQL 13.
MIN_SERVER_VERSION = 130000
# HNSW indexes (every sealed segment and the documents' similarity index) arrived in pgvector 0.5.0.
MIN_PGVECTOR_VERSION = (0, 5, 0)


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


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What the database server offers the store, as its catalog reports it."""

    server_version_num: int
    server_version: str
    database: str
    role: str
    pgvector_available: str | None
    """The version `CREATE EXTENSION vector` would install, or None when the server has no pgvector."""
    pgvector_installed: str | None
    """The version installed in this database, or None."""


def prerequisite_problem(facts: ServerFacts) -> str | None:
    """Why this server cannot hold the store, with the fix, in one line; None when it can.

    The privilege to create the extension is not judged here: `migrate` tries it and reports a refusal.
    """
    if facts.server_version_num < MIN_SERVER_VERSION:
        return (
            f"PostgreSQL {facts.server_version} is too old: File Queue needs PostgreSQL 13 or newer"
            " (partitioned-table triggers); upgrade the server"
        )
    version = facts.pgvector_installed or facts.pgvector_available
    if version is None:
        return (
            f"the pgvector extension is not installed on the PostgreSQL {facts.server_version} server:"
            " install the pgvector package for this server version (RDS and Aurora PostgreSQL ship it),"
            " then run `filequeue migrate` again"
        )
    if _version_tuple(version) < MIN_PGVECTOR_VERSION:
        wanted = ".".join(map(str, MIN_PGVECTOR_VERSION))
        where = "installed in" if facts.pgvector_installed else "offered by the server to"
        return (
            f"pgvector {version} {where} database {facts.database!r} is too old: the store needs HNSW indexes"
            f" (pgvector {wanted} or newer); install a newer pgvector package, then have an administrator run"
            f" `ALTER EXTENSION vector UPDATE;` in {facts.database!r}"
        )
    return None


def read_server_facts(conn: psycopg.Connection[Any]) -> ServerFacts:
    from psycopg.rows import class_row

    with conn.cursor(row_factory=class_row(ServerFacts)) as cursor:
        (facts,) = cursor.execute(
            "SELECT current_setting('server_version_num')::int AS server_version_num,"
            " current_setting('server_version') AS server_version,"
            " current_database() AS database, current_user AS role,"
            " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS pgvector_available,"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector_installed"
        ).fetchall()
    return facts


def check_prerequisites(conn: psycopg.Connection[Any]) -> None:
    """A server that cannot hold the store is a one-line ConfigError naming the fix."""
    if problem := prerequisite_problem(read_server_facts(conn)):
        raise ConfigError(problem)


def _create_vector_extension(conn: psycopg.Connection[Any], facts: ServerFacts) -> None:
    """Create pgvector first, so a role without the privilege is told what to ask for before anything runs."""
    import psycopg

    if facts.pgvector_installed is not None:
        return
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError(
            f"role {facts.role!r} may not create the pgvector extension in database {facts.database!r}:"
            f" have an administrator run `CREATE EXTENSION vector;` in {facts.database!r}"
            " (on RDS and Aurora, a member of rds_superuser), then run `filequeue migrate` again"
        ) from None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def migrate(conn: psycopg.Connection[Any], wanted: StoreConfig) -> list[str]:
    """Apply pending migrations; returns the names applied. `conn` must not be in a transaction.

    The server is checked first (version, pgvector, the right to create it): a refusal is one
    ConfigError and nothing is applied, since every migration runs in the one transaction.
    """
    from psycopg import sql

    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        facts = read_server_facts(conn)
        if problem := prerequisite_problem(facts):
            raise ConfigError(problem)
        _create_vector_extension(conn, facts)
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
