"""The container image without a Docker engine: the Dockerfile linted and checked, its build context,
its default command, and its Lambda mode (the runtime interface client against a local Runtime API)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.lambda_runtime_api import FakeRuntimeApi
from tests.paths import CONTAINER, REPO_ROOT

DOCKERFILE = CONTAINER / "Dockerfile"
LAMBDA_HANDLER = "handlers.lambda_entry.lambda_handler"


def tool(name: str) -> str:
    """A console script installed next to this interpreter (the dev extra), else on PATH; never skipped."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is missing: pip install the dev extra"
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    parsed = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_on_a_slim_python_base_pinned_by_digest():
    steps = instructions()
    assert [keyword for keyword, _ in steps].count("FROM") == 2
    args = dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.12-slim@sha256:[0-9a-f]{64}", args["PYTHON_IMAGE"])
    assert all(rest.split()[0] == "${PYTHON_IMAGE}" for keyword, rest in steps if keyword == "FROM")
    assert any(keyword == "COPY" and rest.startswith("--from=builder") for keyword, rest in final_stage())


def test_dependencies_and_code_are_separate_layers_with_the_dependencies_first():
    steps = instructions()
    copies = [rest for keyword, rest in steps if keyword == "COPY"]
    installs = [rest for keyword, rest in steps if keyword == "RUN" and "pip install" in rest]
    # the lock is copied and installed before any source file is copied
    assert copies[0] == "container/requirements.lock container/build.lock ./"
    assert "--require-hashes" in installs[0]
    assert "-r requirements.lock" in installs[0]
    assert "--no-deps" in installs[1]
    assert "--no-build-isolation" in installs[1]
    final_copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert final_copies == [
        "--from=builder /dependencies /usr/local",
        "--from=builder /code /usr/local",
        # the model folder the CDK app names (embedder=local), else models/none, which holds only a note
        "${EMBEDDING_MODEL_FOLDER} /usr/local/share/filequeue/model",
    ]


def test_the_model_folder_is_a_build_argument_copied_where_the_stack_points_the_handler():
    from cdk.image_asset import IMAGE_MODEL_PATH, MODEL_FOLDER_BUILD_ARG

    stage = final_stage()
    (default,) = [rest for keyword, rest in stage if keyword == "ARG" and rest.startswith(MODEL_FOLDER_BUILD_ARG)]
    folder = default.partition("=")[2]
    assert (REPO_ROOT / folder / "README.md").is_file()
    assert not (REPO_ROOT / folder / "model.safetensors").exists()
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    assert f"FILEQUEUE_EMBEDDING_MODEL_PATH={IMAGE_MODEL_PATH}" in env
    # docker applies .dockerignore to the staged context: the model folders must survive it
    assert "!models/" in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_the_final_stage_runs_as_a_numeric_non_root_user_and_needs_only_tmp():
    stage = final_stage()
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    env = " ".join(rest for keyword, rest in stage if keyword == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "TMPDIR=/tmp", "HOME=/tmp"):
        assert setting in env


def test_the_default_command_is_the_worker_and_the_lambda_client_is_installed():
    stage = final_stage()
    assert json.loads(next(rest for keyword, rest in reversed(stage) if keyword == "CMD")) == ["filequeue", "worker"]
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in stage)  # Lambda overrides the entrypoint
    locked = _locked(CONTAINER / "requirements.lock")
    assert "awslambdaric" in locked
    assert "prometheus-client" in locked


