from __future__ import annotations

from typing import TYPE_CHECKING, cast

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk.acknowledge import acknowledge
from cdk.queue_destination import AccountBoundQueueDestination

if TYPE_CHECKING:
    from cdk.config import FileQueueConfig

# Four times the largest S3 notification (64 KiB) and the classic SQS maximum.
QUEUE_MAX_MESSAGE_BYTES = 256 * 1024
LONG_POLL_SECONDS = 20
CONSUMER_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
)
CONSUMER_OBJECT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
# Without s3:ListBucket, S3 answers 403 instead of 404 for a key that no longer exists, and a deleted
# upload would look like a permission error; the grant is limited to listing under the uploads prefix.
CONSUMER_BUCKET_ACTIONS = ("s3:ListBucket",)


class IngestConstruct(Construct):
    """Upload bucket -> notifications -> queue -> DLQ, and the one policy every consumer gets."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FileQueueConfig) -> None:
        super().__init__(scope, construct_id)
        self.access_logs_bucket = self._access_logs_bucket(config)
        self.bucket = self._uploads_bucket(config)
        self.queue_name = f"{Stack.of(self).stack_name}-uploads"
        self.dead_letter_queue = self._dead_letter_queue(config)
        self.queue = self._queue(config)
        destination = AccountBoundQueueDestination(self.queue)
        key_filter = s3.NotificationKeyFilter(prefix=config.uploads_prefix)
        self.bucket.add_event_notification(s3.EventType.OBJECT_CREATED, destination, key_filter)
        self.bucket.add_event_notification(s3.EventType.OBJECT_REMOVED, destination, key_filter)
        self.consumer_policy = self._consumer_policy(config)

    def _access_logs_bucket(self, config: FileQueueConfig) -> s3.Bucket:
        # cdk-nag's S1 accepts a bucket that receives another bucket's access logs.
        return s3.Bucket(
            self,
            "AccessLogsBucket",
            # Server access log delivery supports SSE-S3 only.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireAccessLogs", expiration=Duration.days(config.access_log_retention_days))
            ],
        )

    def _uploads_bucket(self, config: FileQueueConfig) -> s3.Bucket:
        return s3.Bucket(
            self,
            "UploadsBucket",
            versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="uploads-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireNoncurrentVersions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_version_days),
                    expired_object_delete_marker=True,
                ),
                s3.LifecycleRule(id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
            ],
        )

    def _dead_letter_queue(self, config: FileQueueConfig) -> sqs.Queue:
        # The queue's ARN is built from its fixed name: referencing the queue itself would be a cycle
        # (the queue's redrive policy already names this DLQ).
        source_queue_arn = Stack.of(self).format_arn(service="sqs", resource=self.queue_name)
        return sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(config.dlq_retention_days),
            # Dead letters are the record of what failed: deleting the stack must not delete them.
            removal_policy=RemovalPolicy.RETAIN,
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(self, "SourceQueue", source_queue_arn)],
            ),
        )

    def _queue(self, config: FileQueueConfig) -> sqs.Queue:
        # SSE-SQS rather than a customer key: S3 can publish to it without a key policy, consumers need
        # no kms:Decrypt, and there is no per-message KMS cost or throttling.
        return sqs.Queue(
            self,
            "Queue",
            queue_name=self.queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(config.visibility_timeout_seconds),
            retention_period=Duration.days(config.queue_retention_days),
            max_message_size_bytes=QUEUE_MAX_MESSAGE_BYTES,
            receive_message_wait_time=Duration.seconds(LONG_POLL_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=config.max_receive_count, queue=self.dead_letter_queue
            ),
        )

    def _consumer_policy(self, config: FileQueueConfig) -> iam.ManagedPolicy:
        objects_arn = self.bucket.arn_for_objects(f"{config.uploads_prefix}*")
        policy = iam.ManagedPolicy(
            self,
            "ConsumerPolicy",
            description="Consume the file queue and read the uploads it announces (Lambda and EKS consumers).",
            statements=[
                iam.PolicyStatement(
                    sid="ConsumeFileQueue", actions=list(CONSUMER_QUEUE_ACTIONS), resources=[self.queue.queue_arn]
                ),
                iam.PolicyStatement(sid="ReadUploads", actions=list(CONSUMER_OBJECT_ACTIONS), resources=[objects_arn]),
                iam.PolicyStatement(
                    sid="ListUploads",
                    actions=list(CONSUMER_BUCKET_ACTIONS),
                    resources=[self.bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{config.uploads_prefix}*"]}},
                ),
            ],
        )
        stack = Stack.of(self)
        bucket_logical_id = stack.resolve(stack.get_logical_id(cast("s3.CfnBucket", self.bucket.node.default_child)))
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{config.uploads_prefix}*]",
            "Object keys are not known in advance; the wildcard covers only the uploads prefix, read-only.",
        )
        return policy
