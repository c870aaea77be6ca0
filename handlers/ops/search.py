"""Search over chunks: pgvector nearest neighbours, BM25 inside PostgreSQL, or both fused.

Three modes. `vector`: the chunks nearest the query's vector by cosine similarity. `text`: BM25
(handlers.ops.lexical: Okapi BM25 with exact statistics kept per segment). `hybrid`: both rankings'
candidates (the best `CANDIDATES`, at least `limit`, of each) fused by min-max normalised score
fusion: each side's scores are scaled to [0, 1] by the minimum and maximum over that side's candidates
(a side with a single candidate, or all equal, scales to 1; a chunk that is no candidate of a side
gets 0 there), and

    score = (1 - s) * norm(cosine similarity) + s * norm(BM25 score)

with s the text weight of the store's embedder (`TEXT_WEIGHTS`). A score is therefore in [0, 1] for
every query: 1 is the best candidate on both sides, 0 the weakest on one side and absent from the
other. It says how a chunk compares with the query's other candidates, not how relevant it is in
absolute terms. Text mode scores norm(BM25) (s = 1); vector mode scores the cosine similarity itself.
On the public CACM and CISI collections (bench/retrieval.py), this fusion was at or above BM25 alone
where weighted reciprocal rank fusion was below it for every weight tried; the weights are the best
of that sweep: 0.9 for the lexical hashing embedders, 0.75 for `local`.

Nothing matched: when no candidate holds any of the query's words (after stemming and stop words)
and the nearest chunk's cosine similarity is below the embedder's floor (`SIMILARITY_FLOORS`), the
query returns no hits (`no_match_message` says so), in every mode. The floors sit above the best
similarity any of 50 nonsense queries reached on CACM and CISI (hashing-v2: 0.89, local: 0.58; real
queries' best: 0.22-0.38 and 0.50-0.83). The rule is the query's, not each chunk's: a paraphrase
that shares no word with its answers keeps its whole ranking once its nearest chunk is that close.
Embedders not calibrated here have no floor.

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
from typing import TYPE_CHECKING, Any, Literal

from handlers.ops import lexical

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from handlers.ports import Embedder

SearchMode = Literal["vector", "hybrid", "text"]
SEARCH_MODES: tuple[SearchMode, ...] = ("vector", "hybrid", "text")
CANDIDATES = 50
# BM25's candidate budget in hybrid search (handlers.ops.lexical: chunks holding the query's rarest
# lexemes, up to this many by document frequency): smaller than text search's, since the vector side
# brings its own candidates; BM25's cost grows with it (bench/search_latency.py).
HYBRID_CANDIDATE_BUDGET = 1000
EF_SEARCH = 100
SNIPPET_CHARS = 200
# Text weight s of hybrid search by embedder model family (the model name's prefix); others: DEFAULT.
TEXT_WEIGHTS = {"hashing": 0.9, "model2vec:": 0.7}
DEFAULT_TEXT_WEIGHT = 0.5
# The best cosine similarity a query needs when no candidate holds any of its words, by model family
# (others: none): below it the query matched nothing. A query-level rule, so that a paraphrase that
# shares no word with its answers keeps its whole ranking once its nearest chunk is close enough.
SIMILARITY_FLOORS = {"hashing": 0.9, "model2vec:": 0.6}

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

# Whether a chunk holds any of the query's lexemes (NULL when the query has none: no match).
_HOLDS_A_QUERY_WORD = """coalesce(chunk.tsv @@ (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery
    FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) AS lexeme), false)"""

# The nearest chunks first, by id and distance alone, so that an exact scan (no usable index)
# sorts narrow rows; their text and document are fetched for the few that are kept.
VECTOR_QUERY = """
SELECT id, bucket, key, page, text, score, vector_rank, text_rank, similarity, bm25, vector_norm, text_norm,
       ocr_confidence
FROM (SELECT chunk.id, document.bucket, document.key, chunk.page, chunk.text, 1 - nearest.distance AS score,
             chunk.ocr_confidence,
             NULL::bigint AS vector_rank, NULL::bigint AS text_rank, 1 - nearest.distance AS similarity,
             NULL::float8 AS bm25, NULL::float8 AS vector_norm, NULL::float8 AS text_norm, nearest.distance,
             bool_or({HOLDS}) OVER () AS query_matched, max(1 - nearest.distance) OVER () AS best_similarity
      FROM (SELECT id, embedding <=> %(vector)s AS distance FROM chunks
            WHERE %(all_documents)s OR document_id IN (SELECT id FROM documents WHERE {DOCUMENT_FILTER})
            ORDER BY embedding <=> %(vector)s LIMIT %(limit)s) AS nearest
      JOIN chunks AS chunk ON chunk.id = nearest.id
      JOIN documents AS document ON document.id = chunk.document_id) AS hit
