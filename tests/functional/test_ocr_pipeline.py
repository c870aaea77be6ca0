"""Scans end to end: moto S3, the handler with its extraction child and the real Tesseract, real PostgreSQL.

The cases are docs/faults.md's OCR rows and docs/ocr.md's rules: what becomes ready with OCR chunks, what
each bound records, and FILEQUEUE_OCR=off keeping the behaviour of a deployment without OCR.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest

from handlers.api import FileQueue
from handlers.batch import handle_batch
from handlers.cli import main
from handlers.console.server import ConsoleServer
from handlers.ops.s3_events import s3_notification, sqs_event
from handlers.runtime_context import DeadlineContext
from handlers.settings import get_settings
from handlers.wiring import reset_deps
from tests.rows import document, rows
from tests.scans import (
    BITCOIN,
    image_bytes,
    image_only_pdf,
    multi_page_tiff,
    png_bomb,
    rendered_page,
    text_then_scan_pdf,
)

BUCKET = "scans"


@pytest.fixture
def bucket(s3: Any, handler_env: str) -> str:
    s3.create_bucket(Bucket=BUCKET)
    return BUCKET


def configure(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_deps()


def ingest(s3: Any, objects: dict[str, bytes]) -> list[str]:
    """Upload and handle `objects`; the ids of the records the batch reported as failed (retried)."""
    notifications = []
    for key, body in objects.items():
        response = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        notifications.append(json.dumps(s3_notification(BUCKET, key, size=len(body), etag=response["ETag"].strip('"'))))
    response = handle_batch(sqs_event(notifications), DeadlineContext.lasting(300))
    return [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]


def chunk_origins(url: str, key: str) -> list[tuple[int, str, float | None]]:
    return [
        (page, origin, confidence)
        for page, origin, confidence in rows(
            url,
            "SELECT chunk.page, chunk.origin, chunk.ocr_confidence FROM chunks AS chunk"
            " JOIN documents AS document ON document.id = chunk.document_id WHERE document.key = %s"
            " ORDER BY chunk.ordinal",
            key,
        )
    ]


def status(url: str, key: str) -> tuple[str, str | None, int]:
    row = document(url, key)
    assert row is not None
    return row["status"], row["error_code"], row["ocr_pages"]


def test_an_image_only_pdf_becomes_ready_with_ocr_chunks_and_its_ocr_page_count(s3, bucket, handler_env, capsys):
    assert ingest(s3, {"scans/crazy-ones.pdf": image_only_pdf(rendered_page())}) == []

    assert status(handler_env, "scans/crazy-ones.pdf") == ("ready", None, 1)
    origins = chunk_origins(handler_env, "scans/crazy-ones.pdf")
    assert origins
    assert all(page == 1 and origin == "ocr" and confidence and confidence > 80 for page, origin, confidence in origins)

    with FileQueue.from_env() as store:
        [hit] = store.search("misfits rebels troublemakers", limit=1, hybrid=True)
        found = store.document("scans/crazy-ones.pdf")
    assert (hit.key, hit.origin) == ("scans/crazy-ones.pdf", "ocr")
    assert hit.ocr_confidence is not None
    assert found.ocr_pages == 1
    assert all(chunk.origin == "ocr" for chunk in found.chunks)

    assert main(["search", "misfits rebels troublemakers", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "page", "from", "key", "snippet"]
    assert lines[1].split()[3:6] == ["ocr", f"{hit.ocr_confidence:.0f}%", "scans/crazy-ones.pdf"]
    assert main(["search", "misfits rebels troublemakers", "--limit", "1", "--hybrid", "--explain"]) == 0
    explained = capsys.readouterr().out.splitlines()
    assert explained[1].split()[-2:] == ["from", "key"]
    assert explained[2].split()[-3:] == ["ocr", f"{hit.ocr_confidence:.0f}%", "scans/crazy-ones.pdf"]
    assert main(["search", "misfits rebels troublemakers", "--limit", "1", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["origin"], listed["ocr_confidence"]) == ("ocr", pytest.approx(hit.ocr_confidence))


def test_sealing_and_merging_segments_keep_each_chunks_origin_and_confidence(s3, bucket, handler_env):
    import psycopg

    from handlers.ops.compaction import CompactOptions, compact

    assert ingest(s3, {"scans/mixed.pdf": text_then_scan_pdf()}) == []
    before = chunk_origins(handler_env, "scans/mixed.pdf")
    with psycopg.connect(handler_env, autocommit=True) as conn:
        compact(conn, CompactOptions(force_seal=True, similar=None))
        compact(conn, CompactOptions(merge_all=True, similar=None))
        [(areas,)] = conn.execute(
            "SELECT array_agg(DISTINCT tableoid::regclass::text) FROM chunks"
            " WHERE document_id = (SELECT id FROM documents WHERE key = 'scans/mixed.pdf')"
        ).fetchall()
    assert all(area.startswith("chunks_segment_") for area in areas)
    assert chunk_origins(handler_env, "scans/mixed.pdf") == before


def test_png_jpeg_and_multi_page_tiff_uploads_become_ready(s3, bucket, handler_env):
    page = rendered_page()
    uploads = {
        "scans/page.png": image_bytes(page, "PNG"),
        "scans/page.jpg": image_bytes(page, "JPEG"),
        "scans/pages.tiff": multi_page_tiff(page, rendered_page(BITCOIN)),
    }
    assert ingest(s3, uploads) == []

    stored = {
        key: (content_type, pages, ocr_pages)
        for key, content_type, pages, ocr_pages in rows(
            handler_env, "SELECT key, content_type, pages, ocr_pages FROM documents WHERE status = 'ready'"
        )
    }
    assert stored == {
        "scans/page.png": ("image/png", 1, 1),
        "scans/page.jpg": ("image/jpeg", 1, 1),
        "scans/pages.tiff": ("image/tiff", 2, 2),
    }
    assert {page for page, _, _ in chunk_origins(handler_env, "scans/pages.tiff")} == {1, 2}


def test_in_a_mixed_pdf_only_the_image_page_is_ocr(s3, bucket, handler_env):
    assert ingest(s3, {"scans/mixed.pdf": text_then_scan_pdf()}) == []

    assert status(handler_env, "scans/mixed.pdf") == ("ready", None, 1)
    origins = {(page, origin) for page, origin, _ in chunk_origins(handler_env, "scans/mixed.pdf")}
    assert origins == {(1, "text"), (2, "ocr")}


def test_with_ocr_off_scans_and_images_fail_as_without_ocr(s3, bucket, handler_env, monkeypatch):
    configure(monkeypatch, FILEQUEUE_OCR="off")
    assert (
        ingest(
            s3,
            {"scans/scan.pdf": image_only_pdf(rendered_page()), "scans/scan.png": image_bytes(rendered_page(), "PNG")},
        )
        == []
    )

    assert status(handler_env, "scans/scan.pdf") == ("failed", "no_text", 0)
    assert status(handler_env, "scans/scan.png") == ("failed", "unsupported_type", 0)


def test_the_page_and_pixel_limits_are_recorded_with_their_codes(s3, bucket, handler_env, monkeypatch):
    configure(monkeypatch, FILEQUEUE_OCR_MAX_PAGES="1")
    page = rendered_page()
    assert (
        ingest(s3, {"scans/two-pages.pdf": image_only_pdf(page, page), "scans/bomb.png": png_bomb(20_000, 20_000)})
        == []
    )

    assert status(handler_env, "scans/two-pages.pdf") == ("failed", "ocr_page_limit", 0)
    assert status(handler_env, "scans/bomb.png") == ("failed", "image_too_large", 0)
    [(message,)] = rows(handler_env, "SELECT error FROM documents WHERE key = 'scans/two-pages.pdf'")
    assert "FILEQUEUE_OCR_MAX_PAGES" in message


@pytest.mark.slow
def test_a_scan_that_cannot_finish_in_its_time_is_recorded_not_retried(s3, bucket, handler_env, monkeypatch):
    configure(monkeypatch, FILEQUEUE_EXTRACT_TIMEOUT_SECONDS="1")
    page = rendered_page(dpi=300)
    assert ingest(s3, {"scans/long.tiff": multi_page_tiff(page, page, page, page, page, page)}) == []

    assert status(handler_env, "scans/long.tiff")[:2] == ("failed", "extract_timeout")


def test_a_missing_engine_is_recorded_with_a_clear_reason_and_text_files_still_work(
    s3, bucket, handler_env, monkeypatch
):
    configure(monkeypatch, FILEQUEUE_OCR_TESSERACT="/nonexistent/bin/tesseract")
    assert (
        ingest(s3, {"scans/scan.pdf": image_only_pdf(rendered_page()), "papers/bitcoin.pdf": BITCOIN.read_bytes()})
        == []
    )

    assert status(handler_env, "scans/scan.pdf") == ("failed", "ocr_unavailable", 0)
    [(message,)] = rows(handler_env, "SELECT error FROM documents WHERE key = 'scans/scan.pdf'")
    assert "'/nonexistent/bin/tesseract' was not found" in message
    assert status(handler_env, "papers/bitcoin.pdf") == ("ready", None, 0)


def test_the_console_shows_ocr_pages_and_chunk_confidence(s3, bucket, handler_env):
    assert ingest(s3, {"scans/mixed.pdf": text_then_scan_pdf()}) == []
    with FileQueue.from_env() as store:
        server = ConsoleServer(("127.0.0.1", 0), store, token=None)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with urllib.request.urlopen(f"{server.url}document?key=scans/mixed.pdf", timeout=30) as response:
                html = response.read().decode()
            with urllib.request.urlopen(f"{server.url}?q=misfits+rebels", timeout=30) as response:
                results = response.read().decode()
        finally:
            server.shutdown()
            server.server_close()
    assert '<span id="ocr-pages">1 read by OCR</span>' in html
    assert html.count('<span class="ocr">OCR, confidence') == len(
        [origin for _, origin, _ in chunk_origins(handler_env, "scans/mixed.pdf") if origin == "ocr"]
    )
    assert "(OCR, confidence" in results
