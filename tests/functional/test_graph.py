"""The document graph through the handler: `similar` and `references` edges on the real PostgreSQL.

Documents go in through moto's S3 and the handler, as in production; the default hashing embedder
(dimension 256) gives the document vectors; `similar` edges come from BM25 "more like this" and are
written by the linking pass (`link_similar_now`, what compaction runs).
"""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest
from pgvector.psycopg import register_vector

from handlers.cli import main
from handlers.ops.graph import find_document, neighbours
from handlers.ops.similar import SimilarOptions, relink_similar
from tests.functional.ingest_helpers import (
    Uploads,
    both_ways,
    document_edges,
    link_similar_now,
    markdown,
    pdf,
    similar_edges,
)
from tests.rows import rows

# Three PDFs with the same one-page text, "pdf encryption test": one plain, two encrypted with an
# empty user password (the extractor opens those).
TRIO = {
    "uploads/enc/plain.pdf": "pypdf-enc-unencrypted-base.pdf",
    "uploads/enc/aes256.pdf": "pypdf-enc-r6-aes256-empty-password.pdf",
    "uploads/enc/rc4.pdf": "pypdf-enc-r2-rc4-40-empty-user-password.pdf",
}
# Three long papers on unrelated subjects (compilers, digital cash, technology acceptance).
PAPERS = {
    "uploads/papers/tracemonkey.pdf": "pdfjs-tracemonkey-14-pages-two-column.pdf",
    "uploads/papers/bitcoin.pdf": "pdfjs-issue13201-bitcoin-paper.pdf",
    "uploads/papers/tam.pdf": "pdfjs-tamreview.pdf",
}
BREAD = [
    "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria.",
    "Feed the starter with equal weights of flour and water every day.",
    "A long cold fermentation gives the loaf its sour taste and open crumb.",
    "Bake the dough in a hot Dutch oven so that the crust turns dark and crisp.",
    "Shape the dough gently and let it proof in a floured banneton basket.",
]
TIDES = [
    "Ocean tides rise and fall twice a day under the pull of the moon and the sun.",
    "Spring tides come at new and full moon, when the sun and the moon line up.",
    "Neap tides come at the quarter moons, when the tidal range is smallest.",
    "Harbour pilots read tide tables to know the depth of water over the bar.",
    "The tidal bore of a river is a wave that runs upstream on the flooding tide.",
]


def bread(variant: str) -> bytes:
    return markdown(f"Sourdough {variant}", [*BREAD, f"This page is the {variant} version of the notes."])


def tides(variant: str) -> bytes:
    return markdown(f"Tides {variant}", [*TIDES, f"This page is the {variant} version of the notes."])


def test_similar_edges_join_documents_on_one_subject_and_not_unrelated_ones(s3, handler_env):
    uploads = Uploads(s3)
    uploads.put({key: pdf(name) for key, name in {**TRIO, **PAPERS}.items()})
    uploads.put(
        {"uploads/bread-a.md": bread("first"), "uploads/bread-b.md": bread("second"), "uploads/tides.md": tides("x")}
    )

    trio = list(TRIO)
    # Every document gets its nearest within the floor; same-subject pairs are among them.
    assert similar_edges(handler_env) >= both_ways(
        (trio[0], trio[1]), (trio[0], trio[2]), (trio[1], trio[2]), ("uploads/bread-a.md", "uploads/bread-b.md")
    )
    weights = dict(
        rows(
            handler_env,
            "SELECT source.key || ' ' || target.key, weight FROM edges"
            " JOIN documents AS source ON source.id = source_id JOIN documents AS target ON target.id = target_id"
            " WHERE relation = 'similar'",
        )
    )
    assert weights[f"{trio[0]} {trio[1]}"] == pytest.approx(1.0, abs=1e-5)
    assert 0.75 <= weights["uploads/bread-a.md uploads/bread-b.md"] < 1.0
    # Every ready document has its vector: the normalised mean of its chunk vectors.
    assert rows(
        handler_env,
        "SELECT count(*), min(vector_norm(embedding)), max(vector_norm(embedding)) FROM documents"
        " WHERE status = 'ready'",
    ) == [(9, pytest.approx(1.0, abs=1e-5), pytest.approx(1.0, abs=1e-5))]