WHERE query_matched OR best_similarity >= %(similarity_floor)s
ORDER BY distance, id
""".replace("{DOCUMENT_FILTER}", _DOCUMENT_FILTER).replace("{HOLDS}", _HOLDS_A_QUERY_WORD)

_BY_VECTOR = """
by_vector AS (
    SELECT id, 1 - distance AS similarity, row_number() OVER (ORDER BY distance, id) AS rank
    FROM (SELECT id, embedding <=> %(vector)s AS distance FROM chunks
          WHERE %(all_documents)s OR document_id IN (SELECT id FROM documents WHERE {DOCUMENT_FILTER})
          ORDER BY embedding <=> %(vector)s LIMIT %(candidates)s) AS nearest
)""".replace("{DOCUMENT_FILTER}", _DOCUMENT_FILTER)

# Each side scaled to [0, 1] over its candidates (all equal, or one: 1); absent from a side: 0 there.
_FUSED_SELECT = """
SELECT chunk.id, document.bucket, document.key, chunk.page, chunk.text,
       ((1 - %(text_weight)s) * fused.vector_norm + %(text_weight)s * fused.text_norm)::float8 AS score,
       fused.vector_rank, fused.text_rank, fused.similarity, fused.bm25, fused.vector_norm, fused.text_norm,
       chunk.ocr_confidence
FROM (SELECT coalesce(by_vector.id, by_text.id) AS id, by_vector.rank AS vector_rank, by_text.rank AS text_rank,
             by_vector.similarity, by_text.score AS bm25,
             CASE WHEN by_vector.id IS NULL THEN 0
                  WHEN vector_range.high > vector_range.low
                  THEN (by_vector.similarity - vector_range.low) / (vector_range.high - vector_range.low)
                  ELSE 1 END::float8 AS vector_norm,
             CASE WHEN by_text.id IS NULL THEN 0
                  WHEN text_range.high > text_range.low
                  THEN (by_text.score - text_range.low) / (text_range.high - text_range.low)
                  ELSE 1 END::float8 AS text_norm
      FROM by_vector FULL JOIN by_text ON by_text.id = by_vector.id
      CROSS JOIN (SELECT min(similarity) AS low, max(similarity) AS high FROM by_vector) AS vector_range
      CROSS JOIN (SELECT min(score) AS low, max(score) AS high FROM by_text) AS text_range) AS fused
JOIN chunks AS chunk ON chunk.id = fused.id
JOIN documents AS document ON document.id = chunk.document_id
WHERE EXISTS (SELECT FROM by_text) OR (SELECT max(similarity) FROM by_vector) >= %(similarity_floor)s
ORDER BY score DESC, chunk.id
LIMIT %(limit)s
"""

_BY_TEXT = ",\nby_text AS (SELECT id, score, rank FROM by_bm25)"

# Vector and BM25 candidates fused by min-max normalised score fusion (the module docstring).
HYBRID_QUERY = (
    "WITH" + _BY_VECTOR + "," + lexical.STATISTICS_CTES + "," + lexical.RANKING_CTES + _BY_TEXT + _FUSED_SELECT
)

# BM25 alone, through the same scaling with no vector candidates (text weight 1).
TEXT_QUERY = (
    "WITH"
    + "\nby_vector AS (SELECT NULL::bigint AS id, NULL::float8 AS similarity, NULL::bigint AS rank WHERE false),"
    + lexical.STATISTICS_CTES
    + ","
    + lexical.RANKING_CTES
    + _BY_TEXT
    + _FUSED_SELECT
)

_TERM = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One chunk found: where it is, a snippet, and its score (the module docstring says what it means).

    `similarity` is the cosine similarity (None in text mode or when no vector candidate), `bm25` the
    BM25 score (None when no BM25 candidate). In hybrid and text search: the ranks (1-based) the chunk
    had among each side's candidates, None where it was none, and the two terms of the fused score
    (`score` = `vector_part` + `text_part`). `ocr_confidence` is set when the chunk's text was read by OCR:
    Tesseract's mean word confidence (0-100) on its page.
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
    similarity: float | None = None
    bm25: float | None = None
    ocr_confidence: float | None = None

    @property
    def origin(self) -> str:
        """`ocr` for text read from an image, `text` otherwise."""
        return "text" if self.ocr_confidence is None else "ocr"


@dataclass(frozen=True, slots=True)
class Tuning:
    """Per-embedder constants of search: hybrid's text weight and the similarity floor (None: no floor)."""

    text_weight: float
    similarity_floor: float | None


def tuning_for(model: str, text_weight: float | None = None) -> Tuning:
    """The tuning of an embedder model (`Embedder.model`), the text weight overridable."""
    family = next((prefix for prefix in TEXT_WEIGHTS if model.startswith(prefix)), None)
    weight = text_weight if text_weight is not None else TEXT_WEIGHTS.get(family or "", DEFAULT_TEXT_WEIGHT)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the text weight must be in 0..1, got {weight}")
    return Tuning(weight, SIMILARITY_FLOORS.get(family or ""))


