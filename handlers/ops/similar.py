"""`similar` edges: each document's nearest documents by BM25 "more like this", linked in bulk off the ingest path.

Signal. A document's neighbours are the documents that BM25 (`handlers.ops.lexical`, inside
PostgreSQL) ranks highest for the document's own text used as the query: the opening
`QUERY_CHARS` characters of its chunks; the candidates come from its rarest lexemes (lexical's
candidate budget), every lexeme of the query scores them. A document scores as its best chunk. On
the CACM and CISI collections this ranks neighbours relevant to a common query far better than the
documents' vectors (bench/graph_quality.py; docs/graph.md has the figures).

Weight. The neighbour's BM25 score divided by the document's score for its own text: the share of
its self-match that the neighbour reaches, in (0, 1] (1: as good a match as the document itself).
It compares across documents and collections, unlike a raw BM25 score.

Floor. Of the `top_k` best, those whose weight is at least `relative_floor` times the best
neighbour's and at least `min_weight` are kept: a document whose best match is weak still gets it,
while a long tail of far weaker matches is cut.

Symmetry and ownership. The relation is stored both ways, with the same weight, owned by the
document whose list chose the pair; a pair another document's list chose already keeps its owner
and takes the new weight. Relinking a document removes the pairs it owned; the partners it dropped
are queued again, so a pair their own list still wants comes back at their turn.

When. The ingest transaction only appends to `similar_pending` (the document, and the former
neighbours of a replaced, failed or deleted one); `link_pending` computes the lists of the queued
documents, and of every document whose list was computed when the store held at most half of the
documents it holds now (the doubling rule: O(log N) recomputations per document), one document per
transaction under the document's lock. Compaction runs it after its other steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers.adapters.locks import lock_document
from handlers.adapters.rows import scalar
from handlers.ops import lexical

if TYPE_CHECKING:
    import psycopg

    from handlers.settings import Settings

# The document's text used as its query: the opening characters of its chunks. The cost of one
# document's ranking is bounded by this and by lexical's candidate budget, not by the document's size.
QUERY_CHARS = 4000
# Chunks ranked per document: enough to find top_k other documents when the document's own chunks
# and several chunks of one neighbour rank high.
RANKED_CHUNKS_PER_NEIGHBOUR = 8


@dataclass(frozen=True, slots=True)
class SimilarOptions:
    """How many neighbours a document keeps and the floor under their weight (see the module docstring)."""

    top_k: int = 5
    relative_floor: float = 0.5
    min_weight: float = 0.1
    batch: int = 200

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not (0.0 <= self.relative_floor <= 1.0 and 0.0 <= self.min_weight <= 1.0):
            raise ValueError("relative_floor and min_weight must be in 0..1")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")


@dataclass(frozen=True, slots=True)
class LinkReport:
    """What one linking pass did: documents whose lists were computed, edges pairs written, seconds."""

    documents: int = 0
    pairs: int = 0
    seconds: float = 0.0


# The documents' best chunk scores for the query (STATISTICS_CTES and RANKING_CTES of lexical).
_DOCUMENT_SCORES = (
    "WITH"
    + lexical.STATISTICS_CTES
    + ","
    + lexical.RANKING_CTES
    + "\nSELECT chunk.document_id, max(ranked.score) AS score FROM by_bm25 AS ranked"
    + " JOIN chunks AS chunk ON chunk.id = ranked.id GROUP BY chunk.document_id ORDER BY score DESC, chunk.document_id"
)

_INSERT_PAIRS = """
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight)
SELECT %(id)s, 'document', source_id, 'similar', 'document', target_id, weight
FROM (
    SELECT %(id)s::bigint AS source_id, neighbour AS target_id, weight
    FROM unnest(%(neighbours)s::bigint[], %(weights)s::real[]) AS chosen(neighbour, weight)
    UNION ALL
    SELECT neighbour, %(id)s::bigint, weight
    FROM unnest(%(neighbours)s::bigint[], %(weights)s::real[]) AS chosen(neighbour, weight)
) AS pairs
WHERE EXISTS (SELECT 1 FROM documents WHERE id = pairs.target_id AND status = 'ready')
  AND EXISTS (SELECT 1 FROM documents WHERE id = pairs.source_id AND status = 'ready')
ORDER BY source_id, target_id
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id) DO UPDATE SET weight = EXCLUDED.weight
"""

_LINKABLE = "SELECT count(*) FROM documents WHERE status = 'ready' AND chunk_count > 0"

_DUE = """
(SELECT document_id FROM similar_pending WHERE document_id <> ALL(%(done)s::bigint[])
 GROUP BY document_id ORDER BY document_id LIMIT %(batch)s)
UNION
(SELECT document_id FROM similar_lists WHERE linked_among * 2 <= %(linkable)s
   AND document_id <> ALL(%(done)s::bigint[])
 ORDER BY linked_among, document_id LIMIT %(batch)s)
