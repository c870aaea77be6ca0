from __future__ import annotations

from typing import TYPE_CHECKING

import jsii
from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

if TYPE_CHECKING:
    from aws_cdk import aws_sqs as sqs
    from aws_cdk.interfaces import aws_s3 as s3_interfaces
    from constructs import Construct


@jsii.implements(s3.IBucketNotificationDestination)
class AccountBoundQueueDestination:
    """An S3 notification target whose queue policy names both the bucket and the bucket's account.

    CDK's `SqsDestination` only adds `ArnLike aws:SourceArn`. Bucket names are global and can be
    re-created in another account after deletion, so AWS's S3-to-SQS example also pins
    `aws:SourceAccount`. S3 needs nothing beyond `sqs:SendMessage`.
    """

    def __init__(self, queue: sqs.IQueue) -> None:
        self._queue = queue

    def bind(self, scope: Construct, bucket: s3_interfaces.IBucketRef) -> s3.BucketNotificationDestinationConfig:
        self._queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowUploadBucketNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage"],
                resources=[self._queue.queue_arn],
                conditions={
                    "ArnEquals": {"aws:SourceArn": bucket.bucket_ref.bucket_arn},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        # Depending on the queue includes its policy: S3 checks the permission when the notification is set.
        return s3.BucketNotificationDestinationConfig(
            arn=self._queue.queue_arn, type=s3.BucketNotificationDestinationType.QUEUE, dependencies=[self._queue]
        )
