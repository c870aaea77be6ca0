from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Annotations, CfnOutput, CfnParameter, Fn, Stack

from cdk.acknowledge import acknowledge
from cdk.alarms_construct import AlarmsConstruct
from cdk.compaction_construct import CompactionConstruct
from cdk.config import DATABASE_CREDENTIALS_ARN_PATTERN, RECOMMENDED_MIN_RECEIVE_COUNT
from cdk.consumer_construct import LambdaConsumerConstruct
from cdk.ingest_construct import IngestConstruct
from cdk.irsa_construct import IrsaRolesConstruct

if TYPE_CHECKING:
    from constructs import Construct

    from cdk.config import FileQueueConfig

# CDK's singleton Lambda behind Custom::S3BucketNotifications is created in the stack's scope.
NOTIFICATIONS_HANDLER_PREFIX = "BucketNotificationsHandler"


class FileQueueStack(Stack):
    """S3 uploads -> SQS -> the Lambda consumer, plus the IAM the EKS consumer and KEDA need, and alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FileQueueConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        # Not named "...Secret...": CloudFormation Validate would take it for a password wanting NoEcho,
        # and the ARN of a secret is no secret.
        database_secret_arn = CfnParameter(
            self,
            "DatabaseCredentialsArn",
            type="String",
            description="ARN of the Secrets Manager secret holding the PostgreSQL URL or the RDS JSON credentials",
            allowed_pattern=DATABASE_CREDENTIALS_ARN_PATTERN,
            default=config.db_secret_arn,
        )
        self.ingest = IngestConstruct(self, "Ingest", config=config)
        self.consumer = LambdaConsumerConstruct(
            self,
            "LambdaConsumer",
            config=config,
            queue=self.ingest.queue,
            consumer_policy=self.ingest.consumer_policy,
            database_secret_arn=database_secret_arn.value_as_string,
        )
        self.compaction = CompactionConstruct(
            self,
            "Compaction",
            config=config,
            consumer=self.consumer.function,
            log_group=self.consumer.log_group,
            database_secret_arn=database_secret_arn.value_as_string,
        )
        self.irsa: IrsaRolesConstruct | None = None
        if config.oidc_provider_arn is not None and config.oidc_issuer is not None:
            self.irsa = IrsaRolesConstruct(
                self,
                "Irsa",
                oidc_provider_arn=config.oidc_provider_arn,
                oidc_issuer=config.oidc_issuer,
                namespace=config.k8s_namespace,
                keda_namespace=config.keda_namespace,
                keda_service_account=config.keda_service_account,
                queue=self.ingest.queue,
                consumer_policy=self.ingest.consumer_policy,
            )
        self.alarms = AlarmsConstruct(
            self,
            "Alarms",
            config=config,
            queue=self.ingest.queue,
            dead_letter_queue=self.ingest.dead_letter_queue,
            function=self.consumer.function,
        )
        self._flag_low_receive_count()
        self._acknowledge_notifications_handler()
        self._outputs()

    def _flag_low_receive_count(self) -> None:
        if self.config.max_receive_count < RECOMMENDED_MIN_RECEIVE_COUNT:
            Annotations.of(self.ingest.queue).add_info(
                f"maxReceiveCount is {self.config.max_receive_count}, below the {RECOMMENDED_MIN_RECEIVE_COUNT} AWS "
                "recommends for Lambda consumers: a throttled poll or a crashed batch also uses a receive, so "
                "healthy messages can reach the DLQ sooner. Watch the DLQ alarm; raise it with -c maxReceiveCount=5."
            )

    def _acknowledge_notifications_handler(self) -> None:
        for child in self.node.children:
            if child.node.id.startswith(NOTIFICATIONS_HANDLER_PREFIX):
                acknowledge(
                    child,
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                    "CDK's own handler for Custom::S3BucketNotifications; it runs only on deploy to write the "
                    "bucket's notification configuration and CDK offers no way to replace its logging policy.",
                )

    def _outputs(self) -> None:
        ingest = self.ingest
        CfnOutput(self, "queueUrl", value=ingest.queue.queue_url, description="SQS queue URL for consumers")
        CfnOutput(self, "queueArn", value=ingest.queue.queue_arn, description="SQS queue ARN")
        CfnOutput(self, "bucketName", value=ingest.bucket.bucket_name, description="Upload bucket")
        CfnOutput(
            self,
            "policyArn",
            value=ingest.consumer_policy.managed_policy_arn,
            description="Consumer policy: attach to any role that processes the queue",
        )
        CfnOutput(self, "deadLetterQueueUrl", value=ingest.dead_letter_queue.queue_url, description="DLQ URL")
        CfnOutput(self, "functionName", value=self.consumer.function.function_name, description="Lambda consumer")
        if self.config.vpc_id is not None:
            CfnOutput(
                self,
                "functionSecurityGroupIds",
                value=Fn.join(
                    ",", [group.security_group_id for group in self.consumer.function.connections.security_groups]
                ),
                description="Security groups of the Lambda consumer: allow them into the database's security group",
            )
        if self.irsa is not None:
            CfnOutput(
                self,
                "fileProcessorRoleArn",
                value=self.irsa.file_processor_role.role_arn,
                description="eks.amazonaws.com/role-arn for the file-processor ServiceAccount",
            )
            CfnOutput(
                self,
                "kedaOperatorRoleArn",
                value=self.irsa.keda_operator_role.role_arn,
                description="eks.amazonaws.com/role-arn for the keda-operator ServiceAccount",
            )
        if self.alarms.topic is not None:
            CfnOutput(self, "alarmTopicArn", value=self.alarms.topic.topic_arn, description="SNS topic of the alarms")
