"""`filequeue status`: what the store holds and what the queues carry, in one look."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from handlers.ops.aws import dead_letter_queue_url, translated

if TYPE_CHECKING:
    import psycopg

_DEPTH_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


@dataclass(frozen=True)
class StoreReport:
    documents: dict[str, int]
    failures: dict[str, int]
    chunks: int
    edges: dict[str, int]
    embedding_model: str | None
    embedding_dimension: int | None
    reembed_target: str | None
    pending_migrations: list[str]


@dataclass(frozen=True)
class QueueStatus:
    url: str
    visible: int
    in_flight: int
    dead_letter_url: str
    dead_letters: int
    oldest_message_age_seconds: float | None = field(default=None)


def store_report(conn: psycopg.Connection[Any]) -> StoreReport:
    """Counts from the store; on a database that was never migrated only the pending migrations."""
    from handlers.adapters.migrate import pending_migrations

    pending = pending_migrations(conn)
    if not _table_exists(conn, "documents"):
        return StoreReport({}, {}, 0, {}, None, None, None, pending)
    documents = dict(conn.execute("SELECT status, count(*) FROM documents GROUP BY status ORDER BY status").fetchall())
    failures = dict(
        conn.execute(
            "SELECT coalesce(error_code, 'unknown'), count(*) FROM documents WHERE status = 'failed'"
            " GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    )
    chunks_row = conn.execute("SELECT count(*) FROM chunks").fetchone()
    edges = dict(conn.execute("SELECT relation, count(*) FROM edges GROUP BY relation ORDER BY relation").fetchall())
    meta = dict(conn.execute("SELECT name, value FROM filequeue_meta").fetchall())
    dimension = meta.get("embedding_dimension")
    return StoreReport(
        documents={str(name): int(count) for name, count in documents.items()},
        failures={str(name): int(count) for name, count in failures.items()},
        chunks=int(chunks_row[0]) if chunks_row else 0,
        edges={str(name): int(count) for name, count in edges.items()},
        embedding_model=meta.get("embedding_model"),
        embedding_dimension=int(dimension) if dimension else None,
        reembed_target=_describe_target(meta.get("reembed_target")),
        pending_migrations=pending,
    )


def queue_status(sqs: Any, cloudwatch: Any, queue_url: str) -> QueueStatus:
    dlq_url = dead_letter_queue_url(sqs, queue_url)
    visible, in_flight = _depth(sqs, queue_url)
    dead_visible, dead_in_flight = _depth(sqs, dlq_url)
    return QueueStatus(
        url=queue_url,
        visible=visible,
        in_flight=in_flight,
        dead_letter_url=dlq_url,
        dead_letters=dead_visible + dead_in_flight,
        oldest_message_age_seconds=oldest_message_age(cloudwatch, queue_url.rstrip("/").rsplit("/", 1)[-1]),
    )


def oldest_message_age(cloudwatch: Any, queue_name: str) -> float | None:
    """SQS publishes the age of the oldest message only as a CloudWatch metric; None without a datapoint.

    Receiving a message to read its age would count as a receive and move it toward the DLQ.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    now = datetime.now(UTC)
    try:
        datapoints = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_name}],
            StartTime=now - timedelta(minutes=15),
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except (BotoCoreError, ClientError):
        return None
    if not datapoints:
        return None
    latest = max(datapoints, key=lambda point: point["Timestamp"])
    return float(latest["Maximum"])


def healthy(store: StoreReport, queue: QueueStatus | None) -> bool:
    """False when a deploy should stop: migrations pending or messages in the DLQ."""
    return not store.pending_migrations and (queue is None or queue.dead_letters == 0)


def _describe_target(value: str | None) -> str | None:
    """`filequeue reembed` records its target as the model and the dimension on two lines."""
    if not value:
        return None
    model, _, dimension = value.partition("\n")
    return f"{model} (dimension {dimension})" if dimension else model


def _depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    with translated(queue_url):
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=_DEPTH_ATTRIBUTES)["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])
