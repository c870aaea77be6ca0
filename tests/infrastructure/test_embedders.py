"""The embedder each deployment gets: Bedrock Titan V2 by default, a model baked into the image, or hashing."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk.assertions import Annotations, Match

from cdk.config import ContextError, FileQueueConfig
from cdk.image_asset import IMAGE_MODEL_PATH, MODEL_FOLDER_BUILD_ARG
from cdk.runtime_environment import worker_environment
from handlers.settings import Settings
from tests.infrastructure.conftest import LOCAL_CONTEXT, LOCAL_MODEL_FOLDER
from tests.infrastructure.manifests import image_environment
from tests.infrastructure.template_queries import as_list, env_of, flatten, resource_by_prefix, resources
from tests.model2vec_model import DIMENSION
from tests.paths import CONTAINER

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.infrastructure.conftest import Synthesized

TITAN_V2 = "amazon.titan-embed-text-v2:0"
# The default function (2048 MB) leaves the extraction child 1664 MB; a local model's reserve comes off that.
DEFAULT_EXTRACT_MEMORY_MB = 1664
# The test model's files are under 1 MiB: 64 MB overhead + 2 x 1 MiB (cdk/local_model.py's estimate).
TINY_MODEL_MEMORY_MB = 66


def _consumer_env(synth: Synthesized) -> Mapping[str, Any]:
    return env_of(resource_by_prefix(synth.template, "AWS::Lambda::Function", "LambdaConsumerFunction"))


def _image_source(synth: Synthesized) -> dict[str, Any]:
    manifest = json.loads((synth.assembly_dir / f"{synth.stack.stack_name}.assets.json").read_text())
    (asset,) = manifest["dockerImages"].values()
    source: dict[str, Any] = asset["source"]
    return source


def _bedrock_grants(synth: Synthesized) -> set[tuple[str, str]]:
    return {
        (action, flatten(resource))
        for policy in resources(synth.template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in as_list(statement["Action"])
        if action.startswith("bedrock:")
        for resource in as_list(statement["Resource"])
    }


def _output(synth: Synthesized, name: str) -> Any:
    return synth.template.to_json()["Outputs"][name]["Value"]


def test_by_default_both_runtimes_embed_with_titan_v2_at_1024_dimensions(default_synth: Synthesized) -> None:
    environment = _consumer_env(default_synth)
    settings = Settings.from_env({name: flatten(value) for name, value in environment.items()})

    assert (settings.embedder, settings.resolved_embedding_model, settings.embedding_dimension) == (
        "bedrock",
        TITAN_V2,
        1024,
    )
    # No account or region in the context: the model's ARN is built from the stack's own.
    assert _bedrock_grants(default_synth) == {
        ("bedrock:InvokeModel", f"arn:<AWS::Partition>:bedrock:<AWS::Region>::foundation-model/{TITAN_V2}")
    }
    assert (_output(default_synth, "embedder"), _output(default_synth, "embeddingDimension")) == ("bedrock", "1024")
    assert "dockerBuildArgs" not in _image_source(default_synth)
    assert Annotations.from_stack(default_synth.stack).find_warning("*", Match.string_like_regexp("hashing")) == []


def test_the_hashing_embedder_is_deployed_only_with_a_warning(hashing_synth: Synthesized) -> None:
    warnings = Annotations.from_stack(hashing_synth.stack).find_warning(
        "*", Match.string_like_regexp("embedder=hashing is the demo and test embedder")
    )

    assert len(warnings) == 1
    assert _bedrock_grants(hashing_synth) == set()
    assert (_output(hashing_synth, "embedder"), _output(hashing_synth, "embeddingDimension")) == ("hashing", "256")


def test_a_local_model_folder_is_a_build_argument_and_staged_with_the_image(local_synth: Synthesized) -> None:
    source = _image_source(local_synth)
    staged = local_synth.assembly_dir / source["directory"]

    assert source["dockerBuildArgs"] == {MODEL_FOLDER_BUILD_ARG: LOCAL_MODEL_FOLDER}
    assert (staged / LOCAL_MODEL_FOLDER / "model.safetensors").is_file()
    assert sorted(path.name for path in (staged / "models").iterdir()) == ["none", LOCAL_MODEL_FOLDER.split("/")[1]]


def test_only_the_chosen_model_folder_enters_the_default_image(default_synth: Synthesized) -> None:
    staged = default_synth.assembly_dir / _image_source(default_synth)["directory"]

    assert sorted(path.name for path in (staged / "models").iterdir()) == ["none"]


def test_the_dockerfile_copies_the_build_argument_to_the_path_both_runtimes_read() -> None:
    dockerfile = (CONTAINER / "Dockerfile").read_text()

    assert re.search(rf"^ARG {MODEL_FOLDER_BUILD_ARG}=models/none$", dockerfile, flags=re.MULTILINE)
    assert re.search(rf"^COPY \${{{MODEL_FOLDER_BUILD_ARG}}} {IMAGE_MODEL_PATH}$", dockerfile, flags=re.MULTILINE)
    assert image_environment()["FILEQUEUE_EMBEDDING_MODEL_PATH"] == IMAGE_MODEL_PATH


def test_with_a_local_model_both_runtimes_read_it_from_the_image_with_its_own_dimension(
    local_synth: Synthesized,
) -> None:
    lambda_environment = _consumer_env(local_synth)
    workers = worker_environment(local_synth.stack.config, "secret")

    for environment in (lambda_environment, workers):
        assert environment["FILEQUEUE_EMBEDDER"] == "local"
        assert environment["FILEQUEUE_EMBEDDING_MODEL_PATH"] == IMAGE_MODEL_PATH
        assert environment["FILEQUEUE_EMBEDDING_DIMENSION"] == str(DIMENSION)
    assert (_output(local_synth, "embedder"), _output(local_synth, "embeddingDimension")) == ("local", str(DIMENSION))
    assert _bedrock_grants(local_synth) == set()


def test_the_local_model_is_paid_for_out_of_the_extraction_memory(local_synth: Synthesized) -> None:
    assert local_synth.stack.config.model_memory_mb == TINY_MODEL_MEMORY_MB
    assert _consumer_env(local_synth)["FILEQUEUE_EXTRACT_MEMORY_MB"] == str(
        DEFAULT_EXTRACT_MEMORY_MB - TINY_MODEL_MEMORY_MB
    )


@pytest.mark.usefixtures("local_synth")  # it keeps the model folder in place for the session
def test_a_function_too_small_for_extraction_beside_the_model_is_refused() -> None:
    # 896 MB less the handler's 384 MB reserve leaves 512, less the model's 66: below the 512 extraction needs.
    context = {**LOCAL_CONTEXT, "functionMemoryMb": 896}

    with pytest.raises(ContextError) as raised:
        FileQueueConfig.from_context(context.get)

    assert str(raised.value) == (
        "context functionMemoryMb is too small: 896 MB leaves 446 MB for extraction once the local model "
        f"({TINY_MODEL_MEMORY_MB} MB) is loaded; at least 512 MB are needed"
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"embedder": "local"}, "context embeddingModelFolder is required with embedder=local"),
        ({"embeddingModelFolder": "models/x"}, "context embeddingModelFolder is only used with embedder=local"),
        ({"embedder": "local", "embeddingModelFolder": "cdk"}, "is not a folder under models/"),
        ({"embedder": "local", "embeddingModelFolder": "models/absent"}, "holds no model.safetensors"),
    ],
)
def test_a_wrong_model_folder_is_refused_with_the_key(context: dict[str, str], message: str) -> None:
    with pytest.raises(ContextError, match=re.escape(message)):
        FileQueueConfig.from_context(context.get)
