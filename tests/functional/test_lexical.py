"""BM25 inside PostgreSQL (handlers.ops.lexical) on the real segmented store.

Documents go through `PostgresRepository` (the handler's write path); the statistics are checked
against a count over every chunk a reader sees, after each write and compaction step, and the
scores against rank_bm25 on the very lexemes PostgreSQL produced.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from pgvector.psycopg import register_vector
from rank_bm25 import BM25Okapi

from handlers.adapters.migrate import StoreConfig, migrate
from handlers.ops import lexical
from handlers.ops.compaction import CompactOptions, compact
from tests.functional.store_writer import StoreWriter

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

MODEL = "test-vectors"
DIMENSION = 4

TEXTS = {
    "bread": ["Sourdough bread needs a starter fed with flour and water.", "Bake the loaf in a hot oven."],
    "starter": ["Feed the starter twice a day; a starter that bubbles is ready to bake bread."],
    "tax": ["Income tax returns are due in April.", "A tax refund arrives after the return is processed."],
    "oven": ["An oven thermometer shows the real temperature of the oven."],
    "rivers": ["Rivers carry water and sediment to the sea.", "Floods follow heavy rain upstream."],
    "flour": ["Whole wheat flour absorbs more water than white flour."],
}


class Writer(StoreWriter):
    def __init__(self, url: str) -> None:
        super().__init__(url, MODEL)

    def put(self, key: str, texts: Sequence[str]) -> None:
        vectors = [[1.0, float(ordinal), float(self.sequence + 1), 0.5] for ordinal in range(len(texts))]
        self.put_chunks(key, texts, vectors)


@pytest.fixture
def store_url(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        migrate(conn, StoreConfig(MODEL, DIMENSION))
    return database_url


@pytest.fixture
def conn(store_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(store_url, autocommit=True) as connection:
        register_vector(connection)
        yield connection


@pytest.fixture
def writer(store_url: str) -> Iterator[Writer]:
    writer = Writer(store_url)
    yield writer
    writer.close()


def _store_all(writer: Writer, texts: dict[str, list[str]] = TEXTS, prefix: str = "") -> None:
    for name, chunks in texts.items():
        writer.put(f"uploads/{prefix}{name}.txt", chunks)


def _truth(conn: psycopg.Connection[Any], query: str) -> lexical.TermStatistics:
    """The statistics counted over every chunk a reader sees, the slow way."""
    [(chunks, total)] = conn.execute("SELECT count(*), coalesce(sum(lexical_length(tsv)), 0) FROM chunks").fetchall()
    frequencies = dict(conn.execute("SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')").fetchall())
    lexemes = [row[0] for row in conn.execute("SELECT unnest(tsvector_to_array(to_tsvector('english', %s)))", (query,))]
    n_chunks = max(int(chunks), 1)
    return lexical.TermStatistics(
        float(n_chunks),
        float(max(int(total), 1)) / n_chunks,
        {
            lexeme: (
                int(frequencies[lexeme]),
                math.log(1 + (n_chunks - frequencies[lexeme] + 0.5) / (frequencies[lexeme] + 0.5)),
            )
            for lexeme in lexemes
            if lexeme in frequencies
        },
    )


def _assert_exact(conn: psycopg.Connection[Any], query: str) -> None:
    got, want = lexical.term_statistics(conn, query), _truth(conn, query)
    assert got.chunks == want.chunks
    assert got.average_length == pytest.approx(want.average_length, rel=1e-12)
    assert got.lexemes.keys() == want.lexemes.keys()
    for lexeme, (n, idf) in want.lexemes.items():
        assert got.lexemes[lexeme][0] == n, lexeme
        assert got.lexemes[lexeme][1] == pytest.approx(idf, rel=1e-12)


QUERY = "how do I feed a sourdough starter with flour and water before I bake bread in the oven; tax rivers"


class LuceneIdfBM25(BM25Okapi):  # type: ignore[misc]  # rank_bm25 ships no type information
    """rank_bm25's Okapi BM25 with Lucene's idf, ln(1 + (N - n + 0.5) / (n + 0.5)), as the store uses."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        self.idf = {word: math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5)) for word, freq in nd.items()}


def _tokens(conn: psycopg.Connection[Any]) -> dict[int, list[str]]:
    """Each chunk's lexemes, repeated as often as they occur: BM25's view of the chunk."""
    tokens: dict[int, list[str]] = {}
    for chunk_id, lexeme, count in conn.execute(
        "SELECT chunk.id, term.lexeme, coalesce(array_length(term.positions, 1), 1)"
        " FROM chunks AS chunk, unnest(chunk.tsv) AS term ORDER BY 1, 2"
    ):
        tokens.setdefault(int(chunk_id), []).extend([str(lexeme)] * int(count))
    for (chunk_id,) in conn.execute("SELECT id FROM chunks"):
        tokens.setdefault(int(chunk_id), [])
    return tokens


