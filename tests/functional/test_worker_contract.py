"""Records built from a real SQS receive (moto's server) have the shape Lambda gives its handler."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

from handlers.worker.records import QueueIdentity, build_event, group_received
from tests.functional.worker_app import new_queue


def receive_all(sqs: Any, queue_url: str) -> list[Any]:
    messages: list[Any] = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    return messages


def test_records_built_from_a_real_receive_match_lambdas_shape(sqs):
    # Given a message with string, number and binary attributes
    queue_url, _ = new_queue(sqs)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody='{"hello": "world"}',
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "upload"},
            "size": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
    )
    # When it is received and shaped
    message = receive_all(sqs, queue_url)[0]
    event = build_event(group_received([message]), QueueIdentity(queue_arn))
    record = event["Records"][0]

    # Then every field Lambda sends is there, with Lambda's names and encodings
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["messageId"] == message["MessageId"]
    assert record["receiptHandle"] == message["ReceiptHandle"]
    assert record["md5OfBody"] == hashlib.md5(b'{"hello": "world"}').hexdigest()  # noqa: S324 - SQS's checksum
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "upload",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert base64.b64decode(record["messageAttributes"]["blob"]["binaryValue"]) == b"\x00\x01\xff"
    assert record["messageAttributes"]["blob"]["dataType"] == "Binary"
    json.dumps(event)  # Lambda delivers JSON: no bytes may remain

    # And Powertools' strict parser model and data class accept it
    parsed = SqsRecordModel.model_validate(record)
    assert parsed.attributes.ApproximateReceiveCount == "1"
    assert SQSRecord(record).queue_url.endswith("/123456789012/" + queue_arn.rsplit(":", 1)[1])


def test_a_message_without_attributes_has_null_md5_of_attributes(sqs):
    queue_url, _ = new_queue(sqs)
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="plain")

    record = build_event(group_received(receive_all(sqs, queue_url)), QueueIdentity(queue_arn))["Records"][0]

    assert record["messageAttributes"] == {}
    assert record["md5OfMessageAttributes"] is None
    SqsRecordModel.model_validate(record)
