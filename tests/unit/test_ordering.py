"""The ordering rules: which event on one key may overwrite what is stored, and which is skipped and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.model import EventKind, ObjectRef
from handlers.ops.s3_events import message_body, s3_notification
from handlers.stages.events import parse_notifications
from handlers.stages.ordering import StoredState, delete_skip_reason, other_version_deleted, stale_reason

NOON = datetime(2026, 3, 1, 12, tzinfo=UTC)
LATER = NOON + timedelta(seconds=1)


def put(**fields: Any) -> ObjectRef:
    return ObjectRef("bucket", "uploads/a.md", EventKind.CREATED, "ObjectCreated:Put", **fields)


def delete(event_name: str = "ObjectRemoved:Delete", **fields: Any) -> ObjectRef:
    return ObjectRef("bucket", "uploads/a.md", EventKind.REMOVED, event_name, **fields)


def row(**fields: Any) -> StoredState:
    values: dict[str, Any] = {"document_id": 7, "status": "ready"}
    values |= dict.fromkeys(("version_id", "etag", "sequencer", "event_time", "sha256", "embedding_model"))
    return StoredState(**(values | fields))


def tombstone(**fields: Any) -> StoredState:
    return row(document_id=None, status="deleted", **fields)


@pytest.mark.parametrize(
    "stored", [row(sequencer="0100", version_id="v1", event_time=LATER), tombstone(sequencer="0100", event_time=LATER)]
)
def test_a_newer_sequencer_wins_over_a_row_or_a_tombstone_whatever_else_differs(stored):
    # Given a stored sequencer 0100, an incoming 0A is newer once right-padded ("0A00" > "0100")
    # When the same version id and an older time come with it, then the sequencer alone decides
    assert stale_reason(put(sequencer="0A", version_id="v1", event_time=NOON), stored) is None


@pytest.mark.parametrize("stored", [row(sequencer="0100"), tombstone(sequencer="0100")])
def test_an_older_sequencer_is_stale_against_a_row_or_a_tombstone(stored):
    assert stale_reason(put(sequencer="00FF"), stored) == "stale sequencer 00FF < stored 0100"


def test_an_equal_sequencer_in_another_case_or_length_is_the_same_event():
    assert stale_reason(put(sequencer="0a"), row(sequencer="0A00")) == "duplicate event sequencer=0a"


def test_one_side_without_a_sequencer_falls_back_to_version_etag_and_time():
    # The stored row came from an emulator (no sequencer); the incoming event has one: it cannot be compared
    assert stale_reason(put(sequencer="01", version_id="v1"), row(version_id="v1")) == "duplicate event version_id=v1"
    assert stale_reason(put(version_id="v2"), row(sequencer="01", version_id="v1")) is None


def test_without_sequencers_an_older_event_time_is_stale_and_a_newer_one_wins():
    assert stale_reason(put(event_time=NOON), row(event_time=LATER)) == (
        f"stale event time {NOON.isoformat()} < stored {LATER.isoformat()}"
    )
    assert stale_reason(put(event_time=LATER), row(event_time=NOON)) is None


def test_without_sequencers_or_versions_the_same_etag_at_the_same_time_is_a_duplicate():
    assert stale_reason(put(etag="e1", event_time=NOON), row(etag="e1", event_time=NOON)) == "duplicate event etag=e1"
    # The same bytes uploaded again later are a new event (the unchanged check handles them)
    assert stale_reason(put(etag="e1", event_time=LATER), row(etag="e1", event_time=NOON)) is None


def test_without_any_order_the_event_is_processed():
    assert stale_reason(put(), row()) is None
    assert stale_reason(put(sequencer="01"), None) is None


def test_event_times_compare_as_moments_whatever_the_offset_written():
    # Given the same moment written with two offsets, as two producers might
    [ref] = parse_notifications(_notification("2026-03-01T14:00:00+02:00", etag="e1")).refs
    # Then it is neither older nor newer than the stored UTC time: the etag decides it is the same event
    assert ref.event_time == NOON
    assert stale_reason(ref, row(etag="e1", event_time=NOON)) == "duplicate event etag=e1"


def test_a_time_without_an_offset_is_utc_and_a_placeholder_is_no_time():
    [naive] = parse_notifications(_notification("2026-03-01T12:00:00")).refs
    [placeholder] = parse_notifications(_notification("date")).refs
    assert (naive.event_time, placeholder.event_time) == (NOON, None)
    # A naive time compares with the stored aware one instead of failing the record
    assert (
        stale_reason(naive, row(event_time=LATER))
        == f"stale event time {NOON.isoformat()} < stored {LATER.isoformat()}"
    )


def test_a_delete_older_than_the_stored_put_leaves_it():
    assert delete_skip_reason(delete(sequencer="01"), row(sequencer="02")) == "stale sequencer 01 < stored 02"


def test_a_repeated_delete_is_a_duplicate_of_its_tombstone():
    assert delete_skip_reason(delete(sequencer="05"), tombstone(sequencer="05")) == "duplicate event sequencer=05"


def test_deleting_another_version_permanently_leaves_the_stored_version():
    # Given version v2 stored, when v1 is deleted for good (not a delete marker), then v2 stays
    assert other_version_deleted(delete(version_id="v1", sequencer="09"), row(version_id="v2", sequencer="01")) == (
        "deleted version v1 is not the stored version v2"
    )
    assert delete_skip_reason(delete(version_id="v1", sequencer="09"), row(version_id="v2", sequencer="01")) == (
        "deleted version v1 is not the stored version v2"
    )


@pytest.mark.parametrize(
    ("event", "stored"),
    [
        (delete(version_id="v2", sequencer="09"), row(version_id="v2", sequencer="01")),  # the stored version itself
        (delete("ObjectRemoved:DeleteMarkerCreated", version_id="m1", sequencer="09"), row(version_id="v2")),
        (delete(sequencer="09"), row(version_id="v2", sequencer="01")),  # unversioned delete: the object is gone
        (delete(version_id="v1", sequencer="09"), None),  # nothing stored: the tombstone still fences older puts
    ],
)
def test_a_newer_delete_of_the_current_object_removes_it(event, stored):
    assert delete_skip_reason(event, stored) is None


def _notification(event_time: str, **fields: Any) -> str:
    return message_body(s3_notification("bucket", "uploads/a.md", event_time=event_time, **fields))
