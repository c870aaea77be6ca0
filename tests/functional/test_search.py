"""Search on the real PostgreSQL: vector search, hybrid search (RRF with full-text ranking), the CLI."""

from __future__ import annotations

import json

import psycopg
import pytest
from pgvector.psycopg import register_vector

from handlers.adapters.embedders.hashing import HashingEmbedder
from handlers.adapters.search import make_snippet, search
from handlers.cli import main
from tests.functional.ingest_helpers import Uploads, pdf

EMBEDDER = HashingEmbedder(256)
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

    With the hashing embedder a text's vector is the sum of its words and word pairs. The query's
    seven features are four words and three pairs; a revenue report holds six of them, repeated,
    and nothing else, so its cosine with the query is high. The gardening note holds the four
    words once among some two hundred other features, so its cosine is small and thirty reports
    rank above it: pure vector search puts it out of the top ten. `websearch_to_tsquery` ANDs the
    four words, and only the note holds all of them, so full-text ranking puts it first.
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


def test_hybrid_search_finds_an_exact_rare_term_that_vector_search_ranks_low(s3, handler_env, conn):
    _revenue_and_garden(s3)

    by_vector = [hit.key for hit in search(conn, EMBEDDER, QUERY, limit=31)]
    assert by_vector.index("uploads/garden.md") == 30  # after all thirty reports

    hybrid = search(conn, EMBEDDER, QUERY, limit=5, hybrid=True)
    best = hybrid[0]
    # 1/(60+1) from the text ranking plus 1/(60+31) from the vector ranking beat the best report's 1/(60+1).
    assert (best.key, best.text_rank, best.vector_rank) == ("uploads/garden.md", 1, 31)
    assert RARE in best.snippet
    assert [hit.text_rank for hit in hybrid[1:]] == [None] * 4
    assert [hit.vector_rank for hit in hybrid[1:]] == [1, 2, 3, 4]
    assert [hit.score for hit in hybrid] == sorted((hit.score for hit in hybrid), reverse=True)


def test_search_command_prints_a_table_or_json(s3, handler_env, capsys):
    _revenue_and_garden(s3)
    assert main(["search", QUERY, "--hybrid", "--limit", "3", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 3
    assert set(listed[0]) >= {"key", "page", "snippet", "score", "bucket", "chunk_id"}
    assert "uploads/garden.md" in [hit["key"] for hit in listed[:2]]

    assert main(["search", "tomatoes basil compost", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "page", "key", "snippet"]
    assert lines[1].split()[:4] == ["1", lines[1].split()[1], "1", "uploads/garden.md"]
    assert len(lines) == 3
    # Columns are aligned: the key column starts at the same offset on every line.
    assert len({line.index("uploads/") for line in lines[1:]}) == 1


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