"""


def choose_neighbours(
    scores: list[tuple[int, float]], document_id: int, options: SimilarOptions
) -> list[tuple[int, float]]:
    """(neighbour, weight) for the document from its ranking (document, BM25 score), best first.

    Weight: the score over the document's own score (the best score when the document itself was
    not ranked); kept within the floor, at most `top_k`.
    """
    own = next((score for document, score in scores if document == document_id), None)
    others = [(document, score) for document, score in scores if document != document_id and score > 0]
    if not others:
        return []
    scale = own if own and own > 0 else others[0][1]
    weighted = [(document, min(1.0, score / scale)) for document, score in others[: options.top_k]]
    floor = max(options.min_weight, options.relative_floor * weighted[0][1])
    return [(document, weight) for document, weight in weighted if weight >= floor]


def rank_neighbours(
    conn: psycopg.Connection[Any], document_id: int, options: SimilarOptions
) -> list[tuple[int, float]]:
    """The document's chosen neighbours with their weights (nothing is written)."""
    row = conn.execute(
        "SELECT left(string_agg(text, ' ' ORDER BY ordinal), %s), count(*) FROM chunks WHERE document_id = %s",
        (QUERY_CHARS, document_id),
    ).fetchone()
    if row is None or not row[0] or options.top_k == 0:
        return []
    text, own_chunks = str(row[0]), int(row[1])
    limit = min(own_chunks, RANKED_CHUNKS_PER_NEIGHBOUR) + RANKED_CHUNKS_PER_NEIGHBOUR * options.top_k
    scores = [
        (int(document), float(score))
        for document, score in conn.execute(_DOCUMENT_SCORES, lexical.bm25_params(conn, text, limit=limit))
    ]
    return choose_neighbours(scores, document_id, options)


def relink(conn: psycopg.Connection[Any], document_id: int, options: SimilarOptions, *, linkable: int) -> int:
    """Recompute the document's `similar` pairs inside the caller's transaction; returns the pairs written.

    The caller holds the document's lock. Partners of pairs it owned and no longer chooses are queued.
    """
    previous = {
        int(target)
        for (target,) in conn.execute(
            "DELETE FROM edges WHERE owner_document_id = %s AND relation = 'similar' AND source_id = %s"
            " RETURNING target_id",
            (document_id, document_id),
        )
    }
    conn.execute("DELETE FROM edges WHERE owner_document_id = %s AND relation = 'similar'", (document_id,))
    chosen = rank_neighbours(conn, document_id, options)
    if chosen:
        conn.execute(
            _INSERT_PAIRS,
            {"id": document_id, "neighbours": [n for n, _ in chosen], "weights": [w for _, w in chosen]},
        )
    dropped = sorted(previous - {neighbour for neighbour, _ in chosen})
    if dropped:
        conn.execute("INSERT INTO similar_pending (document_id) SELECT unnest(%s::bigint[])", (dropped,))
    conn.execute(
        "INSERT INTO similar_lists (document_id, linked_among) VALUES (%s, %s)"
        " ON CONFLICT (document_id) DO UPDATE SET linked_among = EXCLUDED.linked_among, linked_at = now()",
        (document_id, linkable),
    )
    return len(chosen)


def relink_similar(conn: psycopg.Connection[Any], document_id: int, *, options: SimilarOptions) -> int:
    """`relink` for one document, counting the linkable documents itself (the caller holds the lock)."""
    return relink(conn, document_id, options, linkable=int(scalar(conn, _LINKABLE) or 0))


def similar_options(settings: Settings) -> SimilarOptions:
    return SimilarOptions(
        top_k=settings.similar_top_k,
        relative_floor=settings.similar_relative_floor,
        min_weight=settings.similar_min_weight,
    )


def link_pending(conn: psycopg.Connection[Any], options: SimilarOptions | None = None) -> LinkReport:
    """Compute the `similar` lists of the queued documents and of those due by the doubling rule.

    One transaction per document, under the document's lock (so an ingestion of it waits for at
    most one document's ranking). A document queued again while the pass runs (by an ingestion
    that committed after its turn) is left for the next pass. `conn` must be in autocommit mode.
    """
    if not conn.autocommit:
        raise ValueError("linking needs a connection in autocommit mode")
    options = options or SimilarOptions()
    started = time.perf_counter()
    done: list[int] = []
    pairs = 0
    linkable = int(scalar(conn, _LINKABLE) or 0)
    while True:
        due = [
            int(document)
            for (document,) in conn.execute(
                _DUE, {"done": done, "batch": options.batch, "linkable": linkable}
            ).fetchall()
        ]
        if not due:
            break
        for document_id in due:
            pairs += _link_one(conn, document_id, options, linkable)
            done.append(document_id)
    return LinkReport(len(done), pairs, round(time.perf_counter() - started, 3))


def _link_one(conn: psycopg.Connection[Any], document_id: int, options: SimilarOptions, linkable: int) -> int:
    with conn.transaction():
        row = conn.execute("SELECT bucket, key FROM documents WHERE id = %s", (document_id,)).fetchone()
        if row is not None:
            lock_document(conn, str(row[0]), str(row[1]))
        # After the lock: a queue entry committed by an ingestion of this document is seen and removed here.
        conn.execute("DELETE FROM similar_pending WHERE document_id = %s", (document_id,))
        ready = conn.execute(
            "SELECT chunk_count > 0 FROM documents WHERE id = %s AND status = 'ready'", (document_id,)
        ).fetchone()
        if ready is None or not ready[0]:
            conn.execute("DELETE FROM similar_lists WHERE document_id = %s", (document_id,))
            return 0
        return relink(conn, document_id, options, linkable=linkable)