def test_bm25_scores_equal_rank_bm25_on_the_same_lexemes(conn, writer):
    _store_all(writer)
    compact(conn, CompactOptions(force_seal=True))
    writer.put("uploads/late.txt", ["A late note on bread and water, water and bread."])  # stays in the growing area
    lexical.refresh_statistics(conn)
    tokens = _tokens(conn)
    ids = sorted(tokens)
    reference = LuceneIdfBM25([tokens[chunk_id] for chunk_id in ids], k1=lexical.K1, b=lexical.B)
    query_tokens = [
        str(lexeme)
        for lexeme, count in conn.execute(
            "SELECT lexeme, coalesce(array_length(positions, 1), 1) FROM unnest(to_tsvector('english', %s))", (QUERY,)
        )
        for _ in range(int(count))
    ]
    expected = dict(zip(ids, reference.get_scores(query_tokens), strict=True))
    hits = lexical.rank(conn, QUERY, limit=100, budget=10**9)
    assert hits, "the query shares lexemes with the documents"
    assert {hit.chunk_id for hit in hits} == {chunk_id for chunk_id, score in expected.items() if score > 0}
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.chunk_id], rel=1e-9)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_statistics_stay_exact_through_seal_delete_replace_and_merge(conn, writer):
    _store_all(writer, prefix="a-")
    _assert_exact(conn, QUERY)  # all in the growing area
    compact(conn, CompactOptions(force_seal=True))
    assert conn.execute("SELECT count(*) FROM lexical_segments").fetchone() == (1,)  # compaction counted it
    _assert_exact(conn, QUERY)  # counted by ts_stat
    conn.execute("DELETE FROM lexical_segment_terms")  # as if compaction had stopped before counting
    conn.execute("DELETE FROM lexical_segments")
    _assert_exact(conn, QUERY)  # sealed, not counted yet: counted live
    report = lexical.refresh_statistics(conn)
    assert len(report.counted) == 1
    _assert_exact(conn, QUERY)
    writer.delete("uploads/a-tax.txt")  # from the counted segment: subtracted
    writer.put("uploads/a-bread.txt", ["Rye bread needs no starter at all."])  # replaced: old chunks subtracted
    _assert_exact(conn, QUERY)
    assert conn.execute("SELECT count(*) FROM lexical_removed").fetchone() == (4,)
    _store_all(writer, prefix="b-")
    compact(conn, CompactOptions(force_seal=True))
    lexical.refresh_statistics(conn)
    writer.delete("uploads/b-rivers.txt")
    _assert_exact(conn, QUERY)
    compact(conn, CompactOptions(merge_all=True))  # the counted segments are dropped, the merged one counted
    _assert_exact(conn, QUERY)
    assert lexical.refresh_statistics(conn) == lexical.RefreshReport((), ())
    assert conn.execute("SELECT count(*) FROM lexical_segments").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM lexical_removed").fetchone() == (0,)
    _assert_exact(conn, QUERY)
    writer.delete("uploads/b-flour.txt")
    _assert_exact(conn, QUERY)


def test_a_segment_that_lost_many_rows_is_counted_again(conn, writer):
    _store_all(writer)
    compact(conn, CompactOptions(force_seal=True))
    first = lexical.refresh_statistics(conn)
    assert first.counted == ()  # compaction counted the sealed segment
    first = lexical.RefreshReport(
        tuple(segment for (segment,) in conn.execute("SELECT segment FROM lexical_segments")), ()
    )
    assert lexical.refresh_statistics(conn).counted == ()  # nothing changed: nothing counted
    writer.delete("uploads/tax.txt")
    writer.delete("uploads/rivers.txt")
    again = lexical.refresh_statistics(conn)
    assert again.counted == first.counted
    assert conn.execute("SELECT count(*) FROM lexical_removed").fetchone() == (0,)
    _assert_exact(conn, QUERY)


def test_a_small_candidate_budget_keeps_the_exact_scores_of_what_it_finds(conn, writer):
    _store_all(writer)
    everything = {hit.chunk_id: hit.score for hit in lexical.rank(conn, QUERY, limit=100, budget=10**9)}
    narrow = lexical.rank(conn, QUERY, limit=100, budget=1)
    assert 0 < len(narrow) < len(everything)
    for hit in narrow:
        assert hit.score == pytest.approx(everything[hit.chunk_id], rel=1e-12)


def test_the_key_prefix_filter_and_a_query_of_stop_words(conn, writer):
    _store_all(writer, prefix="one/")
    _store_all(writer, prefix="two/")
    keys = dict(
        conn.execute(
            "SELECT chunk.id, document.key FROM chunks AS chunk"
            " JOIN documents AS document ON document.id = chunk.document_id"
        ).fetchall()
    )
    hits = lexical.rank(conn, "bread", limit=10, key_prefix="uploads/two/")
    assert hits
    assert all(keys[hit.chunk_id].startswith("uploads/two/") for hit in hits)
    assert lexical.rank(conn, "how is the of and", limit=10) == []


