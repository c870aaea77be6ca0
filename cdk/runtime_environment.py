"""The settings each runtime runs with, as environment variables, built from the stack's configuration.

The Lambda function gets `lambda_environment` as its environment. The EKS workers get theirs from the
Kubernetes ConfigMap (`container/k8s/kustomization.yaml`); `worker_environment` is what the stack expects
that ConfigMap to hold, so the worker role is granted what those settings need, and the infrastructure
tests fail when the two disagree. Both are checked by the handler's own `Settings`, so a configuration the
handler would reject fails at synthesis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk.config import ContextError
from cdk.image_asset import IMAGE_MODEL_PATH
from handlers.errors import ConfigError
from handlers.settings import Settings

if TYPE_CHECKING:
    from cdk.config import FileQueueConfig

SERVICE_NAME = "file-queue"


def lambda_environment(config: FileQueueConfig, database_secret_arn: str) -> dict[str, str]:
    """The function's environment; the extraction memory cap leaves the handler process its reserve."""
    environment = {
        **_shared_environment(config, database_secret_arn),
        "FILEQUEUE_DEADLINE_MARGIN_SECONDS": str(config.deadline_margin_seconds),
        "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": str(config.extract_timeout_seconds),
        "FILEQUEUE_EXTRACT_MEMORY_MB": str(config.lambda_extract_memory_mb),
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_LOG_LEVEL": config.log_level,
    }
    return _checked(environment)


def worker_environment(config: FileQueueConfig, database_secret_arn: str) -> dict[str, str]:
    """What the stack expects the workers' ConfigMap to set: the values it grants permissions and budgets for.

    The extraction memory cap is not among them: the pod derives it from its container's memory limit.
    """
    environment = {
        **_shared_environment(config, database_secret_arn),
        "FILEQUEUE_AUTO_MIGRATE": "false",
        "FILEQUEUE_DEADLINE_MARGIN_SECONDS": str(config.worker_deadline_margin_seconds),
        "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": str(config.worker_extract_timeout_seconds),
        "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS": str(config.worker_shutdown_grace_seconds),
    }
    return _checked(environment)


def settings_of(environment: dict[str, str]) -> Settings:
    """The handler's settings for an environment this module built (already validated)."""
    return Settings.from_env(environment)


def _shared_environment(config: FileQueueConfig, database_secret_arn: str) -> dict[str, str]:
    """Settings both runtimes must agree on: one database, one embedding model, one write margin."""
    environment = {
        "FILEQUEUE_DATABASE_SECRET_ARN": database_secret_arn,
        "FILEQUEUE_EMBEDDER": config.embedder,
        "FILEQUEUE_EMBEDDING_DIMENSION": str(config.resolved_embedding_dimension),
        "FILEQUEUE_MAX_OBJECT_BYTES": str(config.max_object_bytes),
        "FILEQUEUE_WRITE_MARGIN_SECONDS": str(config.write_margin_seconds),
    }
    if config.embedding_model:
        environment["FILEQUEUE_EMBEDDING_MODEL"] = config.embedding_model
    if config.embedder == "local":
        # The folder the image copies the model into; the model's own name is the folder's.
        environment["FILEQUEUE_EMBEDDING_MODEL_PATH"] = IMAGE_MODEL_PATH
    if config.openai_base_url:
        environment["FILEQUEUE_OPENAI_BASE_URL"] = config.openai_base_url
    return environment


def _checked(environment: dict[str, str]) -> dict[str, str]:
    try:
        Settings.from_env(environment)
    except ConfigError as exc:
        raise ContextError(f"the handler would reject this configuration: {exc}") from exc
    return environment
