"""The scheduled chunk compaction for the Lambda runtime.

Lambda has no long-lived process to host a compaction leader, so an EventBridge schedule invokes a
second function from the consumer's container image (the same asset, so one image is built),
started with the compaction handler as its command. It runs in the consumer's network with the
consumer's database secret and logs into the consumer's log group; reserved concurrency 1 keeps
scheduled runs from overlapping (the database's compaction lock would make an overlapping run a
no-op anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.consumer_construct import allow_network_interfaces, image_code, lambda_environment

if TYPE_CHECKING:
    from cdk.config import FileQueueConfig

COMPACTION_HANDLER = "handlers.compaction_entry.lambda_handler"
# A merge rebuilds the HNSW index of the segments it merges; the largest take minutes.
COMPACTION_TIMEOUT = Duration.minutes(15)
COMPACTION_MEMORY_MB = 512
DEFAULT_SCHEDULE = Duration.minutes(5)


class CompactionConstruct(Construct):
    """An EventBridge schedule that runs `handlers.compaction_entry.lambda_handler` from the consumer's image."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FileQueueConfig,
        consumer: lambda_.Function,
        log_group: logs.ILogGroup,
        database_secret_arn: str,
        every: Duration = DEFAULT_SCHEDULE,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="File queue chunk compaction",
        )
        log_group.grant_write(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadDatabaseSecret", actions=["secretsmanager:GetSecretValue"], resources=[database_secret_arn]
            )
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="File queue: seals new chunks into HNSW-indexed segments and merges segments",
            code=image_code(COMPACTION_HANDLER),
            architecture=lambda_.Architecture.X86_64,
            role=self.role,
            timeout=COMPACTION_TIMEOUT,
            memory_size=COMPACTION_MEMORY_MB,
            reserved_concurrent_executions=1,
            environment=lambda_environment(config, database_secret_arn),
            log_group=log_group,
        )
        self._use_network_of(consumer)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Runs the chunk compaction",
            schedule=events.Schedule.rate(every),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )

    def _use_network_of(self, consumer: lambda_.Function) -> None:
        """The consumer's subnets and security groups: the compaction reaches the same database."""
        consumer_vpc = cast("lambda_.CfnFunction", consumer.node.default_child).vpc_config
        if consumer_vpc is None:
            return
        cast("lambda_.CfnFunction", self.function.node.default_child).vpc_config = consumer_vpc
        allow_network_interfaces(self.role)
