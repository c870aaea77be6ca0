"""`filequeue dev` as a process: the README's walkthrough, deletes, signals, the health port, a dying worker."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest

from tests.functional.cli_process import clean_environment, run_cli, running_dev, wait_for
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.functional.cli_process import DevProcess

README = REPO_ROOT / "README.md"


def _walkthrough_commands() -> list[str]:
    """The command lines of the README block that replays a put, a duplicate, a newer put and a delete."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    [block] = [block for block in blocks if "filequeue invoke" in block and "aws s3 rm" in block]
    return [line for line in block.splitlines() if line.strip()]


def _outcomes(stderr: str) -> list[str]:
    """The per-record outcomes the handler logged (JSON lines on stderr)."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if "outcome" in entry:
                found.append(f"{entry['outcome']}: {entry.get('detail', '')}")
    return found


class Walkthrough:
    def __init__(self, dev: DevProcess, workdir: Path) -> None:
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, **dev.exports, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        self.workdir = workdir
        self.database_url = dev.exports["FILEQUEUE_DATABASE_URL"]
        self.setup = dev.shell_setup

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.setup + line],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def chunk_texts(self) -> list[str]:
        with psycopg.connect(self.database_url) as conn:
            exists = conn.execute("SELECT to_regclass('chunks') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                return []
            return [row[0] for row in conn.execute("SELECT text FROM chunks ORDER BY id")]


@pytest.mark.slow
def test_readme_walkthrough_does_what_its_comments_say(dev_dir, tmp_path):
    commands = _walkthrough_commands()
    with running_dev(dev_dir / "data", env={"FILEQUEUE_HEALTH_PORT": "0"}) as dev:
        walk = Walkthrough(dev, tmp_path)

        def wrote_notes(_result: subprocess.CompletedProcess[str]) -> None:
            assert (tmp_path / "notes.md").exists()

        def stored(words: str) -> Callable[[subprocess.CompletedProcess[str]], None]:
            def check(_result: subprocess.CompletedProcess[str]) -> None:
                wait_for(lambda: any(words in text for text in walk.chunk_texts()), message=f"{words!r} stored")

            return check

        def found(words: str) -> Callable[[subprocess.CompletedProcess[str]], None]:
            def check(result: subprocess.CompletedProcess[str]) -> None:
                assert "uploads/notes.md" in result.stdout, result.stdout
                assert words in result.stdout, result.stdout

            return check

        def wrote_event(result: subprocess.CompletedProcess[str]) -> None:
            event = json.loads((tmp_path / "put.json").read_text())
            assert len(event["Records"]) == 1

        def invoked(outcome: str) -> Callable[[subprocess.CompletedProcess[str]], None]:
            def check(result: subprocess.CompletedProcess[str]) -> None:
                assert json.loads(result.stdout) == {"batchItemFailures": []}, "stdout holds only the response"
                assert [line.split(":")[0] for line in _outcomes(result.stderr)] == [outcome], result.stderr

            return check

        def deleted(_result: subprocess.CompletedProcess[str]) -> None:
            wait_for(lambda: walk.chunk_texts() == [], message="the document is deleted")

        def no_results(result: subprocess.CompletedProcess[str]) -> None:
            assert result.stdout.startswith("no match: no chunk holds a word of the query")

        checks = [
            wrote_notes,
            stored("Otters hold hands"),
            found("Otters hold hands"),
            wrote_event,
            invoked("unchanged"),
            invoked("skipped"),
            wrote_notes,
            stored("Beavers build dams"),
            found("Beavers build dams"),
            deleted,
            no_results,
        ]
        assert len(commands) == len(checks), commands
        for line, check in zip(commands, checks, strict=True):
            check(walk.run(line))


@pytest.mark.slow
def test_dev_stops_on_sigterm_and_sighup_and_starts_again_on_the_same_data(dev_dir):
    data_dir = dev_dir / "data"
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}, stop_signal=stop_signal) as dev:
            worker = _worker_of(dev)
            _upload(dev, f"uploads/{stop_signal.name}.md", b"# Signals\n\nStopped cleanly.")
            _wait_for_documents(dev, {"uploads/SIGTERM.md", f"uploads/{stop_signal.name}.md"})
        assert dev.process.returncode == 0
        assert not _running(worker), "the worker is stopped with the stack"
        assert json.loads((data_dir / "pgdata" / ".handle_pids.json").read_text()) == []


def test_dev_stopped_while_starting_leaves_nothing_running(dev_dir):
    data_dir = dev_dir / "data"
    with subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "dev", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=clean_environment({"FILEQUEUE_HEALTH_PORT": "0"}),
    ) as dev:
        # The data directory appears once the signal handlers are in place and PostgreSQL is starting.
        wait_for((data_dir / "pgdata").exists, timeout=60, message="PostgreSQL is starting")
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=90) == 0
        assert "Traceback" not in (dev.stderr.read() if dev.stderr else "")
    pids = data_dir / "pgdata" / ".handle_pids.json"
    assert not pids.exists() or json.loads(pids.read_text()) == []
    with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}) as again:
        assert "FILEQUEUE_DATABASE_URL" in again.exports, "the next start works"


def test_dev_takes_a_free_health_port_and_exits_when_its_worker_dies(dev_dir):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the interface the worker's health server binds
        taken.listen()
        busy_port = taken.getsockname()[1]
        with running_dev(dev_dir / "data", env={"FILEQUEUE_HEALTH_PORT": str(busy_port)}) as dev:
            assert any(f"port {busy_port} is in use" in line for line in dev.announcement), dev.announcement
            [port] = [
                int(m.group(1)) for line in dev.announcement if (m := re.search(r"localhost:(\d+)/metrics", line))
            ]
            assert port != busy_port
            assert any(line.startswith("DLQ:") and "-dlq" in line for line in dev.announcement)
            assert any(line.startswith("embedder: hashing") for line in dev.announcement)
            _upload(dev, "uploads/metrics.md", b"# Metrics\n\nCounted on /metrics.")
            _wait_for_documents(dev, {"uploads/metrics.md"})
            wait_for(lambda: 'filequeue_records_total{error_code="none",outcome="stored"} 1.0' in _metrics(port))
            metrics = _metrics(port)
            assert "filequeue_documents_stored_total 1.0" in metrics
            assert "filequeue_chunks_written_total 1.0" in metrics
            assert "filequeue_bytes_processed_total 31.0" in metrics
            os.kill(_worker_of(dev), signal.SIGKILL)
            assert dev.process.wait(timeout=60) == 1


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _worker_of(dev: DevProcess) -> int:
    """The pid of the `filequeue worker` child of the dev process (started just after the announcement)."""
    found: list[int] = []

    def started() -> bool:
        for children in Path(f"/proc/{dev.process.pid}/task").glob("*/children"):
            for child in children.read_text().split():
                if b"worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
        return bool(found)

    wait_for(started, timeout=30, message="the worker started")
    return found[0]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _upload(dev: DevProcess, key: str, body: bytes) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=dev.exports["AWS_ENDPOINT_URL"],
        region_name=dev.exports["AWS_REGION"],
        aws_access_key_id=dev.exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=dev.exports["AWS_SECRET_ACCESS_KEY"],
    )
    s3.put_object(Bucket="filequeue-demo", Key=key, Body=body)


def _wait_for_documents(dev: DevProcess, keys: set[str]) -> None:
    def present() -> bool:
        with psycopg.connect(dev.exports["FILEQUEUE_DATABASE_URL"]) as conn:
            exists = conn.execute("SELECT to_regclass('documents') IS NOT NULL").fetchone()
            if not (exists and exists[0]):
                return False
            stored = {row[0] for row in conn.execute("SELECT key FROM documents WHERE status = 'ready'")}
        return keys <= stored

    wait_for(present, message=f"{sorted(keys)} stored")


def test_dev_with_json_prints_one_object_to_use_from_a_script(dev_dir):
    with subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "dev", "--json", "--data-dir", str(dev_dir / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
        env=clean_environment({"FILEQUEUE_HEALTH_PORT": "0", "FILEQUEUE_WORKER_WAIT_TIME_SECONDS": "1"}),
    ) as dev:
        assert dev.stdout is not None
        announced = json.loads(dev.stdout.readline())
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=90) == 0
    assert announced["bucket"] == "filequeue-demo"
    assert announced["dead_letter_queue_url"].endswith("/filequeue-uploads-dlq")
    assert announced["environment"]["FILEQUEUE_QUEUE_URL"] == announced["queue_url"]
    assert announced["environment"]["FILEQUEUE_EMBEDDING_MODEL"] == "hashing-v2"


def test_the_dev_queue_sends_a_message_to_the_dlq_after_its_fourth_receive_like_the_cdk_app(aws_env, sqs):
    from cdk.config import DEFAULT_MAX_RECEIVE_COUNT
    from handlers.develop.devstack import create_ingest_resources

    ingest = create_ingest_resources(aws_env, bucket="dlq-count-bucket", queue="dlq-count-queue")
    policy = sqs.get_queue_attributes(QueueUrl=ingest.queue_url, AttributeNames=["RedrivePolicy"])
    assert int(json.loads(policy["Attributes"]["RedrivePolicy"])["maxReceiveCount"]) == DEFAULT_MAX_RECEIVE_COUNT

    sqs.purge_queue(QueueUrl=ingest.queue_url)  # the s3:TestEvent that configuring notifications sends
    sqs.send_message(QueueUrl=ingest.queue_url, MessageBody="{}")
    receives = 0
    while received := sqs.receive_message(
        QueueUrl=ingest.queue_url, AttributeNames=["ApproximateReceiveCount"], WaitTimeSeconds=0
    ).get("Messages"):
        receives += 1
        assert received[0]["Attributes"]["ApproximateReceiveCount"] == str(receives)
        # A failed record: visible again at once, as after its visibility timeout.
        sqs.change_message_visibility(
            QueueUrl=ingest.queue_url, ReceiptHandle=received[0]["ReceiptHandle"], VisibilityTimeout=0
        )
        assert receives <= DEFAULT_MAX_RECEIVE_COUNT, "the message outlived maxReceiveCount"
    assert receives == 4
    dead = sqs.receive_message(QueueUrl=ingest.dlq_url, WaitTimeSeconds=0)["Messages"]
    assert [message["Body"] for message in dead] == ["{}"]


def _aws_clients(dev: DevProcess) -> tuple[Any, Any]:
    from handlers.develop.devstack import aws_client

    return aws_client("s3", dev.exports), aws_client("sqs", dev.exports)


def _cli_json(dev: DevProcess, *arguments: str) -> Any:
    result = run_cli(*arguments, "--json", env=dev.exports)
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def _in_printed_shell(dev: DevProcess, command: str, workdir: Path) -> str:
    """`command` in bash after the lines the announcement says to paste; its stdout."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", dev.shell_setup + command],
        env=clean_environment({"PATH": path}),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stderr}"
    return result.stdout


