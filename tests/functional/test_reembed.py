"""`filequeue reembed` on the real PostgreSQL: hashing dimension 256 -> a new model with dimension 384.

The store is filled through the handler with the default settings (hashing-v2, 256). The new
settings differ in both FILEQUEUE_EMBEDDING_MODEL and FILEQUEUE_EMBEDDING_DIMENSION.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from pgvector.psycopg import register_vector

from handlers.adapters.embedders.hashing import HashingEmbedder, LexicalHashingEmbedder
from handlers.batch import handle_batch
from handlers.cli import main
from handlers.errors import ConfigError
from handlers.ops import reembed as reembed_module
from handlers.ops.compaction import CompactOptions, compact, create_index_concurrently, indexed_partitions
from handlers.ops.reembed import ReembedOptions, reembed
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.ops.search import search
from handlers.runtime_context import DeadlineContext
from handlers.settings import get_settings
from handlers.wiring import prepare_database, reset_deps
from tests.functional.ingest_helpers import Uploads, both_ways, markdown, pdf, similar_edges
from tests.rows import rows

if TYPE_CHECKING:
    from collections.abc import Iterator

OLD = LexicalHashingEmbedder(256, "hashing-v2")
NEW = LexicalHashingEmbedder(384, "hashing-v2-384")
NOTES = {
    f"uploads/notes-{topic}.md": markdown(
        topic, [f"The {topic} chapter explains {topic} in plain words.", f"Every {topic} example is worked."], 2
    )
    for topic in ("queues", "vectors", "graphs")
}


@pytest.fixture
def store(s3, handler_env) -> Uploads:
    uploads = Uploads(s3)
    uploads.put({**NOTES, "uploads/bitcoin.pdf": pdf("pdfjs-issue13201-bitcoin-paper.pdf")})
    uploads.put({"uploads/bread-a.md": _bread("a"), "uploads/bread-b.md": _bread("b")})
    return uploads


@pytest.fixture
def conn(handler_env) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(handler_env, autocommit=True) as connection:
        register_vector(connection)
        yield connection


def _bread(variant: str) -> bytes:
    sentences = [
        "Sourdough bread rises with a starter of wild yeast.",
        "Feed the starter with flour and water every day.",
        "Bake the loaf in a hot oven until the crust is dark.",
        f"These are notes {variant}.",
    ]
    return markdown("Sourdough", sentences)


def _use_settings(monkeypatch: pytest.MonkeyPatch, model: str, dimension: int) -> None:
    monkeypatch.setenv("FILEQUEUE_EMBEDDING_MODEL", model)
    monkeypatch.setenv("FILEQUEUE_EMBEDDING_DIMENSION", str(dimension))
    get_settings.cache_clear()
    reset_deps()


def _searches_answer(url: str, answers: list[int]):
    """An on_batch hook that searches with the old settings, as a client would during the run."""

    def hook(_batch: int) -> None:
        with psycopg.connect(url, autocommit=True) as client:
            register_vector(client)
            answers.append(len(search(client, OLD, "sourdough starter flour", limit=3, mode="hybrid")))
            answers.append(len(search(client, OLD, "bitcoin proof-of-work", limit=3)))

    return hook


def _chunk_state(url: str) -> tuple[int, int, int]:
    """(chunks, chunks with a new vector, chunks still without one)."""
    [state] = rows(
        url,
        "SELECT count(*), count(embedding_next), count(*) - count(embedding_next) FROM chunks",
    )
    return state


def test_reembed_is_resumable_and_search_answers_throughout(store, handler_env, conn, monkeypatch):
    answers: list[int] = []
    options = ReembedOptions(batch_size=2, max_batches=1)

    first = reembed(conn, NEW, options, on_batch=_searches_answer(handler_env, answers))
    assert (first.complete, first.batches, first.chunks_embedded) == (False, 1, 2)
    total, done, _ = _chunk_state(handler_env)
    assert done == 2
    assert rows(handler_env, "SELECT value FROM filequeue_meta WHERE name = 'embedding_dimension'") == [("256",)]

    # Until the switch the store holds the old model: new-settings workers are refused at startup...
    _use_settings(monkeypatch, NEW.model, NEW.dimension)
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_MODEL/FILEQUEUE_EMBEDDING_DIMENSION"):
        prepare_database(get_settings(), NEW.model, NEW.dimension, apply=False)
    # ...while old-settings workers keep storing documents, whose chunks wait for new vectors.
    _use_settings(monkeypatch, OLD.model, OLD.dimension)
    # A compaction between two runs seals the chunks written so far, the new vectors included.
    sealed = compact(conn, CompactOptions(force_seal=True))
    assert sealed.sealed_rows == total
    assert rows(
        handler_env, "SELECT count(*) FROM pg_class WHERE relname LIKE 'chunks_segment_%%_embedding_next_hnsw'"
    ) == [(1,)]
    store.put({"uploads/late.md": markdown("Late", ["Written during the re-embedding run."])})
    assert _chunk_state(handler_env)[2] == total + 1 - done

    second = reembed(conn, NEW, ReembedOptions(batch_size=2), on_batch=_searches_answer(handler_env, answers))
    assert second.complete
    assert second.chunks_embedded == total + 1 - done
    assert answers
    assert all(count > 0 for count in answers)

    assert rows(handler_env, "SELECT name, value FROM filequeue_meta WHERE name LIKE 'embedding%%' ORDER BY name") == [
        ("embedding_dimension", "384"),
        ("embedding_model", NEW.model),
    ]
    assert rows(
        handler_env,
        "SELECT count(*), min(vector_dims(embedding)), array_agg(DISTINCT embedding_model),"
        " array_agg(DISTINCT embedding_dimension) FROM chunks",
    ) == [(total + 1, 384, [NEW.model], [384])]
    assert rows(
        handler_env,
        "SELECT count(*), min(vector_dims(embedding)), array_agg(DISTINCT embedding_model) FROM documents",
    ) == [(7, 384, [NEW.model])]
    _assert_schema_like_a_fresh_store(handler_env)
    assert similar_edges(handler_env) >= both_ways(("uploads/bread-a.md", "uploads/bread-b.md"))
    assert [hit.key for hit in search(conn, NEW, "bitcoin proof-of-work", limit=1)] == ["uploads/bitcoin.pdf"]

    with pytest.raises(ConfigError, match="already holds model 'hashing-v2-384' with dimension 384"):
        reembed(conn, NEW, ReembedOptions())


def _assert_schema_like_a_fresh_store(url: str) -> None:
    columns = rows(
        url,
        "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
        " WHERE table_name IN ('chunks', 'documents') AND column_name LIKE 'embedding%%' ORDER BY 1, 2",
    )
    assert columns == [
        ("chunks", "embedding", "NO"),
        ("chunks", "embedding_dimension", "NO"),
        ("chunks", "embedding_model", "NO"),
        ("documents", "embedding", "YES"),
        ("documents", "embedding_model", "YES"),
    ]
    indexes = rows(
        url,
        "SELECT class.relname, index.indisvalid FROM pg_index AS index"
        " JOIN pg_class AS class ON class.oid = index.indexrelid WHERE class.relname LIKE '%%embedding%%' ORDER BY 1",
    )
    with psycopg.connect(url, autocommit=True) as conn:
        partitions = indexed_partitions(conn)
    # Each indexed chunk partition has its HNSW index; the growing area has none.
    per_partition = sorted((f"{partition}_embedding_hnsw", True) for partition in partitions)
    assert indexes == [*per_partition, ("documents_embedding_hnsw", True)]
    assert rows(url, "SELECT count(*) FROM pg_constraint WHERE conname = 'chunks_embedding_not_null'") == [(0,)]
    assert rows(url, "SELECT count(*) FROM filequeue_meta WHERE name LIKE 'reembed%%'") == [(0,)]


def test_rows_written_after_the_last_pass_are_embedded_by_the_switch(store, handler_env, conn, monkeypatch):
    create_index = create_index_concurrently
    written: list[str] = []

    def write_then_create_index(connection: Any, name: str, table: str, definition: Any) -> None:
        if name == "chunks_live_embedding_next_hnsw":  # after the fill passes, before the switch
            store.put({"uploads/straggler.md": markdown("Straggler", ["Arrived just before the switch."])})
            written.append(name)
        create_index(connection, name, table, definition)

    monkeypatch.setattr(reembed_module, "create_index_concurrently", write_then_create_index)
    report = reembed(conn, NEW, ReembedOptions(batch_size=50))
    assert written
    assert report.complete
    assert rows(
        handler_env,
        "SELECT vector_dims(chunks.embedding), chunks.embedding_model FROM chunks"
        " JOIN documents ON documents.id = chunks.document_id WHERE key = 'uploads/straggler.md'",
    ) == [(384, NEW.model)]
    assert rows(handler_env, "SELECT vector_dims(embedding) FROM documents WHERE key = 'uploads/straggler.md'") == [
        (384,)
    ]


def test_after_the_switch_old_workers_are_refused_and_new_ones_store(store, handler_env, conn, monkeypatch, caplog):
    assert reembed(conn, NEW, ReembedOptions()).complete
    # The handler's cached adapters still embed with the old settings, like a worker not yet restarted.
    response = store.s3.put_object(Bucket=store.bucket, Key="uploads/old.md", Body=b"# Old\n\nStill on the old model.")
    notification = s3_notification(store.bucket, "uploads/old.md", version_id=response["VersionId"])
    # A configuration error fails the invocation as a whole: the message waits for the restarted worker
    with pytest.raises(ConfigError, match="run `filequeue reembed`"):
        handle_batch(sqs_event([json.dumps(notification)]), DeadlineContext.lasting(60))
    refusals = [record for record in caplog.records if getattr(record, "error_code", None) == "config"]
    assert refusals
    assert "run `filequeue reembed`" in str(refusals[0].error)
    assert rows(handler_env, "SELECT count(*) FROM documents WHERE key = 'uploads/old.md'") == [(0,)]

    _use_settings(monkeypatch, NEW.model, NEW.dimension)
    store.put({"uploads/new.md": _bread("c")})
    assert ("uploads/new.md", "uploads/bread-a.md") in similar_edges(handler_env)


def test_no_switch_builds_everything_and_the_next_run_only_switches(store, handler_env, conn):
    prepared = reembed(conn, NEW, ReembedOptions(switch=False))
    assert not prepared.complete
    assert prepared.chunks_embedded == rows(handler_env, "SELECT count(*) FROM chunks")[0][0]
    assert rows(handler_env, "SELECT value FROM filequeue_meta WHERE name = 'embedding_model'") == [(OLD.model,)]
    assert rows(
        handler_env,
        "SELECT relname FROM pg_class WHERE relname LIKE '%%embedding_next_hnsw' ORDER BY 1",
    ) == [("chunks_live_embedding_next_hnsw",), ("documents_embedding_next_hnsw",)]

    switched = reembed(conn, NEW, ReembedOptions())
    assert (switched.complete, switched.chunks_embedded, switched.documents_relinked) == (True, 0, 6)
    _assert_schema_like_a_fresh_store(handler_env)


def test_a_run_toward_another_model_is_abandoned_and_restarted(store, handler_env, conn):
    other = HashingEmbedder(512, "hashing-v3-512")
    assert not reembed(conn, other, ReembedOptions(batch_size=3, max_batches=1)).complete
    report = reembed(conn, NEW, ReembedOptions(batch_size=3))
    assert report.complete
    assert report.chunks_embedded == rows(handler_env, "SELECT count(*) FROM chunks")[0][0]
    assert rows(handler_env, "SELECT DISTINCT vector_dims(embedding) FROM chunks") == [(384,)]
    _assert_schema_like_a_fresh_store(handler_env)


def test_a_run_interrupted_after_the_switch_finishes_on_the_next_run(store, handler_env, conn, monkeypatch):
    from handlers.ops.similar import relink_similar

    relinked: list[int] = []

    def interrupted_on_the_third(connection: Any, document_id: int, **options: Any) -> None:
        if len(relinked) == 2:
            raise KeyboardInterrupt
        relink_similar(connection, document_id, **options)
        relinked.append(document_id)

    monkeypatch.setattr(reembed_module, "relink_similar", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        reembed(conn, NEW, ReembedOptions())
    assert rows(handler_env, "SELECT value FROM filequeue_meta WHERE name = 'embedding_model'") == [(NEW.model,)]
    monkeypatch.undo()

    report = reembed(conn, NEW, ReembedOptions())
    assert (report.complete, report.chunks_embedded, report.documents_relinked) == (True, 0, 6 - 2)
    _assert_schema_like_a_fresh_store(handler_env)


def test_startup_check_refuses_settings_that_differ_from_the_store(handler_env, monkeypatch):
    for model, dimension in ((OLD.model, 384), ("another-model", 256)):
        _use_settings(monkeypatch, model, dimension)
        with pytest.raises(ConfigError) as refused:
            prepare_database(get_settings(), model, dimension, apply=True)
        message = str(refused.value)
        assert "FILEQUEUE_EMBEDDING_MODEL" in message
        assert "FILEQUEUE_EMBEDDING_DIMENSION" in message
        assert "filequeue reembed" in message


def test_reembed_command_resumes_and_then_refuses(store, handler_env, monkeypatch, capsys):
    _use_settings(monkeypatch, NEW.model, NEW.dimension)
    assert main(["reembed", "--batch-size", "2", "--max-batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "batch 2 written" in out
    assert "not switched yet" in out

    assert main(["reembed", "--batch-size", "100"]) == 0
    assert "switched to 'hashing-v2-384' (dimension 384)" in capsys.readouterr().out

    assert main(["reembed"]) == 2
    assert "nothing to re-embed" in capsys.readouterr().err


def test_a_hashing_v1_store_is_refused_by_the_default_settings_and_reembed_moves_it_to_v2(
    s3, handler_env, monkeypatch, capsys
):
    from handlers.adapters.embedders.hashing import V1, V2

    with psycopg.connect(handler_env, autocommit=True) as admin:
        admin.execute("UPDATE filequeue_meta SET value = %s WHERE name = 'embedding_model'", (V1,))
    _use_settings(monkeypatch, V1, 256)
    Uploads(s3).put({"uploads/bread-a.md": _bread("a")})
    assert rows(handler_env, "SELECT DISTINCT embedding_model FROM chunks") == [(V1,)]

    monkeypatch.delenv("FILEQUEUE_EMBEDDING_MODEL")
    get_settings.cache_clear()
    assert main(["search", "sourdough"]) == 2
    assert "holds embeddings of model 'hashing-v1'" in capsys.readouterr().err

    assert main(["reembed"]) == 0
    assert "switched to 'hashing-v2' (dimension 256)" in capsys.readouterr().out
    assert rows(handler_env, "SELECT DISTINCT embedding_model FROM chunks") == [(V2,)]
    assert main(["search", "how do I feed my sourdough starter", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["key"] == "uploads/bread-a.md"


def test_reembed_moves_the_store_to_the_local_model_and_records_it(store, handler_env, monkeypatch, tmp_path, capsys):
    from tests.model2vec_model import DIMENSION, build_model

    model_dir = build_model(tmp_path / "tiny-model2vec")
    monkeypatch.setenv("FILEQUEUE_EMBEDDER", "local")
    monkeypatch.setenv("FILEQUEUE_EMBEDDING_MODEL_PATH", str(model_dir))
    _use_settings(monkeypatch, "", DIMENSION)
    assert main(["reembed"]) == 0
    assert f"switched to 'model2vec:tiny-model2vec' (dimension {DIMENSION})" in capsys.readouterr().out
    assert rows(handler_env, "SELECT DISTINCT embedding_model, embedding_dimension FROM chunks") == [
        ("model2vec:tiny-model2vec", DIMENSION)
    ]
    # The tiny model knows that a loaf is bread: a query sharing no word with the notes finds them.
    assert main(["search", "loaf", "--json", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["key"] in {"uploads/bread-a.md", "uploads/bread-b.md"}
