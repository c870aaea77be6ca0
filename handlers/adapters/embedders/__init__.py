"""Embedders behind the `Embedder` port, chosen by settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.errors import ConfigError
from handlers.settings import EMBEDDER_KINDS

if TYPE_CHECKING:
    from handlers.ports import Embedder
    from handlers.settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for; provider modules are imported only when chosen."""
    if settings.embedder == "hashing":
        from handlers.adapters.embedders.hashing import build_hashing_embedder

        return build_hashing_embedder(settings.embedding_dimension, settings.resolved_embedding_model)
    if settings.embedder == "bedrock":
        from handlers.adapters.embedders.bedrock import BedrockEmbedder

        return BedrockEmbedder(
            model=settings.resolved_embedding_model,
            dimension=settings.embedding_dimension,
            concurrency=settings.embedding_concurrency,
            timeout_seconds=settings.http_timeout_seconds,
        )
    if settings.embedder == "openai":
        from handlers.adapters.embedders.openai_compatible import OpenAICompatibleEmbedder

        return OpenAICompatibleEmbedder(
            base_url=settings.openai_base_url or "",
            model=settings.resolved_embedding_model,
            dimension=settings.embedding_dimension,
            batch_size=settings.embedding_batch_size,
            api_key=settings.openai_api_key,
            timeout_seconds=settings.http_timeout_seconds,
        )
    if settings.embedder == "local":
        from handlers.adapters.embedders.local import LocalEmbedder

        return LocalEmbedder(
            settings.embedding_model_path or "", settings.resolved_embedding_model, settings.embedding_dimension
        )
    # Only reachable with a Settings built without validate(), which restricts the kinds.
    raise ConfigError(f"FILEQUEUE_EMBEDDER must be one of {', '.join(EMBEDDER_KINDS)}, got {settings.embedder!r}")
