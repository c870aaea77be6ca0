"""Public test collections with human relevance judgements, vendored compactly under bench/collections/<name>/.

Each collection is three gzip'd files (`docs.jsonl.gz`: {"id", "text"}; `queries.jsonl.gz`: {"id",
"text"}; `qrels.tsv.gz`: query id, document id) converted from the collection's original SMART-format
files (`.I` id, `.T` title, `.W` text lines) by `convert`, with a SOURCES.md each. SHA256SUMS lists
the digests of the vendored files and of the original files they were made from; `verify` checks the
vendored ones (run this module to check them: `python -m bench.ir_collections`).

A document's text is its title and its abstract (`.T` and `.W`; many CACM records have only a
title), as the SMART experiments indexed them; a query's text is its `.W` field. Queries without a
single relevant document are left out, as is usual for these collections.

    python -m bench.ir_collections                              # verify the digests
    python -m bench.ir_collections --convert cacm RAW_DIR       # rebuild from cacm.all, query.text, qrels.text
    python -m bench.ir_collections --convert cisi RAW_DIR       # rebuild from CISI.ALL, CISI.QRY, CISI.REL
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent / "collections"
DIGESTS = ROOT / "SHA256SUMS"
NAMES = ("cacm", "cisi")
FILES = ("docs.jsonl.gz", "queries.jsonl.gz", "qrels.tsv.gz")
# The original files of each collection: documents, queries, judgements.
RAW_FILES = {"cacm": ("cacm.all", "query.text", "qrels.text"), "cisi": ("CISI.ALL", "CISI.QRY", "CISI.REL")}
_FIELD = re.compile(r"^\.([A-Z])(?:\s+(\S+))?\s*$")


@dataclass(frozen=True)
class Collection:
    name: str
    docs: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, frozenset[str]]


def load(name: str, root: Path = ROOT) -> Collection:
    """The collection `name` as vendored (documents, judged queries, and their relevant documents)."""
    if name not in NAMES:
        raise ValueError(f"unknown collection {name!r}; one of {', '.join(NAMES)}")
    folder = root / name
    docs = {row["id"]: row["text"] for row in _read_jsonl(folder / "docs.jsonl.gz")}
    queries = {row["id"]: row["text"] for row in _read_jsonl(folder / "queries.jsonl.gz")}
    qrels: dict[str, set[str]] = {}
    with gzip.open(folder / "qrels.tsv.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            query_id, doc_id = line.split()
            qrels.setdefault(query_id, set()).add(doc_id)
    return Collection(name, docs, queries, {query: frozenset(found) for query, found in qrels.items()})


def verify(root: Path = ROOT) -> list[str]:
    """The vendored files whose sha256 differs from SHA256SUMS (empty when all match)."""
    wrong: list[str] = []
    for line in (root / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        if name.startswith("original/"):
            continue
        path = root / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            wrong.append(name)
    return wrong


def parse_smart(text: str) -> dict[str, dict[str, str]]:
    """Records of a SMART-format file: id -> field letter -> the field's text (lines joined by spaces)."""
    records: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    field = ""
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match and match.group(1) == "I":
            current = records.setdefault(str(int(match.group(2))), {})
            field = ""
        elif match:
            field = match.group(1)
            current.setdefault(field, [])
        elif field:
            current[field].append(line.strip())
    return {
        record_id: {name: " ".join(part for part in lines if part) for name, lines in fields.items()}
        for record_id, fields in records.items()
    }


def convert(name: str, raw: Path, root: Path = ROOT) -> None:
    """Write the vendored files of `name` from its original files in `raw`, and record all digests."""
    docs_file, queries_file, qrels_file = (raw / file for file in RAW_FILES[name])
    docs = parse_smart(docs_file.read_text(encoding="latin-1"))
    queries = parse_smart(queries_file.read_text(encoding="latin-1"))
    pairs = sorted(
        {(str(int(fields[0])), str(int(fields[1]))) for fields in map(str.split, qrels_file.read_text().splitlines())},
        key=lambda pair: (int(pair[0]), int(pair[1])),
    )
    judged = {query for query, _ in pairs}
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    _write_jsonl(
        folder / "docs.jsonl.gz",
        [{"id": doc_id, "text": _join(fields.get("T", ""), fields.get("W", ""))} for doc_id, fields in docs.items()],
    )
    _write_jsonl(
        folder / "queries.jsonl.gz",
        [{"id": query_id, "text": fields.get("W", "")} for query_id, fields in queries.items() if query_id in judged],
    )
    with gzip.GzipFile(folder / "qrels.tsv.gz", "wb", mtime=0) as out:
        out.write("".join(f"{query}\t{doc}\n" for query, doc in pairs).encode())
    digests = dict(
        line.split(maxsplit=1)[::-1] for line in (DIGESTS.read_text().splitlines() if DIGESTS.exists() else [])
    )
    for file in FILES:
        digests[f"{name}/{file}"] = hashlib.sha256((folder / file).read_bytes()).hexdigest()
    for file in RAW_FILES[name]:
        digests[f"original/{name}/{file}"] = hashlib.sha256((raw / file).read_bytes()).hexdigest()
    DIGESTS.write_text("".join(f"{digest}  {path}\n" for path, digest in sorted(digests.items())))


def _join(title: str, body: str) -> str:
    return f"{title}\n\n{body}".strip()


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    # mtime 0: the same rows give the same bytes, so the digests are reproducible.
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--convert", nargs=2, metavar=("NAME", "RAW_DIR"), help="rebuild a collection from its originals"
    )
    args = parser.parse_args()
    if args.convert:
        convert(args.convert[0], Path(args.convert[1]))
    wrong = verify()
    if wrong:
        raise SystemExit(f"sha256 mismatch: {', '.join(wrong)}")
    print(f"all vendored files match {DIGESTS}")


if __name__ == "__main__":
    main()
