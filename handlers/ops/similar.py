"""`similar` edges: each document's nearest documents by BM25 "more like this", linked in bulk off the ingest path.

Signal. A document's neighbours are the documents that BM25 (`handlers.ops.lexical`, inside
PostgreSQL) ranks highest for the document's own text used as the query: the opening
`QUERY_CHARS` characters of its chunks, cut to its `QUERY_TERMS` most distinctive lexemes (as
"more like this" queries are); the candidates are the chunks that hold its rarest lexemes, up to
`CANDIDATE_BUDGET` of them, and every chosen lexeme scores them. A document scores as its best chunk. On
the CACM and CISI collections this ranks neighbours relevant to a common query far better than the
documents' vectors (bench/graph_quality.py; docs/graph.md has the figures).

Weight. The neighbour's BM25 score divided by the document's score for its own text: the share of
its self-match that the neighbour reaches, in (0, 1] (1: as good a match as the document itself).
It compares across documents and collections, unlike a raw BM25 score.

Choice. The first `RANKING_DEPTH` documents of that ranking are the candidates; a candidate that
shares many of the document's nearest neighbours (its own ranking, kept in `similar_lists`) moves up
(`SHARED_NEIGHBOUR_BONUS`). Of the `top_k` chosen, those whose weight is at least `relative_floor`
times the best one's and at least `min_weight` are kept: a document whose best match is weak still
gets it, while a long tail of far weaker matches is cut.

Symmetry and ownership. The relation is stored both ways. The edge from the document to a neighbour
it chose is owned by the document and carries its weight; the mirror edge is owned by the document
too, unless the neighbour chose the pair itself (then the neighbour's own edge, owner and weight
stay). So `owner_document_id = source_id` marks a neighbour the source chose itself, and graph reads
list those first. Relinking a document removes the edges it owned, restores the mirrors of the pairs
its neighbours chose, and queues the partners it dropped, so a pair their own list still wants comes
back at their turn.

When. The ingest transaction only appends to `similar_pending` (the document, and the former
neighbours of a replaced, failed or deleted one); `link_pending` ranks and then links the queued
documents and every document whose list was computed when the store held at most half of the
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
    from collections.abc import Mapping, Sequence

    import psycopg

    from handlers.settings import Settings

# The document's text used as its query: the opening characters of its chunks. The cost of one
# document's ranking is bounded by this, QUERY_TERMS and CANDIDATE_BUDGET, not by the document's size.
QUERY_CHARS = 4000
# The query's most distinctive lexemes, those that rank (occurrences in the opening text times idf),
# as Lucene's MoreLikeThis keeps its 25; and the chunks their rarest find as candidates. On the ingest
# benchmark's long files they cut a document's ranking from 140 to 26 ms; on CACM and CISI the first
# five neighbours' co-relevance went from 1.012x and 1.054x the BM25 reference to 1.015x and 1.025x
# (40 terms: 1.009x and 1.016x at 17 ms; 100 terms: 1.020x and 1.037x at 47 ms). docs/graph.md has the figures.
QUERY_TERMS = 60
CANDIDATE_BUDGET = 1000
# Chunks ranked per document: enough to find RANKING_DEPTH other documents when the document's own
# chunks and several chunks of one neighbour rank high.
RANKED_CHUNKS_PER_NEIGHBOUR = 8
# Documents kept in a ranking, the candidates a document's neighbours are chosen from.
RANKING_DEPTH = 20
# The shared-nearest-neighbour bonus: candidates whose own nearest SHARED_DEPTH documents overlap the
# document's are moved up by at most SHARED_NEIGHBOUR_BONUS of weight. Scored with rank_bm25 on CACM and
# CISI, it raised the co-relevance of the first five neighbours by 3 % and 4 % over the BM25 ranking
# alone; docs/graph.md has the benchmark's figures for the whole relation.
SHARED_DEPTH = 10
SHARED_NEIGHBOUR_BONUS = 0.1


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

# The document's own choices (source = the document): they take the document as owner even where the
# neighbour chose the pair first, so each side reads the pairs it chose itself first.
_INSERT_CHOSEN = """
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight)
SELECT %(id)s, 'document', %(id)s, 'similar', 'document', neighbour, weight
FROM unnest(%(neighbours)s::bigint[], %(weights)s::real[]) AS chosen(neighbour, weight)
WHERE EXISTS (SELECT 1 FROM documents WHERE id = chosen.neighbour AND status = 'ready')
  AND EXISTS (SELECT 1 FROM documents WHERE id = %(id)s AND status = 'ready')
