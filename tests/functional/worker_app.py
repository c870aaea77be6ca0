"""Helpers for the worker tests: a journaling handler to run in real worker processes, queue helpers.

`python -c "from tests.functional.worker_app import main; main()" [--processes N]` runs the real
worker entry (`handlers.worker.supervisor.serve`) with `journal_handler` instead of the pipeline,
so process and signal behaviour can be tested without a database. The handler is steered by the
message bodies (JSON: `sleep`, `crash_once`, `fail`) and by environment variables:

- `WORKER_APP_JOURNAL`: file that gets one JSON line per record started and finished;
- `WORKER_APP_MARGIN_SECONDS`: like the real handler, start no record with less time left.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping


def journal_handler(event: dict[str, Any], context: Any, *, gate: Any = None) -> dict[str, Any]:
    journal = Path(os.environ["WORKER_APP_JOURNAL"])
    margin_ms = float(os.environ.get("WORKER_APP_MARGIN_SECONDS", "0")) * 1000
    failures: list[dict[str, str]] = []
    for record in event["Records"]:
        message_id = record["messageId"]
        if context.get_remaining_time_in_millis() < margin_ms:
            failures.append({"itemIdentifier": message_id})
            _append(journal, "not_started", record)
            continue
        body = json.loads(record["body"])
        _append(journal, "start", record)
        crash_marker = journal.with_suffix(f".crashed-{message_id}")
        if body.get("crash_once") and not crash_marker.exists():
            crash_marker.touch()
            os._exit(3)
        time.sleep(float(body.get("sleep", 0)))
        if body.get("fail"):
            failures.append({"itemIdentifier": message_id})
            _append(journal, "failed", record)
            continue
        _append(journal, "done", record)
    return {"batchItemFailures": failures}


def always_ready() -> None:
    return None


def _append(journal: Path, step: str, record: dict[str, Any]) -> None:
    line = json.dumps(
        {
            "step": step,
            "message_id": record["messageId"],
            "body": record["body"],
            "receive_count": record["attributes"]["ApproximateReceiveCount"],
            "pid": os.getpid(),
        }
    )
    with journal.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def read_journal(journal: Path) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line]


def main() -> None:
    from handlers.settings import Settings
    from handlers.worker.supervisor import serve

    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args()
    settings = Settings.from_env(os.environ)
    raise SystemExit(serve(settings, journal_handler, always_ready, processes=args.processes))


class WorkerProcess:
    """A worker subprocess whose JSON log lines are collected as they arrive."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        stdout = self.process.stdout
        assert stdout is not None
        self._reader = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self._reader.start()

    @classmethod
    def journal_app(cls, env: Mapping[str, str], processes: int = 1) -> WorkerProcess:
        code = "from tests.functional.worker_app import main; main()"
        return cls([sys.executable, "-c", code, "--processes", str(processes)], env)

    def _read(self, stdout: IO[str]) -> None:
        with stdout:
            for line in stdout:
                with self._lock:
                    self.lines.append(line.rstrip("\n"))

    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            lines = list(self.lines)
        records = []
        for line in lines:
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                records.append(parsed)
        return records

    def messages(self) -> list[str]:
        return [str(record.get("message", "")) for record in self.logs()]

    def wait_for_log(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.logs():
                if predicate(record):
                    return record
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no matching log line; output so far:\n{self.output()}")

    def wait(self, timeout: float = 90.0) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def new_queue(sqs: Any, *, visibility_timeout: int = 30, max_receive_count: int = 3) -> tuple[str, str]:
    """A queue with a DLQ after `max_receive_count` receives; returns (queue URL, DLQ URL)."""
    name = f"worker-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


def send_bodies(sqs: Any, queue_url: str, bodies: list[dict[str, Any]]) -> list[str]:
    """Send JSON bodies in batches of 10; returns the message ids in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(index), "MessageBody": json.dumps(body)} for index, body in enumerate(chunk)],
        )
        by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids.extend(by_id[str(index)] for index in range(len(chunk)))
    return ids


def get(port: int, path: str) -> tuple[int, str]:
    """GET an endpoint of the worker's health server; (status, body), errors included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) as SQS reports them."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 60.0,
    interval: float = 0.1,
    explain: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s\n{explain()}")


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive (and delete) everything visible now."""
    seen: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return seen
        seen.extend(messages)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def iter_steps(journal: Path, step: str) -> Iterator[dict[str, Any]]:
    return (entry for entry in read_journal(journal) if entry["step"] == step)
