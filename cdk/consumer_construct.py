from __future__ import annotations

from typing import TYPE_CHECKING, cast

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_lambda_event_sources import SqsEventSource
from constructs import Construct

from cdk.acknowledge import acknowledge
from cdk.config import BATCH_SIZE
from cdk.runtime_environment import lambda_environment
from cdk.runtime_permissions import grant_settings_permissions

if TYPE_CHECKING:
    from aws_cdk import aws_ecr_assets as ecr_assets
    from aws_cdk import aws_sqs as sqs

    from cdk.config import FileQueueConfig
    from cdk.network import Network

HANDLER = "handlers.lambda_entry.lambda_handler"
# The image's default command is the EKS poll loop; in Lambda the runtime interface client runs the handler.
LAMBDA_ENTRYPOINT = ("/usr/local/bin/python", "-m", "awslambdaric")
_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
}


class LambdaConsumerConstruct(Construct):
    """The Lambda runtime: the project's container image behind an SQS event source with partial batch responses."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FileQueueConfig,
        queue: sqs.IQueue,
        consumer_policy: iam.IManagedPolicy,
        database_secret_arn: str,
        image: ecr_assets.DockerImageAsset,
        network: Network | None,
    ) -> None:
        super().__init__(scope, construct_id)
        environment = lambda_environment(config, database_secret_arn)
        self.log_group = logs.LogGroup(self, "LogGroup", retention=_RETENTION[config.log_retention_days])
        # Our own role instead of CDK's default one: the default attaches AWSLambdaBasicExecutionRole,
        # which may write to every log group of the account.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="File queue Lambda consumer",
            managed_policies=[consumer_policy],
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="File queue consumer: S3 notifications from SQS to PostgreSQL",
            # The very image reference the EKS workers run (the stack's `image` output).
            code=lambda_.DockerImageCode.from_ecr(
                image.repository, tag_or_digest=image.asset_hash, cmd=[HANDLER], entrypoint=list(LAMBDA_ENTRYPOINT)
            ),
            architecture=lambda_.Architecture.X86_64,
            role=self.role,
            timeout=Duration.seconds(config.function_timeout_seconds),
            memory_size=config.function_memory_mb,
            environment=environment,
            log_group=self.log_group,
            vpc=network.vpc if network else None,
            vpc_subnets=network.subnets if network else None,
            security_groups=network.function_security_groups if network else None,
        )
        self.event_source = SqsEventSource(
            queue,
            batch_size=BATCH_SIZE,
            max_batching_window=Duration.seconds(config.batching_window_seconds),
            report_batch_item_failures=True,
            # Caps concurrent invocations from this queue, and so the number of database connections.
            max_concurrency=config.max_concurrency,
        )
        self.function.add_event_source(self.event_source)
        grant_settings_permissions(self, self.role, environment, database_secret_arn)
        self._trace()
        if network is not None:
            self._allow_network_interfaces()

    def _trace(self) -> None:
        """Active X-Ray tracing, with its wildcard grant in a policy of its own.

        `tracing=Tracing.ACTIVE` would put the X-Ray statement into the role's default policy, and accepting
        cdk-nag's `Resource::*` finding there would hide any other wildcard later added to that policy.
        """
        function = cast("lambda_.CfnFunction", self.function.node.default_child)
        function.tracing_config = lambda_.CfnFunction.TracingConfigProperty(mode="Active")
        policy = iam.Policy(
            self,
            "TracingPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="WriteTraces", actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"], resources=["*"]
                )
            ],
        )
        # Lambda checks the role's X-Ray permissions when the function is created.
        self.function.node.add_dependency(policy)
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions.",
        )

    def _allow_network_interfaces(self) -> None:
        allow_network_interfaces(self.role)


def allow_network_interfaces(role: iam.Role) -> None:
    """The managed policy a Lambda function in a VPC needs, with its cdk-nag acknowledgment."""
    role.add_managed_policy(
        iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AWSLambdaVPCAccessExecutionRole")
    )
    acknowledge(
        role,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
        "AWS's documented policy for Lambda in a VPC: Lambda creates and deletes network interfaces in "
        "subnets it picks, so these ec2 actions cannot be scoped to known resources; AWS keeps it current.",
    )
