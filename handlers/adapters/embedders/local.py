"""`local`: a static embedding model (model2vec) loaded from a directory; no torch, no network.

A static model keeps one vector per token and averages the vectors of a text's tokens, so it runs
at thousands of chunks per second on one CPU while knowing that "bread" and "loaf" are related,
which no lexical embedder can. The model is read from FILEQUEUE_EMBEDDING_MODEL_PATH only: a path
that is not a directory holding a model is a configuration error, never a download (the container
image bakes a published model in at build time).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from handlers.adapters.embedders._common import EmbedderIdentity
from handlers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

_MODEL_FILE = "model.safetensors"


class LocalEmbedder(EmbedderIdentity):
    def __init__(self, model_path: str, model: str | None = None, dimension: int | None = None) -> None:
        import numpy as np
        from model2vec import StaticModel

        folder = Path(model_path)
        if not (folder / _MODEL_FILE).is_file():
            raise ConfigError(
                f"FILEQUEUE_EMBEDDING_MODEL_PATH {model_path!r} is not a model2vec model directory "
                f"(no {_MODEL_FILE}); build or download one there first"
            )
        try:
            self._static = StaticModel.from_pretrained(folder, normalize=False, force_download=False)
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(
                f"FILEQUEUE_EMBEDDING_MODEL_PATH {model_path!r}: cannot load the model: {error}"
            ) from error
        native = int(self._static.dim)
        if dimension is not None and dimension != native:
            raise ConfigError(
                f"the model at FILEQUEUE_EMBEDDING_MODEL_PATH has {native} dimensions but "
                f"FILEQUEUE_EMBEDDING_DIMENSION is {dimension}; set it to {native}"
            )
        super().__init__(model or f"model2vec:{folder.name}", native)
        self._np = np

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        np = self._np
        matrix = np.asarray(self._static.encode(list(texts), use_multiprocessing=False), dtype=np.float64)
        matrix = matrix.reshape(len(texts), self._dimension)
        norms = np.linalg.norm(matrix, axis=1)
        empty = norms == 0.0
        # A text made only of unknown tokens has no direction; a fixed unit vector keeps it storable.
        matrix[empty, 0] = 1.0
        norms[empty] = 1.0
        unit: list[list[float]] = (matrix / norms[:, None]).tolist()
        return unit
