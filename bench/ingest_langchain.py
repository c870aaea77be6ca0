"""The LangChain contender of `bench/ingest.py`: the usual LangChain ingestion, run in its own environment.

    .filequeue/bench-venvs/langchain/bin/python bench/ingest_langchain.py LISTING DATABASE_URL SIZE OVERLAP DIMENSION

LISTING is a JSON list of file paths. Each file is loaded (PyPDFLoader for PDFs, TextLoader for
the rest), split with RecursiveCharacterTextSplitter at SIZE / OVERLAP characters, and added to a
langchain-postgres `PGVector` collection whose table has its HNSW index before the first row, one
`add_documents` call per file (the shape of a loader loop that ingests files as they come).
Vectors come from this project's `hashing-v2` embedder wrapped as LangChain `Embeddings`, so the
embedding costs what it costs the other contenders. The benchmark runs this file with the
environment's interpreter and this repository on PYTHONPATH; LangChain is never a dependency of
the project.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from langchain_community.document_loaders import PyPDFLoader, TextLoader
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector
from langchain_text_splitters import RecursiveCharacterTextSplitter
from sqlalchemy import text

from handlers.adapters.embedders.hashing import LexicalHashingEmbedder

COLLECTION = "bench"


class HashingEmbeddings(Embeddings):
    """The project's hashing embedder behind LangChain's `Embeddings` interface."""

    def __init__(self, dimension: int) -> None:
        self._embedder = LexicalHashingEmbedder(dimension)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0]


def main(listing: str, database_url: str, size: int, overlap: int, dimension: int) -> None:
    store = PGVector(
        HashingEmbeddings(dimension),
        connection=database_url.replace("postgresql://", "postgresql+psycopg://", 1),
        embedding_length=dimension,
        collection_name=COLLECTION,
    )
    # PGVector creates its tables without a vector index; a store that answers searches has one.
    with store.session_maker() as session:
        session.execute(text("CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops)"))
        session.commit()
    splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap)
    for name in json.loads(Path(listing).read_text()):
        loader = PyPDFLoader(name) if name.endswith(".pdf") else TextLoader(name, encoding="utf-8")
        store.add_documents(splitter.split_documents(loader.load()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
