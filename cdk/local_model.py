"""The model2vec model folder that `embedder=local` bakes into the image, read at synthesis.

The folder must lie under `models/` in the repository (the part of the build context `.dockerignore` lets
through for models). Its dimension is read from the
`embeddings` tensor's shape in the safetensors header (eight bytes of length, then JSON), so synthesis
needs neither numpy nor the model library, and its size sets what the handler process keeps for it.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# .dockerignore lets only this directory's folders into the image build.
MODELS_DIRECTORY = "models"
MODEL_FILE = "model.safetensors"
EMBEDDINGS_TENSOR = "embeddings"
# safetensors caps its header at 100 MB; a larger length means the file is not safetensors.
_MAX_HEADER_BYTES = 100_000_000
_MIB = 1024 * 1024
# The loaded model beside the files: the tokenizer's tables and numpy's working copy while encoding a batch.
MODEL_MEMORY_FACTOR = 2
MODEL_MEMORY_OVERHEAD_MB = 64


class LocalModelError(ValueError):
    """The folder is not a model2vec model inside the repository."""


@dataclass(frozen=True, slots=True)
class LocalModel:
    folder: str
    """Relative to the repository root, with '/' separators: the Docker build argument."""
    dimension: int
    memory_mb: int
    """What the handler process keeps for the loaded model (an estimate from the files' size)."""


@cache
def read_local_model(folder: str, root: Path = REPO_ROOT) -> LocalModel:
    path = (root / folder).resolve()
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise LocalModelError(
            f"{folder!r} is outside the repository; the image is built from the repository root"
        ) from None
    if len(relative.parts) < 2 or relative.parts[0] != MODELS_DIRECTORY:
        raise LocalModelError(
            f"{folder!r} is not a folder under {MODELS_DIRECTORY}/ (the only model folders the image build sees)"
        )
    model_file = path / MODEL_FILE
    if not model_file.is_file():
        raise LocalModelError(f"{folder!r} holds no {MODEL_FILE}: save a model2vec model there first")
    return LocalModel(
        folder=relative.as_posix(),
        dimension=_embedding_dimension(model_file),
        memory_mb=MODEL_MEMORY_OVERHEAD_MB + MODEL_MEMORY_FACTOR * math.ceil(_folder_bytes(path) / _MIB),
    )


def _embedding_dimension(model_file: Path) -> int:
    with model_file.open("rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8) or b"\0" * 8)
        if not 0 < length <= _MAX_HEADER_BYTES:
            raise LocalModelError(f"{model_file} is not a safetensors file")
        try:
            header = json.loads(stream.read(length))
            rows, dimension = header[EMBEDDINGS_TENSOR]["shape"]
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalModelError(f"{model_file} has no 2-d {EMBEDDINGS_TENSOR!r} tensor: {exc}") from None
    if not (isinstance(rows, int) and isinstance(dimension, int) and rows > 0 and dimension > 0):
        raise LocalModelError(f"{model_file} has an empty {EMBEDDINGS_TENSOR!r} tensor")
    return dimension


def _folder_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
