"""BM25 ranking of chunks inside PostgreSQL, with statistics kept per sealed segment (migration 0008).

Okapi BM25 (Robertson et al.) scores a chunk, for each query lexeme t it holds tf times, by
    idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / average length))
with idf(t) = ln(1 + (N - n + 0.5) / (n + 0.5)) (Lucene's form, never negative), N chunks of which n
hold t, k1 = 1.2 and b = 0.75; a lexeme the query holds twice counts twice. Lexemes and lengths are
those of the chunk's `tsv` (`to_tsvector('english', text)`: stemmed, stop words dropped); a chunk's
length, `chunks.lexemes`, is its number of lexeme occurrences.

Statistics, the way Lucene keeps them per segment: a sealed segment (`chunks_segment_N`) only ever
loses rows, so `refresh_statistics` counts its document frequencies once with `ts_stat` into
`lexical_segment_terms` (and its chunks and lexemes into `lexical_segments`); a chunk deleted from a
counted segment is appended to `lexical_removed` by a row trigger in the deleting transaction and
subtracted at query time. Nothing is updated in place, so concurrent writers never wait on a shared
statistics row. The growing and live areas, and any segment not counted yet (just sealed or merged),
are counted exactly at query time through their GIN indexes: the statistics are exact at every moment,
whatever compaction, replacement, deletion or re-embedding did; `refresh_statistics` only makes the
counting cheaper, and recounts a segment once many of its rows were deleted.

Candidates: a query's lexemes are taken rarest first while their document frequencies, the next
one's included, add up to at most the budget (`CANDIDATE_BUDGET` chunks unless the caller gives
another; the rarest lexeme always), the chunks that hold any of them are found through GIN, and each
is scored with every query lexeme. Rare lexemes carry most of BM25's weight, so a chunk that holds
none of them rarely ranks high; the cost is bounded by the budget, not by the query's length, nor by
a common lexeme that comes next in line. A candidate is scored on the query's lexemes alone: its
`tsv` is cut down to them (`setweight` marks them, `ts_filter` keeps the marked) before its lexemes
are unnested, rather than unnesting all of them (about a hundred per chunk) to join a few. This
needs every lexeme of a chunk's `tsv` to carry positions, as `to_tsvector` gives them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

K1 = 1.2
B = 0.75
CANDIDATE_BUDGET = 4000
# A counted segment is counted again once this share of its rows was deleted since.
RECOUNT_FRACTION = 0.1
SEGMENT_PREFIX = "chunks_segment_"

# Partitions of `chunks` by segment number, and whether their statistics are counted.
AREAS_QUERY = """
SELECT area.segment, counted.segment IS NOT NULL
FROM (SELECT (regexp_match(pg_get_expr(class.relpartbound, class.oid), '\\((\\d+)\\)'))[1]::int AS segment,
             class.relname
      FROM pg_inherits AS link JOIN pg_class AS class ON class.oid = link.inhrelid
      WHERE link.inhparent = 'chunks'::regclass) AS area
LEFT JOIN lexical_segments AS counted
  ON counted.segment = area.segment AND area.relname = 'chunks_segment_' || counted.segment
