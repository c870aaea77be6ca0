"""Search on the real PostgreSQL: vector, BM25 (text) and hybrid (min-max score fusion) search, the CLI."""

from __future__ import annotations

import json

import psycopg
import pytest
from pgvector.psycopg import register_vector

from handlers.adapters.embedders.hashing import LexicalHashingEmbedder
from handlers.cli import main
from handlers.ops import search as search_module
from handlers.ops.search import SEARCH_MODES, make_snippet, search
from tests.functional.ingest_helpers import Uploads, pdf

EMBEDDER = LexicalHashingEmbedder(256)
RARE = "zyxquorblat"
QUERY = f"quarterly revenue report {RARE}"


@pytest.fixture
def conn(handler_env):
    with psycopg.connect(handler_env, autocommit=True) as connection:
        register_vector(connection)
        yield connection


def test_vector_search_returns_key_page_snippet_and_score(s3, handler_env, conn):
    Uploads(s3).put(
        {
            "uploads/tracemonkey.pdf": pdf("pdfjs-tracemonkey-14-pages-two-column.pdf"),
            "uploads/bitcoin.pdf": pdf("pdfjs-issue13201-bitcoin-paper.pdf"),
        }
    )
    hits = search(conn, EMBEDDER, "proof-of-work chain of timestamp server", limit=5)
    assert len(hits) == 5
    assert hits[0].key == "uploads/bitcoin.pdf"
    assert hits[0].page == 1
    assert "proof-of-work" in hits[0].snippet
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(-1.0 <= hit.score <= 1.0 for hit in hits)

    trace_hits = search(conn, EMBEDDER, "trace trees type specialization loops", limit=3)
    assert {hit.key for hit in trace_hits} == {"uploads/tracemonkey.pdf"}
    assert all(1 <= hit.page <= 14 for hit in trace_hits)


def _revenue_and_garden(s3) -> None:
    """Thirty short revenue reports, and one long gardening note that mentions the rare term.

    A revenue report holds three of the query's four words, repeated, and nothing else, so its
    vector is close to the query's. The gardening note holds the four words once among some two
    hundred others, so thirty reports rank above it by vector. By text, every document matches
    some of the words, but only the note holds the rare one, whose inverse document frequency
    outweighs the three common words together: full-text ranking puts it first.
    """
    reports = {
        f"uploads/reports/q{number}.md": (
            f"# Quarterly revenue report {number}\n\n" + "The quarterly revenue report for the region. " * 3
        ).encode()
        for number in range(30)
    }
    garden = (
        "# Garden diary\n\n"
        "Tomatoes need deep watering twice a week and a stake before the first truss sets. Basil grows "
        "best beside them, pinched back often so that it bushes out instead of flowering. Compost the "
        "spent leaves, turn the heap every fortnight, and mulch the beds with straw against slugs and "
        f"drought. The {RARE} cultivar came from a seed swap; its quarterly revenue report is a joke "
        "among the allotment holders. Beans climb the hazel poles, courgettes sprawl over the path, and "
        "the rhubarb forces itself under an old bucket in March."
    ).encode()
    Uploads(s3).put({**reports, "uploads/garden.md": garden})


def test_hybrid_search_ranks_a_rare_term_first_by_text_and_fuses_both_ranks(s3, handler_env, conn):
    _revenue_and_garden(s3)

    by_vector = [hit.key for hit in search(conn, EMBEDDER, QUERY, limit=31)]
    assert by_vector.index("uploads/garden.md") == 30  # after all thirty reports

    hybrid = search(conn, EMBEDDER, QUERY, limit=31, mode="hybrid")
    [garden] = [hit for hit in hybrid if hit.key == "uploads/garden.md"]
    assert (garden.text_rank, garden.vector_rank) == (1, 31)
    assert RARE in garden.snippet
    # Best by BM25 (scaled to 1), last by vector (scaled to 0): score = 0.9 * 1 + 0.1 * 0.
    assert (garden.text_part, garden.vector_part, garden.score) == pytest.approx((0.9, 0.0, 0.9))
    assert hybrid[0].key == "uploads/garden.md"
    best_vector = min(hybrid, key=lambda hit: hit.vector_rank or 99)
    assert best_vector.vector_part == pytest.approx(0.1)
    for hit in hybrid:
        assert hit.score == pytest.approx((hit.vector_part or 0.0) + (hit.text_part or 0.0))
        assert 0.0 <= hit.score <= 1.0
    assert [hit.score for hit in hybrid] == sorted((hit.score for hit in hybrid), reverse=True)

    [text_only] = search(conn, EMBEDDER, RARE, limit=5, mode="text")
    assert (text_only.key, text_only.score, text_only.similarity) == ("uploads/garden.md", 1.0, None)
    assert text_only.bm25 is not None
    assert text_only.bm25 > 0


