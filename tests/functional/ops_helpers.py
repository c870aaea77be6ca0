"""Drive the handler from a real queue, as a worker would, for the operator-command tests."""

from __future__ import annotations

from typing import Any

from handlers.batch import handle_batch
from handlers.worker.records import QueueIdentity, build_record
from tests.rows import rows


def drain(sqs: Any, queue_url: str) -> dict[str, int]:
    """Receive until the queue is empty, run the handler on each batch and delete what succeeded.

    Returns how many messages were handled and how many the handler reported as failed (those are
    made visible again for the next receive, as the worker leaves them).
    """
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    handled = failed = 0
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
    ).get("Messages", []):
        response = handle_batch({"Records": [build_record(m, QueueIdentity(arn)) for m in messages]}, None)
        failures = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failures:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        handled += len(messages)
        failed += len(failures)
        if failures:
            break
    return {"handled": handled, "failed": failed}


def documents(url: str) -> dict[str, tuple[str, str | None]]:
    """key -> (status, etag) of every stored document."""
    return {key: (status, etag) for key, status, etag in rows(url, "SELECT key, status, etag FROM documents")}
