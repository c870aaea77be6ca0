"""The handler both runtimes call: an SQS batch in, a partial batch response out.

Adapters are built once per process, on first use, and reused across warm invocations. Each call
gets its own `BatchProcessor`, so batches handled concurrently by the poll loop never share state.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from handlers.errors import ConfigError, FileQueueError, MalformedEventError, TransientError
from handlers.model import ChunkingOptions, ExtractLimits
from handlers.outcome_metrics import record_outcome
from handlers.service import Deps, process_ref
from handlers.settings import Settings, get_settings
from handlers.stages.events import NO_RECORDS, parse_notifications

if TYPE_CHECKING:
    import psycopg
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from handlers.adapters.postgres import PostgresRepository
    from handlers.model import ExtractedText, FetchedObject, ObjectRef, Outcome
    from handlers.runtime_context import DeadlineContext

logger = Logger(service="filequeue")

RELEASED = "released"
"""Error code of a record the runtime handed back to the queue before it started."""
RECORD_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.25
RETRY_PAUSE_CAP_SECONDS = 2.0
# Retrying at once cannot help these: the time is up, the message is no longer ours, the database is down.
_NOT_RETRIED = frozenset({"deadline", RELEASED, "db_recently_unavailable"})

# A failed cold start (database down, bad secret) is retried at most this often, so the other
# records of the batch fail fast instead of each waiting out its own connect timeout.
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


def reset_deps() -> None:
    """Forget the built adapters (tests and `filequeue` commands that change settings use this)."""
    _cache.reset()


def check_ready() -> None:
    """Raise if the database does not answer (used by the worker's /readyz)."""
    _cache.get()[1].ping()


def build_deps(settings: Settings) -> tuple[Deps, PostgresRepository]:
    from handlers.adapters.embedders import build_embedder
    from handlers.adapters.postgres import PostgresRepository, open_pool
    from handlers.adapters.s3 import S3ObjectStore, build_s3_client
    from handlers.adapters.sandbox import extract_file

    settings.require_database()
    limits = ExtractLimits(
        max_pages=settings.max_pdf_pages,
        max_chars=settings.max_text_chars,
        max_decompressed_bytes=settings.max_decompressed_bytes,
    )

    def extract(fetched: FetchedObject, work_deadline: float) -> ExtractedText:
        return extract_file(
            fetched.path,
            key=fetched.ref.key,
            declared_content_type=fetched.content_type,
            limits=limits,
            timeout_seconds=min(settings.extract_timeout_seconds, work_deadline - time.monotonic()),
            file_limit_seconds=settings.extract_timeout_seconds,
            memory_mb=settings.extract_memory_mb,
        )

    embedder = build_embedder(settings)
    url, applied = prepare_database(settings, embedder.model, embedder.dimension, apply=settings.auto_migrate)
    if applied:
        logger.info("migrations applied", extra={"migrations": applied})
    repository = PostgresRepository(
        open_pool(url, max_size=settings.db_pool_max_size, timeout=settings.db_connect_timeout_seconds),
        similar_top_k=settings.similar_top_k,
        similar_threshold=settings.similar_threshold,
        vector_index=settings.vector_index,
    )
    deps = Deps(
        store=S3ObjectStore(build_s3_client(), settings.max_object_bytes),
        embedder=embedder,
        repository=repository,
        extract=extract,
        chunking=ChunkingOptions(size=settings.chunk_size, overlap=settings.chunk_overlap),
        analysis_timeout_seconds=settings.extract_timeout_seconds,
    )
    return deps, repository


def prepare_database(settings: Settings, model: str, dimension: int, *, apply: bool) -> tuple[str, list[str]]:
    """Resolve the URL, apply (or check) migrations, and check the store was built for this embedder.

    Returns the URL and the names of the migrations applied.
    """
    import psycopg

    from handlers.adapters.migrate import (
        StoreConfig,
        check_store_config,
        migrate,
        pending_migrations,
        read_store_config,
    )
    from handlers.adapters.postgres import resolve_database_url
    from handlers.adapters.secrets import fetch_secret

    url = resolve_database_url(settings.database_url, settings.database_secret_arn, fetch_secret)
    applied: list[str] = []
    wanted = StoreConfig(model, dimension)
    try:
        with _connect(url, settings.db_connect_timeout_seconds) as conn:
            if apply:
                applied = migrate(conn, wanted)
            elif pending := pending_migrations(conn):
                raise ConfigError(f"database schema is behind ({', '.join(pending)}); run `filequeue migrate`")
            check_store_config(read_store_config(conn), wanted)
    except psycopg.OperationalError as exc:
        raise TransientError(f"database unavailable: {exc}", code="db_unavailable") from exc
    return url, applied


def _connect(url: str, timeout_seconds: float) -> psycopg.Connection[Any]:
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout_seconds)))
    except psycopg.ProgrammingError as exc:  # libpq could not parse it (its message never repeats a password)
        raise ConfigError(f"FILEQUEUE_DATABASE_URL is not a valid PostgreSQL URL or connection string: {exc}") from None


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    """Process one SQS record; its outcome, or its failure at ERROR, is logged and counted here once."""
    if not isinstance(record.raw_event.get("attributes"), dict):
        error = MalformedEventError("the SQS record has no attributes object", code="malformed_record")
        logger.error(
            "malformed record",
            extra={"message_id": record.message_id, "outcome": "failed", "error_code": error.code, "error": str(error)},
        )
        record_outcome("failed", error.code)
        raise error
    where: dict[str, object] = {
        "message_id": record.message_id,
        "receive_count": record.attributes.approximate_receive_count,
    }
    try:
        notifications = parse_notifications(record.body)
        if notifications.refs:  # so that a record refused before it starts still names its object
            first = notifications.refs[0]
            where.update(bucket=first.bucket, key=first.key, event_name=first.event_name)
        work_deadline = _start_record(record, lambda_context, where)
        for reason in notifications.ignored:
            log = logger.warning if reason == NO_RECORDS else logger.info
            log(f"ignored {reason}", extra={**where, "outcome": "ignored"})
            record_outcome("ignored")
        for ref in notifications.refs:
            where.update(bucket=ref.bucket, key=ref.key, event_name=ref.event_name)
            outcome = _process_with_retries(ref, work_deadline, where)
            record_outcome(outcome.status, outcome.error_code, chunks=outcome.chunks, size=ref.size)
            log = logger.error if outcome.status == "failed" else logger.info
            log(
                f"{outcome.status} {ref.uri}",
                extra={
                    **where,
                    "outcome": outcome.status,
                    "detail": outcome.detail,
                    "chunks": outcome.chunks,
                    "error_code": outcome.error_code,
                },
            )
    except FileQueueError as error:
        if error.code == RELEASED:
            logger.info("not started: released by the runtime", extra={**where, "outcome": "released"})
            raise
        if isinstance(error, MalformedEventError):
            # The body itself is at fault: it goes to the DLQ for review after its receives.
            logger.error(
                "malformed event",
                extra={**where, "outcome": "failed", "error_code": error.code, "error": str(error)},
            )
            record_outcome("failed", error.code)
            raise
        logger.error(
            f"record failed: {error.code}; retried",
            extra={**where, "outcome": "retry", "error_code": error.code, "error": str(error)},
        )
        record_outcome("retry", error.code)
        _remember_failure(record.message_id, where["receive_count"], error)
        raise
    except Exception as error:
        logger.exception(
            "record failed: unexpected error",
            extra={
                **where,
                "outcome": "retry",
                "error_code": "unexpected",
                "error": f"{type(error).__name__}: {error}",
            },
        )
        record_outcome("retry", "unexpected")
        raise