def test_editing_or_deleting_either_side_updates_similar_edges_both_ways(s3, handler_env):
    uploads = Uploads(s3)
    a, b, t = "uploads/a.md", "uploads/b.md", "uploads/t.md"
    uploads.put({a: bread("first"), b: bread("second"), t: tides("first")})
    assert similar_edges(handler_env) == both_ways((a, b))
    # Each chose the other: each owns the edge that starts from it.
    assert set(
        rows(
            handler_env,
            "SELECT source.key, owner.key FROM edges JOIN documents AS owner ON owner.id = owner_document_id"
            " JOIN documents AS source ON source.id = source_id WHERE relation = 'similar'",
        )
    ) == {(a, a), (b, b)}

    uploads.put({a: tides("second")})  # one side changes subject
    assert similar_edges(handler_env) == both_ways((a, t))

    uploads.put({b: tides("third")})
    assert similar_edges(handler_env) == both_ways((a, t), (a, b), (b, t))

    [(t_id,)] = rows(handler_env, "SELECT id FROM documents WHERE key = %s", t)
    uploads.delete(t)
    assert similar_edges(handler_env) == both_ways((a, b))
    assert rows(
        handler_env,
        "SELECT count(*) FROM edges WHERE (source_kind = 'document' AND source_id = %s)"
        " OR (target_kind = 'document' AND target_id = %s) OR owner_document_id = %s",
        t_id,
        t_id,
        t_id,
    ) == [(0,)]


INDEX_NOTE = (
    b"# Reading list\n\n"
    b"Start with bitcoin.pdf, then the trace paper at s3://graph-bucket/uploads/papers/trace.pdf.\n"
    b"The review is online at https://example.com/mirror/papers/tam%20review.pdf?download=1.\n"
    b"Planning lives in uploads/notes/plan.md; ignore missing-chapter.pdf and s3://other-bucket/uploads/notes/x.md.\n"
)
TARGETS = {
    "uploads/papers/bitcoin.pdf": pdf("pdfjs-issue13201-bitcoin-paper.pdf"),
    "uploads/papers/trace.pdf": pdf("pdfjs-issue16221-hello-world.pdf"),
    "uploads/papers/tam review.pdf": pdf("pdfminer-enc-base-unencrypted.pdf"),
    "uploads/notes/plan.md": b"# Plan\n\nWrite the chapter on queues first.\n",
    "uploads/notes/x.md": b"# X\n\nSame key as the one mentioned, but in this bucket, not other-bucket.\n",
}


@pytest.mark.parametrize("mentioning_first", [True, False], ids=["mentioning-first", "mentioned-first"])
def test_references_resolve_in_both_arrival_orders(s3, handler_env, mentioning_first):
    uploads = Uploads(s3)
    index = {"uploads/index.md": INDEX_NOTE}
    for batch in (index, TARGETS) if mentioning_first else (TARGETS, index):
        uploads.put(batch)
    # Not the review: a URL on another host never names an object of the bucket by its file name.
    # Not x.md: the URI names another bucket.
    expected = {
        ("uploads/index.md", key)
        for key in TARGETS
        if key not in ("uploads/notes/x.md", "uploads/papers/tam review.pdf")
    }
    assert document_edges(handler_env, "references") == expected


def test_failed_or_deleted_documents_lose_references_names_and_mentions(s3, handler_env):
    uploads = Uploads(s3)
    uploads.put({"uploads/a.md": b"# A\n\nSee b.md for details.\n", "uploads/b.md": b"# B\n\nThe details.\n"})
    assert document_edges(handler_env, "references") == {("uploads/a.md", "uploads/b.md")}

    uploads.put({"uploads/b.md": b""})  # an empty file is a permanent failure
    assert rows(handler_env, "SELECT status FROM documents WHERE key = 'uploads/b.md'") == [("failed",)]
    assert document_edges(handler_env, "references") == set()
    assert rows(
        handler_env, "SELECT count(*) FROM document_names JOIN documents ON id = document_id WHERE key = 'uploads/b.md'"
    ) == [(0,)]

    uploads.put({"uploads/b.md": b"# B\n\nThe details, again.\n"})  # linked from a's stored mention
    assert document_edges(handler_env, "references") == {("uploads/a.md", "uploads/b.md")}

    uploads.delete("uploads/a.md")
    assert document_edges(handler_env, "references") == set()
    assert rows(handler_env, "SELECT count(*) FROM document_mentions") == [(0,)]


def _chain(s3) -> None:
    """a -> b -> c by references; a and d similar."""
    Uploads(s3).put(
        {
            "uploads/a.md": bread("first") + b"\nNext: b.md\n",
            "uploads/b.md": b"# B\n\nContinued in c.md.\n",
            "uploads/c.md": b"# C\n\nThe end.\n",
            "uploads/d.md": bread("second"),
        }
    )


