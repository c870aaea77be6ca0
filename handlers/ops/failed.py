"""`filequeue failed`: every document whose last event failed permanently, with the reason.

A permanent failure that no document row can hold (a key PostgreSQL cannot store) is kept by message id
in `message_failures` instead, and listed here too: it was acknowledged, so it is in no queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from handlers.errors import PERMANENT_CODES, ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import psycopg

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class FailedDocument:
    bucket: str | None
    key: str | None
    version_id: str | None
    error_code: str | None
    error: str | None
    failed_at: str
    message_id: str | None = None
    """Set, with no bucket and key, for a failure no document row could hold."""


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or a duration back from now: 30m, 12h, 7d."""
    if match := _DURATION.match(value.strip()):
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since must be an ISO 8601 time or a duration like 30m, 12h, 7d; got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def failed_documents(
    conn: psycopg.Connection[Any], *, prefix: str = "", code: str | None = None, since: datetime | None = None
) -> Iterator[FailedDocument]:
    """Failed documents, newest first, read through a server-side cursor (no limit on how many)."""
    with conn.transaction(), conn.cursor(name="filequeue_failed") as cursor:
        cursor.execute(
            "SELECT bucket, key, version_id, error_code, error, updated_at FROM documents"
            " WHERE status = 'failed' AND starts_with(key, %s)"
            " AND (%s::text IS NULL OR error_code = %s) AND (%s::timestamptz IS NULL OR updated_at >= %s)"
            " ORDER BY updated_at DESC, bucket, key",
            (prefix, code, code, since, since),
        )
        for bucket, key, version_id, error_code, error, updated_at in cursor:
            yield FailedDocument(bucket, key, version_id, error_code, error, updated_at.isoformat())


def failed_messages(
    conn: psycopg.Connection[Any], *, code: str | None = None, since: datetime | None = None
) -> list[FailedDocument]:
    """Permanent failures kept by message id because no document row could hold them, newest first."""
    rows = conn.execute(
        "SELECT message_id, error_code, error, last_failed_at FROM message_failures"
        " WHERE error_code = ANY(%s) AND (%s::text IS NULL OR error_code = %s)"
        " AND (%s::timestamptz IS NULL OR last_failed_at >= %s)"
        " ORDER BY last_failed_at DESC, message_id",
        (sorted(PERMANENT_CODES), code, code, since, since),
    ).fetchall()
    return [
        FailedDocument(None, None, None, error_code, error, failed_at.isoformat(), message_id=message_id)
        for message_id, error_code, error, failed_at in rows
    ]


def failure_of(conn: psycopg.Connection[Any], key: str, bucket: str | None = None) -> FailedDocument | None:
    """The failure recorded for `key`, if its document exists and failed."""
    row = conn.execute(
        "SELECT bucket, key, version_id, error_code, error, updated_at FROM documents"
        " WHERE key = %s AND (%s::text IS NULL OR bucket = %s) AND status = 'failed' ORDER BY bucket LIMIT 1",
        (key, bucket, bucket),
    ).fetchone()
    if row is None:
        return None
    bucket_name, key_name, version_id, error_code, error, updated_at = row
    return FailedDocument(bucket_name, key_name, version_id, error_code, error, updated_at.isoformat())


def count_failed(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM documents WHERE status = 'failed'").fetchone()
    return int(row[0]) if row else 0