ORDER BY neighbour
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id)
DO UPDATE SET weight = EXCLUDED.weight, owner_document_id = EXCLUDED.owner_document_id
"""

# Their mirrors (the relation is symmetric); a neighbour that chose the document itself keeps its own edge.
_INSERT_MIRRORS = """
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight)
SELECT %(id)s, 'document', neighbour, 'similar', 'document', %(id)s, weight
FROM unnest(%(neighbours)s::bigint[], %(weights)s::real[]) AS chosen(neighbour, weight)
WHERE EXISTS (SELECT 1 FROM documents WHERE id = chosen.neighbour AND status = 'ready')
  AND EXISTS (SELECT 1 FROM documents WHERE id = %(id)s AND status = 'ready')
ORDER BY neighbour
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id) DO NOTHING
"""

_RESTORE_MIRRORS = """
INSERT INTO edges (owner_document_id, source_kind, source_id, relation, target_kind, target_id, weight)
SELECT chosen.source_id, 'document', %(id)s, 'similar', 'document', chosen.source_id, chosen.weight
FROM edges AS chosen
WHERE chosen.target_kind = 'document' AND chosen.target_id = %(id)s AND chosen.relation = 'similar'
  AND chosen.source_kind = 'document' AND chosen.owner_document_id = chosen.source_id
ORDER BY chosen.source_id
ON CONFLICT (source_kind, source_id, relation, target_kind, target_id) DO NOTHING
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


@dataclass(frozen=True, slots=True)
class Ranking:
    """A document's other documents by BM25 for its text, best first, with their relative weights."""

    neighbours: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()


def relative_ranking(scores: Sequence[tuple[int, float]], document_id: int, depth: int = RANKING_DEPTH) -> Ranking:
    """The ranking from (document, BM25 score) best first: each score over the document's own score.

    The best neighbour's score is the scale when the document itself was not ranked.
    """
    own = next((score for document, score in scores if document == document_id), None)
    others = [(document, score) for document, score in scores if document != document_id and score > 0][:depth]
    if not others:
        return Ranking()
    scale = own if own and own > 0 else others[0][1]
    return Ranking(tuple(document for document, _ in others), tuple(min(1.0, score / scale) for _, score in others))


def choose_neighbours(
    ranking: Ranking, candidate_rankings: Mapping[int, Sequence[int]], options: SimilarOptions
) -> list[tuple[int, float]]:
    """(neighbour, weight) chosen from the document's ranking, heaviest first.

    The candidates are ordered by their weight plus `SHARED_NEIGHBOUR_BONUS` times the share of the
    document's first `SHARED_DEPTH` neighbours that are among the candidate's own first
    `SHARED_DEPTH` (`candidate_rankings`: a candidate not ranked yet shares none). The first `top_k`
    are kept within the floor.
    """
    if not ranking.neighbours or options.top_k == 0:
        return []
    own_nearest = set(ranking.neighbours[:SHARED_DEPTH])

    def closeness(position: int) -> float:
        theirs = candidate_rankings.get(ranking.neighbours[position], ())[:SHARED_DEPTH]
        shared = len(own_nearest.intersection(theirs)) / SHARED_DEPTH
        return ranking.weights[position] + SHARED_NEIGHBOUR_BONUS * shared

    order = sorted(range(len(ranking.neighbours)), key=lambda position: (-closeness(position), position))
    chosen = sorted(order[: options.top_k], key=lambda position: (-ranking.weights[position], position))
    floor = max(options.min_weight, options.relative_floor * ranking.weights[chosen[0]])
    return [(ranking.neighbours[p], ranking.weights[p]) for p in chosen if ranking.weights[p] >= floor]


def rank_document(conn: psycopg.Connection[Any], document_id: int) -> Ranking:
    """The document's ranking by BM25 for its own text (nothing is written)."""
    row = conn.execute(
        "SELECT left(string_agg(text, ' ' ORDER BY ordinal), %s), count(*) FROM chunks WHERE document_id = %s",
        (QUERY_CHARS, document_id),
    ).fetchone()
    if row is None or not row[0]:
        return Ranking()
    text, own_chunks = str(row[0]), int(row[1])
    limit = min(own_chunks, RANKED_CHUNKS_PER_NEIGHBOUR) + RANKED_CHUNKS_PER_NEIGHBOUR * RANKING_DEPTH
    scores = [
        (int(document), float(score))
        for document, score in conn.execute(
            _DOCUMENT_SCORES,
            lexical.bm25_params(conn, text, limit=limit, budget=CANDIDATE_BUDGET, query_terms=QUERY_TERMS),
        )
    ]
    return relative_ranking(scores, document_id)