def test_graph_walks_hops_and_lists_each_neighbour_once_with_its_path(s3, handler_env):
    _chain(s3)
    link_similar_now(handler_env)
    with psycopg.connect(handler_env) as conn:
        a = find_document(conn, "uploads/a.md").id
        c = find_document(conn, "uploads/c.md").id
        one_hop = {(n.relations, n.key, n.hops, n.via) for n in neighbours(conn, a)}
        two_hops = {(n.relations, n.key, n.hops, n.via) for n in neighbours(conn, a, hops=2)}
        references_only = {n.key for n in neighbours(conn, a, hops=3, relations=["references"])}
        backwards = [(n.key, n.hops, n.relations) for n in neighbours(conn, c, hops=3)]
    assert one_hop == {(("references",), "uploads/b.md", 1, ()), (("similar",), "uploads/d.md", 1, ())}
    assert two_hops == one_hop | {(("references", "references"), "uploads/c.md", 2, ("uploads/b.md",))}
    assert references_only == {"uploads/b.md", "uploads/c.md"}
    # Each document once, at its fewest hops: d is reached from a, which is reached from b.
    assert backwards == [
        ("uploads/b.md", 1, ("referenced_by",)),
        ("uploads/a.md", 2, ("referenced_by", "referenced_by")),
        ("uploads/d.md", 3, ("referenced_by", "referenced_by", "similar")),
    ]


