"""What triggers compaction in each runtime: `filequeue compact`, the worker's leader, the scheduled Lambda."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from handlers.cli import main
from handlers.lambda_entry import compaction_handler
from handlers.ops.compaction import layout
from handlers.runtime_context import DeadlineContext
from handlers.settings import Settings, get_settings
from handlers.worker.compaction_leader import CompactionLeader, compaction_leader
from tests.functional.ingest_helpers import Uploads, markdown

if TYPE_CHECKING:
    from collections.abc import Callable

    from handlers.ops.compaction import CompactReport

NOTES = {
    f"uploads/{topic}.md": markdown(topic, [f"The {topic} chapter explains {topic}."] * 3, 3)
    for topic in ("queues", "vectors")
}


def _growing_and_segments(url: str) -> tuple[int, list[int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        current = layout(conn)
    return current.growing_rows, [segment.rows for segment in current.segments]


def test_compact_command_seals_and_reports(s3, handler_env, capsys):
    Uploads(s3).put(NOTES)
    growing, _ = _growing_and_segments(handler_env)
    assert growing > 0

    assert main(["compact"]) == 0  # below FILEQUEUE_COMPACTION_SEAL_ROWS: nothing to seal yet
    out = capsys.readouterr().out
    assert out.startswith("sealed 0 chunks")
    seal_rows = get_settings().compaction_seal_rows
    assert f"sealed once it holds FILEQUEUE_COMPACTION_SEAL_ROWS ({seal_rows:,}) chunks; --seal seals it now" in out
    assert main(["compact", "--seal"]) == 0
    out = capsys.readouterr().out
    assert f"sealed {growing} chunks" in out
    assert f"(HNSW built once): {growing} chunks" in out
    assert _growing_and_segments(handler_env) == (0, [growing])

    assert main(["compact", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["sealed_rows"], report["merges"], report["skipped"]) == (0, 0, None)


def test_compact_command_on_a_database_without_migrations_is_a_clear_error(database_url, monkeypatch, capsys):
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert main(["compact"]) == 2
    finally:
        get_settings.cache_clear()
    assert "database schema is behind" in capsys.readouterr().err


def test_compact_command_rejects_a_merge_factor_below_two(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compact", "--merge-factor", "1"])
    assert exit_info.value.code == 2
    assert "must be at least 2" in capsys.readouterr().err


def test_scheduled_lambda_seals_the_growing_area(s3, handler_env, monkeypatch):
    Uploads(s3).put(NOTES)
    growing, _ = _growing_and_segments(handler_env)
    monkeypatch.setenv("FILEQUEUE_COMPACTION_SEAL_ROWS", "1")
    get_settings.cache_clear()
    report = compaction_handler({"source": "aws.events"}, DeadlineContext.lasting(900))
    assert report["sealed_rows"] == growing
    assert _growing_and_segments(handler_env) == (0, [growing])


def test_the_worker_leader_compacts_in_the_background(s3, handler_env, monkeypatch):
    monkeypatch.setenv("FILEQUEUE_COMPACTION_SEAL_ROWS", "1")
    monkeypatch.setenv("FILEQUEUE_COMPACTION_INTERVAL_SECONDS", "0.1")
    get_settings.cache_clear()
    with compaction_leader(get_settings()) as leader:
        assert leader is not None
        Uploads(s3).put(NOTES)
        for _ in range(200):
            if leader.runs >= 2 and _growing_and_segments(handler_env)[0] == 0:
                break
            threading.Event().wait(0.05)
    growing, segments = _growing_and_segments(handler_env)
    assert growing == 0
    assert sum(segments) > 0


def test_no_leader_when_compaction_is_off():
    with compaction_leader(
        Settings.from_env(
            {"FILEQUEUE_DATABASE_URL": "postgresql://unused", "FILEQUEUE_COMPACTION_INTERVAL_SECONDS": "0"}
        )
    ) as leader:
        assert leader is None


def test_stopping_the_leader_cancels_a_run_in_progress_even_between_two_statements(handler_env):
    started = threading.Event()

    def slow_run(on_connect: Callable[[psycopg.Connection[Any]], None]) -> CompactReport:
        with psycopg.connect(handler_env, autocommit=True) as conn:
            on_connect(conn)
            started.set()
            time.sleep(0.3)  # between statements: a cancel now finds nothing to cancel
            conn.execute("SELECT pg_sleep(60)")
        raise AssertionError("the sleep should have been cancelled")

    leader = CompactionLeader(slow_run, interval_seconds=0.01)
    leader.start()
    assert started.wait(30)
    leader.stop()
    assert leader.runs == 0
    assert not leader.alive
