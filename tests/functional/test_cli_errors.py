"""Every command with bad inputs, as a process: one line naming what to fix, exit code 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from handlers.develop.devstack import aws_environment
from handlers.errors import ErrorCode
from tests.functional.cli_process import SUBCOMMANDS, clean_environment, run_cli
from tests.paths import REPO_ROOT

BAD_URL = "host=db port=5432 password=s3cret oops"
DATABASE_COMMANDS = [
    ["migrate"],
    ["status"],
    ["failed"],
    ["search", "words"],
    ["graph", "uploads/a.md"],
    ["reembed"],
    ["compact"],
    ["console", "--port", "0"],
    ["reconcile", "--bucket", "b"],
    ["invoke", "--event", "events/s3-put.json"],
]
SCHEMA_COMMANDS = [
    ["failed"],
    ["search", "words"],
    ["graph", "uploads/a.md"],
    ["reembed"],
    ["compact"],
    ["console", "--port", "0"],
    ["reconcile", "--bucket", "b"],
]
QUEUE_COMMANDS = [["status"], ["dlq", "list"], ["dlq", "redrive", "--all"], ["reconcile", "--bucket", "b"]]


def assert_one_line_error(result: subprocess.CompletedProcess[str], names: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("filequeue: error: "), lines
    assert names in lines[0], lines[0]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_an_unparsable_database_url_names_the_variable_without_echoing_it(command, aws_env):
    env = {**aws_environment(aws_env), "FILEQUEUE_DATABASE_URL": BAD_URL, "FILEQUEUE_QUEUE_URL": "http://q"}
    result = run_cli(*command, env=env)
    assert_one_line_error(result, "FILEQUEUE_DATABASE_URL is not a PostgreSQL URL")
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize("command", SCHEMA_COMMANDS, ids=" ".join)
def test_an_unmigrated_database_says_to_migrate(command, database_url, ingest):
    env = {**aws_environment(ingest.queue_url.split("/1234")[0]), "FILEQUEUE_DATABASE_URL": database_url}
    result = run_cli(*command, env={**env, "FILEQUEUE_QUEUE_URL": ingest.queue_url})
    assert_one_line_error(result, "run `filequeue migrate`")


@pytest.mark.parametrize("command", QUEUE_COMMANDS, ids=" ".join)
def test_no_aws_region_is_named(command, handler_env, aws_env):
    env = {
        name: value
        for name, value in aws_environment(aws_env).items()
        if name not in ("AWS_REGION", "AWS_DEFAULT_REGION")
    }
    result = run_cli(*command, env={**env, "FILEQUEUE_DATABASE_URL": handler_env, "FILEQUEUE_QUEUE_URL": "http://q"})
    assert_one_line_error(result, "no AWS region: set AWS_REGION")


@pytest.mark.parametrize("command", QUEUE_COMMANDS, ids=" ".join)
def test_a_queue_that_does_not_exist_is_named(command, handler_env, aws_env):
    missing = f"{aws_env}/123456789012/no-such-queue"
    env = {**aws_environment(aws_env), "FILEQUEUE_DATABASE_URL": handler_env, "FILEQUEUE_QUEUE_URL": missing}
    assert_one_line_error(run_cli(*command, env=env), f"the queue {missing} does not exist")


@pytest.mark.parametrize(
    ("setting", "value", "names"),
    [
        ("FILEQUEUE_CHUNK_SIZE", "big", "FILEQUEUE_CHUNK_SIZE must be a whole number, got 'big'"),
        ("FILEQUEUE_SIMILAR_MIN_WEIGHT", "high", "FILEQUEUE_SIMILAR_MIN_WEIGHT must be a number"),
        ("FILEQUEUE_AUTO_MIGRATE", "perhaps", "FILEQUEUE_AUTO_MIGRATE must be true or false"),
    ],
)
def test_a_malformed_setting_reads_as_english(setting, value, names):
    assert_one_line_error(run_cli("status", env={setting: value}), names)


@pytest.mark.parametrize(
    ("event", "names"),
    [
        ("no-such-file.json", "cannot read event no-such-file.json"),
        ("README.md", "is not JSON"),
        ("pyproject.toml", "is not JSON"),
        ("tests/fixtures/schemas", "cannot read event"),
    ],
)
def test_invoke_with_an_unreadable_event_is_one_line(event, names):
    assert_one_line_error(run_cli("invoke", "--event", event, env={}), names)


def test_invoke_with_json_that_is_not_an_event_is_one_line():
    result = run_cli("invoke", "--event", "-", env={}, stdin='{"detail": {}}')
    assert_one_line_error(result, "- is not a Lambda SQS event or an S3 notification")


def test_commands_that_need_a_queue_name_the_variable(handler_env):
    for command in (["dlq", "list"], ["reconcile", "--bucket", "b"]):
        assert_one_line_error(run_cli(*command, env={"FILEQUEUE_DATABASE_URL": handler_env}), "FILEQUEUE_QUEUE_URL")


def test_a_closed_pipe_is_one_line_not_a_traceback():
    with subprocess.Popen(
        [sys.executable, "-m", "handlers.cli", "events", "s3-put", "--bucket", "b", "--key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=clean_environment(),
    ) as process:
        assert process.stdout is not None
        process.stdout.close()  # the reader is gone before the command writes, like `| head` after its lines
        stderr = process.stderr.read() if process.stderr else ""
        code = process.wait(timeout=60)
    result = subprocess.CompletedProcess(process.args, code, "", stderr)
    assert_one_line_error(result, "broken pipe")


def test_a_data_directory_postgres_cannot_use_is_one_line_with_its_reason(dev_dir):
    (dev_dir / "pgdata").mkdir()
    (dev_dir / "pgdata" / "notes.txt").write_text("not a database")
    result = run_cli("dev", "--data-dir", str(dev_dir), env={"FILEQUEUE_HEALTH_PORT": "0"})
    assert_one_line_error(result, "initdb: error: directory")


MINIMAL_ARGUMENTS = {
    "search": ["words"],
    "graph": ["uploads/a.md"],
    "reconcile": ["--bucket", "b"],
    "invoke": ["--event", "events/s3-put.json"],
    "s3-put": ["--bucket", "b", "--key", "k"],
    "s3-delete": ["--bucket", "b", "--key", "k"],
    "redrive": ["--all"],
    "delete": ["--id", "0f7d3c2e"],
}


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_command_with_a_malformed_setting_stops_in_one_line(command, tmp_path):
    arguments = [*command, *MINIMAL_ARGUMENTS.get(command[-1], [])]
    if command == ["dev"]:
        arguments += ["--data-dir", str(tmp_path)]
    result = run_cli(*arguments, env={"FILEQUEUE_CHUNK_SIZE": "big", "FILEQUEUE_DATABASE_URL": BAD_URL})
    if command[0] == "events":
        assert result.returncode == 0, "writing a sample event reads no settings"
        return
    assert_one_line_error(result, "FILEQUEUE_CHUNK_SIZE must be a whole number")


def test_a_cluster_killed_while_being_created_is_one_line(dev_dir):
    pgdata = dev_dir / "pgdata"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("16\n")
    # What a postmaster killed during initdb leaves: its bootstrap pid (negative) and no status line.
    (pgdata / "postmaster.pid").write_text(f"-2084\n{pgdata}\n1796054313\n5432\n\n\n  2234289    688160\n")
    result = run_cli("dev", "--data-dir", str(dev_dir), env={"FILEQUEUE_HEALTH_PORT": "0"})
    assert_one_line_error(result, f"remove {pgdata} and start again")


def test_usage_errors_are_argparse_lines():
    result = run_cli("search", "x", "--limit", "many", env={})
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert "--limit: must be a whole number, got 'many'" in result.stderr


def test_the_console_on_a_taken_port_is_one_line(handler_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("console", "--port", str(port), env={"FILEQUEUE_DATABASE_URL": handler_env})
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_a_console_port_out_of_range_is_a_usage_error_of_the_console():
    result = run_cli("console", "--port", "99999", env={})
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert result.stderr.startswith("usage: filequeue console")
    assert "--port: must be a TCP port, 0-65535 (0: any free port), got 99999" in result.stderr


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["search", "foo", "--bogus"], "usage: filequeue search"),
        (["dlq", "list", "--bogus"], "usage: filequeue dlq list"),
        (["events", "s3-put", "--bucket", "b", "--key", "k", "--bogus"], "usage: filequeue events s3-put"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_an_unknown_flag_shows_the_usage_of_its_subcommand(command, usage):
    result = run_cli(*command, env={})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(usage), result.stderr
    assert f"{usage.removeprefix('usage: ')}: error: unrecognized arguments: --bogus" in result.stderr


def test_an_unknown_error_code_is_rejected_with_the_known_ones():
    result = run_cli("failed", "--code", "no_such_code", env={})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: filequeue failed")
    assert "invalid choice: 'no_such_code'" in result.stderr
    assert all(code.value in result.stderr for code in ErrorCode)
