"""Every `filequeue` command as a process against the embedded stack (moto's server, PostgreSQL)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.cli import build_parser, main
from handlers.develop.devstack import aws_environment
from handlers.ops.s3_events import message_body, s3_notification, sqs_event
from tests.functional.cli_process import SUBCOMMANDS, clean_environment, run_cli
from tests.functional.ops_helpers import documents, drain


@pytest.fixture
def stack(s3, sqs, ingest, handler_env, aws_env) -> dict[str, Any]:
    """A migrated store holding one ready and one failed document, and the environment a shell would have."""
    drain(sqs, ingest.queue_url)
    s3.put_object(Bucket=ingest.bucket, Key="uploads/otters.md", Body=b"# Otters\n\nOtters hold hands when asleep.")
    s3.put_object(Bucket=ingest.bucket, Key="uploads/broken.pdf", Body=b"%PDF-1.4 cut short")
    assert drain(sqs, ingest.queue_url)["failed"] == 0
    env = {
        **aws_environment(aws_env),
        "FILEQUEUE_DATABASE_URL": handler_env,
        "FILEQUEUE_QUEUE_URL": ingest.queue_url,
    }
    return {"env": env, "ingest": ingest, "database_url": handler_env}


def _json(result: Any) -> Any:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_version_is_printed():
    result = run_cli("--version", env={})
    assert result.returncode == 0
    assert result.stdout.startswith("filequeue ")


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_help_has_a_description_the_settings_it_reads_and_an_example(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "settings read:" in text
    assert "example:\n  filequeue " in text or "example:\n  FILEQUEUE_" in text
    assert "--json" in text


def test_help_as_a_process_lists_every_command():
    result = run_cli("--help", env={})
    assert result.returncode == 0
    commands = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    names = set(dict(commands.choices or {}))
    assert names == {command[0] for command in SUBCOMMANDS}, "every command's help is tested above"
    for name in names:
        assert name in result.stdout


def test_migrate_applies_then_reports_up_to_date(database_url):
    env = {"FILEQUEUE_DATABASE_URL": database_url}
    first = _json(run_cli("migrate", "--json", env=env))
    assert first["applied"]
    assert _json(run_cli("migrate", "--json", env=env)) == {"applied": []}
    assert run_cli("migrate", env=env).stdout.strip() == "database is up to date"


def test_status_counts_the_store_and_gates_on_the_dlq(stack, sqs):
    env = stack["env"]
    healthy = run_cli("status", "--json", env=env)
    assert healthy.returncode == 0, healthy.stderr
    report = _json(healthy)
    assert report["store"]["documents"] == {"failed": 1, "ready": 1}
    assert report["store"]["failures"] == {"corrupt_file": 1}
    assert report["store"]["embedding_model"] == "hashing-v2"
    assert report["queue"]["dead_letter_url"] == stack["ingest"].dlq_url
    sqs.send_message(QueueUrl=stack["ingest"].dlq_url, MessageBody="{}")
    gated = run_cli("status", env=env)
    assert gated.returncode == 1
    assert "dlq:         1 message (" in gated.stdout


def test_failed_lists_the_failure_and_search_and_graph_say_so(stack):
    env = stack["env"]
    [failure] = _json(run_cli("failed", "--json", "--code", "corrupt_file", "--since", "1h", env=env))
    assert (failure["key"], failure["error_code"]) == ("uploads/broken.pdf", "corrupt_file")
    assert "uploads/broken.pdf" in run_cli("failed", env=env).stdout
    assert _json(run_cli("failed", "--json", "--prefix", "uploads/o", env=env)) == []

    search = run_cli("search", "otters asleep", "--json", env=env)
    assert [hit["key"] for hit in _json(search)] == ["uploads/otters.md"]
    assert "1 document failed and is not searchable" in search.stderr

    graph = run_cli("graph", "uploads/broken.pdf", env=env)
    assert graph.returncode == 0
    assert "uploads/broken.pdf  failed (corrupt_file" in graph.stdout
    assert _json(run_cli("graph", "uploads/otters.md", "--json", env=env)) == {
        "key": "uploads/otters.md",
        "status": "ready",
        "error": None,
        "neighbours": [],
    }


def test_dlq_list_then_redrive_by_id_through_the_queue(stack, sqs):
    env, ingest = stack["env"], stack["ingest"]
    body = message_body(s3_notification(ingest.bucket, "uploads/otters.md", size=10, etag="other"))
    sent = sqs.send_message(QueueUrl=ingest.dlq_url, MessageBody=body)["MessageId"]
    [letter] = _json(run_cli("dlq", "list", "--json", env=env))
    assert (letter["message_id"], letter["key"], letter["event_name"]) == (
        sent,
        "uploads/otters.md",
        "ObjectCreated:Put",
    )
    assert "uploads/otters.md" in run_cli("dlq", "list", env=env).stdout

    dry = _json(run_cli("dlq", "redrive", "--all", "--dry-run", "--json", env=env))
    assert (dry["moved"], dry["dry_run"]) == ([sent], True)
    moved = _json(run_cli("dlq", "redrive", "--id", sent, "--json", env=env))
    assert (moved["method"], moved["moved"]) == ("receive-send-delete", [sent])
    missing = run_cli("dlq", "redrive", "--id", "no-such-id", env=env)
    assert missing.returncode == 1
    assert "not in the DLQ: no-such-id" in missing.stdout
    assert drain(sqs, ingest.queue_url) == {"handled": 1, "failed": 0}


def _dead_letters(sqs: Any, ingest: Any, *keys: str) -> list[str]:
    """One S3 event per key sent straight to the DLQ, as after its last failed receive; their message ids."""
    return [
        sqs.send_message(
            QueueUrl=ingest.dlq_url, MessageBody=message_body(s3_notification(ingest.bucket, key, size=10, etag="x"))
        )["MessageId"]
        for key in keys
    ]


def _logged_drops(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of dropped messages (on a terminal, the first follows the question on its line)."""
    entries = [json.loads(line[line.index('{"level"') :]) for line in stderr.splitlines() if '{"level"' in line]
    return [entry for entry in entries if entry["message"] == "dropped a message from the DLQ"]


