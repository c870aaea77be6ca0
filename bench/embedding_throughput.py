"""Embedding cost per chunk: hashing-v1 against hashing-v2 (and `local`), side by side in one process.

The chunks are the relevance corpus and the demo PDFs cut by the production chunker (1000
characters), repeated to `--chunks`. Each embedder embeds them document by document (one `embed`
call per document, as the worker does), in alternating rounds so that machine noise hits every
embedder alike; the report gives the median chunks per second, the ratio to hashing-v1, and the
top of a cProfile of one round, which says where the time goes.

`local` is measured with the model in FILEQUEUE_EMBEDDING_MODEL_PATH, or else with a stand-in the
size of a small published static model (a 30,000-word vocabulary, 256 dimensions, built here with
model2vec's own classes; it costs what a real model costs, but knows no meaning).

    python -m bench.embedding_throughput [--chunks 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.relevance_benchmark import corpus_files
from handlers.adapters.embedders.hashing import HashingEmbedder, LexicalHashingEmbedder
from handlers.model import ChunkingOptions, ExtractLimits
from handlers.stages.chunking import chunk_document
from handlers.stages.extract import extract_text

if TYPE_CHECKING:
    from handlers.ports import Embedder

RESULTS = Path(__file__).parent / "results" / "embedding_throughput.json"
STAND_IN_VOCABULARY = 30_000
STAND_IN_DIMENSION = 256


def documents(target_chunks: int) -> list[list[str]]:
    """Chunk texts grouped by document, repeated until there are at least `target_chunks`."""
    corpus = []
    for key, data in corpus_files().items():
        extracted = extract_text(data, key=key, declared_content_type=None, limits=ExtractLimits())
        corpus.append([chunk.text for chunk in chunk_document(extracted, ChunkingOptions())])
    grouped: list[list[str]] = []
    while sum(len(group) for group in grouped) < target_chunks:
        grouped.extend(corpus)
    return grouped


def stand_in_model(folder: Path, words: list[str]) -> Path:
    import numpy as np
    from model2vec import StaticModel
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import Lowercase
    from tokenizers.pre_tokenizers import Whitespace

    vocabulary = ["[UNK]", *dict.fromkeys(words)][:STAND_IN_VOCABULARY]
    vocabulary += [f"w{index}" for index in range(STAND_IN_VOCABULARY - len(vocabulary))]
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(vocabulary)}, unk_token="[UNK]"))  # noqa: S106
    tokenizer.normalizer = Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    vectors = np.random.default_rng(1).standard_normal((len(vocabulary), STAND_IN_DIMENSION)).astype(np.float32)
    StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=True).save_pretrained(folder)
    return folder


def embed_all(embedder: Embedder, grouped: list[list[str]]) -> float:
    started = time.perf_counter()
    for texts in grouped:
        embedder.embed(texts)
    return time.perf_counter() - started


def profile_top(embedder: Embedder, grouped: list[list[str]], lines: int = 8) -> list[str]:
    profiler = cProfile.Profile()
    profiler.enable()
    embed_all(embedder, grouped)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(lines)
    return [line.strip() for line in out.getvalue().splitlines() if line.strip()][-lines:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    grouped = documents(args.chunks)
    chunks = sum(len(group) for group in grouped)
    embedders: dict[str, Embedder] = {"hashing-v1": HashingEmbedder(256), "hashing-v2": LexicalHashingEmbedder(256)}
    with tempfile.TemporaryDirectory() as scratch:
        from handlers.adapters.embedders.local import LocalEmbedder

        model_path = os.environ.get("FILEQUEUE_EMBEDDING_MODEL_PATH")
        if model_path:
            embedders["local"] = LocalEmbedder(model_path)
        else:
            words = " ".join(text for group in grouped for text in group).split()
            embedders["local (stand-in)"] = LocalEmbedder(str(stand_in_model(Path(scratch) / "stand-in", words)))
        cold = {name: chunks / embed_all(embedder, grouped) for name, embedder in embedders.items()}
        rounds: dict[str, list[float]] = {name: [] for name in embedders}
        for _ in range(args.rounds):
            for name, embedder in embedders.items():
                rounds[name].append(chunks / embed_all(embedder, grouped))
        profiles = {name: profile_top(embedder, grouped) for name, embedder in embedders.items()}
    median = {name: statistics.median(values) for name, values in rounds.items()}
    results = {
        "chunks": chunks,
        "rounds": args.rounds,
        "chunks_per_second_median": {name: round(value) for name, value in median.items()},
        "chunks_per_second_first_round": {name: round(value) for name, value in cold.items()},
        "ratio_to_hashing_v1": {name: round(value / median["hashing-v1"], 2) for name, value in median.items()},
        "profile_top_tottime": profiles,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{chunks} chunks, {args.rounds} alternating rounds")
    for name in embedders:
        print(
            f"  {name:<18} {median[name]:>9.0f} chunks/s (first round {cold[name]:>7.0f})"
            f"  x{median[name] / median['hashing-v1']:.2f} of hashing-v1"
        )


if __name__ == "__main__":
    main()