# The ranking as it was first written: each candidate scored by unnesting its whole tsvector and
# joining every lexeme with the query's statistics. The store scores only the query's lexemes of
# each candidate; both must give the same scores.
REFERENCE_RANKING_CTES = """
candidates AS MATERIALIZED (
    SELECT chunk.id, chunk.tsv, chunk.lexemes
    FROM chunks AS chunk
    WHERE chunk.tsv @@ (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery FROM statistics)
),
by_bm25 AS (
    SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM (SELECT candidate.id,
                 sum(stat.weight * stat.idf * occurrences.tf * (%(k1)s + 1)
                     / (occurrences.tf
                        + %(k1)s * (1 - %(b)s + %(b)s * candidate.lexemes / totals.average_length)))::float8 AS score
          FROM candidates AS candidate
          CROSS JOIN totals
          CROSS JOIN LATERAL (SELECT term.lexeme, coalesce(array_length(term.positions, 1), 1) AS tf
                              FROM unnest(candidate.tsv) AS term) AS occurrences
          JOIN statistics AS stat ON stat.lexeme = occurrences.lexeme
          GROUP BY candidate.id
          ORDER BY score DESC, candidate.id
          LIMIT %(bm25_limit)s) AS scored
)"""
REFERENCE_QUERY = (
    "WITH" + lexical.STATISTICS_CTES + "," + REFERENCE_RANKING_CTES + "\nSELECT id, score FROM by_bm25 ORDER BY rank"
)


def test_scoring_only_the_query_lexemes_gives_the_scores_of_the_whole_tsvector(conn, writer):
    _store_all(writer, prefix="a-")
    compact(conn, CompactOptions(force_seal=True))
    _store_all(writer, prefix="b-")
    writer.delete("uploads/a-tax.txt")
    writer.put("uploads/a-bread.txt", ["Rye bread needs no starter at all; bread, bread and more bread."])
    # Weights other than the default D on some lexemes: the scoring must not depend on them.
    conn.execute("UPDATE chunks SET tsv = setweight(tsv, 'B', ARRAY['oven', 'water']) WHERE text LIKE '%%oven%%'")
    for query in (QUERY, "bread", "water water flour rivers tax oven starter"):
        params = lexical.bm25_params(conn, query, limit=1000, budget=10**9)
        want = conn.execute(REFERENCE_QUERY, params).fetchall()
        got = [(hit.chunk_id, hit.score) for hit in lexical.rank(conn, query, limit=1000, budget=10**9)]
        assert want, query
        assert got == want, query


@pytest.mark.parametrize("budget", [1, 2, 3, 4, 5, 6, 10**9])
def test_the_budget_takes_the_rarest_lexemes_while_their_frequencies_add_up_to_it(conn, writer, budget):
    _store_all(writer)
    compact(conn, CompactOptions(force_seal=True))
    _store_all(writer, prefix="late-")  # half the chunks counted live in the growing area
    query = "oven water bread starter flour tax"
    frequencies = lexical.term_statistics(conn, query).lexemes
    rarest_first = sorted(frequencies, key=lambda lexeme: (frequencies[lexeme][0], lexeme))
    chosen = rarest_first[:1]
    for lexeme in rarest_first[1:]:
        if sum(frequencies[taken][0] for taken in chosen) + frequencies[lexeme][0] > budget:
            break
        chosen.append(lexeme)
    holders = {
        int(chunk_id)
        for (chunk_id,) in conn.execute(
            "SELECT id FROM chunks WHERE tsv @@ to_tsquery('simple', %s)", (" | ".join(chosen),)
        )
    }
    found = {hit.chunk_id for hit in lexical.rank(conn, query, limit=1000, budget=budget)}
    assert found == holders
    assert len(holders) <= max(budget, frequencies[rarest_first[0]][0])


@pytest.mark.parametrize("query_terms", [1, 2, 4])
def test_a_query_cut_to_its_most_distinctive_lexemes_ranks_as_those_lexemes_alone(conn, writer, query_terms):
    _store_all(writer)
    compact(conn, CompactOptions(force_seal=True))
    _store_all(writer, prefix="late-")
    query = "water water water flour flour oven tax rivers bread"
    statistics = lexical.term_statistics(conn, query).lexemes
    weights = {"water": 3, "flour": 2, "oven": 1, "tax": 1, "river": 1, "bread": 1}
    assert statistics.keys() == weights.keys()
    distinctive = sorted(weights, key=lambda lexeme: (-weights[lexeme] * statistics[lexeme][1], lexeme))
    alone = " ".join(" ".join([lexeme] * weights[lexeme]) for lexeme in distinctive[:query_terms])

    cut = lexical.rank(conn, query, limit=1000, budget=10**9, query_terms=query_terms)

    assert cut == lexical.rank(conn, alone, limit=1000, budget=10**9)
    assert cut != lexical.rank(conn, query, limit=1000, budget=10**9)
