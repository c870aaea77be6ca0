"""Which of two events on one S3 key is newer: the rules that make redelivered and reordered events harmless.

Pure: the repository loads what is stored for the key (under the key's lock) and asks these rules
whether the incoming event may overwrite it. An event that may not is acknowledged with the reason
as a skip: retrying it could never make it newer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from handlers.stages.sequencer import compare_sequencers

if TYPE_CHECKING:
    from datetime import datetime

    from handlers.model import ObjectRef


@dataclass(frozen=True, slots=True)
class StoredState:
    """What is stored for an identity: a live document row, or a tombstone (`document_id` None)."""

    document_id: int | None
    status: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    event_time: datetime | None
    sha256: str | None
    embedding_model: str | None


def stale_reason(ref: ObjectRef, stored: StoredState | None) -> str | None:
    """Why `ref` must not overwrite `stored` (None if it is newer or nothing is stored).

    The S3 sequencer orders events for one key; without it (moto, some replays) an equal version id
    or ETag means the same event, and an older event time means a stale one.
    """
    if stored is None:
        return None
    if ref.sequencer and stored.sequencer:
        order = compare_sequencers(ref.sequencer, stored.sequencer)
        if order < 0:
            return f"stale sequencer {ref.sequencer} < stored {stored.sequencer}"
        if order == 0:
            return f"duplicate event sequencer={ref.sequencer}"
        return None
    if ref.version_id and ref.version_id == stored.version_id:
        return f"duplicate event version_id={ref.version_id}"
    if ref.event_time and stored.event_time and ref.event_time < stored.event_time:
        return f"stale event time {ref.event_time.isoformat()} < stored {stored.event_time.isoformat()}"
    if not ref.version_id and ref.etag and ref.etag == stored.etag and ref.event_time == stored.event_time:
        return f"duplicate event etag={ref.etag}"
    return None


def delete_skip_reason(ref: ObjectRef, stored: StoredState | None) -> str | None:
    """Why the delete `ref` must leave `stored` in place: it is stale, or it removed another version."""
    return stale_reason(ref, stored) or other_version_deleted(ref, stored)


def other_version_deleted(ref: ObjectRef, stored: StoredState | None) -> str | None:
    """A permanent delete of one version (not a delete marker) leaves the stored version in place."""
    if (
        ref.event_name == "ObjectRemoved:Delete"
        and ref.version_id
        and stored is not None
        and stored.version_id
        and stored.version_id != ref.version_id
    ):
        return f"deleted version {ref.version_id} is not the stored version {stored.version_id}"
    return None