def store_ranking(conn: psycopg.Connection[Any], document_id: int, *, linkable: int) -> Ranking:
    """Rank the document and keep the ranking in its `similar_lists` row (the caller holds the lock)."""
    ranking = rank_document(conn, document_id)
    conn.execute(
        "INSERT INTO similar_lists (document_id, linked_among, ranked, weights) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (document_id) DO UPDATE SET linked_among = EXCLUDED.linked_among, linked_at = now(),"
        " ranked = EXCLUDED.ranked, weights = EXCLUDED.weights",
        (document_id, linkable, list(ranking.neighbours), list(ranking.weights)),
    )
    return ranking


def stored_ranking(conn: psycopg.Connection[Any], document_id: int) -> Ranking:
    row = conn.execute("SELECT ranked, weights FROM similar_lists WHERE document_id = %s", (document_id,)).fetchone()
    if row is None:
        return Ranking()
    return Ranking(tuple(int(n) for n in row[0]), tuple(float(w) for w in row[1]))


def candidate_rankings(conn: psycopg.Connection[Any], ranking: Ranking) -> dict[int, list[int]]:
    """The first `SHARED_DEPTH` of each candidate's stored ranking."""
    return {
        int(document): [int(n) for n in ranked]
        for document, ranked in conn.execute(
            "SELECT document_id, ranked[1:%s] FROM similar_lists WHERE document_id = ANY(%s::bigint[])",
            (SHARED_DEPTH, list(ranking.neighbours)),
        )
    }


def write_pairs(conn: psycopg.Connection[Any], document_id: int, options: SimilarOptions) -> int:
    """Replace the `similar` pairs the document chose, from its stored ranking; returns the pairs written.

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
    ranking = stored_ranking(conn, document_id)
    chosen = choose_neighbours(ranking, candidate_rankings(conn, ranking), options)
    if chosen:
        pairs = {"id": document_id, "neighbours": [n for n, _ in chosen], "weights": [w for _, w in chosen]}
        conn.execute(_INSERT_CHOSEN, pairs)
        conn.execute(_INSERT_MIRRORS, pairs)
    # The pairs other documents chose with this one, whose mirror this document owned until now.
    conn.execute(_RESTORE_MIRRORS, {"id": document_id})
    dropped = sorted(previous - {neighbour for neighbour, _ in chosen})
    if dropped:
        conn.execute("INSERT INTO similar_pending (document_id) SELECT unnest(%s::bigint[])", (dropped,))
    return len(chosen)


def relink(conn: psycopg.Connection[Any], document_id: int, options: SimilarOptions, *, linkable: int) -> int:
    """Rank the document and recompute its `similar` pairs inside the caller's transaction (which holds the lock)."""
    store_ranking(conn, document_id, linkable=linkable)
    return write_pairs(conn, document_id, options)


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

    Two rounds: every due document is ranked first, then each one's neighbours are chosen, so a
    choice reads the fresh rankings of its candidates. One transaction per document and round, under
    the document's lock (so an ingestion of it waits for at most one document's ranking). A document
    queued again while the pass runs (by an ingestion that committed after its turn) is left for the
    next pass. `conn` must be in autocommit mode.
    """
    if not conn.autocommit:
        raise ValueError("linking needs a connection in autocommit mode")
    options = options or SimilarOptions()
    started = time.perf_counter()
    done: list[int] = []
    ranked: list[int] = []
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
            if _rank_one(conn, document_id, linkable):
                ranked.append(document_id)
            done.append(document_id)
    pairs = sum(_choose_one(conn, document_id, options) for document_id in ranked)
    return LinkReport(len(done), pairs, round(time.perf_counter() - started, 3))


def _locked_ready(conn: psycopg.Connection[Any], document_id: int) -> bool:
    """Take the document's lock; whether it is ready with chunks (inside the caller's transaction)."""
    row = conn.execute("SELECT bucket, key FROM documents WHERE id = %s", (document_id,)).fetchone()
    if row is not None:
        lock_document(conn, str(row[0]), str(row[1]))
    ready = conn.execute(
        "SELECT chunk_count > 0 FROM documents WHERE id = %s AND status = 'ready'", (document_id,)
    ).fetchone()
    return ready is not None and bool(ready[0])


def _rank_one(conn: psycopg.Connection[Any], document_id: int, linkable: int) -> bool:
    with conn.transaction():
        ready = _locked_ready(conn, document_id)
        # After the lock: a queue entry committed by an ingestion of this document is seen and removed here.
        conn.execute("DELETE FROM similar_pending WHERE document_id = %s", (document_id,))
        if not ready:
            conn.execute("DELETE FROM similar_lists WHERE document_id = %s", (document_id,))
            return False
        store_ranking(conn, document_id, linkable=linkable)
        return True


def _choose_one(conn: psycopg.Connection[Any], document_id: int, options: SimilarOptions) -> int:
    with conn.transaction():
        if not _locked_ready(conn, document_id):
            return 0
        return write_pairs(conn, document_id, options)
