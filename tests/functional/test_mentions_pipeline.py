"""Mentions in the pipeline: found before the document's transaction, under the extraction time bound."""

from __future__ import annotations

import dataclasses

from handlers import batch, service, wiring
from tests.functional.ingest_helpers import Uploads, document_edges
from tests.rows import rows

MANY_WORDS = ("# Long\n\n" + "word " * 20_000 + "\nSee b.md.\n").encode()


def test_mentions_are_found_while_no_transaction_or_document_lock_is_held(s3, handler_env, monkeypatch):
    seen: list[tuple[int, int]] = []
    from handlers.stages.mentions import find_mentions as find

    def watched(*args, **kwargs):
        [(open_transactions, advisory_locks)] = rows(
            handler_env,
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            "        AND state LIKE 'idle in transaction%%'),"
            "       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory')",
        )
        seen.append((open_transactions, advisory_locks))
        return find(*args, **kwargs)

    monkeypatch.setattr(service, "find_mentions", watched)
    Uploads(s3).put({"uploads/a.md": b"# A\n\nSee b.md.\n", "uploads/b.md": b"# B\n\nHere.\n"})
    assert seen == [(0, 0), (0, 0)]
    assert document_edges(handler_env, "references") == {("uploads/a.md", "uploads/b.md")}


def test_text_whose_links_outlast_the_time_bound_is_recorded_as_failed(s3, handler_env, monkeypatch):
    deps = dataclasses.replace(wiring.get_deps(), analysis_timeout_seconds=0.000001)
    monkeypatch.setattr(batch, "get_deps", lambda: deps)
    Uploads(s3).put({"uploads/long.md": MANY_WORDS})
    [(status, code, error)] = rows(handler_env, "SELECT status, error_code, error FROM documents")
    assert (status, code) == ("failed", "extract_timeout")
    assert "reading the links of the text took longer than 1e-06 s" in error
    assert rows(handler_env, "SELECT count(*) FROM chunks") == [(0,)]


def test_pathological_text_is_stored_with_a_bounded_set_of_mentions(s3, handler_env):
    Uploads(s3).put(
        {
            "uploads/one-token.txt": b"t" * 160_000 + b".pdf see b.md",
            "uploads/dots.txt": b"a." * 100_000,
            "uploads/nested.html": b"<div>" * 20_000 + b'<a href="b.md">b</a>' + b"</div>" * 20_000,
            "uploads/b.md": b"# B\n\nHere.\n",
        }
    )
    assert rows(handler_env, "SELECT key, status FROM documents ORDER BY key") == [
        ("uploads/b.md", "ready"),
        ("uploads/dots.txt", "ready"),
        ("uploads/nested.html", "ready"),
        ("uploads/one-token.txt", "ready"),
    ]
    assert rows(
        handler_env,
        "SELECT key, kind, mention FROM document_mentions JOIN documents ON id = document_id ORDER BY key, kind",
    ) == [
        ("uploads/nested.html", "uri", "s3://graph-bucket/uploads/b.md"),
        ("uploads/one-token.txt", "name", "b.md"),
    ]
    assert document_edges(handler_env, "references") == {
        ("uploads/nested.html", "uploads/b.md"),
        ("uploads/one-token.txt", "uploads/b.md"),
    }
