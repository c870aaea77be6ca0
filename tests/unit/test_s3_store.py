"""S3 errors as the object store maps them, with botocore's Stubber answering in S3's own error shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.stub import Stubber

from handlers.adapters.s3 import S3ObjectStore
from handlers.errors import PermanentError, TransientError
from handlers.model import EventKind, ObjectRef

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REF = ObjectRef(
    bucket="uploads-bucket", key="uploads/report.pdf", kind=EventKind.CREATED, event_name="ObjectCreated:Put"
)
GET = {"Bucket": REF.bucket, "Key": REF.key}
LIST = {"Bucket": REF.bucket, "Prefix": REF.key, "MaxKeys": 1}


@pytest.fixture
def stubbed() -> Iterator[tuple[S3ObjectStore, Stubber]]:
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield S3ObjectStore(client, max_bytes=1024), stubber
        stubber.assert_no_pending_responses()


def test_a_404_for_the_key_is_a_missing_object(stubbed, tmp_path: Path) -> None:
    store, stubber = stubbed
    stubber.add_client_error("get_object", "NoSuchKey", http_status_code=404, expected_params=GET)

    with pytest.raises(PermanentError) as error:
        store.fetch(REF, str(tmp_path))

    assert error.value.code == "object_missing"


def test_a_403_for_a_key_that_is_not_listed_is_a_missing_object_not_a_retry(stubbed, tmp_path: Path) -> None:
    # Given S3 answering 403 for the deleted key (the caller may not list it) and an empty listing under it
    store, stubber = stubbed
    stubber.add_client_error("get_object", "AccessDenied", http_status_code=403, expected_params=GET)
    stubber.add_response(
        "list_objects_v2",
        {"KeyCount": 1, "Contents": [{"Key": "uploads/report.pdf.bak", "Size": 3}]},
        expected_params=LIST,
    )

    # When the object is fetched, then it is recorded as gone instead of being retried into the DLQ
    with pytest.raises(PermanentError) as error:
        store.fetch(REF, str(tmp_path))

    assert error.value.code == "object_missing"
    assert "403" in str(error.value)


def test_a_403_for_a_key_that_is_listed_is_a_permission_problem_and_retried(stubbed, tmp_path: Path) -> None:
    store, stubber = stubbed
    stubber.add_client_error("get_object", "AccessDenied", http_status_code=403, expected_params=GET)
    stubber.add_response("list_objects_v2", {"KeyCount": 1, "Contents": [{"Key": REF.key}]}, expected_params=LIST)

    with pytest.raises(TransientError) as error:
        store.fetch(REF, str(tmp_path))

    assert error.value.code == "access_denied"
    assert "s3:GetObject" in str(error.value)


def test_a_403_on_the_listing_too_names_the_permissions_to_grant(stubbed, tmp_path: Path) -> None:
    store, stubber = stubbed
    stubber.add_client_error("get_object", "AccessDenied", http_status_code=403, expected_params=GET)
    stubber.add_client_error("list_objects_v2", "AccessDenied", http_status_code=403, expected_params=LIST)

    with pytest.raises(TransientError) as error:
        store.fetch(REF, str(tmp_path))

    assert error.value.code == "access_denied"
    assert "s3:ListBucket on the uploads prefix" in str(error.value)


def test_throttling_stays_transient_without_a_listing(stubbed, tmp_path: Path) -> None:
    store, stubber = stubbed
    stubber.add_client_error("get_object", "SlowDown", http_status_code=503, expected_params=GET)

    with pytest.raises(TransientError) as error:
        store.fetch(REF, str(tmp_path))

    assert error.value.code == "s3_unavailable"
    assert "SlowDown" in str(error.value)