def test_graph_command_prints_each_neighbour_with_its_path(s3, handler_env, capsys):
    _chain(s3)
    link_similar_now(handler_env)
    assert main(["graph", "uploads/a.md", "--hops", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "s3://graph-bucket/uploads/a.md  ready"
    assert "  1.000  references uploads/b.md" in lines
    assert "  1.000  references uploads/b.md > references uploads/c.md" in lines

    assert main(["graph", "uploads/a.md", "--relation", "similar", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["neighbours"]
    assert [(n["relations"], n["key"], n["hops"]) for n in listed] == [(["similar"], "uploads/d.md", 1)]
    assert 0.1 <= listed[0]["weight"] <= 1.0


def test_graph_accepts_a_file_name_or_an_s3_uri_and_suggests_full_keys(s3, handler_env, capsys):
    _chain(s3)
    link_similar_now(handler_env)
    Uploads(s3).put({"uploads/other/b.md": b"# Another B\n\nNothing here.\n"})
    assert main(["graph", "c.md"]) == 0
    assert capsys.readouterr().out.startswith("s3://graph-bucket/uploads/c.md  ready")
    assert main(["graph", "s3://graph-bucket/uploads/c.md"]) == 0
    assert capsys.readouterr().out.startswith("s3://graph-bucket/uploads/c.md  ready")

    assert main(["graph", "b.md"]) == 2
    assert "'b.md' names several documents: s3://graph-bucket/uploads/b.md, s3://graph-bucket/uploads/other/b.md" in (
        capsys.readouterr().err
    )
    assert main(["graph", "uploads/c"]) == 2
    assert "no document is stored under 'uploads/c'; did you mean uploads/c.md?" in capsys.readouterr().err


def test_graph_of_a_failed_document_says_it_failed(s3, handler_env, capsys):
    Uploads(s3).put({"uploads/broken.pdf": b"%PDF-1.7 not really a PDF"})
    assert main(["graph", "broken.pdf"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("s3://graph-bucket/uploads/broken.pdf  failed (corrupt_file: ")


def test_links_in_html_and_markdown_resolve_against_the_folder_and_other_hosts_never_do(s3, handler_env):
    page = (
        b"<!doctype html><html><head><title>Index</title></head><body>"
        b'<p>Read <a href="../papers/bitcoin.pdf">the paper</a>, see <img src="figure.png" alt="a figure">, '
        b'<a href="https://example.com/elsewhere/tides.md">a mirror</a> and '
        b'<a href="https://graph-bucket.s3.eu-west-1.amazonaws.com/uploads/notes/plan.md">the plan</a>.</p>'
        b"</body></html>"
    )
    notes = b"# Notes\n\nSee [the figure](figure.png) and [the tides](/uploads/tides.md).\n"
    Uploads(s3).put(
        {
            "uploads/site/index.html": page,
            "uploads/site/notes.md": notes,
            "uploads/site/figure.png": b"not an image, stored as text for the test",
            "uploads/papers/bitcoin.pdf": pdf("pdfjs-issue13201-bitcoin-paper.pdf"),
            "uploads/notes/plan.md": b"# Plan\n\nQueues first.\n",
            "uploads/tides.md": tides("x"),
        }
    )
    assert document_edges(handler_env, "references") == {
        ("uploads/site/index.html", "uploads/papers/bitcoin.pdf"),
        ("uploads/site/index.html", "uploads/site/figure.png"),
        ("uploads/site/index.html", "uploads/notes/plan.md"),
        ("uploads/site/notes.md", "uploads/site/figure.png"),
        ("uploads/site/notes.md", "uploads/tides.md"),
    }


def test_a_bare_name_prefers_its_folder_and_is_otherwise_ambiguous_until_one_bearer_is_left(s3, handler_env):
    uploads = Uploads(s3)
    uploads.put(
        {
            "uploads/a/readme.md": b"# A\n\nThe data is described in data.csv.\n",
            "uploads/a/data.csv": b"x,y\n1,2\n",
            "uploads/b/data.csv": b"x,y\n3,4\n",
            "uploads/top.md": b"# Top\n\nEverything starts from data.csv.\n",
        }
    )
    assert document_edges(handler_env, "references") == {
        ("uploads/a/readme.md", "uploads/a/data.csv"),
        ("uploads/top.md", "uploads/a/data.csv"),
        ("uploads/top.md", "uploads/b/data.csv"),
    }
    ambiguous = _references_from(handler_env, "uploads/top.md")
    assert [(key, weight) for key, weight, _ in ambiguous] == [("uploads/a/data.csv", 0.5), ("uploads/b/data.csv", 0.5)]
    assert all(attributes["ambiguous"] is True and attributes["candidates"] == 2 for _, _, attributes in ambiguous)

    uploads.delete("uploads/b/data.csv")  # one bearer left: the mention resolves to it, plainly
    [(key, weight, attributes)] = _references_from(handler_env, "uploads/top.md")
    assert (key, weight, "ambiguous" in attributes) == ("uploads/a/data.csv", 1.0, False)

    uploads.put({"uploads/c/data.csv": b"x,y\n5,6\n"})  # a new bearer makes it ambiguous again
    again = _references_from(handler_env, "uploads/top.md")
    assert [(key, attributes.get("ambiguous")) for key, _, attributes in again] == [
        ("uploads/a/data.csv", True),
        ("uploads/c/data.csv", True),
    ]


def _references_from(url: str, key: str) -> list[tuple[str, float, dict[str, object]]]:
    """(target key, weight, attributes) of the `references` edges from the document at `key`."""
    found = rows(
        url,
        "SELECT target.key, weight, attributes FROM edges"
        " JOIN documents AS source ON source.id = source_id JOIN documents AS target ON target.id = target_id"
        " WHERE relation = 'references' AND source.key = %s ORDER BY target.key",
        key,
    )
    return [(target, float(weight), attributes) for target, weight, attributes in found]


def test_two_transactions_linking_the_same_pair_both_commit(s3, handler_env):
    Uploads(s3).put({"uploads/a.md": bread("first"), "uploads/b.md": bread("second")})
    [(a,), (b,)] = rows(handler_env, "SELECT id FROM documents ORDER BY key")
    first, second = psycopg.connect(handler_env), psycopg.connect(handler_env)
    for conn in (first, second):
        register_vector(conn)
    errors: list[BaseException] = []

    def link_b() -> None:
        try:
            with second.transaction():
                relink_similar(second, b, options=SimilarOptions())
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    with first, second:
        first.execute("DELETE FROM edges WHERE relation = 'similar'")
        relink_similar(first, a, options=SimilarOptions())  # uncommitted: a -> b and b -> a
        worker = threading.Thread(target=link_b)
        worker.start()
        _wait_until_blocked(handler_env, second.info.backend_pid)
        first.commit()
        worker.join()
    assert errors == []
    assert similar_edges(handler_env) == both_ways(("uploads/a.md", "uploads/b.md"))
    # The second list took its own edge (b -> a) over and left the mirror a -> b to its owner a.
    assert rows(
        handler_env, "SELECT source_id, owner_document_id FROM edges WHERE relation = 'similar' ORDER BY source_id"
    ) == [(a, a), (b, b)]


def _wait_until_blocked(url: str, pid: int) -> None:
    """Wait until backend `pid` waits on a lock (the other transaction's uncommitted edge rows)."""
    for _ in range(500):
        if rows(url, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", pid) == [("Lock",)]:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")