def test_dlq_delete_drops_only_the_chosen_message_and_logs_it(stack, sqs):
    env, ingest = stack["env"], stack["ingest"]
    poison, other = _dead_letters(sqs, ingest, "uploads/broken.pdf", "uploads/otters.md")

    dry = run_cli("dlq", "delete", "--id", poison, "--id", "no-such-id", "--dry-run", env=env)
    assert dry.returncode == 1, "an id not in the DLQ is reported"
    assert dry.stdout.startswith("would drop 1 message from "), dry.stdout
    assert f"s3://{ingest.bucket}/uploads/broken.pdf" in dry.stdout
    assert "corrupt_file: " in dry.stdout, "the reason the store recorded"
    assert "not in the DLQ: no-such-id" in dry.stdout
    assert dry.stderr == "", "a dry run drops and logs nothing"

    deleted = run_cli("dlq", "delete", "--id", poison, "--json", env=env)
    assert deleted.returncode == 0, deleted.stderr
    report = _json(deleted)
    assert (report["dry_run"], [letter["message_id"] for letter in report["dropped"]]) == (False, [poison])
    [logged] = _logged_drops(deleted.stderr)
    assert (logged["message_id"], logged["bucket"], logged["key"]) == (poison, ingest.bucket, "uploads/broken.pdf")
    assert logged["reason"].startswith("corrupt_file: ")
    assert [letter["message_id"] for letter in _json(run_cli("dlq", "list", "--json", env=env))] == [other]


