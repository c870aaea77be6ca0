"""The README's first command and `filequeue dev`, run as a user runs them: as processes."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import psycopg
import pytest

from tests.functional.cli_process import dev_client, running_dev
from tests.paths import REPO_ROOT


def stored_rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    """The rows of `query` on `documents` once it has any (the worker stores asynchronously), or [] after 120 s."""
    deadline = time.monotonic() + 120
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline and not rows:
        with psycopg.connect(database_url) as conn:
            exists = conn.execute("SELECT to_regclass('documents') IS NOT NULL").fetchone()
            if exists and exists[0]:
                rows = conn.execute(query).fetchall()
        time.sleep(0.2)
    return rows


@pytest.mark.slow
def test_demo_processes_every_file_and_prints_the_summary():
    result = subprocess.run(
        [sys.executable, "-m", "handlers.cli", "demo", "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "stored:  7" in out  # the scan among them, read by OCR
    events = dict(re.findall(r"(\w+) (\d+)", out.split("events:", 1)[1].splitlines()[0]))
    assert events["failed"] == "2"
    assert events["ignored"] == "1", "the s3:TestEvent moto sends when the notification is configured"
    # The re-uploaded file's second event is unchanged or skipped when the first version was committed
    # (or overtaken) before it was read; when both versions were in flight at once, the newer one is
    # stored over the older: 7 documents either way, every event accounted for.
    reupload = int(events.get("unchanged", 0)) + int(events.get("skipped", 0))
    assert (int(events["stored"]), reupload) in {(7, 1), (8, 0)}, events
    assert "uploads/broken.pdf: corrupt_file" in out
    assert "uploads/secret.pdf: encrypted_pdf" in out
    assert "queue:   0 left, 0 in the DLQ" in out
    edges = dict(re.findall(r"(\w+) (\d+)", out.split("edges:", 1)[1].splitlines()[0]))
    assert set(edges) == {"has_chunk", "next", "references", "similar"}
    assert "uploads/tracemonkey.pdf" in out.split("filequeue search", 1)[1]


@pytest.mark.slow
def test_dev_stack_takes_an_upload_from_another_client_and_stops_on_ctrl_c(dev_dir):
    with running_dev(dev_dir / "data", env={"FILEQUEUE_HEALTH_PORT": "0"}) as dev:
        exports = dev.exports
        s3 = dev_client(dev, "s3")
        s3.put_object(Bucket="filequeue-demo", Key="uploads/notes.md", Body=b"# Notes\n\nUploaded from another shell.")
        rows = stored_rows(exports["FILEQUEUE_DATABASE_URL"], "SELECT key, status FROM documents")
        assert rows == [("uploads/notes.md", "ready")]
    assert dev.process.returncode == 0


@pytest.mark.slow
def test_dev_stack_without_tesseract_says_so_in_one_line_and_records_scans_as_without_ocr(dev_dir):
    scan = (REPO_ROOT / "handlers" / "develop" / "files" / "pdfjs-issue13201-bitcoin-paper-scanned.pdf").read_bytes()
    with running_dev(
        dev_dir / "data", env={"FILEQUEUE_HEALTH_PORT": "0", "FILEQUEUE_OCR_TESSERACT": "no-such-tesseract"}
    ) as dev:
        exports = dev.exports
        assert exports["FILEQUEUE_OCR"] == "off"
        s3 = dev_client(dev, "s3")
        s3.put_object(Bucket="filequeue-demo", Key="uploads/scan.pdf", Body=scan)
        rows = stored_rows(exports["FILEQUEUE_DATABASE_URL"], "SELECT key, status, error_code FROM documents")
        assert rows == [("uploads/scan.pdf", "failed", "no_text")]
    log = (dev_dir / "data-dev.log").read_text(errors="replace")
    unavailable = [line for line in log.splitlines() if line.startswith("OCR unavailable")]
    assert unavailable == [
        "OCR unavailable: 'no-such-tesseract' not found (apt-get install tesseract-ocr tesseract-ocr-eng);"
        " scanned PDFs are recorded as no_text and images as unsupported_type, as with FILEQUEUE_OCR=off"
    ]
