"""Every real event sample in tests/fixtures/events/ (see SOURCES.md there) has one expected outcome.

A sample reaches `parse_notifications` the way a queue would deliver it (`Delivery` below). The table
`CASES` was written from reading each file; each comment says what decides the outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import pytest

from handlers.errors import MalformedEventError
from handlers.model import EventKind
from handlers.stages.events import parse_notifications
from tests.paths import EVENT_FIXTURES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class Delivery(Enum):
    # A bare S3 notification, EventBridge event or test event: exactly what a queue subscribed to S3,
    # to an EventBridge rule, or to SNS with raw delivery holds as the message body.
    PAYLOAD = "the file is one message body"
    # A Lambda SQS event: each record's body is one message.
    SQS_EVENT = "the body of each record"
    # A Lambda SNS event: each record's `Sns` object is the envelope SNS would deliver to a queue
    # (non-raw delivery; only its casing of SigningCertUrl/UnsubscribeUrl differs, which we ignore).
    SNS_LAMBDA_EVENT = "the Sns object of each record"
    # LocalStack snapshots are test recordings keyed by test id; the event parts are extracted in
    # document order (see `_snapshot_bodies`).
    SQS_SNAPSHOT = "each recorded S3 record, as the {'Records': [record]} body S3 sends"
    SNS_SNAPSHOT = "each recorded SNS envelope, its parsed Message turned back into a string"
    EVENTBRIDGE_SNAPSHOT = "each recorded EventBridge event"


@dataclass(frozen=True)
class Ref:
    bucket: str
    key: str
    kind: EventKind
    event_name: str
    version_id: str | None = None
    sequencer: str | None = None


@dataclass(frozen=True)
class Parsed:
    refs: tuple[Ref, ...] = ()
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    code: str


Outcome = Parsed | Rejected


@dataclass(frozen=True)
class Case:
    delivery: Delivery
    outcomes: tuple[Outcome, ...]


def created(
    bucket: str, key: str, name: str = "ObjectCreated:Put", *, version: str | None = None, sequencer: str | None = None
) -> Ref:
    return Ref(bucket, key, EventKind.CREATED, name, version, sequencer)


def removed(
    bucket: str,
    key: str,
    name: str = "ObjectRemoved:Delete",
    *,
    version: str | None = None,
    sequencer: str | None = None,
) -> Ref:
    return Ref(bucket, key, EventKind.REMOVED, name, version, sequencer)


def accepted(*refs: Ref) -> Parsed:
    return Parsed(refs=refs)


def ignored(*reasons: str) -> Parsed:
    return Parsed(ignored=reasons)


def payload(outcome: Outcome) -> Case:
    return Case(Delivery.PAYLOAD, (outcome,))


def sqs(*outcomes: Outcome) -> Case:
    return Case(Delivery.SQS_EVENT, outcomes)


AWSDOCS_BUCKET = "DOC-EXAMPLE-BUCKET1"
# LocalStack replaces bucket and key names by placeholders; they are ordinary strings to the parser.
LS_BUCKET = "<resource:1>"
EB_BUCKET, EB_KEY = "<bucket-name:1>", "<key-name:1>"
# Placeholder sequencers ("sequencer", "object-sequencer", Go's "Happy Sequencer") are not hex, so
# the parser treats them as missing: those refs carry sequencer=None.

CASES: dict[str, Case] = {
    # AWS docs, EventBridge: reason PutObject -> ObjectCreated:Put; fields etag/version-id/sequencer.
    "awsdocs-eventbridge-s3-object-created.json": payload(
        accepted(
            created(
                AWSDOCS_BUCKET, "example-key", version="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", sequencer="617f08299329d189"
            )
        )
    ),
    # Lifecycle Expiration + "Delete Marker Created": the object is gone for readers, so REMOVED.
    "awsdocs-eventbridge-s3-object-deleted-lifecycle.json": payload(
        accepted(
            removed(
                AWSDOCS_BUCKET,
                "example-key",
                "LifecycleExpiration:DeleteMarkerCreated",
                version="mtB0cV.jejK63XkRNceanNMC.qXPWLeK",
                sequencer="617b398000000000",
            )
        )
    ),
    # DeleteObject on a versioned bucket: "Delete Marker Created"; no size in the object.
    "awsdocs-eventbridge-s3-object-deleted.json": payload(
        accepted(
            removed(
                AWSDOCS_BUCKET,
                "example-key",
                "ObjectRemoved:DeleteMarkerCreated",
                version="1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
                sequencer="617f0837b476e463",
            )
        )
    ),
    "awsdocs-eventbridge-s3-object-restore-completed.json": payload(
        ignored("detail-type=Object Restore Completed key=example-key")
    ),
    # Structure template: eventName "event-type" is not a create/remove, so the string size never matters.
    "awsdocs-s3-event-structure-v2.2-TEMPLATE.json": payload(ignored("eventName=event-type key=object-key")),
    "awsdocs-s3-put-event-v2.1.json": payload(
        accepted(
            created(
                "mybucket", "HappyFace.jpg", version="096fKKXTRTtl3on89fVO.nfljtsv6qko", sequencer="0055AED6DCD90281E5"
            )
        )
    ),
    "awsdocs-s3-test-event.json": payload(ignored("s3:TestEvent bucket=bucketname")),
    "dotnet-eventbridge-s3-object-created-versioned.json": payload(
        accepted(
            created(
                AWSDOCS_BUCKET, "example-key", version="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", sequencer="617f08299329d189"
            )
        )
    ),
    # Two records in one body; "New+File.jpg" is form-encoded "New File.jpg".
    "dotnet-s3-two-records-plus-encoded-space.json": payload(
        accepted(
            created("sourcebucket", "HappyFace.jpg", sequencer="0A1B2C3D4E5F678901"),
            created("sourcebucket", "New File.jpg", sequencer="0A1B2C3D4E5F678901"),
        )
    ),
    # The file starts with a UTF-8 BOM (read as utf-8-sig); its one body is the text "Message Body".
    "dotnet-sqs-event-utf8-bom.json": sqs(Rejected("invalid_json")),
    # eventName keeps Go's "s3:" prefix, which the parser drops; the key decodes "%2D" to "-".
    "go-s3-lifecycle-transition.json": payload(ignored("eventName=LifecycleTransition key=lifecycle-test.dat")),
    # "%20" decodes to a space; the non-standard urlDecodedKey field is not used.
    "go-s3-put-key-percent20.json": payload(accepted(created("sourcebucket", "Happy Face.jpg", version="version"))),
    "go-s3-put-with-urlDecodedKey.json": payload(
        accepted(created("sourcebucket", "Happy Face.jpg", version="version"))
    ),
    "go-s3-replication-failed.json": payload(
        ignored("eventName=Replication:OperationFailedReplication key=replication-test.png")
    ),
    "go-s3-restore-completed.json": payload(ignored("eventName=ObjectRestore:Completed key=glacier-test.txt")),
    # The SNS message is the text "Hello from SNS!": somebody else's message, not an S3 event.
    "go-sns-event.json": Case(Delivery.SNS_LAMBDA_EVENT, (Rejected("unknown_shape"),)),
    "go-sqs-generic-body-not-json.json": sqs(Rejected("invalid_json")),
    # versionId "" means unversioned; "/" in the key is not encoded.
    "java-s3-put-empty-versionid.json": payload(
        accepted(created("example-bucket", "test/key", sequencer="0A1B2C3D4E5F678901"))
    ),
    "java-sqs-empty-body.json": sqs(Rejected("empty_body")),
    "localstack-derived-s3-complete-multipart-upload.json": payload(
        accepted(created(LS_BUCKET, "test-key", "ObjectCreated:CompleteMultipartUpload"))
    ),
    "localstack-derived-s3-copy.json": payload(accepted(created(LS_BUCKET, "<object-key:1>", "ObjectCreated:Copy"))),
    # A delete carries only key and sequencer: no size or eTag, and that must not matter.
    "localstack-derived-s3-object-removed-delete.json": payload(accepted(removed(LS_BUCKET, "<object-key:2>"))),
    "localstack-derived-s3-object-tagging-put.json": payload(ignored("eventName=ObjectTagging:Put key=<object-key:1>")),
    # Real S3 sent "a%40b" for the key "a@b".
    "localstack-derived-s3-put-key-a-at-b.json": payload(accepted(created(LS_BUCKET, "a@b"))),
    "localstack-s3-to-eventbridge-recorded-against-aws.snapshot.json": Case(
        Delivery.EVENTBRIDGE_SNAPSHOT,
        (
            # test_object_created_put: a permanent delete, then a put
            accepted(removed(EB_BUCKET, EB_KEY)),
            accepted(created(EB_BUCKET, EB_KEY)),
            # test_object_put_acl: three ACL updates, then the put
            ignored(f"detail-type=Object ACL Updated key={EB_KEY}"),
            ignored(f"detail-type=Object ACL Updated key={EB_KEY}"),
            ignored(f"detail-type=Object ACL Updated key={EB_KEY}"),
            accepted(created(EB_BUCKET, EB_KEY)),
            # test_restore_object
            ignored(f"detail-type=Object Restore Initiated key={EB_KEY}"),
            ignored(f"detail-type=Object Restore Completed key={EB_KEY}"),
            # test_object_created_put_in_different_region
            accepted(created(EB_BUCKET, EB_KEY)),
            accepted(created(EB_BUCKET, EB_KEY)),
            # test_object_created_put_versioned: versioning active, then suspended
            accepted(created(EB_BUCKET, EB_KEY)),
            accepted(removed(EB_BUCKET, EB_KEY, version="<version-id:3>")),
            accepted(created(EB_BUCKET, EB_KEY)),
            accepted(removed(EB_BUCKET, EB_KEY, version="<version-id:3>")),
        ),
    ),
    "localstack-s3-to-sns-recorded-against-aws.snapshot.json": Case(
        Delivery.SNS_SNAPSHOT,
        (
            # test_object_created_put
            accepted(created(LS_BUCKET, "bucket-key")),
            accepted(created(LS_BUCKET, "bucket-key")),
            # test_bucket_notifications_with_filter (the error-only tests hold no messages)
            accepted(created(LS_BUCKET, "testupload/dir1/testfile.txt")),
        ),
    ),
    "localstack-s3-to-sqs-recorded-against-aws.snapshot.json": Case(
        Delivery.SQS_SNAPSHOT,
        (
            # test_object_created_put
            accepted(created(LS_BUCKET, "my_key_0")),
            accepted(created(LS_BUCKET, "my_key_1")),
            # test_object_created_copy
            accepted(created(LS_BUCKET, "<object-key:1>", "ObjectCreated:Copy")),
            # test_object_created_and_object_removed
            accepted(created(LS_BUCKET, "<object-key:1>", "ObjectCreated:Copy")),
            accepted(created(LS_BUCKET, "<object-key:2>")),
            accepted(removed(LS_BUCKET, "<object-key:2>")),
            # test_object_created_complete_multipart_upload
            accepted(created(LS_BUCKET, "test-key", "ObjectCreated:CompleteMultipartUpload")),
            # test_key_encoding: the key arrives as a%40b
            accepted(created(LS_BUCKET, "a@b")),
            # test_object_created_put_with_presigned_url_upload: two buckets
            accepted(created(LS_BUCKET, "key-by-hostname")),
            accepted(created("<resource:2>", "key-by-hostname")),
            # test_object_tagging_put_event, test_object_tagging_delete_event
            ignored("eventName=ObjectTagging:Put key=<object-key:1>"),
            ignored("eventName=ObjectTagging:Delete key=<object-key:1>"),
            # test_xray_header: the record sits in a recorded Body
            accepted(created(LS_BUCKET, "test-data")),
            # test_notifications_with_filter
            accepted(created("<bucket>", "testupload/dir1/testfile.txt")),
            # test_delete_objects: one notification per deleted key
            accepted(removed(LS_BUCKET, "<object-key:1>")),
            accepted(removed(LS_BUCKET, "<object-key:2>")),
            accepted(removed(LS_BUCKET, "<object-key:3>")),
            # test_object_put_acl
            ignored("eventName=ObjectAcl:Put key=my_key_acl"),
            ignored("eventName=ObjectAcl:Put key=my_key_acl"),
            ignored("eventName=ObjectAcl:Put key=my_key_acl"),
            # test_restore_object
            ignored("eventName=ObjectRestore:Post key=my_key_restore"),
            ignored("eventName=ObjectRestore:Completed key=my_key_restore"),
            # test_object_created_put_versioned: versioning active ...
            accepted(created(LS_BUCKET, "test-key", version="version-id")),
            accepted(created(LS_BUCKET, "test-key", version="version-id")),
            accepted(removed(LS_BUCKET, "test-key", version="version-id")),
            accepted(removed(LS_BUCKET, "test-key", "ObjectRemoved:DeleteMarkerCreated", version="version-id")),
            # ... then suspended: the put has no versionId
            accepted(created(LS_BUCKET, "test-key")),
            accepted(removed(LS_BUCKET, "test-key", version="version-id")),
        ),
    ),
    # Real captures (S3 -> EventBridge, S3 -> SNS -> Lambda, S3 -> ... -> SQS) from Powertools' pull request
    # https://github.com/aws-powertools/powertools-lambda-python/pull/4069.
    "powertools-eventbridge-s3-object-created.json": payload(
        accepted(created("example-bucket", "IMG_m7fzo3.jpg", sequencer="006408CAD69598B05E"))
    ),
    # "Delete Marker Created" without size or etag.
    "powertools-eventbridge-s3-object-deleted.json": payload(
        accepted(
            removed(
                "example-bucket", "IMG_m7fzo3.jpg", "ObjectRemoved:DeleteMarkerCreated", sequencer="006408CAD69598B05E"
            )
        )
    ),
    "powertools-pr4069-real-eventbridge-s3-object-created.json": payload(
        accepted(created("s3-eb-unwrap-sourcebucket", "s3-eb-template.yaml", sequencer="0065FB77A03AD4478F"))
    ),
    "powertools-pr4069-real-sns-wrapping-s3.json": Case(
        Delivery.SNS_LAMBDA_EVENT,
        (accepted(created("s3-sns-unwrap-bucket", "samconfig.toml", sequencer="0065F3718D39E6D6DC")),),
    ),
    # A zero-byte object: still a create; the empty-file policy belongs to later stages.
    "powertools-pr4069-real-sqs-wrapping-eventbridge-s3.json": sqs(
        accepted(created("s3-eb-unwrap-sourcebucket", "__init__.py", sequencer="0066030E82E2A48DFE"))
    ),
    "powertools-pr4069-real-sqs-wrapping-raw-sns-plain.json": sqs(Rejected("invalid_json")),
    # Raw SNS delivery: the body is the bare S3 notification. The bucket name is what the record says,
    # even though the (redacted) arn carries a suffix.
    "powertools-pr4069-real-sqs-wrapping-raw-sns-s3.json": sqs(
        accepted(created("unwraptestevents-bucket", "samconfig.toml", sequencer="0065FA186CC08E810D"))
    ),
    "powertools-pr4069-real-sqs-wrapping-s3-put.json": sqs(
        accepted(created("sqs-s3-unwrap-bucket", "samconfig.toml", sequencer="0065F349D4F05B5827"))
    ),
    # SNS envelope whose Message is the text "From SNS".
    "powertools-pr4069-real-sqs-wrapping-sns-plain-message.json": sqs(Rejected("unknown_shape")),
    # SNS envelope whose Message is an S3 notification encoded as a string.
    "powertools-pr4069-real-sqs-wrapping-sns-wrapping-s3.json": sqs(
        accepted(created("unwraptestevents-bucket", "firehose-s3-template.json", sequencer="0065FA0B4B104A6DAB"))
    ),
    "powertools-s3-delete.json": payload(
        accepted(
            removed(
                "lambda-artifacts-deafc19498e3f2df", "b21b84d653bb07b05b1e6b33684dc11b", sequencer="0C0F6F405D6ED209E1"
            )
        )
    ),
    "powertools-s3-put-with-urlDecodedKey.json": payload(
        accepted(created("sourcebucket", "Happy Face.jpg", version="version"))
    ),
    "powertools-s3-put.json": payload(
        accepted(
            created(
                "lambda-artifacts-deafc19498e3f2df", "b21b84d653bb07b05b1e6b33684dc11b", sequencer="0C0F6F405D6ED209E1"
            )
        )
    ),
    # FIFO SNS envelope whose Message is JSON, but {"message": ..., "username": ...}, not an S3 event.
    "powertools-sqs-fifo-wrapping-sns.json": sqs(Rejected("unknown_shape")),
    "powertools-sqs-from-dlq-redrive.json": sqs(Rejected("invalid_json")),
    # Two bodies: plain text, then JSON of an unknown shape.
    "powertools-sqs-two-records-mixed-bodies.json": sqs(Rejected("invalid_json"), Rejected("unknown_shape")),
    "powertools-sqs-wrapping-s3-put-test-pdf.json": sqs(
        accepted(created("xxx", "test.pdf", version="yd3d4HaWOT2zguDLvIQLU6ptDTwKBnQV", sequencer="00643717F9F8B85354"))
    ),
    "powertools-sqs-wrapping-sns-notification.json": sqs(Rejected("unknown_shape")),
    # An unrendered SAM template is well-formed: its literal "{{{bucket}}}" and "{{{key}}}" pass the
    # parser and fail later, at GetObject. Checking bucket names is not the parser's job.
    "samcli-s3-put-TEMPLATE-unrendered.json": payload(
        accepted(created("{{{bucket}}}", "{{{key}}}", sequencer="0A1B2C3D4E5F678901"))
    ),
}


def test_every_fixture_has_an_expected_outcome() -> None:
    assert sorted(path.name for path in EVENT_FIXTURES.glob("*.json")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_event_parses_to_its_expected_outcome(name: str) -> None:
    case = CASES[name]
    # utf-8-sig: one sample file starts with a BOM, which belongs to the file, not to any message body.
    text = (EVENT_FIXTURES / name).read_text(encoding="utf-8-sig")

    outcomes = [outcome_of(body) for body in message_bodies(text, case.delivery)]

    assert outcomes == list(case.outcomes)


def outcome_of(body: str) -> Outcome:
    try:
        notifications = parse_notifications(body)
    except MalformedEventError as exc:
        return Rejected(exc.code)
    refs = tuple(
        Ref(ref.bucket, ref.key, ref.kind, ref.event_name, ref.version_id, ref.sequencer) for ref in notifications.refs
    )
    return Parsed(refs=refs, ignored=notifications.ignored)


def message_bodies(text: str, delivery: Delivery) -> list[str]:
    if delivery is Delivery.PAYLOAD:
        return [text]
    document = json.loads(text)
    if delivery is Delivery.SQS_EVENT:
        assert {record["eventSource"] for record in document["Records"]} == {"aws:sqs"}
        return [record["body"] for record in document["Records"]]
    if delivery is Delivery.SNS_LAMBDA_EVENT:
        assert {record["EventSource"] for record in document["Records"]} == {"aws:sns"}
        return [json.dumps(record["Sns"]) for record in document["Records"]]
    return _snapshot_bodies(document, delivery)


def _snapshot_bodies(document: dict[str, Any], delivery: Delivery) -> list[str]:
    if delivery is Delivery.SQS_SNAPSHOT:
        # Each recorded record becomes the body S3 sends: one record per notification message.
        records = _find(document, lambda node: "eventName" in node and "s3" in node)
        return [json.dumps({"Records": [record]}) for record in records]
    if delivery is Delivery.SNS_SNAPSHOT:
        # LocalStack stores the SNS Message already parsed; on the wire it is a JSON string.
        envelopes = _find(document, lambda node: node.get("Type") == "Notification")
        return [json.dumps({**envelope, "Message": json.dumps(envelope["Message"])}) for envelope in envelopes]
    return [json.dumps(event) for event in _find(document, lambda node: "detail-type" in node)]


def _find(node: Any, wanted: Callable[[dict[str, Any]], bool]) -> Iterator[dict[str, Any]]:
    """Matching objects in document order, without descending into a match."""
    if isinstance(node, dict):
        if wanted(node):
            yield node
            return
        for child in node.values():
            yield from _find(child, wanted)
    elif isinstance(node, list):
        for child in node:
            yield from _find(child, wanted)