def test_dlq_purge_needs_yes_without_a_terminal_and_drops_every_message(stack, sqs):
    env, ingest = stack["env"], stack["ingest"]
    ids = set(_dead_letters(sqs, ingest, "uploads/broken.pdf", "uploads/otters.md"))

    refused = run_cli("dlq", "purge", env=env, stdin="yes\n")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "filequeue: error: dlq purge drops every message: pass --yes to confirm (stdin is not a terminal to ask on)"
    ]
    dry = _json(run_cli("dlq", "purge", "--dry-run", "--json", env=env))
    assert {letter["message_id"] for letter in dry["dropped"]} == ids
    assert {letter["message_id"] for letter in _json(run_cli("dlq", "list", "--json", env=env))} == ids

    purged = run_cli("dlq", "purge", "--yes", env=env)
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("dropped 2 messages from "), purged.stdout
    assert {entry["message_id"] for entry in _logged_drops(purged.stderr)} == ids
    assert _json(run_cli("dlq", "list", "--json", env=env)) == []


@pytest.mark.parametrize("answer", ["no", "yes"])
def test_dlq_purge_on_a_terminal_drops_only_after_yes_is_typed(stack, sqs, answer):
    env, ingest = stack["env"], stack["ingest"]
    [message_id] = _dead_letters(sqs, ingest, "uploads/otters.md")
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())
        result = subprocess.run(
            [sys.executable, "-m", "handlers.cli", "dlq", "purge"],
            env=clean_environment(env),
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert message_id in result.stdout, "the messages are shown before the question"
    assert "type yes to drop it: " in result.stderr
    left = [letter["message_id"] for letter in _json(run_cli("dlq", "list", "--json", env=env))]
    if answer == "yes":
        assert result.returncode == 0, result.stderr
        assert left == []
        assert [entry["message_id"] for entry in _logged_drops(result.stderr)] == [message_id]
    else:
        assert result.returncode == 1
        assert "nothing dropped" in result.stderr
        assert left == [message_id]


def test_reconcile_enqueues_an_object_the_notification_never_announced(stack, s3, sqs):
    env, ingest = stack["env"], stack["ingest"]
    s3.put_bucket_notification_configuration(Bucket=ingest.bucket, NotificationConfiguration={})
    s3.put_object(Bucket=ingest.bucket, Key="uploads/beavers.md", Body=b"# Beavers\n\nBeavers build dams.")
    dry = _json(run_cli("reconcile", "--bucket", ingest.bucket, "--dry-run", "--json", env=env))
    assert (dry["new"], dry["unchanged"], dry["enqueued"]) == (1, 2, 0)
    text = run_cli("reconcile", "--bucket", ingest.bucket, "--page-size", "1", env=env)
    assert "1 new, 0 changed, 0 gone" in text.stdout
    assert "new: uploads/beavers.md" in text.stdout
    drain(sqs, ingest.queue_url)
    assert documents(stack["database_url"])["uploads/beavers.md"][0] == "ready"


def test_reembed_moves_the_store_to_another_dimension(stack):
    env = {**stack["env"], "FILEQUEUE_EMBEDDING_DIMENSION": "64"}
    prepared = _json(run_cli("reembed", "--no-switch", "--json", env=env))
    assert prepared["complete"] is False
    during = _json(run_cli("status", "--json", env=stack["env"]))["store"]
    assert (during["embedding_dimension"], during["reembed_target"]) == (256, "hashing-v2 (dimension 64)")
    report = _json(run_cli("reembed", "--json", env=env))
    assert report["complete"] is True
    assert report["target"]["embedding_dimension"] == 64
    status = _json(run_cli("status", "--json", env=env))
    assert status["store"]["embedding_dimension"] == 64


def test_events_are_stamped_now_with_a_fresh_sequencer():
    def generate() -> dict[str, Any]:
        event = _json(run_cli("events", "s3-put", "--bucket", "b", "--key", "uploads/a b.md", env={}))
        return dict(json.loads(event["Records"][0]["body"])["Records"][0])

    first, second = generate(), generate()
    event_time = datetime.fromisoformat(first["eventTime"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - event_time).total_seconds()) < 60
    assert second["s3"]["object"]["sequencer"] > first["s3"]["object"]["sequencer"]
    assert first["s3"]["object"]["key"] == "uploads/a+b.md"
    fixed = _json(
        run_cli(
            "events",
            "s3-delete",
            "--bucket",
            "b",
            "--key",
            "k",
            "--event-time",
            "2024-01-01T00:00:00.000Z",
            "--sequencer",
            "00AB",
            env={},
        )
    )
    record = json.loads(fixed["Records"][0]["body"])["Records"][0]
    assert (record["eventTime"], record["s3"]["object"]) == (
        "2024-01-01T00:00:00.000Z",
        {"key": "k", "sequencer": "00AB"},
    )


def test_invoke_prints_only_the_response_on_stdout_and_reads_stdin(stack):
    env, ingest = stack["env"], stack["ingest"]
    event = run_cli("events", "s3-put", "--bucket", ingest.bucket, "--key", "uploads/otters.md", env={}).stdout
    result = run_cli("invoke", "--event", "-", "--json", env=env, stdin=event)
    assert _json(result) == {"batchItemFailures": []}
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [entry.get("outcome") for entry in logged if "outcome" in entry] == ["unchanged"]


def test_invoke_wraps_a_bare_s3_notification(stack):
    env, ingest = stack["env"], stack["ingest"]
    notification = s3_notification(
        ingest.bucket, "uploads/otters.md", event_time=datetime.now(UTC).isoformat(), etag="new", size=10
    )
    result = run_cli("invoke", "--event", "-", env=env, stdin=json.dumps(notification))
    assert _json(result) == {"batchItemFailures": []}
    assert "is an S3 notification; wrapped into an SQS event" in result.stderr


def test_invoke_answers_an_empty_event_and_can_fail_on_item_failures(stack):
    env = stack["env"]
    empty = run_cli("invoke", "--event", "-", env=env, stdin='{"Records": []}')
    assert _json(empty) == {"batchItemFailures": []}
    malformed = json.dumps(sqs_event(['{"Records": [']))
    lenient = run_cli("invoke", "--event", "-", env=env, stdin=malformed)
    assert lenient.returncode == 0
    strict = run_cli("invoke", "--event", "-", "--fail-on-item-failures", env=env, stdin=malformed)
    assert strict.returncode == 1
    assert len(_json(strict)["batchItemFailures"]) == 1


def test_invoke_fails_on_a_file_that_failed_for_good_though_it_was_acknowledged(stack, s3):
    env, ingest = stack["env"], stack["ingest"]
    s3.put_object(Bucket=ingest.bucket, Key="uploads/corrupt.pdf", Body=b"%PDF-1.4 not really")
    corrupt = json.dumps(sqs_event([message_body(s3_notification(ingest.bucket, "uploads/corrupt.pdf", size=19))]))

    lenient = run_cli("invoke", "--event", "-", env=env, stdin=corrupt)
    strict = run_cli("invoke", "--event", "-", "--fail-on-item-failures", env=env, stdin=corrupt)

    assert (lenient.returncode, _json(lenient)) == (0, {"batchItemFailures": []})
    assert (strict.returncode, _json(strict)) == (1, {"batchItemFailures": []})
    assert "corrupt_file" in strict.stderr


def test_invoke_with_an_unreachable_database_is_a_cli_error_not_a_retried_record(aws_env):
    env = {
        **aws_environment(aws_env),
        "FILEQUEUE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "FILEQUEUE_DB_CONNECT_TIMEOUT_SECONDS": "1",
    }
    started = time.monotonic()
    result = run_cli("invoke", "--event", "events/s3-put.json", env=env)
    assert result.returncode == 2
    assert result.stdout == "", "no batch response: nothing was attempted"
    assert result.stderr.startswith("filequeue: error: database unavailable")
    assert result.stderr.count("\n") == 1, "the driver's multi-line message is one line"
    assert time.monotonic() - started < 60
