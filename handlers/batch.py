"""The handler both runtimes call: an SQS batch in, a partial batch response out.

Adapters come from `handlers.wiring` (built once per process, reused across warm invocations). Each
call gets its own `BatchProcessor`, so batches handled concurrently by the poll loop never share state.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from handlers.errors import (
    ConfigError,
    ErrorCode,
    FileQueueError,
    MalformedEventError,
    PermanentError,
    TransientError,
)
from handlers.model import Outcome, OutcomeStatus
from handlers.outcome_metrics import record_outcome
from handlers.service import process_ref
from handlers.settings import Settings, get_settings
from handlers.stages.events import NO_RECORDS, parse_notifications
from handlers.wiring import get_deps

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from handlers.budget import RecordBudget
    from handlers.model import ObjectRef
    from handlers.runtime_context import DeadlineContext, RecordGate
    from handlers.stages.events import Notifications

logger = Logger(service="filequeue")


# Libraries whose records would otherwise reach stderr as raw text among the JSON lines: Python's warnings
# and psycopg's (its pool reports failed connections).
_LIBRARY_LOGGERS = ("py.warnings", "psycopg")


def _route_library_logs() -> None:
    """The libraries' warnings and log records leave as JSON lines through this logger's handlers.

    pypdf's own log records take the same way from the extraction child (`handlers.adapters.sandbox`).
    """
    logging.captureWarnings(True)
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        # Powertools' copy_config_to_registered_loggers skips dotted names such as py.warnings: the same, by hand.
        library.handlers = list(logging.getLogger(logger.name).handlers)
        library.propagate = False


_route_library_logs()

RECORD_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.25
RETRY_PAUSE_CAP_SECONDS = 2.0
# Retrying cannot help these: the time is up, the message is no longer ours.
_NEVER_RETRIED = frozenset({ErrorCode.DEADLINE, ErrorCode.RELEASED})
# On a first receive a database known to be down is not waited for: the message comes back later.
_NOT_RETRIED_AT_ONCE = _NEVER_RETRIED | {ErrorCode.DB_RECENTLY_UNAVAILABLE}
# From this receive on, a transient failure is tried again until the record's budget is spent, a
# database known to be down included: each receive given back brings the message nearer the
# dead-letter queue, which is for what cannot succeed, not for what met an outage three times.
# For at most FILEQUEUE_OUTAGE_WAIT_SECONDS per receive, so a lasting outage still reaches the
# dead-letter queue in minutes and holds a Lambda invocation no longer than a passing outage needs.
PERSISTENT_FROM_RECEIVE = 2


def record_handler(
    record: SQSRecord, lambda_context: LambdaContext | None = None, gate: RecordGate | None = None
) -> None:
    """Process one SQS record; its outcome, or its failure at ERROR, is logged and counted here once.

    An unexpected exception is logged with its traceback before it propagates: Powertools reports the
    record as failed but logs it only at DEBUG.
    """
    _require_attributes(record)
    where: dict[str, object] = {
        "message_id": record.message_id,
        "receive_count": record.attributes.approximate_receive_count,
    }
    try:
        notifications = parse_notifications(record.body)
        if notifications.refs:  # so that a record refused before it starts still names its object
            _name_object(where, notifications.refs[0])
        budget = _start_record(record, lambda_context, gate, where)
        _acknowledge_ignored(notifications, where)
        for ref in notifications.refs:
            _name_object(where, ref)
            _log_outcome(_process_or_keep_failure(record, ref, budget, where), where)
    except FileQueueError as error:
        _report_failure(record, error, where)
        raise
    except Exception as error:
        _log_record(
            logger.exception,
            "record failed: unexpected error",
            {
                **where,
                "outcome": OutcomeStatus.RETRY,
                "error_code": ErrorCode.UNEXPECTED,
                "error": f"{type(error).__name__}: {error}",
            },
        )
        record_outcome(OutcomeStatus.RETRY, ErrorCode.UNEXPECTED)
        raise


def _require_attributes(record: SQSRecord) -> None:
    if not isinstance(record.raw_event.get("attributes"), dict):
        error = MalformedEventError("the SQS record has no attributes object", code=ErrorCode.MALFORMED_RECORD)
        _fail_malformed("malformed record", error, {"message_id": record.message_id})
        raise error


def _name_object(where: dict[str, object], ref: ObjectRef) -> None:
    where.update(bucket=ref.bucket, key=ref.key, event_name=ref.event_name)


def _acknowledge_ignored(notifications: Notifications, where: dict[str, object]) -> None:
    for reason in notifications.ignored:
        log = logger.warning if reason == NO_RECORDS else logger.info
        _log_record(log, f"ignored {reason}", {**where, "outcome": OutcomeStatus.IGNORED})
        record_outcome(OutcomeStatus.IGNORED)


def _log_outcome(outcome: Outcome, where: dict[str, object]) -> None:
    record_outcome(outcome.status, outcome.error_code, chunks=outcome.chunks, size=outcome.ref.size)
    log = logger.error if outcome.status is OutcomeStatus.FAILED else logger.info
    _log_record(
        log,
        f"{outcome.status} {outcome.ref.uri}",
        {
            **where,
            "outcome": outcome.status,
            "detail": outcome.detail,
            "chunks": outcome.chunks,
            "error_code": outcome.error_code,
        },
    )


def _report_failure(record: SQSRecord, error: FileQueueError, where: dict[str, object]) -> None:
    """Log and count a failed record once; the caller re-raises, so the record is reported as failed."""
    if error.code == ErrorCode.RELEASED:
        _log_record(logger.info, "not started: released by the runtime", {**where, "outcome": OutcomeStatus.RELEASED})
    elif isinstance(error, MalformedEventError):
        # The body itself is at fault: it goes to the DLQ for review after its receives.
        _fail_malformed("malformed event", error, where)
    else:
        _log_record(
            logger.error,
            f"record failed: {error.code}; retried",
            {**where, "outcome": OutcomeStatus.RETRY, "error_code": error.code, "error": str(error)},
        )
        record_outcome(OutcomeStatus.RETRY, error.code)
        _remember_failure(record.message_id, where["receive_count"], error)


def _fail_malformed(message: str, error: MalformedEventError, where: dict[str, object]) -> None:
    _log_record(
        logger.error, message, {**where, "outcome": OutcomeStatus.FAILED, "error_code": error.code, "error": str(error)}
    )
    record_outcome(OutcomeStatus.FAILED, error.code)


def _log_record(log: Callable[..., None], message: str, fields: dict[str, object]) -> None:
    """Write one record's outcome line: all of them come from here, so their `location` names this function."""
    log(message, extra=fields)


