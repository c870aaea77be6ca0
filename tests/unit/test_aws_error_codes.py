"""An AWS failure carries File Queue's code; the code AWS or botocore gave goes into the message."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from handlers.adapters.s3 import S3ObjectStore
from handlers.adapters.secrets import fetch_secret
from handlers.errors import ErrorCode, TransientError
from handlers.model import EventKind, ObjectRef
from handlers.ops.aws import translated

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DATABASE_URL_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:filequeue-db"


@pytest.fixture
def refused_endpoint() -> str:
    """The URL of a local port nobody listens on: connecting fails as a real network failure does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _single_attempt_client(service: Literal["s3", "sqs"], endpoint_url: str) -> Any:
    """A client that makes one attempt: a network failure surfaces at once as botocore's exception."""
    return boto3.client(
        service,
        region_name="eu-west-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )


class _InternalServiceError(BaseHTTPRequestHandler):
    """Secrets Manager's JSON 1.1 error shape for a fault on its side."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"__type": "InternalServiceError", "message": "try again"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def failing_secrets_manager() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InternalServiceError)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_a_refused_s3_connection_is_s3_unavailable_naming_the_exception(refused_endpoint: str, tmp_path: Path) -> None:
    # Given an S3 client whose endpoint refuses connections
    client = _single_attempt_client("s3", refused_endpoint)
    ref = ObjectRef(
        bucket="uploads-bucket", key="uploads/a.txt", kind=EventKind.CREATED, event_name="ObjectCreated:Put"
    )

    # When an object is fetched
    with pytest.raises(TransientError) as caught:
        S3ObjectStore(client, max_bytes=1024).fetch(ref, str(tmp_path))

    # Then the code is File Queue's and botocore's exception is named in the message
    assert caught.value.code == ErrorCode.S3_UNAVAILABLE
    assert "EndpointConnectionError" in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "named"),
    [("failing_secrets_manager", "InternalServiceError"), ("refused_endpoint", "EndpointConnectionError")],
    ids=["service-fault", "connection-refused"],
)
def test_a_secrets_manager_failure_is_aws_unavailable_naming_what_failed(
    aws_env: pytest.MonkeyPatch, request: pytest.FixtureRequest, endpoint: str, named: str
) -> None:
    aws_env.setenv("AWS_ENDPOINT_URL", request.getfixturevalue(endpoint))

    with pytest.raises(TransientError) as caught:
        fetch_secret(DATABASE_URL_ARN)

    assert caught.value.code == ErrorCode.AWS_UNAVAILABLE
    assert named in str(caught.value)


def test_an_operator_command_s_aws_fault_is_aws_unavailable_with_its_code_in_the_message() -> None:
    # Given SQS answering a queue lookup with a throttling error
    sqs = boto3.client("sqs", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/uploads"
    with Stubber(sqs) as stubber:
        stubber.add_client_error("get_queue_attributes", "RequestThrottled", http_status_code=403)

        # When an operator command's call runs under the translation
        with pytest.raises(TransientError) as caught, translated(queue_url):
            sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])

    # Then the code is File Queue's and SQS's code is in the message
    assert caught.value.code == ErrorCode.AWS_UNAVAILABLE
    assert str(caught.value) == f"AWS call on {queue_url} failed: RequestThrottled"


def test_a_refused_connection_in_an_operator_command_is_aws_unavailable(refused_endpoint: str) -> None:
    sqs = _single_attempt_client("sqs", refused_endpoint)

    with pytest.raises(TransientError) as caught, translated(refused_endpoint):
        sqs.list_queues()

    assert caught.value.code == ErrorCode.AWS_UNAVAILABLE
    assert "EndpointConnectionError" in str(caught.value)
