"""boto3 clients for the operator commands, with AWS errors turned into one line that says what to fix."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from handlers.errors import ConfigError, ErrorCode, TransientError

if TYPE_CHECKING:
    from collections.abc import Iterator

_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_MISSING_BUCKET = {"NoSuchBucket"}
_DENIED = {"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "SignatureDoesNotMatch"}


def client(service: str) -> Any:
    """A client from the standard AWS environment (AWS_REGION, AWS_ENDPOINT_URL, credentials)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    make_client: Any = boto3.client  # the service name is a variable, which the typed overloads cannot follow
    try:
        return make_client(service, config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    except NoRegionError:
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)") from None


@contextmanager
def translated(subject: str) -> Iterator[None]:
    """Run AWS calls about `subject` (a queue URL, a bucket); their errors become FileQueueErrors."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in _MISSING_QUEUE:
            raise ConfigError(
                f"the queue {subject} does not exist (check FILEQUEUE_QUEUE_URL and AWS_REGION)"
            ) from None
        if code in _MISSING_BUCKET:
            raise ConfigError(f"the bucket {subject} does not exist") from None
        if code in _DENIED:
            raise ConfigError(f"access to {subject} denied ({code}): check the AWS credentials") from None
        raise TransientError(f"AWS call on {subject} failed: {code}", code=ErrorCode.AWS_UNAVAILABLE) from exc
    except NoRegionError:
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)") from None
    except NoCredentialsError:
        raise ConfigError("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    except BotoCoreError as exc:
        raise TransientError(
            f"AWS call on {subject} failed: {type(exc).__name__}: {exc}", code=ErrorCode.AWS_UNAVAILABLE
        ) from exc


def queue_arn(sqs: Any, queue_url: str) -> str:
    with translated(queue_url):
        return str(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def dead_letter_queue_url(sqs: Any, queue_url: str) -> str:
    """The DLQ named by the queue's redrive policy (the CDK app and the embedded stack both set one)."""
    import json

    with translated(queue_url):
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    policy = attributes.get("RedrivePolicy")
    if not policy:
        raise ConfigError(f"the queue {queue_url} has no redrive policy, so it has no dead-letter queue")
    target = str(json.loads(policy)["deadLetterTargetArn"])
    _, _, _, _, account, name = target.split(":", 5)
    with translated(target):
        return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