def test_hybrid_search_gives_bm25_a_candidate_budget_of_its_own(s3, handler_env, conn, monkeypatch):
    _revenue_and_garden(s3)
    # Only the note holds the rare word; every document holds the three others.
    monkeypatch.setattr(search_module, "HYBRID_CANDIDATE_BUDGET", 1)
    hybrid = search(conn, EMBEDDER, QUERY, limit=31, mode="hybrid")
    assert [hit.key for hit in hybrid if hit.text_rank is not None] == ["uploads/garden.md"]
    assert len(search(conn, EMBEDDER, QUERY, limit=31, mode="text")) == 31  # text search: its own budget
    monkeypatch.setattr(search_module, "HYBRID_CANDIDATE_BUDGET", 1000)
    hybrid = search(conn, EMBEDDER, QUERY, limit=31, mode="hybrid")
    assert sum(hit.text_rank is not None for hit in hybrid) == 31


def test_a_question_matches_on_any_stemmed_content_word_not_on_all_words(s3, handler_env, conn):
    Uploads(s3).put(
        {
            "uploads/bread.md": b"# Bread\n\nFeeding the sourdough starter: flour and water every day.\n",
            "uploads/compiler.md": b"# JIT\n\nHow do I compile a loop? The tracing compiler records it.\n",
        }
    )
    hits = search(conn, EMBEDDER, "how do I feed a sourdough starter", limit=2, mode="hybrid")
    assert hits[0].key == "uploads/bread.md"
    assert hits[0].text_rank == 1
    # The words the compiler note shares with the question are stop words: no text match at all.
    assert [hit.text_rank for hit in hits if hit.key == "uploads/compiler.md"] in ([], [None])


def test_search_filters_by_prefix_content_type_and_minimum_score(s3, handler_env):
    from handlers.api import FileQueue

    Uploads(s3).put(
        {
            "uploads/a/bread.md": b"# Bread\n\nSourdough starter and flour.\n",
            "uploads/b/bread.html": b"<html><body><p>Sourdough starter and flour.</p></body></html>",
        }
    )
    with FileQueue.from_env() as store:
        assert {hit.key for hit in store.search("sourdough starter", prefix="uploads/a/")} == {"uploads/a/bread.md"}
        assert {hit.key for hit in store.search("sourdough starter", content_type="text/html", hybrid=True)} == {
            "uploads/b/bread.html"
        }
        assert store.search("sourdough starter", prefix="uploads/a_") == []  # "_" is not a wildcard
        assert store.search("sourdough starter", min_score=1.01) == []


