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
from constructs import Construct

from cdk.consumer_construct import LAMBDA_ENTRYPOINT, LambdaConsumerConstruct, allow_network_interfaces
from cdk.runtime_environment import lambda_environment

if TYPE_CHECKING:
    from aws_cdk import aws_ecr_assets as ecr_assets

    from cdk.config import FileQueueConfig

COMPACTION_HANDLER = "handlers.lambda_entry.compaction_handler"
# A merge rebuilds the HNSW index of the segments it merges; the largest take minutes.
COMPACTION_TIMEOUT = Duration.minutes(15)
COMPACTION_MEMORY_MB = 512
DEFAULT_SCHEDULE = Duration.minutes(5)


class CompactionConstruct(Construct):
    """An EventBridge schedule that runs `handlers.lambda_entry.compaction_handler` from the consumer's image."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FileQueueConfig,
        consumer: LambdaConsumerConstruct,
        database_secret_arn: str,
        image: ecr_assets.DockerImageAsset,
        every: Duration = DEFAULT_SCHEDULE,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="File queue chunk compaction",
        )
        consumer.log_group.grant_write(self.role)
        # The consumer's settings less its extraction memory cap: compaction never extracts, and the cap
        # derived from the consumer's memory would exceed this smaller function's.
        environment = {
            name: value
            for name, value in lambda_environment(config, database_secret_arn).items()
            if name != "FILEQUEUE_EXTRACT_MEMORY_MB"
        }
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="File queue: seals new chunks into HNSW-indexed segments and merges segments",
            code=lambda_.DockerImageCode.from_ecr(
                image.repository,
                tag_or_digest=image.asset_hash,
                cmd=[COMPACTION_HANDLER],
                entrypoint=list(LAMBDA_ENTRYPOINT),
            ),
            architecture=lambda_.Architecture.X86_64,
            role=self.role,
            timeout=COMPACTION_TIMEOUT,
            memory_size=COMPACTION_MEMORY_MB,
            reserved_concurrent_executions=1,
            environment=environment,
            log_group=consumer.log_group,
        )
        # Not `grant_settings_permissions`: compaction reads the database and never calls the embedder.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadDatabaseSecret", actions=["secretsmanager:GetSecretValue"], resources=[database_secret_arn]
            )
        )
        self._use_network_of(consumer.function)
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
