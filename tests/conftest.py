"""Session-wide real services: PostgreSQL with pgvector (pgserver) and moto's server (S3, SQS).

`FILEQUEUE_TEST_DATABASE_URL` points the suite at another PostgreSQL server (it needs pgvector and
the right to create databases). Each test that needs the database gets a database of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from handlers.develop.devstack import REGION, MotoServer, aws_environment, create_ingest_resources, start_postgres
from handlers.settings import get_settings
from handlers.wiring import prepare_database, reset_deps

if TYPE_CHECKING:
    from collections.abc import Iterator

    from handlers.develop.devstack import IngestResources


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    override = os.environ.get("FILEQUEUE_TEST_DATABASE_URL")
    if override:
        yield override
        return
    # Not under pytest's basetemp: PostgreSQL runs as another user, and pytest resets the mode of
    # its per-user temp root (and prunes old runs) whenever another pytest session starts.
    data_dir = Path(tempfile.mkdtemp(prefix="filequeue-test-pg-"))
    url, server = start_postgres(data_dir / "pgdata")
    yield url
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's server, dropped after the test."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(postgres_url, dbname=name)
    reset_deps()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    server = MotoServer.start()
    yield server.endpoint_url
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in aws_environment(moto_server).items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture
def ingest(aws_env: str) -> IngestResources:
    """A bucket wired to a queue and a DLQ, with names unique to the test."""
    suffix = uuid.uuid4().hex[:10]
    return create_ingest_resources(aws_env, bucket=f"bucket-{suffix}", queue=f"queue-{suffix}", visibility_timeout=2)


@pytest.fixture
def boto_session(aws_env: str) -> Iterator[Any]:
    """A fresh default boto3 session, so hooks registered on it reach the handler's clients only."""
    boto3.setup_default_session()
    yield boto3.DEFAULT_SESSION
    boto3.DEFAULT_SESSION = None


@pytest.fixture
def s3(aws_env: str) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def sqs(aws_env: str) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def handler_env(database_url: str, aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings for the handler on a migrated database of the embedded stack; adapters rebuilt for this test."""
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", database_url)
    monkeypatch.setenv("FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("FILEQUEUE_DEADLINE_MARGIN_SECONDS", "5")
    monkeypatch.setenv("FILEQUEUE_WRITE_MARGIN_SECONDS", "2")
    get_settings.cache_clear()
    reset_deps()
    settings = get_settings()
    prepare_database(settings, settings.resolved_embedding_model, settings.embedding_dimension, apply=True)
    yield database_url
    get_settings.cache_clear()
    reset_deps()
