"""`filequeue invoke` on the committed sample events, the way a developer uses them (sam local invoke style)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.cli import main
from tests.paths import SAMPLE_EVENTS
from tests.rows import rows

BUCKET = "filequeue-demo"
KEY = "uploads/getting-started.md"


def _invoke(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["invoke", "--event", str(SAMPLE_EVENTS / name)]) == 0
    response: dict[str, Any] = json.loads(capsys.readouterr().out)
    return response


def _state(url: str) -> list[tuple[Any, ...]]:
    return rows(
        url,
        "SELECT d.key, d.sequencer, c.id, c.text FROM documents d JOIN chunks c ON c.document_id = d.id"
        " ORDER BY c.ordinal",
    )


def test_put_again_newer_put_and_delete_through_the_cli(s3, handler_env, capsys):
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"# Getting started\n\nThe first version talks about queues.")
    assert _invoke("s3-put.json", capsys) == {"batchItemFailures": []}
    first = _state(handler_env)
    assert first
    assert any("queues" in text for *_, text in first)

    assert _invoke("s3-put.json", capsys) == {"batchItemFailures": []}
    assert _state(handler_env) == first

    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"# Getting started\n\nThe second version talks about vectors.")
    assert _invoke("s3-put-newer.json", capsys) == {"batchItemFailures": []}
    second = _state(handler_env)
    assert {chunk_id for _, _, chunk_id, _ in second}.isdisjoint({chunk_id for _, _, chunk_id, _ in first})
    assert any("vectors" in text for *_, text in second)
    assert second[0][1] != first[0][1]

    assert _invoke("s3-put.json", capsys) == {"batchItemFailures": []}
    assert _state(handler_env) == second, "the older put is stale and must not win"

    assert _invoke("s3-delete.json", capsys) == {"batchItemFailures": []}
    assert _state(handler_env) == []


@pytest.mark.parametrize(
    "name", ["s3-test-event.json", "sns-wrapped-s3-put.json", "sns-raw-s3-put.json", "eventbridge-object-created.json"]
)
def test_envelopes_through_the_cli(s3, handler_env, capsys, name):
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"# Getting started\n\nEnvelopes carry the same event.")
    assert _invoke(name, capsys) == {"batchItemFailures": []}


def test_malformed_body_is_reported_as_a_failure(handler_env, capsys):
    event = json.loads((SAMPLE_EVENTS / "malformed-body.json").read_text())
    assert _invoke("malformed-body.json", capsys) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]
    }