def test_search_command_prints_a_table_json_or_the_explained_scores(s3, handler_env, capsys):
    _revenue_and_garden(s3)
    assert main(["search", QUERY, "--hybrid", "--limit", "3", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 3
    assert set(listed[0]) >= {"key", "page", "snippet", "score", "bucket", "chunk_id", "vector_rank", "text_rank"}
    # The hit carries the two terms of its fused score: what `--explain` prints.
    assert all(hit["vector_part"] + hit["text_part"] == pytest.approx(hit["score"]) for hit in listed)

    assert main(["search", "tomatoes basil compost", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "page", "key", "snippet"]
    assert lines[1].split()[:4] == ["1", lines[1].split()[1], "1", "uploads/garden.md"]
    # The query matched (the garden holds its words), so the nearest report still follows, ranked below.
    assert [line.split()[3] for line in lines[1:]] == ["uploads/garden.md", lines[2].split()[3]]
    assert lines[2].split()[3].startswith("uploads/reports/")

    assert main(["search", RARE, "--hybrid", "--explain", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "score = 0.10 * norm(cosine) + 0.90 * norm(BM25); norm = scaled to 0..1 over the query's candidates"
        " on that side (0 when not one); '-' = not a candidate"
    )
    assert lines[1].split() == [
        *["rank", "cosine", "BM25", "vector", "text", "vector", "part", "text", "part", "score", "page", "key"]
    ]
    rank, cosine, bm25, *rest = lines[2].split()
    assert rank == "1"
    assert 0 < float(cosine) < 1
    assert float(bm25) > 0
    assert rest == ["1", "1", "0.1000", "0.9000", "1.0000", "1", "uploads/garden.md"]


NONSENSE = "zzzzqqq nothing"


def test_a_query_nothing_matches_returns_nothing_and_says_so(s3, handler_env, conn, capsys):
    from handlers.api import FileQueue

    _revenue_and_garden(s3)
    for mode in SEARCH_MODES:
        assert search(conn, EMBEDDER, NONSENSE, limit=10, mode=mode) == [], mode
    with FileQueue.from_env() as store:
        assert store.search(NONSENSE, hybrid=True) == []
        sentence = store.no_match_message(hybrid=True)
    assert sentence.startswith("no match: no chunk holds a word of the query, and none is similar enough")
    assert main(["search", NONSENSE, "--hybrid"]) == 0
    assert capsys.readouterr().out.strip() == sentence
    assert main(["search", NONSENSE, "--mode", "text"]) == 0
    assert capsys.readouterr().out.strip() == "no match: no chunk holds a word of the query"
    assert main(["search", "revenue", "--min-score", "1.5"]) == 0
    assert capsys.readouterr().out.strip() == "no results scoring at least 1.5"


def test_a_replaced_note_is_not_returned_for_the_old_query(s3, handler_env, conn):
    key = "uploads/note.md"
    Uploads(s3).put({key: b"# Note\n\nThe sourdough starter needs flour and water every morning.\n"})
    assert [hit.key for hit in search(conn, EMBEDDER, "sourdough starter", mode="hybrid")] == [key]
    Uploads(s3).put({key: b"# Note\n\nTomatoes need deep watering twice a week in summer.\n"})
    for mode in SEARCH_MODES:
        assert search(conn, EMBEDDER, "sourdough starter", mode=mode) == [], mode
    [hit] = search(conn, EMBEDDER, "watering tomatoes", mode="hybrid")
    assert (hit.key, hit.score) == (key, 1.0)


def test_search_refuses_an_unknown_mode_or_a_contradiction(handler_env):
    from handlers.api import FileQueue

    with FileQueue.from_env() as store:
        with pytest.raises(ValueError, match="unknown search mode 'fuzzy'"):
            store.search("x", mode="fuzzy")  # type: ignore[arg-type]  # a wrong mode on purpose
        with pytest.raises(ValueError, match="contradicts"):
            store.search("x", hybrid=True, mode="text")


def test_search_command_refuses_settings_that_do_not_match_the_store(handler_env, monkeypatch, capsys):
    from handlers.settings import get_settings

    monkeypatch.setenv("FILEQUEUE_EMBEDDING_DIMENSION", "384")
    get_settings.cache_clear()
    assert main(["search", "anything"]) == 2
    assert "FILEQUEUE_EMBEDDING_DIMENSION" in capsys.readouterr().err


def test_snippet_is_the_window_with_the_most_query_terms_cut_at_words():
    text = " ".join(f"filler{i}" for i in range(100)) + " the zebra crossing is here " + "tail " * 100
    snippet = make_snippet(text, "zebra crossing", width=120)
    assert snippet.startswith("…filler")
    assert snippet.endswith("…")
    assert "the zebra crossing is here" in snippet
    assert len(snippet) <= 122
    assert all(
        word.startswith(("filler", "tail")) or word in {"the", "zebra", "crossing", "is", "here"}
        for word in snippet.strip("…").split()
    )


def test_snippet_of_short_text_is_the_text_with_whitespace_collapsed():
    assert make_snippet("  one\n\ntwo   three ", "two") == "one two three"
    assert make_snippet("word " * 100, "absent", width=50).startswith("word word")
