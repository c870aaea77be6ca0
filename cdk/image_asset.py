"""The project's one container image, staged at synth and built and pushed only at `cdk deploy`.

Both runtimes run this one build: the Lambda function by its asset tag, the EKS workers and the migration
Job through the stack's `image` output copied into `container/k8s/params.env`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aws_cdk import aws_ecr_assets as ecr_assets

if TYPE_CHECKING:
    from constructs import Construct

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "container/Dockerfile"
# Where the Dockerfile copies the model folder named by the build argument; FILEQUEUE_EMBEDDING_MODEL_PATH.
IMAGE_MODEL_PATH = "/usr/local/share/filequeue/model"
MODEL_FOLDER_BUILD_ARG = "EMBEDDING_MODEL_FOLDER"
# Docker-ignore patterns (root-anchored), added to the repository's .dockerignore: what the image never
# needs, so the build context and the asset hash stay independent of tests, benchmarks and the CDK app.
IMAGE_EXCLUDES = (
    ".git",
    ".venv",
    ".venv-checkov",
    "venv",
    "node_modules",
    "cdk.out",
    "cdk",
    "cdk.json",
    "tests",
    "bench",
    "events",
    ".ci",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".filequeue",
    "build",
    "dist",
    "*.egg-info",
    "**/__pycache__",
    "**/*.pyc",
    # Every model folder but the placeholder; `project_image` lets the chosen one back in.
    "models/*",
    "!models/none",
    # CDK re-includes only the Dockerfile's base name; without this a .dockerignore that excludes
    # container/ would drop the Dockerfile and its lock file from the staged asset.
    f"!{DOCKERFILE}",
    "!container/requirements.lock",
    "!container/build.lock",
)


def project_image(scope: Construct, construct_id: str, *, model_folder: str | None) -> ecr_assets.DockerImageAsset:
    """The image; with `model_folder` (relative to the repository root) that model2vec model is baked in."""
    excludes = list(IMAGE_EXCLUDES)
    build_args: dict[str, str] = {}
    if model_folder is not None:
        build_args[MODEL_FOLDER_BUILD_ARG] = model_folder
        # Kept in the build context even where an ignore pattern (a cache folder, say) covers it.
        excludes.append(f"!{model_folder}")
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(REPO_ROOT),
        file=DOCKERFILE,
        exclude=excludes,
        build_args=build_args or None,
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
