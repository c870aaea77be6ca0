"""A record that fails for a reason of its own always leaves a log line saying why."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from handlers.batch import handle_batch, logger
from handlers.ops.s3_events import message_body, s3_notification, sqs_event


@pytest.fixture
def log_lines():
    """The handler's JSON log lines, read from its own handler's stream."""
    buffer = io.StringIO()
    handler: Any = logger.registered_handler
    previous = handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    handler.setStream(previous)


def test_a_record_without_attributes_is_failed_with_a_log_line(handler_env, log_lines):
    event = sqs_event([message_body(s3_notification("bucket", "uploads/a.md"))])
    del event["Records"][0]["attributes"]
    message_id = event["Records"][0]["messageId"]
    assert handle_batch(event, None) == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    [entry] = [entry for entry in log_lines() if entry.get("outcome") == "failed"]
    assert (entry["message"], entry["error_code"], entry["message_id"]) == (
        "malformed record",
        "malformed_record",
        message_id,
    )
    assert entry["error"] == "the SQS record has no attributes object"


def test_a_body_that_is_not_json_is_failed_with_a_log_line(handler_env, log_lines):
    event = sqs_event(["not json at all"])
    assert len(handle_batch(event, None)["batchItemFailures"]) == 1
    [entry] = [entry for entry in log_lines() if entry.get("outcome") == "failed"]
    assert (entry["message"], entry["error_code"]) == ("malformed event", "invalid_json")
