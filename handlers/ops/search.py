"""Search over chunks: pgvector nearest neighbours, optionally fused with PostgreSQL full-text ranking.

Hybrid search fuses two rankings by weighted reciprocal rank fusion (Cormack et al., 2009): a chunk
scores the sum over the rankings it appears in of weight / (k + rank), with k = 60 and both weights
1 (`VECTOR_WEIGHT`, `TEXT_WEIGHT`). Ranks, not raw scores, are combined, so cosine similarity and
`ts_rank_cd` need no common scale. The best possible score is (1 + 1) / 61 ≈ 0.0328: first in both.

The full-text side matches any of the query's words, not all of them: the words are joined with
`or` and parsed by `websearch_to_tsquery` with the `english` configuration, which stems them and
drops stop words ("how do I feed a starter" looks for feed | starter). Matches are ranked BM25-style
by the sum of the inverse document frequencies of the query terms they hold, idf = ln(1 + (N - n +
0.5) / (n + 0.5)) with N chunks (the planner's estimate, or a count up to a cap before the first
ANALYZE) of which n hold the term (counted up to a cap), so a rare
term outweighs common ones; ties go to `ts_rank_cd` (cover density: query terms closer together
rank higher), normalised by the chunk's length.

`ef_search` (100) is the exploration budget of a vector search. One HNSW index spends it all; a
segmented store (handlers.ops.compaction) searches each of its k indexed segments with
`hnsw.ef_search` = limit + ef_search / k, the way Lucene's optimistic per-segment collection shares
a query's k among its segments: each segment can return the query's rows on top of its share of the
budget. A segment's graph is smaller than one index over every row, so its share finds as much:
recall stays at least that of one index over the same rows, and the work, hence the latency, stays
close to it instead of growing with the number of segments (bench/search_latency.py measures both).
An HNSW scan yields at most ef_search rows (pgvector 0.6 has no iterative scan); the budget is never
below the hybrid candidate list, so the segments' shares together always cover it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from handlers.ports import Embedder

RRF_K = 60
VECTOR_WEIGHT = 1.0
TEXT_WEIGHT = 1.0
# ts_rank_cd normalisation 1: divide by 1 + log(document length).
TEXT_RANK_NORMALIZATION = 1
# Document frequencies are counted up to this many chunks (and the store up to ten times as many):
# a term in more chunks than that is common anyway, and the count stays cheap in a large store.
FREQUENCY_CAP = 10_000
CANDIDATES = 50
EF_SEARCH = 100
SNIPPET_CHARS = 200

# The partitions of `chunks` that hold rows and an HNSW index, by the planner's row estimate:
# compaction analyses every segment it seals or merges, and a partition not analysed yet (-1) is
# left out, which only gives the others a larger share. One catalog lookup in the statement that
# sets the scan's ef_search, so it costs no extra round trip. pgvector accepts at most 1000.
_SET_EF_SEARCH = """
SELECT set_config('hnsw.ef_search', least(1000, ceil(%s::float8 / greatest(1, (
    SELECT count(DISTINCT area.oid) FROM pg_inherits AS link
    JOIN pg_class AS area ON area.oid = link.inhrelid
    JOIN pg_index AS index ON index.indrelid = area.oid AND index.indisvalid
    JOIN pg_class AS index_class ON index_class.oid = index.indexrelid
    JOIN pg_am AS method ON method.oid = index_class.relam AND method.amname = 'hnsw'
    WHERE link.inhparent = 'chunks'::regclass AND area.reltuples > 0))) + %s)::int::text, true)
"""

# Documents a search is limited to: a key prefix (LIKE with the pattern escaped) and a content type.
_DOCUMENT_FILTER = "key LIKE %(key_pattern)s AND (%(content_type)s::text IS NULL OR content_type = %(content_type)s)"

# The nearest chunks first, by id and distance alone, so that an exact scan (no usable index)
# sorts narrow rows; their text and document are fetched for the few that are kept.
VECTOR_QUERY = """
SELECT chunk.id, document.bucket, document.key, chunk.page, chunk.text, 1 - nearest.distance AS score,
       NULL::bigint AS vector_rank, NULL::bigint AS text_rank
FROM (SELECT id, embedding <=> %(vector)s AS distance FROM chunks
      WHERE %(all_documents)s OR document_id IN (SELECT id FROM documents WHERE {DOCUMENT_FILTER})
      ORDER BY embedding <=> %(vector)s LIMIT %(limit)s) AS nearest
