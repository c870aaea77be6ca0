from __future__ import annotations

import threading

import psycopg
import pytest

from handlers.adapters.migrate import StoreConfig, check_store_config, load_migrations, migrate, read_store_config
from handlers.errors import ConfigError

WANTED = StoreConfig("hashing-v1", 256)


def test_concurrent_cold_starts_apply_each_migration_exactly_once(database_url):
    barrier = threading.Barrier(6)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def start() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            try:
                results.append(migrate(conn, WANTED))
            except BaseException as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = [migration.name for migration in load_migrations()]
    assert sorted(results, key=len, reverse=True)[0] == names
    assert sum(len(applied) for applied in results) == len(names)
    with psycopg.connect(database_url) as conn:
        assert [row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY version")] == names
        assert read_store_config(conn) == WANTED


def test_migrate_twice_is_a_no_op_and_keeps_the_first_dimension(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert migrate(conn, WANTED)
        assert migrate(conn, StoreConfig("other", 1024)) == []
        assert read_store_config(conn) == WANTED
        [(dims,)] = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchall()
        assert dims == "vector(256)"


def test_a_store_built_for_other_vectors_is_a_clear_startup_error():
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_MODEL/FILEQUEUE_EMBEDDING_DIMENSION"):
        check_store_config(WANTED, StoreConfig("amazon.titan-embed-text-v2:0", 1024))


def test_handler_refuses_to_start_against_a_mismatched_store(database_url, monkeypatch):
    from handlers.settings import Settings
    from handlers.wiring import build_deps

    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, WANTED)
    settings = Settings.from_env({"FILEQUEUE_DATABASE_URL": database_url, "FILEQUEUE_EMBEDDING_DIMENSION": "384"})
    with pytest.raises(ConfigError, match="dimension 256"):
        build_deps(settings)


def test_without_auto_migrate_a_behind_schema_is_named(database_url):
    from handlers.settings import Settings
    from handlers.wiring import build_deps

    settings = Settings.from_env({"FILEQUEUE_DATABASE_URL": database_url, "FILEQUEUE_AUTO_MIGRATE": "false"})
    with pytest.raises(ConfigError, match="run `filequeue migrate`"):
        build_deps(settings)


def test_typed_mentions_migration_keeps_the_references_of_an_older_store(database_url, monkeypatch):
    import handlers.adapters.migrate as migrations

    every = load_migrations()
    monkeypatch.setattr(migrations, "load_migrations", lambda: [m for m in every if m.version < 4])
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, WANTED)
        conn.execute(
            "INSERT INTO documents (bucket, key, status) VALUES ('b', 'uploads/index.md', 'ready'),"
            " ('b', 'uploads/notes/plan.md', 'ready')"
        )
        conn.execute(
            "INSERT INTO document_mentions (document_id, mention) SELECT id, mention FROM documents,"
            " unnest(ARRAY['uploads/notes/plan.md', 'plan.md', 's3://b/uploads/x.md']) AS mention"
            " WHERE key = 'uploads/index.md'"
        )
        conn.execute(
            "INSERT INTO document_names (document_id, name) SELECT id, name FROM documents,"
            " unnest(ARRAY['uploads/notes/plan.md', 'plan.md', 's3://b/uploads/notes/plan.md']) AS name"
            " WHERE key = 'uploads/notes/plan.md'"
        )
        monkeypatch.setattr(migrations, "load_migrations", lambda: every)
        assert migrate(conn, WANTED) == [m.name for m in every if m.version >= 4]
        mentions = conn.execute("SELECT kind, mention FROM document_mentions ORDER BY kind, mention").fetchall()
        names = conn.execute("SELECT kind, name FROM document_names ORDER BY kind, name").fetchall()
    assert mentions == [("name", "plan.md"), ("uri", "s3://b/uploads/notes/plan.md"), ("uri", "s3://b/uploads/x.md")]
    assert names == [("name", "plan.md"), ("uri", "s3://b/uploads/notes/plan.md")]
