"""The worker's start-up checks: configuration that would fail every record stops the worker before it polls.

A worker that started with a wrong queue URL, a database it may not use, a store built for another
embedding dimension, time limits that cannot fit one record, or a visibility timeout no lease can
survive, would receive every message and spend its receives until the DLQ. Each check raises a
ConfigError naming the variable to change; the command prints it and exits non-zero. A database that
refuses or times out is waited for, for a bounded time: it may be restarting or failing over.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from handlers.budget import SQS_MAX_VISIBILITY_SECONDS
from handlers.errors import ConfigError, ErrorCode, FileQueueError
from handlers.worker.backoff import Backoff
from handlers.worker.sqs import SQS_ERRORS, aws_error_code, describe_queue, queue_missing

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs import SQSClient

    from handlers.settings import Settings
    from handlers.worker.shutdown import StopSignal
    from handlers.worker.sqs import QueueInfo

logger = Logger(service="filequeue")

GRACE_VARIABLE = "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS"
WAIT_VARIABLE = "FILEQUEUE_WORKER_DATABASE_WAIT_SECONDS"
DATABASE_VARIABLES = "FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN)"
_UNAVAILABLE = frozenset({ErrorCode.DB_UNAVAILABLE, ErrorCode.DB_RECENTLY_UNAVAILABLE})
HOLD_NAME = "SQS's 12 h visibility limit less FILEQUEUE_WORKER_START_WAIT_SECONDS"


def check_limits(settings: Settings, processes: int) -> None:
    """Every file can use its whole extraction limit; the grace and the extraction cap fit one record.

    A record that started before a stop must finish within the grace. The heartbeat renews a record's
    lease for as long as its budget needs, up to SQS's limit on how long a received message may stay
    invisible, less the time it may wait in a receive before it starts.
    """
    hold_seconds = SQS_MAX_VISIBILITY_SECONDS - settings.worker_start_wait_seconds
    settings.check_time_budget(hold_seconds, HOLD_NAME)
    settings.check_time_budget(settings.worker_shutdown_grace_seconds, GRACE_VARIABLE)
    settings.derive_extract_memory(processes)


def check_queue(sqs: SQSClient, queue_url: str) -> QueueInfo:
    try:
        return describe_queue(sqs, queue_url)
    except SQS_ERRORS as exc:
        if queue_missing(exc):
            raise ConfigError(f"FILEQUEUE_QUEUE_URL names a queue that does not exist: {queue_url}") from None
        raise ConfigError(
            f"the queue at FILEQUEUE_QUEUE_URL ({queue_url}) cannot be described: {aws_error_code(exc)}: {exc}"
        ) from None


def check_database(check_ready: Callable[[], None]) -> None:
    """The database answers, its schema is current and it was built for the configured embedder.

    Raises ConfigError when it never will without a change, DatabaseUnavailable when it may yet.
    """
    try:
        check_ready()
    except ConfigError:
        raise
    except FileQueueError as error:
        reason = " ".join(str(error).split())  # libpq's messages span lines
        if error.code in _UNAVAILABLE:
            raise DatabaseUnavailable(reason) from None
        raise ConfigError(f"{DATABASE_VARIABLES} names a database that is not usable: {reason}") from None


def wait_for_database(
    check_ready: Callable[[], None],
    *,
    wait_seconds: float,
    stop: StopSignal,
    waiting: Callable[[str], None],
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """`check_database`, retried with backoff while the database refuses or times out, for up to `wait_seconds`.

    A database that restarts or fails over must not crash-loop the pods that start meanwhile. Each wait
    is reported through `waiting` (the health endpoints say it). Returns False if a stop came first;
    raises ConfigError at once for a configuration fault, or once the wait is over.
    """
    backoff = backoff or Backoff(base_seconds=1.0, cap_seconds=10.0)
    give_up_at = clock() + wait_seconds
    while True:
        try:
            check_database(check_ready)
        except DatabaseUnavailable as unavailable:
            delay = min(backoff.next_delay(), max(0.0, give_up_at - clock()))
            if delay <= 0:
                raise ConfigError(
                    f"{DATABASE_VARIABLES} names a database that was still unavailable after {wait_seconds:g} s "
                    f"({WAIT_VARIABLE}): {unavailable}"
                ) from None
            logger.warning(
                "database_unavailable",
                extra={"error": str(unavailable), "retry_in_seconds": round(delay, 3), "attempt": backoff.attempts},
            )
            waiting(f"starting: waiting for the database ({unavailable})")
            if stop.wait(delay):
                return False
            continue
        return True


class DatabaseUnavailable(Exception):
    """The database refused or timed out: it may be restarting or failing over."""


def visibility_problem(
    visibility_seconds: int, *, heartbeat: bool, margin_seconds: float, reserve_seconds: float
) -> str | None:
    """Why leases of `visibility_seconds` cannot work, or None.

    With a heartbeat each record the handler claims gets its own budget and the lease is renewed every
    third of the timeout, so the lease need only outlive one renewal interval by the time of one SQS call
    (the delete reserve). Without one, a batch must be able to start a record within the lease: the
    handler needs its deadline margin and the loop its delete reserve.
    """
    if heartbeat:
        usable = visibility_seconds - heartbeat_interval(visibility_seconds)
        if usable > reserve_seconds:
            return None
        return (
            f"the visibility timeout ({visibility_seconds} s: FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS, or the "
            f"queue's VisibilityTimeout) leaves {usable:g} s after a heartbeat interval, not more than the "
            f"{reserve_seconds:g} s one renewal may take: leases would run out between renewals"
        )
    if visibility_seconds > margin_seconds + reserve_seconds:
        return None
    return (
        f"the visibility timeout ({visibility_seconds} s: FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS, or the "
        f"queue's VisibilityTimeout) is not more than FILEQUEUE_DEADLINE_MARGIN_SECONDS ({margin_seconds:g} s) "
        f"plus {reserve_seconds:g} s for the delete: no record would ever start"
    )


def heartbeat_interval(visibility_seconds: int) -> float:
    return max(0.5, visibility_seconds / 3)
