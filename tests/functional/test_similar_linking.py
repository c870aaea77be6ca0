"""`similar` edges computed by the linking pass: off the ingest path, symmetric, kept up to date.

Documents go in through moto's S3 and the handler; `link_similar_now` runs the pass compaction runs.
"""

from __future__ import annotations

import pytest

from handlers.ops.similar import Ranking, SimilarOptions, choose_neighbours, relative_ranking
from tests.functional.ingest_helpers import Uploads, both_ways, document_edges, link_similar_now, markdown
from tests.rows import rows

BREAD = [
    "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria.",
    "Feed the starter with equal weights of flour and water every day.",
    "A long cold fermentation gives the loaf its sour taste and open crumb.",
]
TIDES = [
    "Ocean tides rise and fall twice a day under the pull of the moon and the sun.",
    "Spring tides come at new and full moon, when the sun and the moon line up.",
]
GLACIERS = ["Glaciers carve valleys; moraines mark where ice halted.", "Crevasses open where glacial ice stretches."]


def text(lines: list[str], variant: str) -> bytes:
    return markdown(variant, [*lines, variant])


def linked_among(url: str, key: str) -> list[tuple[int]]:
    return rows(
        url,
        "SELECT linked_among FROM similar_lists JOIN documents ON documents.id = document_id WHERE key = %s",
        key,
    )


def test_ingestion_only_queues_and_the_pass_links_both_ways(s3, handler_env):
    uploads = Uploads(s3)
    uploads.put({"uploads/a.md": text(BREAD, "alpha"), "uploads/b.md": text(BREAD, "beta")})
    assert document_edges(handler_env, "similar") == set()
    assert rows(handler_env, "SELECT count(DISTINCT document_id) FROM similar_pending") == [(2,)]

    link_similar_now(handler_env)
    assert document_edges(handler_env, "similar") == both_ways(("uploads/a.md", "uploads/b.md"))
    assert rows(handler_env, "SELECT count(*) FROM similar_pending") == [(0,)]
    # Symmetric: each edge has its reverse. A document's own choice (it owns the edge) is mirrored
    # with its weight unless the other side chose the pair itself too; weights are in (0, 1].
    edges = {
        (source, target): (owner, weight)
        for source, target, owner, weight in rows(
            handler_env, "SELECT source_id, target_id, owner_document_id, weight FROM edges WHERE relation = 'similar'"
        )
    }
    for (source, target), (owner, weight) in edges.items():
        assert 0 < weight <= 1
        reverse_owner, reverse_weight = edges[(target, source)]
        if owner == source and reverse_owner != target:
            assert (reverse_owner, reverse_weight) == (source, weight)


def test_an_early_document_gets_its_neighbours_when_later_ones_arrive(s3, handler_env):
    uploads = Uploads(s3)
    uploads.put({"uploads/first.md": text(TIDES, "first")})
    link_similar_now(handler_env)
    assert document_edges(handler_env, "similar") == set()
    assert linked_among(handler_env, "uploads/first.md") == [(1,)]

    uploads.put({"uploads/later.md": text(TIDES, "later")})
    link_similar_now(handler_env)
    assert document_edges(handler_env, "similar") == both_ways(("uploads/first.md", "uploads/later.md"))


def test_a_list_is_computed_again_once_the_store_has_doubled(s3, handler_env):
    uploads = Uploads(s3)
    uploads.put({"uploads/bread.md": text(BREAD, "one")})
    link_similar_now(handler_env)
    assert linked_among(handler_env, "uploads/bread.md") == [(1,)]
    # Unrelated documents: nothing queues bread.md again, only the doubling rule recomputes it.
    uploads.put({"uploads/ice.md": text(GLACIERS, "two")})
    link_similar_now(handler_env)
    assert linked_among(handler_env, "uploads/bread.md") == [(2,)]
    uploads.put({"uploads/ice-2.md": text(GLACIERS, "three")})
    link_similar_now(handler_env)
    assert linked_among(handler_env, "uploads/bread.md") == [(2,)]  # 3 < 2 * 2: not due yet
    uploads.put({"uploads/ice-3.md": text(GLACIERS, "four")})
    link_similar_now(handler_env)
    assert linked_among(handler_env, "uploads/bread.md") == [(4,)]


def test_replacing_or_deleting_a_document_queues_its_former_neighbours(s3, handler_env):
    uploads = Uploads(s3)
    a, b, c = "uploads/a.md", "uploads/b.md", "uploads/c.md"
    uploads.put({a: text(BREAD, "alpha"), b: text(BREAD, "beta"), c: text(TIDES, "gamma")})
    link_similar_now(handler_env)
    assert (a, b) in document_edges(handler_env, "similar")

    uploads.put({b: text(TIDES, "beta")})  # b changes subject
    queued = {key for (key,) in rows(handler_env, "SELECT key FROM documents JOIN similar_pending ON id = document_id")}
    assert queued == {a, b}
    link_similar_now(handler_env)
    edges = document_edges(handler_env, "similar")
    assert (a, b) not in edges
    assert both_ways((b, c)) <= edges

    uploads.delete(c)
    assert {
        key for (key,) in rows(handler_env, "SELECT key FROM documents JOIN similar_pending ON id = document_id")
    } == {b}
    link_similar_now(handler_env)
    assert all(c not in pair for pair in document_edges(handler_env, "similar"))


