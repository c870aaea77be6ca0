"""parse_notifications and compare_sequencers: every rule, and the fault cases of S3 test events (A1),
bodies of the wrong shape (A3), URL-encoded keys (A4), folder markers (A5) and events without size (A6).

Bodies are written out here by hand (not with handlers.ops.s3_events) so the parser is checked
against literal shapes; test_event_corpus.py checks it against real samples.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.errors import MalformedEventError
from handlers.model import EventKind, ObjectRef
from handlers.stages.events import Notifications, parse_notifications
from handlers.stages.sequencer import compare_sequencers, is_sequencer

BUCKET = "my-bucket"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:uploads"


def s3_record(
    key: str = "uploads/a.pdf", event_name: str = "ObjectCreated:Put", **object_fields: Any
) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "EXAMPLE"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "uploads",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {"key": key, **object_fields},
        },
    }


def s3_body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def s3_test_message(bucket: str = BUCKET) -> dict[str, Any]:
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-05-01T12:00:00.000Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


def sns_body(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "53c941f5-1d7a-5f8e-8ffe-1f8110f6e667",
            "TopicArn": TOPIC_ARN,
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2024-05-01T12:00:01.000Z",
            "SignatureVersion": "1",
        },
        indent=2,
        separators=(",", " : "),
    )


def eventbridge_body(
    detail_type: str = "Object Created",
    key: str = "uploads/a.pdf",
    *,
    source: str = "aws.s3",
    reason: str | None = "PutObject",
    deletion_type: str | None = None,
    **object_fields: Any,
) -> str:
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": BUCKET},
        "object": {"key": key, **object_fields},
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
    }
    if reason is not None:
        detail["reason"] = reason
    if deletion_type is not None:
        detail["deletion-type"] = deletion_type
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": "2024-05-01T12:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{BUCKET}"],
            "detail": detail,
        }
    )


def only_ref(body: str) -> ObjectRef:
    notifications = parse_notifications(body)
    assert notifications.ignored == ()
    (ref,) = notifications.refs
    return ref


def rejection(body: str) -> MalformedEventError:
    with pytest.raises(MalformedEventError) as caught:
        parse_notifications(body)
    return caught.value


# S3 notifications


def test_s3_put_becomes_a_created_ref_with_every_field() -> None:
    body = s3_body(
        s3_record(
            size=1024,
            eTag="d41d8cd98f00b204e9800998ecf8427e",
            versionId="3HL4kqtJlcpXroDTDmJ",
            sequencer="0055AED6DCD90281E5",
        )
    )

    assert only_ref(body) == ObjectRef(
        bucket=BUCKET,
        key="uploads/a.pdf",
        kind=EventKind.CREATED,
        event_name="ObjectCreated:Put",
        version_id="3HL4kqtJlcpXroDTDmJ",
        etag="d41d8cd98f00b204e9800998ecf8427e",
        size=1024,
        sequencer="0055AED6DCD90281E5",
        event_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("event_name", "kind"),
    [
        ("ObjectCreated:Put", EventKind.CREATED),
        ("ObjectCreated:Post", EventKind.CREATED),
        ("ObjectCreated:Copy", EventKind.CREATED),
        ("ObjectCreated:CompleteMultipartUpload", EventKind.CREATED),
        ("ObjectRemoved:Delete", EventKind.REMOVED),
        ("ObjectRemoved:DeleteMarkerCreated", EventKind.REMOVED),
        # Lifecycle expiration deletes the object (or puts a delete marker over it): the document goes.
        ("LifecycleExpiration:Delete", EventKind.REMOVED),
        ("LifecycleExpiration:DeleteMarkerCreated", EventKind.REMOVED),
    ],
)
def test_event_name_decides_the_kind(event_name: str, kind: EventKind) -> None:
    ref = only_ref(s3_body(s3_record(event_name=event_name, sequencer="0A")))

    assert (ref.kind, ref.event_name) == (kind, event_name)


@pytest.mark.parametrize(
    "event_name",
    [
        "LifecycleTransition",
        "IntelligentTiering",
        "ObjectTagging:Put",
        "ObjectTagging:Delete",
        "ObjectAcl:Put",
        "ObjectRestore:Post",
        "ObjectRestore:Completed",
        "ObjectRestore:Delete",
        "Replication:OperationFailedReplication",
        "Replication:OperationReplicatedAfterThreshold",
        "ReducedRedundancyLostObject",
    ],
)
def test_other_event_names_are_acknowledged_with_a_reason(event_name: str) -> None:
    notifications = parse_notifications(s3_body(s3_record("uploads/a.pdf", event_name)))

    assert notifications == Notifications(ignored=(f"eventName={event_name} key=uploads/a.pdf",))


def test_an_s3_prefix_on_the_event_name_is_dropped() -> None:
    ref = only_ref(s3_body(s3_record(event_name="s3:ObjectCreated:Put")))

    assert ref.event_name == "ObjectCreated:Put"


def test_every_record_of_a_body_counts_in_order() -> None:
    body = s3_body(
        s3_record("a.txt"),
        s3_record("b.txt", "ObjectTagging:Put"),
        s3_record("c.txt", "ObjectRemoved:Delete"),
    )

    notifications = parse_notifications(body)

    assert [(ref.key, ref.kind) for ref in notifications.refs] == [
        ("a.txt", EventKind.CREATED),
        ("c.txt", EventKind.REMOVED),
    ]
    assert notifications.ignored == ("eventName=ObjectTagging:Put key=b.txt",)


def test_empty_records_are_a_no_op_with_a_reason() -> None:
    assert parse_notifications('{"Records": []}') == Notifications(ignored=("no records",))


@pytest.mark.parametrize("event_version", ["2.0", "2.1", "2.3", "2.6", "2.10"])
def test_any_minor_version_of_major_2_is_accepted(event_version: str) -> None:
    record = s3_record()
    record["eventVersion"] = event_version

    assert only_ref(s3_body(record)).key == "uploads/a.pdf"


@pytest.mark.parametrize("event_version", ["1.0", "3.0", "20.1", "", 2.1])
def test_another_major_version_is_malformed(event_version: object) -> None:
    record = s3_record()
    record["eventVersion"] = event_version

    error = rejection(s3_body(record))

    assert error.code == "invalid_record"
    assert "Records[0].eventVersion" in str(error)
    assert "major version must be 2" in str(error)


def test_unknown_fields_are_ignored() -> None:
    record = s3_record(size=1, urlDecodedKey="ignored anyway", userMetadata={"a": "b"})
    record["glacierEventData"] = {"restoreEventData": {}}

    assert only_ref(s3_body(record)).size == 1


# A4: keys arrive form-urlencoded and are stored decoded.


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("dir/red+flower.jpg", "dir/red flower.jpg"),
        ("a%2Bb.txt", "a+b.txt"),
        ("100%25.csv", "100%.csv"),
        ("x%3D1%3Ay.csv", "x=1:y.csv"),
        ("caf%C3%A9.csv", "café.csv"),
        ("Happy%20Face.jpg", "Happy Face.jpg"),
        ("uploads/red+flower%2B1+%25.md", "uploads/red flower+1 %.md"),
    ],
)
def test_keys_are_decoded_as_s3_encodes_them(encoded: str, decoded: str) -> None:
    assert only_ref(s3_body(s3_record(encoded, size=3))).key == decoded


# A5: folder markers and empty files.


def test_a_folder_marker_is_acknowledged_and_skipped() -> None:
    notifications = parse_notifications(s3_body(s3_record("photos/", size=0, eTag="d41d8cd98f00b204e9800998ecf8427e")))

    assert notifications == Notifications(ignored=("folder marker key=photos/",))


def test_removing_a_folder_marker_is_skipped_too() -> None:
    notifications = parse_notifications(s3_body(s3_record("my+photos/", "ObjectRemoved:Delete")))

    assert notifications == Notifications(ignored=("folder marker key=my photos/",))


def test_a_zero_byte_file_is_an_ordinary_create() -> None:
    ref = only_ref(s3_body(s3_record("empty.csv", size=0, eTag="d41d8cd98f00b204e9800998ecf8427e")))

    assert (ref.key, ref.kind, ref.size) == ("empty.csv", EventKind.CREATED, 0)


# A6: events without size, eTag or sequencer must not crash the parser.


def test_delete_without_size_or_etag_is_a_removed_ref() -> None:
    ref = only_ref(s3_body(s3_record("uploads/a.pdf", "ObjectRemoved:Delete", sequencer="0C0F6F405D6ED209E1")))

    assert ref == ObjectRef(
        bucket=BUCKET,
        key="uploads/a.pdf",
        kind=EventKind.REMOVED,
        event_name="ObjectRemoved:Delete",
        sequencer="0C0F6F405D6ED209E1",
        event_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("event_name", "object_fields"),
    [
        ("LifecycleTransition", {"size": 10485760, "versionId": "v1", "eTag": "abcd"}),
        ("ObjectTagging:Put", {"eTag": "f3e6da48d914f3f04f6bd9cb092c044d"}),
        ("ObjectRestore:Completed", {"size": 1024, "eTag": "0123", "sequencer": "0A1B"}),
    ],
)
def test_partial_objects_of_other_events_are_acknowledged(event_name: str, object_fields: dict[str, Any]) -> None:
    notifications = parse_notifications(s3_body(s3_record("data/x.bin", event_name, **object_fields)))

    assert notifications == Notifications(ignored=(f"eventName={event_name} key=data/x.bin",))


# Optional fields.


@pytest.mark.parametrize("version_id", [None, "", "null"])
def test_absent_empty_or_null_version_id_means_unversioned(version_id: str | None) -> None:
    fields = {} if version_id is None else {"versionId": version_id}

    assert only_ref(s3_body(s3_record(**fields))).version_id is None


@pytest.mark.parametrize(
    ("sequencer", "expected"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E5"),
        ("617f08299329d189", "617f08299329d189"),
        ("", None),
        # Placeholders of emulators and SDK samples cannot be ordered: treated as missing.
        ("sequencer", None),
        ("Happy Sequencer", None),
    ],
)
def test_only_hex_sequencers_are_kept(sequencer: str, expected: str | None) -> None:
    assert only_ref(s3_body(s3_record(sequencer=sequencer))).sequencer == expected


def test_missing_sequencer_and_time_are_none() -> None:
    record = s3_record()
    del record["eventTime"]

    ref = only_ref(s3_body(record))

    assert (ref.sequencer, ref.event_time, ref.etag, ref.size) == (None, None, None, None)


@pytest.mark.parametrize("size", [-1, "1024", 1.5, True])
def test_a_size_that_is_not_a_byte_count_is_malformed(size: object) -> None:
    error = rejection(s3_body(s3_record(size=size)))

    assert error.code == "invalid_record"
    assert "Records[0].s3.object.size must be a non-negative integer" in str(error)


def test_an_etag_that_is_not_a_string_is_malformed() -> None:
    error = rejection(s3_body(s3_record(eTag=123)))

    assert (error.code, str(error)) == (
        "invalid_record",
        "message body: Records[0].s3.object.eTag is a int, not a string",
    )


# Records that are S3 records but lack what we need.


@pytest.mark.parametrize(
    ("path", "expected_message"),
    [
        (("s3", "bucket", "name"), "Records[0].s3.bucket.name is missing"),
        (("s3", "object", "key"), "Records[0].s3.object.key is missing"),
        (("s3", "bucket"), "Records[0].s3.bucket is missing"),
        (("s3", "object"), "Records[0].s3.object is missing"),
        (("s3",), "Records[0].s3 is missing"),
        (("eventName",), "Records[0].eventName is missing"),
        (("eventVersion",), "Records[0].eventVersion is missing"),
    ],
)
def test_a_record_missing_a_required_field_names_it(path: tuple[str, ...], expected_message: str) -> None:
    record = s3_record()
    container = record
    for name in path[:-1]:
        container = container[name]
    del container[path[-1]]

    error = rejection(s3_body(s3_record(), record))

    assert error.code == "invalid_record"
    assert str(error) == f"message body: {expected_message.replace('Records[0]', 'Records[1]')}"


@pytest.mark.parametrize(
    ("key", "problem"),
    [("", "is empty"), (42, "is a int, not a string"), (None, "is missing")],
)
def test_an_unusable_key_is_malformed(key: object, problem: str) -> None:
    record = s3_record()
    record["s3"]["object"]["key"] = key

    error = rejection(s3_body(record))

    assert (error.code, str(error)) == ("invalid_record", f"message body: Records[0].s3.object.key {problem}")


def test_an_unusable_bucket_object_is_malformed() -> None:
    record = s3_record()
    record["s3"]["bucket"] = "my-bucket"

    error = rejection(s3_body(record))

    assert (error.code, str(error)) == ("invalid_record", "message body: Records[0].s3.bucket is a str, not an object")


def test_an_s3_record_whose_s3_field_is_not_an_object_is_malformed() -> None:
    record = s3_record()
    record["s3"] = "my-bucket/uploads/a.pdf"

    error = rejection(s3_body(record))

    assert (error.code, str(error)) == ("invalid_record", "message body: Records[0].s3 is a str, not an object")


# A1: the test event S3 sends when a notification is configured.


def test_a_raw_test_event_is_acknowledged() -> None:
    assert parse_notifications(json.dumps(s3_test_message())) == Notifications(
        ignored=("s3:TestEvent bucket=my-bucket",)
    )


def test_an_sns_wrapped_test_event_is_acknowledged() -> None:
    body = sns_body(json.dumps(s3_test_message()))

    assert parse_notifications(body) == Notifications(ignored=("s3:TestEvent bucket=my-bucket",))


# SNS envelopes (raw delivery is just the S3 body, covered above).


def test_an_sns_wrapped_s3_notification_is_unwrapped() -> None:
    body = sns_body(s3_body(s3_record("dir/red+flower.jpg", size=7, sequencer="0065FA0B4B104A6DAB")))

    ref = only_ref(body)

    assert (ref.bucket, ref.key, ref.size, ref.sequencer) == (BUCKET, "dir/red flower.jpg", 7, "0065FA0B4B104A6DAB")


@pytest.mark.parametrize(
    ("message", "expected_message"),
    [
        ("From SNS", f"SNS Message from {TOPIC_ARN} is not JSON, so not an S3 event: 'From SNS'"),
        (
            '{"message": "hello world"}',
            f"SNS Message from {TOPIC_ARN} is not an S3 notification, s3:TestEvent or EventBridge S3 event; "
            "top-level keys: message",
        ),
        ('["Records"]', f"SNS Message from {TOPIC_ARN} is a JSON list, not an S3 event object"),
    ],
)
def test_an_sns_message_that_is_not_an_s3_event_is_an_unknown_shape(message: str, expected_message: str) -> None:
    error = rejection(sns_body(message))

    assert (error.code, str(error)) == ("unknown_shape", expected_message)


def test_sns_inside_sns_is_an_unknown_shape() -> None:
    error = rejection(sns_body(sns_body(s3_body(s3_record()))))

    assert error.code == "unknown_shape"


# EventBridge (S3 -> EventBridge -> SQS).


def test_an_eventbridge_object_created_event_becomes_a_created_ref() -> None:
    body = eventbridge_body(
        key="uploads/a.pdf",
        size=5,
        etag="b1946ac92492d2347c6235b4d2611184",
        sequencer="617f08299329d189",
        **{"version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"},
    )

    assert only_ref(body) == ObjectRef(
        bucket=BUCKET,
        key="uploads/a.pdf",
        kind=EventKind.CREATED,
        event_name="ObjectCreated:Put",
        version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        etag="b1946ac92492d2347c6235b4d2611184",
        size=5,
        sequencer="617f08299329d189",
        event_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("reason", "event_name"),
    [
        ("PutObject", "ObjectCreated:Put"),
        ("POST Object", "ObjectCreated:Post"),
        ("CopyObject", "ObjectCreated:Copy"),
        ("CompleteMultipartUpload", "ObjectCreated:CompleteMultipartUpload"),
        # An unknown or missing reason leaves the detail-type as the event name.
        ("RenameObject", "Object Created"),
        (None, "Object Created"),
    ],
)
def test_eventbridge_created_reason_maps_to_the_notification_event_name(reason: str | None, event_name: str) -> None:
    ref = only_ref(eventbridge_body(reason=reason, size=1))

    assert (ref.kind, ref.event_name) == (EventKind.CREATED, event_name)


@pytest.mark.parametrize(
    ("reason", "deletion_type", "event_name"),
    [
        ("DeleteObject", "Permanently Deleted", "ObjectRemoved:Delete"),
        ("DeleteObject", "Delete Marker Created", "ObjectRemoved:DeleteMarkerCreated"),
        ("Lifecycle Expiration", "Permanently Deleted", "LifecycleExpiration:Delete"),
        ("Lifecycle Expiration", "Delete Marker Created", "LifecycleExpiration:DeleteMarkerCreated"),
        ("DeleteObject", None, "Object Deleted"),
        (None, "Permanently Deleted", "Object Deleted"),
    ],
)
def test_eventbridge_object_deleted_is_a_removed_ref(
    reason: str | None, deletion_type: str | None, event_name: str
) -> None:
    ref = only_ref(
        eventbridge_body("Object Deleted", reason=reason, deletion_type=deletion_type, sequencer="617f0837b476e463")
    )

    assert (ref.kind, ref.event_name, ref.size, ref.etag) == (EventKind.REMOVED, event_name, None, None)


@pytest.mark.parametrize(
    "detail_type",
    [
        "Object Restore Initiated",
        "Object Restore Completed",
        "Object Tags Added",
        "Object ACL Updated",
        "Object Storage Class Changed",
    ],
)
def test_other_eventbridge_detail_types_are_acknowledged(detail_type: str) -> None:
    notifications = parse_notifications(eventbridge_body(detail_type, "uploads/a.pdf", reason=None))

    assert notifications == Notifications(ignored=(f"detail-type={detail_type} key=uploads/a.pdf",))


@pytest.mark.parametrize(
    ("key", "decoded"),
    [
        # Encoded as in notifications (what Powertools and LocalStack assume) ...
        ("dir/red+flower.jpg", "dir/red flower.jpg"),
        ("x%3D1%3Ay.csv", "x=1:y.csv"),
        # ... and a raw key without "+" or "%" comes through unchanged either way.
        ("dir/red flower.jpg", "dir/red flower.jpg"),
        ("café.csv", "café.csv"),
    ],
)
def test_eventbridge_keys_are_decoded_like_notification_keys(key: str, decoded: str) -> None:
    assert only_ref(eventbridge_body(key=key, size=1)).key == decoded


def test_an_eventbridge_folder_marker_is_skipped() -> None:
    notifications = parse_notifications(eventbridge_body(key="photos/", size=0))

    assert notifications == Notifications(ignored=("folder marker key=photos/",))


def test_an_eventbridge_event_missing_the_bucket_name_is_malformed() -> None:
    event = json.loads(eventbridge_body())
    del event["detail"]["bucket"]["name"]

    error = rejection(json.dumps(event))

    assert (error.code, str(error)) == ("invalid_record", "message body: detail.bucket.name is missing")


def test_an_eventbridge_event_from_another_service_is_an_unknown_shape() -> None:
    error = rejection(eventbridge_body(source="aws.ec2"))

    assert error.code == "unknown_shape"


# A2/A3: bodies that are not ours end in the DLQ with a precise code.


@pytest.mark.parametrize("body", ["", "   ", "\n\t"])
def test_an_empty_body_is_malformed(body: str) -> None:
    error = rejection(body)

    assert (error.code, str(error)) == ("empty_body", "message body is empty")


@pytest.mark.parametrize(
    ("body", "position"),
    [
        ("{not json", "line 1 column 2"),
        ('{"Records": [{"eventVersion": "2.1"', "line 1 column 36"),
        ('{"Records": [\n{"eventVersion": "2.1",}]}', "line 2 column 24"),
        ("Message Body", "line 1 column 1"),
    ],
)
def test_a_body_that_is_not_json_is_malformed(body: str, position: str) -> None:
    error = rejection(body)

    assert error.code == "invalid_json"
    assert str(error).startswith("message body is not valid JSON (")
    assert str(error).endswith(f" at {position}): {body!r}")


def test_a_long_invalid_body_is_shown_shortened() -> None:
    error = rejection("x" * 500)

    assert str(error).endswith("'" + "x" * 60 + "...'")


NOT_AN_S3_EVENT = (
    "message body is not an S3 notification, s3:TestEvent or EventBridge S3 event (bare or in an SNS notification)"
)


def test_json_nested_beyond_the_parser_limit_is_malformed() -> None:
    error = rejection("[" * 200_000)

    assert error.code == "invalid_json"
    assert str(error).startswith("message body nests JSON too deeply: '[[[")


@pytest.mark.parametrize(
    ("body", "expected_message"),
    [
        (
            "{}",
            f"{NOT_AN_S3_EVENT}; top-level keys: none",
        ),
        (
            '{"message": "foo1"}',
            f"{NOT_AN_S3_EVENT}; top-level keys: message",
        ),
        ("[]", "message body is a JSON list, not an S3 event object"),
        ('"hello"', "message body is a JSON str, not an S3 event object"),
        ("null", "message body is a JSON NoneType, not an S3 event object"),
        ('{"Records": {}}', "message body: Records is a dict, not a list"),
        ('{"Records": ["x"]}', "message body: Records[0] is a str, not an object"),
    ],
)
def test_json_of_an_unknown_shape_is_malformed(body: str, expected_message: str) -> None:
    error = rejection(body)

    assert (error.code, str(error)) == ("unknown_shape", expected_message)


def test_a_record_of_another_service_is_an_unknown_shape() -> None:
    sns_lambda_record = {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": {"Message": "Hello from SNS!"}}

    error = rejection(json.dumps({"Records": [sns_lambda_record]}))

    assert (error.code, str(error)) == (
        "unknown_shape",
        "message body: Records[0] is not an S3 event record (eventSource='aws:sns')",
    )


# Sequencers: S3 says "right pad the shorter value with zeros, and then do a lexicographical comparison".


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E5", 0),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6", -1),
        ("0055AED6DCD90281E6", "0055AED6DCD90281E5", 1),
        # Different lengths: right padding makes a trailing zero insignificant ...
        ("0055AED6DCD90281E5", "0055AED6DCD90281E500", 0),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E501", -1),
        # ... and keeps leading digits significant; left padding would order these the other way.
        ("00A", "009F", 1),
        ("009F", "00A", -1),
        # Case does not matter.
        ("617f08299329d189", "617F08299329D189", 0),
        ("617f08299329d18a", "617F08299329D189", 1),
    ],
)
def test_compare_sequencers(a: str, b: str, expected: int) -> None:
    assert compare_sequencers(a, b) == expected


@pytest.mark.parametrize(("a", "b"), [("", "0A"), ("0A", "sequencer"), ("0x0A", "0A")])
def test_compare_sequencers_rejects_non_hex(a: str, b: str) -> None:
    with pytest.raises(ValueError, match="hexadecimal"):
        compare_sequencers(a, b)


@pytest.mark.parametrize(("value", "expected"), [("0A1b", True), ("", False), ("0A 1B", False), ("G1", False)])
def test_is_sequencer(value: str, expected: bool) -> None:
    assert is_sequencer(value) is expected