def _remember_failure(message_id: str, receive_count: object, error: FileQueueError) -> None:
    """Keep the reason with the message id (SQS keeps the id in the DLQ) for `filequeue dlq list`."""
    import psycopg

    if error.code == ErrorCode.DB_UNAVAILABLE:
        return  # nowhere to keep it: the log line above is the record
    try:
        get_deps().message_failures.note_message_failure(
            message_id, int(str(receive_count or 0)), error.code, str(error)
        )
    except (FileQueueError, psycopg.Error) as unkept:
        logger.warning("failure reason not kept", extra={"message_id": message_id, "error": str(unkept)})


def _start_record(
    record: SQSRecord, lambda_context: LambdaContext | None, gate: RecordGate | None, where: dict[str, object]
) -> RecordBudget:
    """Decide whether the record may start; returns its time budget, computed once, here.

    `gate` is the runtime's say on whether the message is still its own (the worker's; Lambda has none).
    It is asked first: a runtime that renews its lease gives a record it hands over a fresh budget, which
    the context's remaining time then shows (Lambda's is simply the time left of the invocation).
    """
    settings = get_settings()
    if gate is not None and not gate(record.message_id):
        raise TransientError("released before it started; another delivery will process it", code=ErrorCode.RELEASED)
    remaining_seconds = math.inf
    if lambda_context is not None:
        remaining_ms = lambda_context.get_remaining_time_in_millis()
        where["remaining_ms"] = remaining_ms
        if remaining_ms < settings.deadline_margin_seconds * 1000:
            raise TransientError(f"not started: only {remaining_ms} ms left; retried later", code=ErrorCode.DEADLINE)
        remaining_seconds = remaining_ms / 1000
    return settings.time_budget(remaining_seconds).record(remaining_seconds, time.monotonic())