@pytest.mark.parametrize(
    ("scores", "options", "kept"),
    [
        # Weight = score over the document's own score (document 1, 10.0).
        ([(1, 10.0), (2, 8.0), (3, 5.0), (4, 3.0)], SimilarOptions(relative_floor=0.5, min_weight=0.1), [2, 3]),
        # The absolute minimum cuts a weak best match too.
        ([(1, 10.0), (2, 0.5)], SimilarOptions(relative_floor=0.5, min_weight=0.1), []),
        ([(1, 10.0), (2, 0.5)], SimilarOptions(relative_floor=0.5, min_weight=0.0), [2]),
        # At most top_k.
        ([(1, 10.0), (2, 9.0), (3, 9.0), (4, 9.0)], SimilarOptions(top_k=2), [2, 3]),
        # The document itself unranked: the best neighbour's score is the scale.
        ([(2, 4.0), (3, 1.0)], SimilarOptions(relative_floor=0.5), [2]),
    ],
)
def test_the_floor_keeps_neighbours_near_the_best_and_above_the_minimum(scores, options, kept):
    ranking = relative_ranking(scores, 1)
    assert [neighbour for neighbour, _ in choose_neighbours(ranking, {}, options)] == kept


def test_a_candidate_sharing_the_documents_nearest_neighbours_is_chosen_over_a_slightly_heavier_one():
    ranking = Ranking(neighbours=(2, 3, 4, 5), weights=(0.80, 0.78, 0.70, 0.60))
    options = SimilarOptions(top_k=1, relative_floor=0.0)
    assert choose_neighbours(ranking, {}, options) == [(2, 0.80)]
    # Document 3 lists three of the document's four nearest among its own: its bonus outweighs 0.02.
    shares = {3: [2, 4, 5, 9], 2: [7, 8]}
    assert [neighbour for neighbour, _ in choose_neighbours(ranking, shares, options)] == [3]
    # The chosen are listed heaviest first, whatever moved them up.
    assert [n for n, _ in choose_neighbours(ranking, shares, SimilarOptions(top_k=2, relative_floor=0.0))] == [2, 3]


def test_graph_command_links_then_lists_similar_neighbours_with_the_weight_legend(s3, handler_env, capsys):
    from handlers.cli import main

    Uploads(s3).put({"uploads/a.md": text(BREAD, "alpha"), "uploads/b.md": text(BREAD, "beta")})
    assert main(["graph", "--link"]) == 0
    assert capsys.readouterr().out.startswith("similar neighbours computed for 2 documents in ")
    assert main(["graph", "uploads/a.md"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("  similar uploads/b.md")
    assert lines[2].startswith("  (weight: similar = neighbour's BM25 score for the document's text")


def test_graph_command_without_a_key_or_link_is_a_one_line_error(handler_env, capsys):
    from handlers.cli import main

    assert main(["graph"]) != 0
    assert "give a document's key, or --link" in capsys.readouterr().err


def test_a_document_that_changes_subject_leaves_every_list_and_the_others_stay_linked_both_ways(s3, handler_env):
    uploads = Uploads(s3)
    # b, c and d share bread; d's list holds only b and c at top_k=2, while b's and c's hold each
    # other and d: a is chosen by nobody once it changes subject.
    a, b, c, d = "uploads/a.md", "uploads/b.md", "uploads/c.md", "uploads/d.md"
    uploads.put({a: text(BREAD, "alpha"), b: text(BREAD, "beta"), c: text(BREAD, "gamma"), d: text(BREAD, "delta")})
    link_similar_now(handler_env)
    before = document_edges(handler_env, "similar")
    assert both_ways((a, b), (a, c), (a, d), (b, c), (b, d), (c, d)) == before

    uploads.put({a: text(TIDES, "alpha")})  # a leaves; its former partners are queued and relinked
    link_similar_now(handler_env)
    assert document_edges(handler_env, "similar") == both_ways((b, c), (b, d), (c, d))


def test_graph_reads_list_a_documents_own_choices_before_the_documents_that_chose_it(s3, handler_env):
    import psycopg

    from handlers.api import FileQueue
    from handlers.ops.similar import link_pending

    keys = ["uploads/a.md", "uploads/b.md", "uploads/c.md"]
    Uploads(s3).put({key: text(BREAD, key[8]) for key in keys})
    # One choice each among three: at least one choice is not returned, so some document is listed
    # by a neighbour it did not choose.
    with psycopg.connect(handler_env, autocommit=True) as conn:
        link_pending(conn, SimilarOptions(top_k=1, relative_floor=0.0))
    chose = dict(
        rows(
            handler_env,
            "SELECT source.key || '>' || target.key, owner_document_id = source_id FROM edges"
            " JOIN documents AS source ON source.id = source_id JOIN documents AS target ON target.id = target_id"
            " WHERE relation = 'similar'",
        )
    )
    assert sum(chose.values()) == 3
    assert not all(chose.values())
    client = FileQueue.from_env()
    for key in keys:
        flags = [chose[f"{key}>{neighbour.key}"] for neighbour in client.neighbours(key, relations=("similar",))]
        assert flags == sorted(flags, reverse=True), f"{key}: its own choice comes first"
