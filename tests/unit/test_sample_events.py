"""handlers.ops.s3_events builds real shapes that parse back, and events/ holds exactly its output.

Each file in events/ is produced by the recipe of the same name in RECIPES (fixed seed), and parses
to the outcome stated in events/README.md. Regenerate after changing a recipe with
`python -m tests.unit.test_sample_events`.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    S3EventNotificationEventBridgeModel,
    S3Model,
    SnsNotificationModel,
    SqsModel,
)

from handlers.errors import MalformedEventError
from handlers.model import EventKind, ObjectRef
from handlers.ops.s3_events import (
    Ids,
    encode_key,
    eventbridge_object_event,
    message_body,
    s3_notification,
    s3_test_event,
    sns_wrap,
    sqs_event,
)
from handlers.stages.events import Notifications, parse_notifications
from handlers.stages.sequencer import compare_sequencers
from tests.paths import SAMPLE_EVENTS

if TYPE_CHECKING:
    from collections.abc import Callable


BUCKET = "filequeue-demo"
MD_KEY = "uploads/getting-started.md"
PDF_KEY = "uploads/tracemonkey.pdf"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:filequeue-uploads"

# One Markdown upload, then a newer upload of the same key, then its deletion: increasing sequencers.
MD_SIZE, MD_ETAG, MD_SEQUENCER, MD_AT = (
    2048,
    "0f343b0931126a20f133d67c2b018a3b",
    "0066A1F0C1D2E3F401",
    "2024-05-01T12:00:00.000Z",
)
NEWER_SIZE, NEWER_ETAG, NEWER_SEQUENCER, NEWER_AT = (
    2611,
    "7d793037a0760186574b0282f2f435e7",
    "0066A1F0C1D2E3F6A2",
    "2024-05-01T12:05:00.000Z",
)
DELETE_SEQUENCER, DELETE_AT = "0066A1F0C1D2E3F8B3", "2024-05-01T12:10:00.000Z"
# Size and MD5 of tests/fixtures/pdf/pdfjs-tracemonkey-14-pages-two-column.pdf; the multipart ETag is
# the MD5 of the part MD5s with the part count appended (one 1 MB part).
PDF_SIZE, PDF_ETAG, PDF_MULTIPART_ETAG = (
    1016315,
    "9a192d8b1a7dc652a19835f6f08098bd",
    "3431c9054a0eb2ec9a9db68a3263f56f-1",
)


def _millis(iso_time: str) -> int:
    return int(datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp() * 1000)


def _sqs(bodies: list[str], at: str, ids: Ids) -> dict[str, Any]:
    # SQS receives the message a moment after S3 finished the request.
    return sqs_event(bodies, sent_timestamp_ms=_millis(at) + 350, ids=ids)


def _notification(key: str, at: str, ids: Ids, **fields: Any) -> str:
    return message_body(s3_notification(BUCKET, key, event_time=at, ids=ids, **fields))


def _md_put(ids: Ids) -> str:
    return _notification(MD_KEY, MD_AT, ids, size=MD_SIZE, etag=MD_ETAG, sequencer=MD_SEQUENCER)


RECIPES: dict[str, Callable[[Ids], dict[str, Any]]] = {
    "s3-put.json": lambda ids: _sqs([_md_put(ids)], MD_AT, ids),
    "s3-put-newer.json": lambda ids: _sqs(
        [_notification(MD_KEY, NEWER_AT, ids, size=NEWER_SIZE, etag=NEWER_ETAG, sequencer=NEWER_SEQUENCER)],
        NEWER_AT,
        ids,
    ),
    "s3-delete.json": lambda ids: _sqs(
        [_notification(MD_KEY, DELETE_AT, ids, event_name="ObjectRemoved:Delete", sequencer=DELETE_SEQUENCER)],
        DELETE_AT,
        ids,
    ),
    "s3-put-pdf.json": lambda ids: _sqs(
        [
            _notification(
                PDF_KEY, "2024-05-01T12:01:00.000Z", ids, size=PDF_SIZE, etag=PDF_ETAG, sequencer="0066A1F0D4E5F60718"
            )
        ],
        "2024-05-01T12:01:00.000Z",
        ids,
    ),
    "s3-multipart.json": lambda ids: _sqs(
        [
            _notification(
                "uploads/multipart/tracemonkey.pdf",
                "2024-05-01T12:02:00.000Z",
                ids,
                event_name="ObjectCreated:CompleteMultipartUpload",
                size=PDF_SIZE,
                etag=PDF_MULTIPART_ETAG,
                sequencer="0066A1F0E5F6071829",
            )
        ],
        "2024-05-01T12:02:00.000Z",
        ids,
    ),
    "s3-copy.json": lambda ids: _sqs(
        [
            _notification(
                "archive/getting-started.md",
                "2024-05-01T12:03:00.000Z",
                ids,
                event_name="ObjectCreated:Copy",
                size=MD_SIZE,
                etag=MD_ETAG,
                sequencer="0066A1F0F60718293A",
            )
        ],
        "2024-05-01T12:03:00.000Z",
        ids,
    ),
    "s3-put-encoded-key.json": lambda ids: _sqs(
        [
            _notification(
                "uploads/red flower+1 %.md",
                "2024-05-01T12:04:00.000Z",
                ids,
                size=311,
                etag="b7f1dd0ec4a5ab0ba6dbc4e4b8fc2d1e",
                sequencer="0066A1F1071829304B",
            )
        ],
        "2024-05-01T12:04:00.000Z",
        ids,
    ),
    "s3-test-event.json": lambda ids: _sqs(
        [message_body(s3_test_event(BUCKET, time="2024-05-01T11:59:00.000Z", ids=ids))], "2024-05-01T11:59:00.000Z", ids
    ),
    # The same upload as s3-put.json delivered through SNS: same sequencer, so a duplicate of it.
    "sns-wrapped-s3-put.json": lambda ids: _sqs(
        [sns_wrap(_md_put(ids), topic_arn=TOPIC_ARN, timestamp="2024-05-01T12:00:00.210Z", ids=ids)], MD_AT, ids
    ),
    "sns-raw-s3-put.json": lambda ids: _sqs([_md_put(ids)], MD_AT, ids),
    "eventbridge-object-created.json": lambda ids: _sqs(
        [
            message_body(
                eventbridge_object_event(
                    BUCKET,
                    MD_KEY,
                    size=MD_SIZE,
                    etag=MD_ETAG,
                    sequencer=MD_SEQUENCER,
                    time="2024-05-01T12:00:00Z",
                    ids=ids,
                )
            )
        ],
        MD_AT,
        ids,
    ),
    "eventbridge-object-deleted.json": lambda ids: _sqs(
        [
            message_body(
                eventbridge_object_event(
                    BUCKET,
                    MD_KEY,
                    detail_type="Object Deleted",
                    reason="DeleteObject",
                    deletion_type="Permanently Deleted",
                    sequencer=DELETE_SEQUENCER,
                    time="2024-05-01T12:10:00Z",
                    ids=ids,
                )
            )
        ],
        DELETE_AT,
        ids,
    ),
    # An S3 notification cut short, as a truncated or hand-written message would be.
    "malformed-body.json": lambda ids: _sqs(
        ['{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3"'], MD_AT, ids
    ),
}


def render(name: str) -> str:
    return json.dumps(RECIPES[name](Ids(seed=zlib.crc32(name.encode()))), indent=2, ensure_ascii=False) + "\n"


README_ROW = re.compile(
    r"^\| `(?P<file>[^`]+\.json)` \| [^|]+ \| (?P<outcome>created|removed|ignored|rejected) `(?P<detail>[^`]+)` \|$"
)


def readme_outcomes() -> dict[str, tuple[str, str]]:
    rows = (README_ROW.match(line) for line in (SAMPLE_EVENTS / "README.md").read_text(encoding="utf-8").splitlines())
    return {row["file"]: (row["outcome"], row["detail"]) for row in rows if row}


def outcome_of(body: str) -> tuple[str, str]:
    try:
        notifications = parse_notifications(body)
    except MalformedEventError as exc:
        return "rejected", exc.code
    if notifications.ignored:
        (reason,) = notifications.ignored
        return "ignored", reason
    (ref,) = notifications.refs
    return ref.kind.value, ref.uri


# events/


def test_events_readme_recipes_and_files_name_the_same_samples() -> None:
    files = sorted(path.name for path in SAMPLE_EVENTS.glob("*.json"))

    assert files == sorted(RECIPES)
    assert files == sorted(readme_outcomes())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_committed_sample_is_its_recipe_output(name: str) -> None:
    assert (SAMPLE_EVENTS / name).read_text(encoding="utf-8") == render(name)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_sample_parses_to_the_outcome_its_readme_states(name: str) -> None:
    event = json.loads((SAMPLE_EVENTS / name).read_text(encoding="utf-8"))

    (record,) = event["Records"]

    assert outcome_of(record["body"]) == readme_outcomes()[name]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_sample_is_a_valid_lambda_sqs_event(name: str) -> None:
    event = json.loads((SAMPLE_EVENTS / name).read_text(encoding="utf-8"))

    SqsModel.model_validate(event)


def sample_sequencer(name: str) -> str:
    body = json.loads((SAMPLE_EVENTS / name).read_text(encoding="utf-8"))["Records"][0]["body"]
    sequencer = parse_notifications(body).refs[0].sequencer
    assert sequencer is not None
    return sequencer


def test_newer_put_and_delete_follow_the_first_put() -> None:
    put, newer, delete = (sample_sequencer(name) for name in ("s3-put.json", "s3-put-newer.json", "s3-delete.json"))

    assert compare_sequencers(put, newer) == -1
    assert compare_sequencers(newer, delete) == -1


def test_every_route_of_the_first_put_carries_its_sequencer() -> None:
    routes = ("sns-wrapped-s3-put.json", "sns-raw-s3-put.json", "eventbridge-object-created.json")

    assert {sample_sequencer(name) for name in routes} == {sample_sequencer("s3-put.json")}


# Round trips of the builders through the parser.


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("dir/red flower.jpg", "dir/red+flower.jpg"),
        ("a+b.txt", "a%2Bb.txt"),
        ("100%.csv", "100%25.csv"),
        ("x=1:y.csv", "x%3D1%3Ay.csv"),
        ("café.csv", "caf%C3%A9.csv"),
        ("a@b", "a%40b"),
        ("uploads/red flower+1 %.md", "uploads/red+flower%2B1+%25.md"),
    ],
)
def test_keys_are_encoded_as_s3_does_and_decoded_back(key: str, encoded: str) -> None:
    notification = s3_notification(BUCKET, key, size=1)

    assert notification["Records"][0]["s3"]["object"]["key"] == encoded == encode_key(key)
    assert parse_notifications(json.dumps(notification)).refs[0].key == key


def test_s3_notification_round_trips_every_field() -> None:
    notification = s3_notification(
        BUCKET,
        "uploads/a b.pdf",
        size=10,
        etag="0123456789abcdef0123456789abcdef",
        version_id="v-1",
        sequencer="0066A1F0C1D2E3F401",
        region="eu-west-1",
        event_time="2024-05-01T12:00:00.000Z",
    )

    S3Model.model_validate(notification)
    assert parse_notifications(json.dumps(notification)) == Notifications(
        refs=(
            ObjectRef(
                bucket=BUCKET,
                key="uploads/a b.pdf",
                kind=EventKind.CREATED,
                event_name="ObjectCreated:Put",
                version_id="v-1",
                etag="0123456789abcdef0123456789abcdef",
                size=10,
                sequencer="0066A1F0C1D2E3F401",
                event_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
            ),
        )
    )


def test_a_delete_notification_omits_size_and_etag_as_s3_does() -> None:
    notification = s3_notification(BUCKET, MD_KEY, event_name="ObjectRemoved:Delete", sequencer="0A")

    assert notification["Records"][0]["s3"]["object"] == {"key": MD_KEY, "sequencer": "0A"}
    S3Model.model_validate(notification)
    assert parse_notifications(json.dumps(notification)).refs[0].kind is EventKind.REMOVED


def test_message_body_is_compact_json_as_aws_writes_it() -> None:
    assert message_body({"Records": [{"key": "café"}]}) == '{"Records":[{"key":"café"}]}'


def test_the_bucket_arn_follows_the_partition_of_the_region() -> None:
    notification = s3_notification(BUCKET, MD_KEY, region="cn-north-1")

    assert notification["Records"][0]["s3"]["bucket"]["arn"] == f"arn:aws-cn:s3:::{BUCKET}"


def test_a_generated_test_event_is_acknowledged() -> None:
    assert parse_notifications(json.dumps(s3_test_event(BUCKET))) == Notifications(
        ignored=(f"s3:TestEvent bucket={BUCKET}",)
    )


def test_sns_wrap_lays_out_the_envelope_as_sns_does_and_unwraps() -> None:
    body = sns_wrap(json.dumps(s3_notification(BUCKET, "a+b.txt", size=3)), topic_arn=TOPIC_ARN)

    assert body.startswith('{\n  "Type" : "Notification",\n  "MessageId" : "')
    SnsNotificationModel.model_validate_json(body)
    assert parse_notifications(body).refs[0].key == "a+b.txt"


def test_sns_wrapped_test_event_is_acknowledged() -> None:
    body = sns_wrap(json.dumps(s3_test_event(BUCKET)), topic_arn=TOPIC_ARN)

    assert parse_notifications(body).ignored == (f"s3:TestEvent bucket={BUCKET}",)


@pytest.mark.parametrize(
    ("detail_type", "reason", "deletion_type", "kind", "event_name"),
    [
        ("Object Created", "PutObject", None, EventKind.CREATED, "ObjectCreated:Put"),
        ("Object Created", "CompleteMultipartUpload", None, EventKind.CREATED, "ObjectCreated:CompleteMultipartUpload"),
        ("Object Deleted", "DeleteObject", "Permanently Deleted", EventKind.REMOVED, "ObjectRemoved:Delete"),
        (
            "Object Deleted",
            "Lifecycle Expiration",
            "Delete Marker Created",
            EventKind.REMOVED,
            "LifecycleExpiration:DeleteMarkerCreated",
        ),
    ],
)
def test_eventbridge_events_round_trip(
    detail_type: str, reason: str, deletion_type: str | None, kind: EventKind, event_name: str
) -> None:
    event = eventbridge_object_event(
        BUCKET,
        "dir/red flower.jpg",
        detail_type=detail_type,
        reason=reason,
        deletion_type=deletion_type,
        etag="b1946ac92492d2347c6235b4d2611184",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        sequencer="617f08299329d189",
    )

    S3EventNotificationEventBridgeModel.model_validate(event)
    ref = parse_notifications(json.dumps(event)).refs[0]
    assert (ref.key, ref.kind, ref.event_name, ref.version_id) == (
        "dir/red flower.jpg",
        kind,
        event_name,
        "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
    )


def test_sqs_event_builds_one_lambda_record_per_body() -> None:
    bodies = ['{"Records": []}', "héllo"]

    event = sqs_event(
        bodies, queue_arn="arn:aws:sqs:eu-central-1:111122223333:uploads", sent_timestamp_ms=1714564800350
    )

    SqsModel.model_validate(event)
    records = event["Records"]
    assert [record["body"] for record in records] == bodies
    assert [record["md5OfBody"] for record in records] == [
        hashlib.md5(body.encode(), usedforsecurity=False).hexdigest() for body in bodies
    ]
    assert {record["awsRegion"] for record in records} == {"eu-central-1"}
    assert {record["eventSourceARN"] for record in records} == {"arn:aws:sqs:eu-central-1:111122223333:uploads"}
    assert records[0]["attributes"]["SentTimestamp"] == "1714564800350"
    assert len({record["messageId"] for record in records}) == 2


def test_sqs_event_rejects_a_queue_arn_without_region() -> None:
    with pytest.raises(ValueError, match="not a regional ARN"):
        sqs_event(["{}"], queue_arn="my-queue")


# Identifiers.


def test_the_same_seed_gives_the_same_event() -> None:
    def build(ids: Ids) -> dict[str, Any]:
        return sqs_event([sns_wrap(json.dumps(s3_notification(BUCKET, MD_KEY, ids=ids)), ids=ids)], ids=ids)

    assert build(Ids(seed=7)) == build(Ids(seed=7))
    assert build(Ids(seed=7)) != build(Ids(seed=8))


def test_identifiers_are_random_without_a_seed() -> None:
    first, second = sqs_event(["{}"]), sqs_event(["{}"])

    assert first["Records"][0]["messageId"] != second["Records"][0]["messageId"]
    assert first["Records"][0]["receiptHandle"] != second["Records"][0]["receiptHandle"]


def test_ids_have_the_shapes_aws_uses() -> None:
    ids = Ids(seed=1)

    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", ids.uuid())
    assert re.fullmatch(r"[0-9A-F]{16}", ids.hex(16))
    assert re.fullmatch(r"[0-9A-F]{15}", ids.hex(15))


if __name__ == "__main__":
    for sample in RECIPES:
        (SAMPLE_EVENTS / sample).write_text(render(sample), encoding="utf-8")