def _remember_failure(message_id: str, receive_count: object, error: FileQueueError) -> None:
    """Keep the reason with the message id (SQS keeps the id in the DLQ) for `filequeue dlq list`."""
    import psycopg

    if error.code == "db_unavailable":
        return  # nowhere to keep it: the log line above is the record
    try:
        _cache.get()[1].note_message_failure(message_id, int(str(receive_count or 0)), error.code, str(error))
    except (FileQueueError, psycopg.Error) as unkept:
        logger.warning("failure reason not kept", extra={"message_id": message_id, "error": str(unkept)})


def _start_record(record: SQSRecord, lambda_context: LambdaContext | None, where: dict[str, object]) -> float:
    """Decide whether the record may start; returns when its extraction and embedding must end (monotonic)."""
    settings = get_settings()
    if lambda_context is None:
        return math.inf
    remaining_ms = lambda_context.get_remaining_time_in_millis()
    where["remaining_ms"] = remaining_ms
    if remaining_ms < settings.deadline_margin_seconds * 1000:
        raise TransientError(f"not started: only {remaining_ms} ms left; retried later", code="deadline")
    claim = getattr(lambda_context, "claim_record", None)
    if claim is not None and not claim(record.message_id):
        raise TransientError("released before it started; another delivery will process it", code=RELEASED)
    remaining_seconds = remaining_ms / 1000
    return time.monotonic() + settings.time_budget(remaining_seconds).work_seconds(remaining_seconds)


