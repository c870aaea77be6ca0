"""The embedded stack: moto's server for S3 and SQS, pgserver for PostgreSQL with pgvector.

The demo, `filequeue dev` and the test suite run on it. The bucket is wired like the CDK app wires
the real one: ObjectCreated and ObjectRemoved under the prefix notify the queue, and the queue moves
a message to the DLQ after `max_receive_count` receives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "us-east-1"
# As the CDK app's queue (cdk/config.py DEFAULT_MAX_RECEIVE_COUNT): one delivery and three retries,
# the DLQ takes a message after its fourth receive (docs/semantics.md).
DEFAULT_MAX_RECEIVE_COUNT = 4
_DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class MotoServer:
    """moto's threaded server on a free loopback port."""

    endpoint_url: str
    _server: Any = field(repr=False)

    @classmethod
    def start(cls) -> MotoServer:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise ConfigError("the embedded stack needs the dev extra: pip install 'filequeue[dev]'") from exc
        # werkzeug logs every request at INFO; the demo's output is the summary, not moto's access log.
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.WARNING)
        werkzeug.addFilter(_one_line_for_unimplemented)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(f"http://{host}:{port}", server)

    def stop(self) -> None:
        """Stop the server and drop what it stored.

        moto keeps its buckets, objects and queues in this process's memory, shared by every server
        it starts: without the reset, a process that starts stack after stack (a benchmark, a test
        session) grows and slows with each one.
        """
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310  (our own loopback server)
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=30):  # noqa: S310
            pass
        self._server.stop()


def _one_line_for_unimplemented(record: logging.LogRecord) -> bool:
    """An action moto does not implement (the client falls back) is one log line, not a traceback."""
    message = record.getMessage()
    if "NotImplementedError: " in message:
        # werkzeug writes the formatted traceback into the message; its last line names the action.
        record.msg, record.args = f"moto: {message.rstrip().splitlines()[-1]}", ()
    return True


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or reuse) a pgserver cluster in `data_dir`; returns its URL and the handle keeping it alive."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise ConfigError("the embedded stack needs the dev extra: pip install 'filequeue[dev]'") from exc
    import subprocess

    data_dir.mkdir(parents=True, exist_ok=True)
    with _captured_log("pgserver") as messages:
        try:
            server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
        except subprocess.CalledProcessError as exc:
            reason = _postgres_error(messages) or f"{Path(exc.cmd[0]).name} exited with {exc.returncode}"
            raise ConfigError(f"PostgreSQL could not start in {data_dir}: {reason}") from None
        except AssertionError:
            # pgserver asserts on a postmaster.pid cut short: the cluster was killed while being created.
            raise ConfigError(
                f"{data_dir} holds a PostgreSQL cluster that was stopped while it was being created;"
                f" remove {data_dir} and start again"
            ) from None
    return str(server.get_uri()), server


@contextmanager
def _captured_log(name: str) -> Iterator[list[str]]:
    """Keep what logger `name` says instead of printing it; the caller reports it in one line."""
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger(name)
    handler, propagate = Keep(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _postgres_error(messages: list[str]) -> str | None:
    """The first `initdb: error:` or `pg_ctl:` line PostgreSQL's tools wrote, from pgserver's log."""
    for message in messages:
        for line in message.splitlines():
            if line.startswith(("initdb: error:", "pg_ctl:", "FATAL:")):
                return line
    return None


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """Variables that point boto3 (in this process or a child) at the moto server."""
    return {**_DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint_url}


@dataclass(frozen=True)
class IngestResources:
    bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    prefix: str


def create_ingest_resources(
    endpoint_url: str,
    *,
    bucket: str = "filequeue-demo",
    queue: str = "filequeue-uploads",
    prefix: str = "uploads/",
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout: int = 60,
    versioned: bool = True,
) -> IngestResources:
    """Bucket (versioned, unless told) -> notifications -> queue -> DLQ, like the CDK app, inside moto."""
    import boto3

    clients: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = boto3.client("s3", **clients)
    sqs = boto3.client("sqs", **clients)
    dlq_url = sqs.create_queue(QueueName=f"{queue}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=queue,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "MessageRetentionPeriod": "86400",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                }
            ]
        },
    )
    return IngestResources(bucket, queue_url, queue_arn, dlq_url, prefix)


def aws_client(service: str, environment: dict[str, str]) -> Any:
    """A boto3 client for `service` configured from `environment` (see `aws_environment`), not os.environ."""
    import boto3

    make_client: Any = boto3.client
    return make_client(
        service,
        endpoint_url=environment["AWS_ENDPOINT_URL"],
        region_name=environment["AWS_REGION"],
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
    )


def local_settings_environment(database_url: str, endpoint_url: str, queue_url: str | None = None) -> dict[str, str]:
    """The FILEQUEUE_* and AWS_* variables a process needs to run on the embedded stack."""
    environment = {**aws_environment(endpoint_url), "FILEQUEUE_DATABASE_URL": database_url}
    if queue_url:
        environment["FILEQUEUE_QUEUE_URL"] = queue_url
    return environment
