"""The worker's start-up checks: configuration that would fail every record stops the worker before it polls.

A worker that started with a wrong queue URL, an unreachable database, a store built for another
embedding dimension, time limits that cannot fit one record, or a visibility timeout no record can
start in, would receive every message and spend its receives until the DLQ. Each check raises a
ConfigError naming the variable to change; the command prints it and exits non-zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.errors import ConfigError, FileQueueError
from handlers.worker.sqs import SQS_ERRORS, aws_error_code, describe_queue, queue_missing

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs import SQSClient

    from handlers.settings import Settings
    from handlers.worker.sqs import QueueInfo

GRACE_VARIABLE = "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS"


def check_limits(settings: Settings, processes: int) -> None:
    """A record that started before a stop can finish within the grace; the extraction cap fits the pod."""
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
    """The database answers, its schema is current and it was built for the configured embedder."""
    try:
        check_ready()
    except ConfigError:
        raise
    except FileQueueError as error:
        reason = " ".join(str(error).split())  # libpq's messages span lines
        raise ConfigError(
            f"the database of FILEQUEUE_DATABASE_URL (or FILEQUEUE_DATABASE_SECRET_ARN) is not usable: {reason}"
        ) from None


def visibility_problem(
    visibility_seconds: int, *, heartbeat: bool, margin_seconds: float, reserve_seconds: float
) -> str | None:
    """Why no record could ever start within one lease, or None.

    With a heartbeat a lease may be up to one renewal interval (a third of the timeout) old when a batch
    starts; the handler then needs its deadline margin and the loop its delete reserve.
    """
    usable = visibility_seconds - heartbeat_interval(visibility_seconds) if heartbeat else visibility_seconds
    if usable > margin_seconds + reserve_seconds:
        return None
    return (
        f"the visibility timeout ({visibility_seconds} s: FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS, or the "
        f"queue's VisibilityTimeout) leaves {usable:g} s per batch, not more than FILEQUEUE_DEADLINE_MARGIN_SECONDS "
        f"({margin_seconds:g} s) plus {reserve_seconds:g} s for the delete: no record would ever start"
    )


def heartbeat_interval(visibility_seconds: int) -> float:
    return max(0.5, visibility_seconds / 3)