JOIN chunks AS chunk ON chunk.id = nearest.id
JOIN documents AS document ON document.id = chunk.document_id
ORDER BY nearest.distance, chunk.id
""".replace("{DOCUMENT_FILTER}", _DOCUMENT_FILTER)

HYBRID_QUERY = """
WITH by_vector AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank
    FROM (SELECT id, embedding <=> %(vector)s AS distance FROM chunks
          WHERE %(all_documents)s OR document_id IN (SELECT id FROM documents WHERE {DOCUMENT_FILTER})
          ORDER BY embedding <=> %(vector)s LIMIT %(candidates)s) AS nearest
),
terms AS MATERIALIZED (
    SELECT query, ln(1 + (total.chunks - hits.chunks + 0.5) / (hits.chunks + 0.5)) AS idf
    FROM (SELECT DISTINCT to_tsquery('simple', quote_literal(lexeme)) AS query
          FROM unnest(tsvector_to_array(to_tsvector('english', %(raw_text)s))) AS lexeme) AS term
    CROSS JOIN LATERAL (SELECT count(*)::float8 AS chunks FROM (
        SELECT 1 FROM chunks WHERE tsv @@ term.query LIMIT %(frequency_cap)s) AS found) AS hits
    CROSS JOIN (SELECT CASE WHEN estimate.reltuples > 0 THEN estimate.reltuples::float8
                            ELSE (SELECT greatest(count(*), 1)::float8 FROM (
                                  SELECT 1 FROM chunks LIMIT %(frequency_cap)s * 10) AS sampled) END AS chunks
                FROM pg_class AS estimate WHERE estimate.oid = 'chunks'::regclass) AS total
),
by_text AS (
    SELECT id, row_number() OVER (ORDER BY text_score DESC, cover DESC, id) AS rank
    FROM (SELECT chunk.id, (SELECT sum(term.idf) FROM terms AS term WHERE chunk.tsv @@ term.query) AS text_score,
                 ts_rank_cd(chunk.tsv, query, %(normalization)s) AS cover
          FROM chunks AS chunk, websearch_to_tsquery('english', %(text)s) AS query
          WHERE chunk.tsv @@ query
            AND (%(all_documents)s OR chunk.document_id IN (SELECT id FROM documents WHERE {DOCUMENT_FILTER}))
          ORDER BY text_score DESC, cover DESC, chunk.id LIMIT %(candidates)s) AS matches
),
fused AS (
    SELECT id, sum(weight / (%(rrf_k)s + rank)) AS score, min(vector_rank) AS vector_rank,
           min(text_rank) AS text_rank
    FROM (SELECT id, rank, %(vector_weight)s::float8 AS weight, rank AS vector_rank, NULL::bigint AS text_rank
          FROM by_vector
          UNION ALL
          SELECT id, rank, %(text_weight)s::float8, NULL, rank FROM by_text) AS ranked
    GROUP BY id
)
SELECT chunk.id, document.bucket, document.key, chunk.page, chunk.text, fused.score::float8,
       fused.vector_rank, fused.text_rank
FROM fused
JOIN chunks AS chunk ON chunk.id = fused.id
JOIN documents AS document ON document.id = chunk.document_id
ORDER BY fused.score DESC, chunk.id
LIMIT %(limit)s
""".replace("{DOCUMENT_FILTER}", _DOCUMENT_FILTER)

_TERM = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One chunk found: where it is, a snippet, and its score (cosine similarity, or the RRF sum).

    In hybrid search the ranks (1-based) the chunk had in each ranking, None where it was not a
    candidate, and the two terms of the fused score (`score` = `vector_part` + `text_part`; a ranking
    the chunk was no candidate of adds 0).
    """

    chunk_id: int
    bucket: str
    key: str
    page: int
    score: float
    snippet: str
    vector_rank: int | None = None
    text_rank: int | None = None
    vector_part: float | None = None
    text_part: float | None = None


def score_formula(*, hybrid: bool) -> str:
    """How a hit's score is made, in words, for a reader of `filequeue search --explain`."""
    if not hybrid:
        return "score = cosine similarity of the query and chunk vectors"
    return f"score = {VECTOR_WEIGHT:g}/({RRF_K} + vector rank) + {TEXT_WEIGHT:g}/({RRF_K} + text rank)"


def _rrf_term(weight: float, rank: int | None) -> float:
    return weight / (RRF_K + rank) if rank else 0.0


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Limits a search to documents whose key starts with `key_prefix` and of one content type."""

    key_prefix: str = ""
    content_type: str | None = None

    @property
    def everything(self) -> bool:
        return not self.key_prefix and self.content_type is None


def search(
    conn: psycopg.Connection[Any],
    embedder: Embedder,
    query: str,
    *,
    limit: int = 10,
    hybrid: bool = False,
    where: SearchFilter | None = None,
) -> list[SearchHit]:
    """Embed `query` with the store's embedder and return the best `limit` chunks."""
    [vector] = embedder.embed([query])
    return search_chunks(conn, query, vector, limit=limit, hybrid=hybrid, where=where)


