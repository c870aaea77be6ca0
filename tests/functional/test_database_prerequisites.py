"""`filequeue migrate` on a server the store cannot use yet: one line naming the fix, nothing applied."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from handlers.errors import ConfigError
from handlers.settings import Settings
from handlers.wiring import prepare_database
from tests.functional.cli_process import run_cli
from tests.functional.test_cli_errors import assert_one_line_error

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def unprivileged_database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database owned by a role that is not a superuser: it may create tables, not pgvector (untrusted)."""
    suffix = uuid.uuid4().hex[:10]
    role, name = f"app_{suffix}", f"owned_{suffix}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    yield make_conninfo(postgres_url, user=role, dbname=name), name
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_role_that_may_not_create_pgvector_is_told_what_to_ask_an_administrator(unprivileged_database, postgres_url):
    url, name = unprivileged_database

    refused = run_cli("migrate", env={"FILEQUEUE_DATABASE_URL": url})

    assert_one_line_error(refused, "may not create the pgvector extension")
    assert f"`CREATE EXTENSION vector;` in '{name}'" in refused.stderr
    assert "rds_superuser" in refused.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone() == (0,)

    with psycopg.connect(make_conninfo(postgres_url, dbname=name), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION vector")
    applied = run_cli("migrate", env={"FILEQUEUE_DATABASE_URL": url})

    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("applied: 0001_"), applied.stdout


def test_the_runtimes_start_up_check_refuses_the_same_server_before_touching_it(unprivileged_database):
    url, _ = unprivileged_database
    settings = Settings.from_env({"FILEQUEUE_DATABASE_URL": url})

    with pytest.raises(ConfigError, match="may not create the pgvector extension"):
        prepare_database(settings, "hashing-v2", 256, apply=True)

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
