"""Wiring: the adapters one process uses, built from the settings on first use and reused after.

Both runtimes and the command line get their adapters here. A Lambda sandbox builds them once and
keeps them across warm invocations; a failed build (database down, bad secret) is remembered for a
few seconds, so the other records of the batch fail fast instead of each waiting out a timeout.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from handlers.errors import FileQueueError
from handlers.model import ChunkingOptions, ExtractLimits
from handlers.service import Deps
from handlers.settings import Settings, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from handlers.adapters.postgres import PostgresRepository
    from handlers.budget import ExtractionTime
    from handlers.model import ExtractedText, FetchedObject

logger = Logger(service="filequeue")

# A failed cold start is retried at most this often.
_DEPS_RETRY_SECONDS = 5.0


class _DepsCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deps: Deps | None = None
        self._repository: PostgresRepository | None = None
        self._failure: FileQueueError | None = None
        self._failed_at = 0.0

    def get(self) -> tuple[Deps, PostgresRepository]:
        with self._lock:
            if self._deps is not None and self._repository is not None:
                return self._deps, self._repository
            if self._failure is not None and time.monotonic() - self._failed_at < _DEPS_RETRY_SECONDS:
                raise self._failure
            try:
                self._deps, self._repository = build_deps(get_settings())
            except FileQueueError as error:
                self._failure, self._failed_at = error, time.monotonic()
                raise
            return self._deps, self._repository

    def reset(self) -> None:
        with self._lock:
            if self._repository is not None:
                self._repository.close()
            self._deps = self._repository = self._failure = None


_cache = _DepsCache()


def get_deps() -> Deps:
    return _cache.get()[0]


def get_repository() -> PostgresRepository:
    """The repository of `get_deps()`, with what the pipeline's ports do not offer (pings)."""
    return _cache.get()[1]


def reset_deps() -> None:
    """Forget the built adapters (tests and `filequeue` commands that change settings use this)."""
    _cache.reset()


def check_ready() -> None:
    """Raise if the database does not answer (used by the worker's /readyz)."""
    get_repository().ping()


def build_deps(settings: Settings) -> tuple[Deps, PostgresRepository]:
    from handlers.adapters.embedders import build_embedder
    from handlers.adapters.postgres import PostgresRepository, open_pool
    from handlers.adapters.s3 import S3ObjectStore, build_s3_client

    settings.require_database()
    embedder = build_embedder(settings)
    url, applied = prepare_database(settings, embedder.model, embedder.dimension, apply=settings.auto_migrate)
    if applied:
        logger.info("migrations applied", extra={"migrations": applied})
    repository = PostgresRepository(
        open_pool(url, max_size=settings.db_pool_max_size, timeout=settings.db_connect_timeout_seconds),
        vector_index=settings.vector_index,
    )
    deps = Deps(
        store=S3ObjectStore(build_s3_client(), settings.max_object_bytes),
        embedder=embedder,
        repository=repository,
        message_failures=repository,
        extract=_extractor(settings),
        chunking=ChunkingOptions(size=settings.chunk_size, overlap=settings.chunk_overlap),
        analysis_timeout_seconds=settings.extract_timeout_seconds,
    )
    return deps, repository


def _extractor(settings: Settings) -> Callable[[FetchedObject, ExtractionTime], ExtractedText]:
    """Extraction in the sandbox, bounded by the file's own limits and by the time the record's budget gives."""
    from handlers.adapters.sandbox import extract_file

    limits = ExtractLimits(
        max_pages=settings.max_pdf_pages,
        max_chars=settings.max_text_chars,
        max_decompressed_bytes=settings.max_decompressed_bytes,
    )

    def extract(fetched: FetchedObject, allowed: ExtractionTime) -> ExtractedText:
        return extract_file(
            fetched.path,
            key=fetched.ref.key,
            declared_content_type=fetched.content_type,
            limits=limits,
            timeout_seconds=allowed.seconds,
            whole_limit=allowed.whole_limit,
            memory_mb=settings.extract_memory_mb,
            ocr=settings.ocr_options,
        )

    return extract


def prepare_database(settings: Settings, model: str, dimension: int, *, apply: bool) -> tuple[str, list[str]]:
    """Resolve the URL, apply (or check) migrations, and check the store was built for this embedder.

    Returns the URL and the names of the migrations applied.
    """
    from handlers.adapters.migrate import StoreConfig, check_store_config, migrate, read_store_config
    from handlers.ops.db import database_url, session

    url = database_url(settings)
    applied: list[str] = []
    wanted = StoreConfig(model, dimension)
    with session(settings, url=url, allow_pending_migrations=apply, application_name="filequeue-start-up") as conn:
        if apply:
            applied = migrate(conn, wanted)
        check_store_config(read_store_config(conn), wanted)
    return url, applied
