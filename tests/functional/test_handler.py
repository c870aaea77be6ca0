"""The handler end to end on the embedded stack: moto S3 through real boto3 calls, real PostgreSQL.

Case ids in test names (A1, B4, ...) are the fault cases listed, with what must happen, in docs/faults.md.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from handlers.batch import handle_batch
from handlers.ops.s3_events import s3_notification, s3_test_event, sns_wrap, sqs_event
from handlers.runtime_context import DeadlineContext
from tests.faults import PostgresProxy, RawBody, on_get_object, s3_error_response
from tests.paths import PDF_FIXTURES
from tests.rows import counts, document, rows

if TYPE_CHECKING:
    from pathlib import Path

BUCKET = "handler-bucket"


@pytest.fixture
def bucket(s3: Any, handler_env: str) -> str:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


def _event(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    return sqs_event([body if isinstance(body, str) else json.dumps(body) for body in bodies])


def _put(s3: Any, key: str, body: bytes, *, sequencer: str | None = None, **extra: Any) -> dict[str, Any]:
    response = s3.put_object(Bucket=BUCKET, Key=key, Body=body, **extra)
    return s3_notification(
        BUCKET,
        key,
        size=len(body),
        etag=response["ETag"].strip('"'),
        version_id=response.get("VersionId"),
        sequencer=sequencer,
    )


def _invoke(event: dict[str, Any], seconds: float = 120) -> list[str]:
    response = handle_batch(event, DeadlineContext.lasting(seconds))
    return [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]


def _markdown(topic: str, paragraphs: int = 10) -> bytes:
    body = "\n\n".join(f"Paragraph {i} about {topic}. " * 8 for i in range(paragraphs))
    return f"# {topic}\n\n{body}".encode()


def test_put_stores_document_chunks_vectors_and_edges(s3, bucket, handler_env):
    assert _invoke(_event(_put(s3, "uploads/notes.md", _markdown("queues")))) == []
    doc = document(handler_env, "uploads/notes.md")
    assert doc is not None
    assert (doc["status"], doc["content_type"], doc["title"]) == ("ready", "text/markdown", "queues")
    assert doc["chunk_count"] > 1
    assert doc["version_id"]
    [(stored_chunks, dims, models)] = rows(
        handler_env,
        "SELECT count(*), min(vector_dims(embedding)), array_agg(DISTINCT embedding_model) FROM chunks"
        " WHERE document_id = %s",
        doc["id"],
    )
    assert (stored_chunks, dims, models) == (doc["chunk_count"], 256, ["hashing-v2"])
    edges = dict(rows(handler_env, "SELECT relation, count(*) FROM edges GROUP BY relation"))
    assert edges == {"has_chunk": doc["chunk_count"], "next": doc["chunk_count"] - 1}


def test_redelivery_of_the_same_event_adds_nothing(s3, bucket, handler_env):
    event = _event(_put(s3, "uploads/notes.md", _markdown("queues")))
    assert _invoke(event) == []
    before = counts(handler_env)
    [(updated_before,)] = rows(handler_env, "SELECT updated_at FROM documents")
    assert _invoke(event) == []
    assert counts(handler_env) == before
    assert rows(handler_env, "SELECT updated_at FROM documents") == [(updated_before,)]


def test_newer_put_replaces_chunks_and_delete_removes_everything(s3, bucket, handler_env):
    assert _invoke(_event(_put(s3, "uploads/notes.md", _markdown("queues"), sequencer="0A"))) == []
    [(old_ids,)] = rows(handler_env, "SELECT array_agg(id) FROM chunks")
    assert _invoke(_event(_put(s3, "uploads/notes.md", _markdown("vectors", 3), sequencer="0B"))) == []
    doc = document(handler_env, "uploads/notes.md")
    assert doc is not None
    texts = [text for (text,) in rows(handler_env, "SELECT text FROM chunks ORDER BY ordinal")]
    assert texts
    assert all("queues" not in text for text in texts)
    assert any("vectors" in text for text in texts)
    [(new_ids,)] = rows(handler_env, "SELECT array_agg(id) FROM chunks")
    assert not set(old_ids) & set(new_ids)
    assert rows(handler_env, "SELECT count(*) FROM edges WHERE relation = 'has_chunk'") == [(len(texts),)]

    delete = s3_notification(BUCKET, "uploads/notes.md", event_name="ObjectRemoved:Delete", sequencer="0C")
    assert _invoke(_event(delete)) == []
    assert counts(handler_env) == (0, 0, 0)


def test_same_bytes_under_a_new_version_are_not_embedded_again(s3, bucket, handler_env):
    body = _markdown("queues")
    assert _invoke(_event(_put(s3, "uploads/notes.md", body, sequencer="01"))) == []
    [(chunk_ids_before,)] = rows(handler_env, "SELECT array_agg(id ORDER BY id) FROM chunks")
    newer = _put(s3, "uploads/notes.md", body, sequencer="02")
    assert _invoke(_event(newer)) == []
    [(chunk_ids_after,)] = rows(handler_env, "SELECT array_agg(id ORDER BY id) FROM chunks")
    assert chunk_ids_after == chunk_ids_before
    doc = document(handler_env, "uploads/notes.md")
    assert doc is not None
    assert (doc["sequencer"], doc["version_id"]) == ("02", newer["Records"][0]["s3"]["object"]["versionId"])


def test_a1_test_event_raw_and_sns_wrapped_is_acknowledged(handler_env, caplog):
    test_event = json.dumps(s3_test_event("some-bucket"))
    assert _invoke(_event(test_event, sns_wrap(test_event))) == []
    assert counts(handler_env) == (0, 0, 0)


def test_a2_a3_malformed_bodies_fail_alone_and_batch_mates_are_stored(s3, bucket, handler_env, caplog):
    valid = [_put(s3, f"uploads/file-{i}.txt", f"document number {i} text".encode()) for i in range(7)]
    event = _event(*valid, "{not json", json.dumps({"unexpected": "shape"}), json.dumps({"Records": []}))
    failures = _invoke(event)
    records = event["Records"]
    assert failures == [records[7]["messageId"], records[8]["messageId"]]
    assert rows(handler_env, "SELECT count(*) FROM documents WHERE status = 'ready'") == [(7,)]
    levels = {record.getMessage(): record.levelname for record in caplog.records}
    assert levels["malformed event"] == "ERROR"
    assert levels["ignored no records"] == "WARNING"


@pytest.mark.parametrize(
    "key",
    ["dir/red flower.jpg.txt", "a+b.txt", "100%.csv", "x=1:y.csv", "café.csv", "uploads/日本語 ファイル.md"],
)
def test_a4_encoded_keys_are_read_and_stored_decoded(s3, bucket, handler_env, key):
    body = b"name,value\nalpha,1\nbeta,2\n" if key.endswith(".csv") else b"plain text body for the key test"
    assert _invoke(_event(_put(s3, key, body))) == []
    doc = document(handler_env, key)
    assert doc is not None
    assert doc["status"] == "ready"


def test_a5_folder_marker_is_skipped_and_empty_file_is_recorded_failed(s3, bucket, handler_env):
    folder = s3_notification(BUCKET, "uploads/photos/", size=0)
    assert _invoke(_event(folder, _put(s3, "uploads/empty.csv", b""))) == []
    assert rows(handler_env, "SELECT key, status, error_code FROM documents") == [
        ("uploads/empty.csv", "failed", "empty_file")
    ]


def test_a6_events_other_than_create_and_remove_are_acknowledged(handler_env):
    names = ["LifecycleTransition", "ObjectTagging:Put", "ObjectRestore:Completed", "ObjectAcl:Put"]
    bodies = [s3_notification(BUCKET, "uploads/a.pdf", event_name=name) for name in names]
    assert _invoke(_event(*bodies)) == []
    assert counts(handler_env) == (0, 0, 0)


def test_a7_missing_object_is_a_recorded_permanent_failure(s3, bucket, handler_env):
    gone = _put(s3, "uploads/gone.txt", b"soon deleted")
    s3.delete_object(Bucket=BUCKET, Key="uploads/gone.txt", VersionId=gone["Records"][0]["s3"]["object"]["versionId"])
    assert _invoke(_event(gone)) == []
    doc = document(handler_env, "uploads/gone.txt")
    assert doc is not None
    assert (doc["status"], doc["error_code"]) == ("failed", "object_missing")


def test_a7_overwritten_object_is_read_at_the_version_of_the_event(s3, bucket, handler_env):
    first = _put(s3, "uploads/doc.txt", b"the first version mentions apples")
    _put(s3, "uploads/doc.txt", b"the second version mentions oranges")
    assert _invoke(_event(first)) == []
    assert rows(handler_env, "SELECT text FROM chunks") == [("the first version mentions apples",)]


def test_a8_same_message_twice_in_one_batch_gives_one_document(s3, bucket, handler_env):
    event = _event(_put(s3, "uploads/notes.md", _markdown("queues")))
    event["Records"].append(dict(event["Records"][0], receiptHandle="second-handle"))
    assert _invoke(event) == []
    assert rows(handler_env, "SELECT count(*) FROM documents") == [(1,)]


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("pdfminer-enc-aes-128-user-baz-owner-foo.pdf", "encrypted_pdf"),
        ("qpdf-bad1-5-bytes.pdf", "corrupt_file"),
        ("sf-019-grayscale-image.pdf", "no_text"),
    ],
)
def test_bad_pdfs_are_recorded_failed_with_a_specific_reason(s3, bucket, handler_env, fixture, code):
    assert _invoke(_event(_put(s3, f"uploads/{fixture}", (PDF_FIXTURES / fixture).read_bytes()))) == []
    doc = document(handler_env, f"uploads/{fixture}")
    assert doc is not None
    assert (doc["status"], doc["error_code"]) == ("failed", code)
    assert doc["error"]
    assert rows(handler_env, "SELECT count(*) FROM chunks") == [(0,)]


def test_mislabelled_pdf_is_read_as_pdf_and_empty_password_pdf_is_opened(s3, bucket, handler_env):
    tracemonkey = (PDF_FIXTURES / "pdfjs-tracemonkey-14-pages-two-column.pdf").read_bytes()
    empty_password = (PDF_FIXTURES / "pypdf-enc-r6-aes256-empty-password.pdf").read_bytes()
    event = _event(
        _put(s3, "uploads/paper.txt", tracemonkey, ContentType="text/plain"),
        _put(s3, "uploads/empty-password.pdf", empty_password),
    )
    assert _invoke(event) == []
    paper = document(handler_env, "uploads/paper.txt")
    assert paper is not None
    assert (paper["status"], paper["content_type"], paper["pages"]) == ("ready", "application/pdf", 14)
    pages = {
        page for (page,) in rows(handler_env, "SELECT DISTINCT page FROM chunks WHERE document_id = %s", paper["id"])
    }
    assert pages == set(range(1, 15))
    opened = document(handler_env, "uploads/empty-password.pdf")
    assert opened is not None
    assert opened["status"] == "ready"
    texts = rows(handler_env, "SELECT text FROM chunks WHERE document_id = %s", opened["id"])
    assert any("pdf encryption test" in text for (text,) in texts)


def test_object_over_the_size_limit_is_refused_before_download(s3, bucket, handler_env, monkeypatch):
    monkeypatch.setenv("FILEQUEUE_MAX_OBJECT_BYTES", "1000")
    from handlers.settings import get_settings

    get_settings.cache_clear()
    assert _invoke(_event(_put(s3, "uploads/big.txt", b"x" * 5000))) == []
    doc = document(handler_env, "uploads/big.txt")
    assert doc is not None
    assert (doc["status"], doc["error_code"]) == ("failed", "too_large")


@pytest.mark.slow
def test_b1_s3_throttling_fails_only_that_record(s3, bucket, handler_env, boto_session):
    puts = [_put(s3, f"uploads/f{i}.txt", f"file {i} body".encode()) for i in range(10)]
    hook = on_get_object(
        boto_session,
        lambda key: (
            s3_error_response(503, "SlowDown", "Please reduce your request rate.") if key.endswith("f3.txt") else None
        ),
    )
    event = _event(*puts)
    assert _invoke(event) == [event["Records"][3]["messageId"]]
    assert rows(handler_env, "SELECT count(*) FROM documents") == [(9,)]

    boto_session.events.unregister("before-send.s3.GetObject", hook)
    from handlers.wiring import reset_deps

    reset_deps()
    assert _invoke(event) == []
    assert rows(handler_env, "SELECT count(*), count(DISTINCT key) FROM documents") == [(10, 10)]


def test_b3_database_down_fails_every_record_and_writes_nothing(s3, bucket, handler_env, monkeypatch):
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres")
    from handlers.settings import get_settings

    get_settings.cache_clear()
    event = _event(*[_put(s3, f"uploads/f{i}.txt", b"text body") for i in range(3)])
    assert _invoke(event) == [record["messageId"] for record in event["Records"]]
    assert counts(handler_env) == (0, 0, 0)


def test_b4_database_lost_mid_batch_keeps_earlier_rows_and_retry_adds_no_duplicates(
    s3, bucket, handler_env, monkeypatch, boto_session
):
    proxy = PostgresProxy(handler_env)
    monkeypatch.setenv("FILEQUEUE_DATABASE_URL", proxy.url)
    from handlers.settings import get_settings

    get_settings.cache_clear()
    puts = [_put(s3, f"uploads/f{i}.md", _markdown(f"topic {i}", 3)) for i in range(10)]
    hook = on_get_object(boto_session, lambda key: proxy.cut() if key.endswith("f4.md") else None)
    event = _event(*puts)
    failures = _invoke(event)
    assert failures == [record["messageId"] for record in event["Records"][4:]]
    assert [key for (key,) in rows(handler_env, "SELECT key FROM documents ORDER BY key")] == [
        f"uploads/f{i}.md" for i in range(4)
    ]
    counts_after_four = counts(handler_env)

    boto_session.events.unregister("before-send.s3.GetObject", hook)
    proxy.restore()
    from handlers.wiring import reset_deps

    reset_deps()
    retry = {"Records": [r for r in event["Records"] if r["messageId"] in failures]}
    assert _invoke(retry) == []
    documents, chunks, _ = counts(handler_env)
    assert documents == 10
    assert chunks > counts_after_four[1]
    assert rows(handler_env, "SELECT count(*) FROM documents WHERE status <> 'ready'") == [(0,)]
    proxy.close()


def test_c1_records_too_close_to_the_deadline_are_not_started(s3, bucket, handler_env):
    puts = [_put(s3, f"uploads/f{i}.txt", f"body {i}".encode()) for i in range(10)]
    event = _event(*puts)

    class ShrinkingContext(DeadlineContext):
        calls = 0

        def get_remaining_time_in_millis(self) -> int:
            ShrinkingContext.calls += 1
            return 60_000 if ShrinkingContext.calls <= 4 else 1_000

    response = handle_batch(event, ShrinkingContext.lasting(60))
    failed = [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]
    assert failed == [record["messageId"] for record in event["Records"][4:]]
    assert rows(handler_env, "SELECT count(*) FROM documents") == [(4,)]
    assert _invoke({"Records": event["Records"][4:]}) == []
    assert rows(handler_env, "SELECT count(*), count(DISTINCT key) FROM documents") == [(10, 10)]


def test_d1_two_consumers_processing_the_same_message_at_once_write_one_document(s3, bucket, handler_env):
    event = _event(_put(s3, "uploads/notes.md", _markdown("queues", 30)))
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(_invoke(event))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[], []]
    [(documents, chunk_count)] = rows(handler_env, "SELECT count(*), max(chunk_count) FROM documents")
    assert documents == 1
    assert rows(handler_env, "SELECT count(*) FROM chunks") == [(chunk_count,)]


def test_d2_duplicate_notifications_with_different_message_ids_write_one_document(s3, bucket, handler_env):
    notification = _put(s3, "uploads/notes.md", _markdown("queues"), sequencer="00AB")
    first, second = _event(notification), _event(notification)
    assert first["Records"][0]["messageId"] != second["Records"][0]["messageId"]
    assert _invoke(first) == []
    before = counts(handler_env)
    assert _invoke(second) == []
    assert counts(handler_env) == before


def test_d3_out_of_order_events_keep_the_higher_sequencer(s3, bucket, handler_env):
    older = _put(s3, "uploads/doc.txt", b"older content about apples", sequencer="0055AED6DCD90281E5")
    newer = _put(s3, "uploads/doc.txt", b"newer content about oranges", sequencer="0055AED6DCD90281E6A")
    assert _invoke(_event(newer)) == []
    assert _invoke(_event(older)) == []
    doc = document(handler_env, "uploads/doc.txt")
    assert doc is not None
    assert doc["sequencer"] == "0055AED6DCD90281E6A"
    assert rows(handler_env, "SELECT text FROM chunks") == [("newer content about oranges",)]


def test_d3_late_put_after_delete_does_not_resurrect_the_document(s3, bucket, handler_env):
    put = _put(s3, "uploads/doc.txt", b"some content", sequencer="0010")
    delete = s3_notification(BUCKET, "uploads/doc.txt", event_name="ObjectRemoved:Delete", sequencer="0020")
    assert _invoke(_event(delete)) == []
    assert _invoke(_event(put)) == []
    assert counts(handler_env) == (0, 0, 0)


def test_sample_event_file_round_trip_through_the_cli(s3, handler_env, tmp_path: Path, capsys):
    from handlers.cli import main

    s3.create_bucket(Bucket="cli-bucket")
    s3.put_object(Bucket="cli-bucket", Key="uploads/readme.md", Body=_markdown("cli"))
    assert main(["events", "s3-put", "--bucket", "cli-bucket", "--key", "uploads/readme.md"]) == 0
    event_file = tmp_path / "event.json"
    event_file.write_text(capsys.readouterr().out)
    assert main(["invoke", "--event", str(event_file)]) == 0
    assert json.loads(capsys.readouterr().out) == {"batchItemFailures": []}
    assert rows(handler_env, "SELECT bucket, key, status FROM documents") == [
        ("cli-bucket", "uploads/readme.md", "ready")
    ]


def test_invoke_rejects_a_file_that_is_not_an_sqs_event(handler_env, tmp_path: Path, capsys):
    from handlers.cli import main

    event_file = tmp_path / "event.json"
    event_file.write_text('{"hello": "world"}')
    assert main(["invoke", "--event", str(event_file)]) == 2
    assert "not a Lambda SQS event" in capsys.readouterr().err


def _closed_port() -> int:
    """A loopback port with nothing listening (bound, then released) for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_permanent_delete_of_an_older_version_keeps_the_document(s3, bucket, handler_env):
    first = _put(s3, "uploads/doc.txt", b"first version", sequencer="01")
    second = _put(s3, "uploads/doc.txt", b"second version", sequencer="02")
    assert _invoke(_event(second)) == []
    old_version = first["Records"][0]["s3"]["object"]["versionId"]
    s3.delete_object(Bucket=BUCKET, Key="uploads/doc.txt", VersionId=old_version)
    delete = s3_notification(
        BUCKET, "uploads/doc.txt", event_name="ObjectRemoved:Delete", version_id=old_version, sequencer="03"
    )
    assert _invoke(_event(delete)) == []
    assert rows(handler_env, "SELECT text FROM chunks") == [("second version",)]


def test_download_shorter_than_its_content_length_is_retried(s3, bucket, handler_env, boto_session):
    put = _put(s3, "uploads/short.txt", b"0123456789" * 10)

    def truncated(key: str) -> AWSResponse | None:
        headers = HTTPHeaders()
        headers["Content-Length"] = "100"
        headers["Content-Type"] = "text/plain"
        return AWSResponse("https://s3.test", 200, headers, RawBody(b"0123456789"))

    on_get_object(boto_session, truncated)
    event = _event(put)
    assert _invoke(event) == [event["Records"][0]["messageId"]]
    assert counts(handler_env) == (0, 0, 0)


def test_lambda_entry_point_returns_the_partial_batch_response(s3, bucket, handler_env):
    from handlers.lambda_entry import lambda_handler

    event = _event(_put(s3, "uploads/notes.md", _markdown("lambda")), "{not json")
    response = lambda_handler(event, DeadlineContext.lasting(180))  # type: ignore[arg-type]
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
