from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handlers.model import EventKind, ObjectRef
from handlers.stages.ordering import StoredState, stale_reason


def _ref(**fields) -> ObjectRef:
    return ObjectRef(bucket="b", key="k", kind=EventKind.CREATED, event_name="ObjectCreated:Put", **fields)


def _stored(**fields) -> StoredState:
    values: dict[str, Any] = {
        "document_id": 1,
        "status": "ready",
        "version_id": None,
        "etag": None,
        "sequencer": None,
        "event_time": None,
        "sha256": None,
        "embedding_model": None,
    } | fields
    return StoredState(**values)


def test_nothing_stored_means_process():
    assert stale_reason(_ref(sequencer="0A"), None) is None


def test_sequencers_order_events_with_right_padding():
    assert stale_reason(_ref(sequencer="0055AED6DCD90281E6A"), _stored(sequencer="0055AED6DCD90281E5")) is None
    assert "stale" in (
        stale_reason(_ref(sequencer="0055AED6DCD90281E5"), _stored(sequencer="0055AED6DCD90281E6A")) or ""
    )
    assert "duplicate" in (stale_reason(_ref(sequencer="00ab"), _stored(sequencer="00AB")) or "")


def test_without_sequencers_version_then_time_decide():
    assert "duplicate" in (stale_reason(_ref(version_id="v1"), _stored(version_id="v1")) or "")
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert "stale" in (stale_reason(_ref(event_time=datetime(2026, 1, 1, tzinfo=UTC)), _stored(event_time=later)) or "")
    assert stale_reason(_ref(event_time=datetime(2026, 1, 3, tzinfo=UTC)), _stored(event_time=later)) is None


def test_same_etag_at_the_same_time_is_a_duplicate_without_versioning():
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    ref = _ref(etag="abc", event_time=moment)
    assert "duplicate" in (stale_reason(ref, _stored(etag="abc", event_time=moment)) or "")
    assert (
        stale_reason(
            _ref(etag="abc", event_time=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)),
            _stored(etag="abc", event_time=moment),
        )
        is None
    )


def test_a_tombstone_fences_an_older_put():
    assert "stale" in (
        stale_reason(_ref(sequencer="10"), _stored(document_id=None, status="deleted", sequencer="20")) or ""
    )