ORDER BY area.segment
"""

# The query's statistics: document frequency and idf per lexeme, N and the average length.
# %(counted)s: segments whose statistics are counted; %(live)s: the others, counted here exactly.
STATISTICS_CTES = """
terms AS MATERIALIZED (
    SELECT term.lexeme, coalesce(array_length(term.positions, 1), 1)::float8 AS weight,
           quote_literal(term.lexeme)::tsquery AS match
    FROM unnest(to_tsvector('english', %(query)s)) AS term
),
totals AS MATERIALIZED (
    SELECT greatest(counted.chunks - removed.chunks + live.chunks, 1)::float8 AS chunks,
           greatest(counted.lexemes - removed.lexemes + live.lexemes, 1)::float8
             / greatest(counted.chunks - removed.chunks + live.chunks, 1) AS average_length
    FROM (SELECT coalesce(sum(chunks), 0) AS chunks, coalesce(sum(lexemes), 0) AS lexemes
          FROM lexical_segments WHERE segment = ANY(%(counted)s)) AS counted,
         (SELECT count(*) AS chunks, coalesce(sum(lexemes), 0) AS lexemes
          FROM lexical_removed WHERE segment = ANY(%(counted)s)) AS removed,
         (SELECT count(*) AS chunks, coalesce(sum(lexemes), 0) AS lexemes
          FROM chunks WHERE segment = ANY(%(live)s)) AS live
),
frequencies AS MATERIALIZED (
    SELECT term.lexeme, term.weight, term.match,
           (SELECT coalesce(sum(stat.chunks), 0) FROM lexical_segment_terms AS stat
            WHERE stat.lexeme = term.lexeme AND stat.segment = ANY(%(counted)s))
         - (SELECT count(*) FROM lexical_removed AS gone
            WHERE gone.tsv @@ term.match AND gone.segment = ANY(%(counted)s))
         + (SELECT count(*) FROM chunks AS live
            WHERE live.tsv @@ term.match AND live.segment = ANY(%(live)s)) AS chunks
    FROM terms AS term
),
statistics AS MATERIALIZED (
    SELECT chosen.lexeme, chosen.weight, chosen.match, chosen.chunks, chosen.idf,
           sum(chosen.chunks) OVER (ORDER BY chosen.chunks, chosen.lexeme
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS rarer_chunks
    FROM (SELECT frequency.lexeme, frequency.weight, frequency.match, frequency.chunks,
                 ln(1 + (totals.chunks - frequency.chunks + 0.5) / (frequency.chunks + 0.5)) AS idf
          FROM frequencies AS frequency, totals
          WHERE frequency.chunks > 0
          -- %(query_terms)s: the query's most distinctive lexemes only (weight times idf); NULL: all.
          ORDER BY frequency.weight * ln(1 + (totals.chunks - frequency.chunks + 0.5) / (frequency.chunks + 0.5))
                   DESC, frequency.lexeme
          LIMIT %(query_terms)s) AS chosen
)"""

# After STATISTICS_CTES: `candidates` (chunks holding one of the rarest lexemes, within the document
# filter: %(all_documents)s, %(key_pattern)s, %(content_type)s as in the search module) and `by_bm25`
# (id, score, rank), the best %(bm25_limit)s of them. Hybrid search can use `by_bm25` as its text ranking.
RANKING_CTES = """
candidates AS MATERIALIZED (
    -- held: the candidate's occurrences of the query's lexemes (a lexeme marked A before is kept too,
    -- and dropped by the join with the statistics below).
    SELECT chunk.id, chunk.lexemes,
           ts_filter(setweight(chunk.tsv, 'A', (SELECT array_agg(lexeme) FROM statistics)), '{a}') AS held
    FROM chunks AS chunk
    WHERE chunk.tsv @@ (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery FROM statistics
                        WHERE rarer_chunks IS NULL OR rarer_chunks + chunks <= %(budget)s)
      AND (%(all_documents)s OR chunk.document_id IN (
           SELECT id FROM documents WHERE key LIKE %(key_pattern)s
           AND (%(content_type)s::text IS NULL OR content_type = %(content_type)s)))
),
by_bm25 AS (
    SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM (SELECT occurrence.id,
                 sum(stat.weight * stat.idf * occurrence.tf * (%(k1)s + 1)
                     / (occurrence.tf
                        + %(k1)s * (1 - %(b)s + %(b)s * occurrence.lexemes / totals.average_length)))::float8 AS score
          -- unnest in the select list: one pass over the candidates, no function scan per candidate.
          FROM (SELECT id, lexemes, (term).lexeme, coalesce(array_length((term).positions, 1), 1) AS tf
                FROM (SELECT id, lexemes, unnest(held) AS term FROM candidates) AS flat) AS occurrence
          CROSS JOIN totals
          JOIN statistics AS stat ON stat.lexeme = occurrence.lexeme
          GROUP BY occurrence.id
          ORDER BY score DESC, occurrence.id
          LIMIT %(bm25_limit)s) AS scored
)"""

# The best %(bm25_limit)s chunks by BM25, best first: id and score. Constant SQL pieces joined;
# every value is a bound parameter.
BM25_QUERY = "WITH" + STATISTICS_CTES + "," + RANKING_CTES + "\nSELECT id, score FROM by_bm25 ORDER BY rank"


TERM_STATISTICS_QUERY = (
    "WITH"
    + STATISTICS_CTES
    + "\nSELECT stat.lexeme, stat.chunks, stat.idf, totals.chunks, totals.average_length"
    + " FROM statistics AS stat, totals"
)


@dataclass(frozen=True, slots=True)
class LexicalHit:
    chunk_id: int
    score: float


@dataclass(frozen=True, slots=True)
class TermStatistics:
    """What BM25 knows about a query: chunks N, their average length, and per lexeme (n, idf)."""

    chunks: float
    average_length: float
    lexemes: dict[str, tuple[int, float]]


@dataclass(frozen=True, slots=True)
class RefreshReport:
    counted: tuple[int, ...]
    dropped: tuple[int, ...]


def areas(conn: psycopg.Connection[Any]) -> tuple[list[int], list[int]]:
    """(counted, live): the segment numbers of `chunks`' partitions with and without counted statistics."""
    counted: list[int] = []
    live: list[int] = []
    for segment, is_counted in conn.execute(AREAS_QUERY).fetchall():
        (counted if is_counted else live).append(int(segment))
    return counted, live


def bm25_params(
    conn: psycopg.Connection[Any],
    query: str,
    *,
    limit: int,
    budget: int = CANDIDATE_BUDGET,
    key_prefix: str = "",
    content_type: str | None = None,
    query_terms: int | None = None,
) -> dict[str, object]:
    """The parameters of `BM25_QUERY` (and of `STATISTICS_CTES`); one catalog round trip.

    `query_terms`: rank with the query's `query_terms` most distinctive lexemes only (the most
    occurrences in the query times idf), as "more like this" queries do; None: every lexeme.
    """
    counted, live = areas(conn)
    escaped = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {
        "query": query,
        "counted": counted,
        "live": live,
        "budget": budget,
        "bm25_limit": limit,
        "k1": K1,
        "b": B,
        "all_documents": not key_prefix and content_type is None,
        "key_pattern": escaped + "%",
        "content_type": content_type,
        "query_terms": query_terms,
    }


def rank(
    conn: psycopg.Connection[Any],
    query: str,
    *,
    limit: int = 10,
    budget: int = CANDIDATE_BUDGET,
    key_prefix: str = "",
    content_type: str | None = None,
    query_terms: int | None = None,
) -> list[LexicalHit]:
    """The best `limit` chunks for `query` by BM25, best first (ties by chunk id); `query_terms` as in `bm25_params`."""
    params = bm25_params(
        conn,
        query,
        limit=limit,
        budget=budget,
        key_prefix=key_prefix,
        content_type=content_type,
        query_terms=query_terms,
    )
    return [LexicalHit(int(chunk_id), float(score)) for chunk_id, score in conn.execute(BM25_QUERY, params)]


def term_statistics(conn: psycopg.Connection[Any], query: str) -> TermStatistics:
    """The statistics BM25 uses for `query`'s lexemes (those held by no chunk are left out)."""
    rows = conn.execute(TERM_STATISTICS_QUERY, bm25_params(conn, query, limit=0)).fetchall()
    if not rows:
        counted, live = areas(conn)
        [(chunks, average)] = conn.execute(
            "WITH" + STATISTICS_CTES + "\nSELECT chunks, average_length FROM totals",
            {"query": "", "counted": counted, "live": live, "query_terms": None},
        ).fetchall()
        return TermStatistics(float(chunks), float(average), {})
    return TermStatistics(
        float(rows[0][3]), float(rows[0][4]), {str(lexeme): (int(n), float(idf)) for lexeme, n, idf, _, _ in rows}
    )


def refresh_statistics(conn: psycopg.Connection[Any], *, recount_fraction: float = RECOUNT_FRACTION) -> RefreshReport:
    """Count the statistics of sealed segments not counted yet, or that lost many rows; forget dropped ones.

    Safe at any time and concurrently with writers and searches (the compaction lock keeps two runs
    apart): each segment is counted in its own REPEATABLE READ transaction, which also removes the
    deletions its snapshot already sees, so a deletion is either in the count or subtracted, never
    both. `conn` must be in autocommit mode. Meant to run after each compaction.
    """
    if not conn.autocommit:
        raise ValueError("refreshing lexical statistics needs a connection in autocommit mode")
    from psycopg import sql

    sealed = {
        int(name.removeprefix(SEGMENT_PREFIX))
        for (name,) in conn.execute(
            "SELECT class.relname FROM pg_inherits AS link JOIN pg_class AS class ON class.oid = link.inhrelid"
            " WHERE link.inhparent = 'chunks'::regclass"
        ).fetchall()
        if re.fullmatch(rf"{SEGMENT_PREFIX}\d+", str(name))
    }
    known = {
        int(segment): (int(chunks), int(removed))
        for segment, chunks, removed in conn.execute(
            "SELECT segment, chunks, (SELECT count(*) FROM lexical_removed AS gone"
            " WHERE gone.segment = counted.segment) FROM lexical_segments AS counted"
        ).fetchall()
    }
    dropped = tuple(sorted(set(known) - sealed))
    if dropped:
        with conn.transaction():
            for table in ("lexical_segments", "lexical_segment_terms", "lexical_removed"):
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE segment = ANY(%s)").format(sql.Identifier(table)), (list(dropped),)
                )
    counted: list[int] = []
    for segment in sorted(sealed):
        chunks, removed = known.get(segment, (0, 0))
        if segment in known and removed <= recount_fraction * max(chunks, 1):
            continue
        _count_segment(conn, segment)
        counted.append(segment)
    return RefreshReport(tuple(counted), dropped)


def _count_segment(conn: psycopg.Connection[Any], segment: int) -> None:
    from psycopg import sql

    table = sql.Identifier(f"{SEGMENT_PREFIX}{segment}")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("DELETE FROM lexical_segment_terms WHERE segment = %s", (segment,))
        conn.execute("DELETE FROM lexical_segments WHERE segment = %s", (segment,))
        conn.execute("DELETE FROM lexical_removed WHERE segment = %s", (segment,))
        conn.execute(
            "INSERT INTO lexical_segment_terms (lexeme, segment, chunks) SELECT word, %s, ndoc FROM ts_stat(%s)",
            (segment, sql.SQL("SELECT tsv FROM {}").format(table).as_string(conn)),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO lexical_segments (segment, chunks, lexemes)"
                " SELECT %s, count(*), coalesce(sum(lexemes), 0) FROM {}"
            ).format(table),
            (segment,),
        )