def score_formula(mode: SearchMode, tuning: Tuning) -> str:
    """How a hit's score is made, in words, for a reader of `filequeue search --explain`."""
    if mode == "vector":
        return "score = cosine similarity of the query and chunk vectors"
    scaled = "norm = scaled to 0..1 over the query's candidates on that side (0 when not one)"
    if mode == "text":
        return f"score = norm(BM25); {scaled}"
    vector_weight = 1 - tuning.text_weight
    return f"score = {vector_weight:.2f} * norm(cosine) + {tuning.text_weight:.2f} * norm(BM25); {scaled}"


def no_match_message(mode: SearchMode, tuning: Tuning) -> str:
    """The sentence shown when a search returned nothing."""
    if tuning.similarity_floor is None:
        return "no match: no chunk holds a word of the query" + (" or is near it" if mode != "text" else "")
    if mode == "text":
        return "no match: no chunk holds a word of the query"
    return (
        "no match: no chunk holds a word of the query, and none is similar enough"
        f" (cosine similarity below {tuning.similarity_floor:g}, this embedder's floor)"
    )


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
    mode: SearchMode = "vector",
    where: SearchFilter | None = None,
    text_weight: float | None = None,
) -> list[SearchHit]:
    """Embed `query` with the store's embedder (not in text mode) and return the best `limit` chunks."""
    [vector] = embedder.embed([query]) if mode != "text" else [[0.0]]
    tuning = tuning_for(embedder.model, text_weight)
    return search_chunks(conn, query, vector, limit=limit, mode=mode, where=where, tuning=tuning)


def query_params(
    query: str,
    vector: Sequence[float],
    *,
    limit: int,
    candidates: int = CANDIDATES,
    where: SearchFilter | None = None,
    tuning: Tuning | None = None,
) -> dict[str, object]:
    """The parameters of `VECTOR_QUERY`, except those of `lexical.bm25_params`."""
    from pgvector import Vector

    where = where or SearchFilter()
    tuning = tuning or tuning_for("")
    escaped = where.key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {
        "vector": Vector(list(vector)),
        "query": query,
        "limit": limit,
        "candidates": max(candidates, limit),
        "text_weight": tuning.text_weight,
        # No floor: every similarity (at least -1) passes.
        "similarity_floor": tuning.similarity_floor if tuning.similarity_floor is not None else -2.0,
        "all_documents": where.everything,
        "key_pattern": escaped + "%",
        "content_type": where.content_type,
    }


def search_chunks(
    conn: psycopg.Connection[Any],
    query: str,
    vector: Sequence[float],
    *,
    limit: int = 10,
    mode: SearchMode = "vector",
    candidates: int = CANDIDATES,
    ef_search: int = EF_SEARCH,
    where: SearchFilter | None = None,
    tuning: Tuning | None = None,
) -> list[SearchHit]:
    """The best `limit` chunks for a query already embedded as `vector` (ignored in text mode).

    Only ready documents have chunks (a failed document's chunks go in the transaction that marks
    it failed), so no status filter is needed. `conn` must have the pgvector types registered; the
    query runs in its own transaction, so the `hnsw.ef_search` setting stays local to it. With a
    filter, the index scan's candidates are filtered after the scan, so a narrow filter over a large
    store may return fewer than `limit` chunks; so may the similarity floor.
    """
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}; expected one of {', '.join(SEARCH_MODES)}")
    where = where or SearchFilter()
    tuning = tuning or tuning_for("")
    weight = 1.0 if mode == "text" else tuning.text_weight
    params = query_params(query, vector, limit=limit, candidates=candidates, where=where, tuning=tuning)
    params["text_weight"] = weight
    with conn.transaction():
        if mode != "vector":
            params |= lexical.bm25_params(
                conn,
                query,
                limit=max(candidates, limit),
                budget=HYBRID_CANDIDATE_BUDGET if mode == "hybrid" else lexical.CANDIDATE_BUDGET,
                key_prefix=where.key_prefix,
                content_type=where.content_type,
            )
        if mode != "text":
            set_ef_search(conn, max(ef_search, max(limit, candidates) if mode == "hybrid" else limit), limit)
        statement = {"vector": VECTOR_QUERY, "hybrid": HYBRID_QUERY, "text": TEXT_QUERY}[mode]
        rows = conn.execute(statement, params).fetchall()
    fused = mode != "vector"
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
            (1 - weight) * vector_norm if fused else None,
            weight * text_norm if fused else None,
            None if similarity is None else float(similarity),
            None if bm25 is None else float(bm25),
            None if ocr_confidence is None else float(ocr_confidence),
        )
        for (
            chunk_id,
            bucket,
            key,
            page,
            text,
            score,
            vector_rank,
            text_rank,
            similarity,
            bm25,
            vector_norm,
            text_norm,
            ocr_confidence,
        ) in rows
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
