"""`npx aws-cdk@2 synth` as the README runs it: non-interactive, and without Node's end-of-life banner in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT


@pytest.mark.slow
def test_the_cdk_cli_synthesizes_non_interactively_without_a_node_end_of_life_banner_in_ci(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    assert npx, "npx (Node.js) is needed for the CDK CLI"
    # Given CI's environment, without the acknowledgments the test process itself set
    environment = {name: value for name, value in os.environ.items() if not name.startswith("JSII_SILENCE_WARNING")}
    environment["CI"] = "true"
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"

    # When the CLI synthesizes with no terminal to answer a prompt
    result = subprocess.run(
        [npx, "--yes", "aws-cdk@2", "synth", "--quiet", "--output", str(tmp_path / "cdk.out")],
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # Then it succeeds, writes the template and prints no banner
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cdk.out" / "FileQueue.template.json").is_file()
    assert "end-of-life" not in result.stderr
    assert "!!!!" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("embedder=nonsense", "context embedder must be one of bedrock, local, openai, hashing"),
        ("functionTimeoutSeconds=soon", "context functionTimeoutSeconds must be an integer, got 'soon'"),
    ],
)
def test_a_bad_context_value_is_one_line_naming_it_and_a_failed_synth(
    tmp_path: Path, context: str, message: str
) -> None:
    npx = shutil.which("npx")
    assert npx, "npx (Node.js) is needed for the CDK CLI"
    environment = {**os.environ, "CI": "true", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    # When the CLI synthesizes with a context value the stack cannot be built from
    result = subprocess.run(
        [npx, "--yes", "aws-cdk@2", "synth", "--quiet", "-c", context, "--output", str(tmp_path / "cdk.out")],
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    # Then the synthesis fails with the app's one line, and no traceback
    assert result.returncode != 0
    assert f"filequeue cdk: {message}\n" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "cdk.out" / "FileQueue.template.json").exists()