def query_params(
    query: str,
    vector: Sequence[float],
    *,
    limit: int,
    candidates: int = CANDIDATES,
    where: SearchFilter | None = None,
) -> dict[str, object]:
    """The parameters of `VECTOR_QUERY` and `HYBRID_QUERY`."""
    from pgvector import Vector

    where = where or SearchFilter()
    escaped = where.key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {
        "vector": Vector(list(vector)),
        "text": any_term_query(query),
        "raw_text": query,
        "frequency_cap": FREQUENCY_CAP,
        "limit": limit,
        "candidates": max(candidates, limit),
        "rrf_k": RRF_K,
        "vector_weight": VECTOR_WEIGHT,
        "text_weight": TEXT_WEIGHT,
        "normalization": TEXT_RANK_NORMALIZATION,
        "all_documents": where.everything,
        "key_pattern": escaped + "%",
        "content_type": where.content_type,
    }


def any_term_query(query: str) -> str:
    """`query` in `websearch_to_tsquery` syntax matching any of its words (quotes and operators dropped)."""
    return " or ".join(_TERM.findall(query))


def search_chunks(
    conn: psycopg.Connection[Any],
    query: str,
    vector: Sequence[float],
    *,
    limit: int = 10,
    hybrid: bool = False,
    candidates: int = CANDIDATES,
    ef_search: int = EF_SEARCH,
    where: SearchFilter | None = None,
) -> list[SearchHit]:
    """The best `limit` chunks for a query already embedded as `vector`.

    Only ready documents have chunks (a failed document's chunks go in the transaction that marks
    it failed), so no status filter is needed. `conn` must have the pgvector types registered; the
    query runs in its own transaction, so the `hnsw.ef_search` setting stays local to it. With a
    filter, the index scan's candidates are filtered after the scan, so a narrow filter over a large
    store may return fewer than `limit` chunks.
    """
    params = query_params(query, vector, limit=limit, candidates=candidates, where=where)
    with conn.transaction():
        needed = max(limit, candidates) if hybrid else limit
        set_ef_search(conn, max(ef_search, needed), limit)
        rows = conn.execute(HYBRID_QUERY if hybrid else VECTOR_QUERY, params).fetchall()
    return [
        SearchHit(
            chunk_id,
            bucket,
            key,
            page,
            float(score),
            make_snippet(text, query),
            vector_rank,
            text_rank,
            _rrf_term(VECTOR_WEIGHT, vector_rank) if hybrid else None,
            _rrf_term(TEXT_WEIGHT, text_rank) if hybrid else None,
        )
        for chunk_id, bucket, key, page, text, score, vector_rank, text_rank in rows
    ]


def set_ef_search(conn: psycopg.Connection[Any], budget: int, limit: int) -> int:
    """Set `hnsw.ef_search` for the rest of the transaction to each indexed segment's share; returns it."""
    from handlers.adapters.rows import scalar

    return int(scalar(conn, _SET_EF_SEARCH, (budget, limit)))


def make_snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The `width` characters of `text` that hold the most distinct query terms, cut at word boundaries.

    Whitespace runs become one space; an ellipsis marks a cut.
    """
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    terms = {term.casefold() for term in _TERM.findall(query)}
    hits = [(match.start(), match.group(0).casefold()) for match in _TERM.finditer(flat)]
    hits = [(position, term) for position, term in hits if term in terms]
    # The terms go in the last four fifths of the window; the first fifth shows what leads up to them.
    lead = width // 5
    start = _best_window_start(hits, width - lead) - lead if hits else 0
    start = max(0, min(start, len(flat) - width))
    end = start + width
    if start > 0:
        start = _word_start_at_or_after(flat, start)
    if end < len(flat):
        end = _word_end_at_or_before(flat, end)
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(flat) else ""
    return f"{prefix}{flat[start:end]}{suffix}"


def _best_window_start(hits: list[tuple[int, str]], width: int) -> int:
    """Start of the window of `width` that covers the most distinct terms (earliest on ties)."""
    best_start, best_count = hits[0][0], 0
    for index, (start, _) in enumerate(hits):
        covered = {term for position, term in hits[index:] if position < start + width}
        if len(covered) > best_count:
            best_start, best_count = start, len(covered)
    return best_start


def _word_start_at_or_after(text: str, position: int) -> int:
    """`position` if a word starts there, else the start of the next word (if one starts nearby)."""
    if text[position - 1] == " ":
        return position
    space = text.find(" ", position, position + 30)
    return space + 1 if space >= 0 else position


def _word_end_at_or_before(text: str, position: int) -> int:
    """`position` if a word ends there, else the end of the previous word (if one ends nearby)."""
    if text[position] == " ":
        return position
    space = text.rfind(" ", max(0, position - 30), position)
    return space if space > 0 else position