def _process_with_retries(ref: ObjectRef, work_deadline: float, where: dict[str, object]) -> Outcome:
    """`process_ref`, tried again after a short pause when a transient failure leaves time to.

    A dropped connection or a throttled request usually passes within a second; retrying here keeps
    the message's receives (and so the DLQ) for failures that last. Processing is idempotent, so a
    retry after a failure at any step is safe. A database known to be down is not retried here.
    """
    attempt = 1
    while True:
        try:
            return process_ref(ref, get_deps(), work_deadline)
        except TransientError as error:
            pause = random.uniform(0, min(RETRY_PAUSE_CAP_SECONDS, RETRY_PAUSE_SECONDS * 2 ** (attempt - 1)))  # noqa: S311
            if attempt == RECORD_ATTEMPTS or error.code in _NOT_RETRIED or time.monotonic() + pause > work_deadline:
                raise
            logger.warning(
                "record retried",
                extra={**where, "attempt": attempt, "error_code": error.code, "error": str(error)},
            )
            time.sleep(pause)
            attempt += 1


def handle_batch(
    event: dict[str, Any], context: LambdaContext | DeadlineContext | None = None
) -> PartialItemFailureResponse:
    """Run every record of a Lambda-shaped SQS event; the failed ones are listed for redelivery.

    `context` is Lambda's, or a `DeadlineContext` from the other runtimes: the handler only reads
    its remaining time.
    """
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=cast("LambdaContext | None", context)
    )
    for _kind, error, _traceback in processor.exceptions:
        if isinstance(error, ConfigError):
            # A configuration error fails every record: failing the whole invocation keeps the messages
            # for a fixed deployment and raises the error alarm, instead of spending their receives one by one.
            raise error
    return response


_budget_checked_for: list[Settings] = []


def check_function_budget(context: LambdaContext) -> None:
    """Once per process: the function timeout must leave room for one record's extraction and write.

    The timeout is taken from the remaining time at the first invocation, rounded up to whole seconds
    (the function's configured timeout, less the moments the runtime spent before calling us).
    """
    settings = get_settings()
    if settings in _budget_checked_for:
        return
    timeout_seconds = math.ceil(context.get_remaining_time_in_millis() / 1000)
    try:
        settings.check_time_budget(timeout_seconds, "the function timeout")
    except ConfigError as error:
        logger.error("configuration error: the invocation fails as a whole", extra={"error": str(error)})
        raise
    _budget_checked_for[:] = [settings]