def _process_or_keep_failure(
    record: SQSRecord, ref: ObjectRef, budget: RecordBudget, where: dict[str, object]
) -> Outcome:
    """`_process_with_retries`; a permanent failure no document row can hold is kept by message id instead.

    Such a failure (the database refuses the object's key itself) is decided once: kept in the message
    failure table with its reason and acknowledged, not retried into the DLQ. If even that cannot be
    written, the record is retried like any transient failure.
    """
    import psycopg

    try:
        return _process_with_retries(ref, budget, where, persistent=_receive_count(where) >= PERSISTENT_FROM_RECEIVE)
    except PermanentError as error:
        reason = _storable(f"{ref.uri}: {error}")
        try:
            get_deps().message_failures.note_message_failure(
                record.message_id, _receive_count(where), error.code, reason
            )
        except (FileQueueError, psycopg.Error) as unkept:
            raise TransientError(
                f"{error}; and the failure could not be kept by message id ({unkept}); retried",
                code=ErrorCode.DB_UNAVAILABLE,
            ) from error
        detail = f"{reason} (kept by message id: no document row can hold it)"
        return Outcome(OutcomeStatus.FAILED, ref, detail, error_code=error.code)


def _storable(text: str) -> str:
    """`text` with each NUL character, which PostgreSQL refuses in text (a key may hold one), written out."""
    return text.replace("\x00", "\\x00")


def _receive_count(where: dict[str, object]) -> int:
    return int(str(where["receive_count"] or 0))


def _process_with_retries(
    ref: ObjectRef, budget: RecordBudget, where: dict[str, object], *, persistent: bool = False
) -> Outcome:
    """`process_ref`, tried again after a short pause when a transient failure leaves time to.

    A dropped connection or a throttled request usually passes within a second; retrying here keeps
    the message's receives (and so the DLQ) for failures that last. Processing is idempotent, so a
    retry after a failure at any step is safe. A database known to be down is not retried here,
    unless `persistent` (a message that already came back): then every transient failure is tried
    again, with pauses, until the record's work deadline or FILEQUEUE_OUTAGE_WAIT_SECONDS.
    """
    attempt = 1
    not_retried = _NEVER_RETRIED if persistent else _NOT_RETRIED_AT_ONCE
    give_up_at = min(budget.work_deadline, time.monotonic() + get_settings().outage_wait_seconds)
    while True:
        try:
            return process_ref(ref, get_deps(), budget)
        except TransientError as error:
            pause = random.uniform(0, min(RETRY_PAUSE_CAP_SECONDS, RETRY_PAUSE_SECONDS * 2 ** (attempt - 1)))  # noqa: S311
            late = time.monotonic() + pause > give_up_at
            spent = attempt >= RECORD_ATTEMPTS and not persistent
            if spent or error.code in not_retried or late:
                raise
            logger.warning(
                "record retried",
                extra={**where, "attempt": attempt, "error_code": error.code, "error": str(error)},
            )
            time.sleep(pause)
            attempt += 1


def handle_batch(
    event: dict[str, Any], context: LambdaContext | DeadlineContext | None = None, *, gate: RecordGate | None = None
) -> PartialItemFailureResponse:
    """Run every record of a Lambda-shaped SQS event; the failed ones are listed for redelivery.

    `context` is Lambda's, or a `DeadlineContext` from the other runtimes: the handler only reads
    its remaining time. `gate`, from a runtime that may hand messages back before the handler reaches
    them (the worker), is asked before each record starts.
    """

    def handle_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
        record_handler(record, lambda_context, gate)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=cast("LambdaContext | None", context)
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
