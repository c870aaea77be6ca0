"""The embedded stack: moto's server for S3 and SQS, pgserver for PostgreSQL with pgvector.

The demo, `filequeue dev` and the test suite run on it. The bucket is wired like the CDK app wires
the real one: ObjectCreated and ObjectRemoved under the prefix notify the queue, and the queue moves
a message to the DLQ after `max_receive_count` receives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.develop.moto_state import RequestCounter
from handlers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

REGION = "us-east-1"
# As the CDK app's queue (cdk/config.py DEFAULT_MAX_RECEIVE_COUNT): one delivery and three retries,
# the DLQ takes a message after its fourth receive (docs/semantics.md).
DEFAULT_MAX_RECEIVE_COUNT = 4
DEV_BUCKET = "filequeue-demo"
DEV_QUEUE = "filequeue-uploads"
DEV_PREFIX = "uploads/"
_DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class MotoServer:
    """moto's server on a loopback port, in a thread of this process (its state is this process's memory)."""

    endpoint_url: str
    port: int
    requests: RequestCounter = field(repr=False)
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @classmethod
    def start(cls, port: int = 0) -> MotoServer:
        """Serve on `port` (0: a free one); a port in use raises OSError."""
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as exc:
            raise ConfigError("the embedded stack needs the dev extra: pip install 'filequeue[dev]'") from exc
        # werkzeug logs every request at INFO; the demo's output is the summary, not moto's access log.
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.WARNING)
        werkzeug.addFilter(_one_line_for_unimplemented)
        # What moto's ThreadedMotoServer does, with the request counter in front and the socket bound here:
        # a port in use raises OSError to the caller (werkzeug would print two lines and exit the process).
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug: TIME_WAIT is no obstacle
            listening.bind(("127.0.0.1", port))
            listening.listen(128)
            requests = RequestCounter(DomainDispatcherApplication(create_backend_app))
            server = make_server(
                "127.0.0.1",
                port,
                requests,
                threaded=True,
                request_handler=MotoRequestHandler,
                fd=listening.fileno(),  # werkzeug duplicates the descriptor
            )
        thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
        thread.start()
        bound = int(server.server_address[1])
        return cls(f"http://127.0.0.1:{bound}", bound, requests, server, thread)

    def stop(self) -> None:
        """Stop the server and drop what it stored.

        moto keeps its buckets, objects and queues in this process's memory, shared by every server
        it starts: without the reset, a process that starts stack after stack (a benchmark, a test
        session) grows and slows with each one.
        """
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310  (our own loopback server)
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=30):  # noqa: S310
            pass
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


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
    _forget_dead_handles(data_dir)
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


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of killed processes from pgserver's list of handles on the cluster.

    pgserver stops PostgreSQL when its last handle is cleaned up; a process killed with SIGKILL never
    cleans its handle up, so without this the next stop would leave PostgreSQL running for good.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _running(pid)]
    if alive != pids:
        temporary = handles.with_name(handles.name + ".tmp")
        temporary.write_text(json.dumps(alive))
        temporary.replace(handles)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds the pid: alive
        return True
    return True


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
    bucket: str = DEV_BUCKET,
    queue: str = DEV_QUEUE,
    prefix: str = DEV_PREFIX,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    visibility_timeout: int = 60,
    versioned: bool = True,
) -> IngestResources:
    """Bucket (versioned, unless told) -> notifications -> queue -> DLQ, like the CDK app, inside moto."""
    s3, sqs = _clients(endpoint_url)
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


def find_ingest_resources(
    endpoint_url: str, *, bucket: str = DEV_BUCKET, queue: str = DEV_QUEUE, prefix: str = DEV_PREFIX
) -> IngestResources:
    """The resources `create_ingest_resources` made, found again in a restored moto."""
    from botocore.exceptions import ClientError

    s3, sqs = _clients(endpoint_url)
    try:
        s3.head_bucket(Bucket=bucket)
        queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    except ClientError as error:
        raise ConfigError(
            f"the restored S3 and SQS state lacks bucket {bucket} or queue {queue} or its DLQ"
            f" ({error.response.get('Error', {}).get('Code', 'Unknown')})"
        ) from None
    return IngestResources(bucket, queue_url, queue_arn, dlq_url, prefix)


def _clients(endpoint_url: str) -> tuple[Any, Any]:
    import boto3

    clients: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("s3", **clients), boto3.client("sqs", **clients)


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
