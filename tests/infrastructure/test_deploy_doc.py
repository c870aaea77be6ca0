"""The deploy commands of docs/deploy.md and the README, checked as far as this machine allows.

Every `cdk deploy` is synthesized with exactly its `-c` flags (cdk-nag, the handler's settings and the
connection budget run in it), the manifests it applies are the ones test_k8s.py renders, and nothing in it
touches KEDA's operator identity.
"""

from __future__ import annotations

import re
import shlex
import shutil
from typing import TYPE_CHECKING, Any

import pytest

from tests.infrastructure.conftest import cdk_json_context
from tests.model2vec_model import build_model
from tests.paths import REPO_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DOCS = (REPO_ROOT / "docs" / "deploy.md", REPO_ROOT / "README.md")
DEPLOY = ("npx", "--yes", "aws-cdk@2", "deploy")


def shell_commands() -> list[str]:
    """Each command of the docs' bash blocks, continuation lines joined."""
    blocks = [block for doc in DOCS for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.DOTALL)]
    commands: list[str] = []
    for block in blocks:
        text = re.sub(r"\\\n\s*", " ", block)
        commands.extend(line.strip() for line in text.splitlines() if line.strip())
    return commands


def deploy_contexts() -> list[dict[str, str]]:
    contexts = []
    for command in shell_commands():
        words = shlex.split(command)
        if tuple(words[: len(DEPLOY)]) != DEPLOY:
            continue
        context = dict(words[index + 1].split("=", 1) for index, word in enumerate(words) if word == "-c")
        if context not in contexts:  # the README repeats some of docs/deploy.md's: synthesized once
            contexts.append(context)
    return contexts


@pytest.fixture
def model_folder_in_repo() -> Iterator[Path]:
    """The doc's model folder, made here from a tiny model, removed afterwards (the image needs it in models/)."""
    folders = {context["embeddingModelFolder"] for context in deploy_contexts() if "embeddingModelFolder" in context}
    created = []
    for folder in folders:
        path = REPO_ROOT / folder
        assert not path.exists(), f"{path} exists; the test would overwrite a real model"
        build_model(path)
        created.append(path)
    yield REPO_ROOT
    for path in created:
        shutil.rmtree(path)


def test_the_doc_deploys_every_runtime_and_database_choice() -> None:
    contexts = deploy_contexts()
    assert {context.get("runtime", "lambda") for context in contexts} == {"lambda", "eks"}
    assert {context.get("database", "external") for context in contexts} == {"external", "aurora"}
    assert any(context.get("embedder") == "local" for context in contexts)


def test_the_doc_never_changes_the_keda_operators_service_account() -> None:
    for command in shell_commands():
        assert not ("keda-operator" in command and ("annotate" in command or "rollout" in command)), command


def test_the_doc_renders_the_manifests_the_tests_validate() -> None:
    applied = {word for command in shell_commands() for word in shlex.split(command) if word.startswith("container/")}
    assert "container/k8s" in applied


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(deploy_contexts())))
def test_every_deploy_command_synthesizes_with_exactly_its_flags(
    index: int, model_folder_in_repo: Path, tmp_path: Path
) -> None:
    from cdk.app import build_app

    context: dict[str, Any] = deploy_contexts()[index]
    app, stack = build_app({**cdk_json_context(), **context}, outdir=str(tmp_path))

    assembly = app.synth()

    assert (tmp_path / f"{stack.stack_name}.template.json").is_file()
    assert assembly.get_stack_by_name(stack.stack_name).template["Resources"]