def _locked(path: Path) -> dict[str, str]:
    """Package name -> pinned version of a pip requirements or constraints file."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", path.read_text(), flags=re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_image_lock_pins_every_runtime_dependency_with_hashes_at_the_test_environments_versions():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = [*project["dependencies"], *project["optional-dependencies"]["worker"]]
    runtime += project["optional-dependencies"]["lambda"]
    lock_text = (CONTAINER / "requirements.lock").read_text()
    locked = _locked(CONTAINER / "requirements.lock")
    constraints = _locked(REPO_ROOT / "constraints.txt")

    assert {_requirement_name(requirement) for requirement in runtime} <= set(locked)
    # every pin carries its hashes (pip --require-hashes refuses the file otherwise)
    assert lock_text.count("==") == len(locked)
    assert all(block.count("--hash=sha256:") >= 1 for block in re.split(r"\n(?=\S)", lock_text) if "==" in block)
    # the image runs what the tests ran
    assert {name: version for name, version in locked.items() if name in constraints} == {
        name: constraints[name] for name in locked if name in constraints
    }


def test_the_test_environment_is_the_one_constraints_txt_pins():
    from importlib.metadata import version

    constraints = _locked(REPO_ROOT / "constraints.txt")
    for name in ("aws-cdk-lib", "boto3", "psycopg", "pypdf", "moto", "aws-lambda-powertools"):
        assert version(name) == constraints[name], name


@pytest.mark.parametrize("lock", ["requirements.lock", "build.lock"])
def test_the_image_locks_resolve_to_wheels_whose_hashes_match_for_the_images_python(lock, tmp_path):
    # pip downloads each pinned wheel for CPython 3.12 on linux/amd64 and checks it against the lock's hashes
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed"]
    command += ["--require-hashes", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
    command += [argument for platform in platforms for argument in ("--platform", platform)]
    command += ["--target", str(tmp_path), "-r", str(CONTAINER / lock)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_default_command_exists_in_the_package():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["filequeue"] == "handlers.cli:main"
    result = subprocess.run([tool("filequeue"), "worker", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--processes" in result.stdout


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else():
    rules = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    assert rules[0] == "*"  # an allow-list: tests, .git, cdk.out, caches and secrets stay out
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    # the model folder is a build argument naming a folder under models/ (cdk/local_model.py)
    copied = {"models" if path == "${EMBEDDING_MODEL_FOLDER}" else path for path in copied}
    assert copied == allowed
    for path in copied:
        assert (REPO_ROOT / path).exists(), path


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1700000000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads",
        "awsRegion": "us-east-1",
    }


@pytest.fixture
def lambda_runtime(tmp_path):
    """`python -m awslambdaric handlers.lambda_entry.lambda_handler`, as the image runs in Lambda."""
    with FakeRuntimeApi() as api:
        env = {name: value for name, value in os.environ.items() if not name.startswith(("FILEQUEUE_", "AWS_"))}
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": api.address,
                "AWS_LAMBDA_FUNCTION_NAME": "filequeue",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/filequeue",
                "AWS_LAMBDA_LOG_STREAM_NAME": "stream",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "FILEQUEUE_DATABASE_URL": "postgresql://unused.invalid/filequeue",
            }
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", LAMBDA_HANDLER],
            cwd=tmp_path,  # the handler must come from the installed package, not from a source checkout
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield api
        finally:
            process.kill()
            output, _ = process.communicate(timeout=30)
            print(output)


def test_the_lambda_runtime_interface_client_runs_the_handler_and_posts_its_batch_response(lambda_runtime):
    # Given an SQS event with an S3 test event (acknowledged) and a body that is not JSON (a failure)
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "uploads"})
    request_id = lambda_runtime.invoke({"Records": [sqs_record("ok", test_event), sqs_record("bad", "{not json")]})

    # When the runtime client fetches and runs it
    posted = lambda_runtime.wait_posted()

    # Then it posted the handler's partial batch response for that request
    assert (posted.kind, posted.request_id) == ("response", request_id)
    assert posted.body == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_the_lambda_runtime_interface_client_reports_a_handler_error_as_an_invocation_error(lambda_runtime):
    request_id = lambda_runtime.invoke({"not": "an sqs event"})

    posted = lambda_runtime.wait_posted()

    assert (posted.kind, posted.request_id) == ("error", request_id)
    assert posted.body["errorType"]
    assert posted.body["errorMessage"]