def _wait_for_a_snapshot_of_all_served(dev: DevProcess, snapshot: Path) -> None:
    """Until a snapshot holds every request served before this call.

    Each round makes a change (an object outside the notified prefix) and waits for the next write.
    Snapshots are written one after another, so the second write began after the first ended, which
    was after this call began.
    """
    s3, _ = _aws_clients(dev)
    for round_number in range(2):
        before = snapshot.stat().st_mtime_ns
        s3.put_object(Bucket="filequeue-demo", Key=f"not-notified/{round_number}", Body=b"")
        wait_for(lambda: snapshot.stat().st_mtime_ns != before, message="a snapshot is written")  # noqa: B023 - called at once


def _dev_refused(data_dir: Path) -> str:
    """`filequeue dev` on `data_dir` that must stop at once with one error line; that line."""
    result = run_cli("dev", "--data-dir", str(data_dir), env={"FILEQUEUE_HEALTH_PORT": "0"}, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


@pytest.mark.slow
def test_dev_restarts_whole_and_refuses_an_empty_bucket_over_stored_documents(dev_dir, tmp_path):
    data_dir = dev_dir / "data"
    with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}) as first:
        s3, sqs = _aws_clients(first)
        _upload(first, "uploads/kept.md", b"# Kept\n\nStill here after a restart.")
        _wait_for_documents(first, {"uploads/kept.md"})
        dlq_url = sqs.get_queue_url(QueueName="filequeue-uploads-dlq")["QueueUrl"]
        poison = sqs.send_message(QueueUrl=dlq_url, MessageBody="not an S3 event")["MessageId"]
    assert first.process.returncode == 0

    with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}) as again:
        assert again.exports == first.exports, "the exports printed before stay valid"
        assert any(
            line.startswith("restored S3 and SQS as the last stop left them (")
            and line.endswith("): 1 object in s3://filequeue-demo, 0 queued, 1 in the DLQ")
            for line in again.announcement
        ), again.announcement
        s3, sqs = _aws_clients(again)
        assert s3.get_object(Bucket="filequeue-demo", Key="uploads/kept.md")["Body"].read().startswith(b"# Kept")
        [letter] = _cli_json(again, "dlq", "list")
        assert letter["message_id"] == poison
        plan = _cli_json(again, "reconcile", "--bucket", "filequeue-demo", "--dry-run")
        assert (plan["listed"], plan["unchanged"], plan["new"], plan["changed"], plan["gone"]) == (1, 1, 0, 0, 0)
        # A put after the restart still notifies the restored queue.
        _upload(again, "uploads/after.md", b"# After\n\nUploaded after the restart.")
        _wait_for_documents(again, {"uploads/kept.md", "uploads/after.md"})

        # The AWS CLI in the shell the announcement sets up, `aws sqs` included (AWS CLI v1 would go to AWS).
        queues = json.loads(_in_printed_shell(again, "aws sqs list-queues", tmp_path))["QueueUrls"]
        assert again.exports["FILEQUEUE_QUEUE_URL"] in queues
        listed = _in_printed_shell(again, "aws s3 ls s3://filequeue-demo/uploads/", tmp_path)
        assert "kept.md" in listed
        assert "after.md" in listed
    assert again.process.returncode == 0

    port = int(urlsplit(first.exports["AWS_ENDPOINT_URL"]).port or 0)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the last stop's connections linger in TIME_WAIT
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert f"filequeue: error: port {port}, recorded in " in _dev_refused(data_dir)

    snapshot = data_dir / "moto-state.pickle"
    snapshot.write_bytes(b"not a pickle")
    assert "cannot be read" in _dev_refused(data_dir)
    snapshot.unlink()
    refusal = _dev_refused(data_dir)
    assert "holds 2 documents in PostgreSQL but no saved S3 and SQS state" in refusal
    assert "--reset" in refusal

    with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}, arguments=["--reset"]) as reset:
        assert reset.exports["AWS_ENDPOINT_URL"] == first.exports["AWS_ENDPOINT_URL"]
        assert _cli_json(reset, "status")["store"]["documents"] == {}
        s3, _ = _aws_clients(reset)
        assert s3.list_objects_v2(Bucket="filequeue-demo").get("KeyCount") == 0


@pytest.mark.slow
def test_dev_killed_comes_back_from_its_last_snapshot(dev_dir):
    data_dir = dev_dir / "data"
    snapshot = data_dir / "moto-state.pickle"
    with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}) as first:
        worker = _worker_of(first)
        _upload(first, "uploads/survivor.md", b"# Survivor\n\nKilled, and back.")
        _wait_for_documents(first, {"uploads/survivor.md"})
        _wait_for_a_snapshot_of_all_served(first, snapshot)
        os.kill(first.process.pid, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        first.process.wait(timeout=30)

    with running_dev(data_dir, env={"FILEQUEUE_HEALTH_PORT": "0"}) as again:
        assert again.exports == first.exports
        [restored] = [line for line in again.announcement if "did not stop cleanly" in line]
        assert "restored S3 and SQS from its last snapshot, taken " in restored
        assert "(3 objects in s3://filequeue-demo, 0 queued, 0 in the DLQ)" in restored
        plan = _cli_json(again, "reconcile", "--bucket", "filequeue-demo", "--dry-run")
        assert (plan["new"], plan["changed"], plan["gone"]) == (0, 0, 0)
    assert json.loads((data_dir / "pgdata" / ".handle_pids.json").read_text()) == [], "PostgreSQL stopped at last"
