from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_lambda_event_sources import SqsEventSource
from constructs import Construct

from cdk.acknowledge import acknowledge
from cdk.config import BATCH_SIZE, ContextError
from handlers.errors import ConfigError
from handlers.settings import Settings

if TYPE_CHECKING:
    from aws_cdk import aws_sqs as sqs

    from cdk.config import FileQueueConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "container/Dockerfile"
HANDLER = "handlers.lambda_entry.lambda_handler"
# The image's default command is the EKS poll loop; in Lambda the runtime interface client runs the handler.
LAMBDA_ENTRYPOINT = ("/usr/local/bin/python", "-m", "awslambdaric")
SERVICE_NAME = "file-queue"
# Docker-ignore patterns (root-anchored), added to the repository's .dockerignore: what the image never
# needs, so the build context and the asset hash stay independent of tests, benchmarks and the CDK app.
IMAGE_EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "cdk.out",
    "cdk",
    "cdk.json",
    "tests",
    "bench",
    "events",
    ".ci",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".filequeue",
    "build",
    "dist",
    "*.egg-info",
    "**/__pycache__",
    "**/*.pyc",
    # CDK re-includes only the Dockerfile's base name; without this a .dockerignore that excludes
    # container/ would drop the Dockerfile from the staged asset and `cdk deploy` could not build it.
    f"!{DOCKERFILE}",
)
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


def lambda_environment(config: FileQueueConfig, database_secret_arn: str) -> dict[str, str]:
    """The function's environment, checked by the handler's own settings so a bad value fails at synth."""
    environment = {
        "FILEQUEUE_DATABASE_SECRET_ARN": database_secret_arn,
        "FILEQUEUE_EMBEDDER": config.embedder,
        "FILEQUEUE_EMBEDDING_DIMENSION": str(config.embedding_dimension),
        "FILEQUEUE_DEADLINE_MARGIN_SECONDS": str(config.deadline_margin_seconds),
        "FILEQUEUE_MAX_OBJECT_BYTES": str(config.max_object_bytes),
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_LOG_LEVEL": config.log_level,
    }
    if config.embedding_model:
        environment["FILEQUEUE_EMBEDDING_MODEL"] = config.embedding_model
    if config.openai_base_url:
        environment["FILEQUEUE_OPENAI_BASE_URL"] = config.openai_base_url
    try:
        Settings.from_env(environment)
    except ConfigError as exc:
        raise ContextError(f"the handler would reject this configuration: {exc}") from exc
    return environment


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
        vpc, subnets, security_groups = self._network(config)
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description="File queue consumer: S3 notifications from SQS to PostgreSQL",
            code=image_code(),
            architecture=lambda_.Architecture.X86_64,
            role=self.role,
            timeout=Duration.seconds(config.function_timeout_seconds),
            memory_size=config.function_memory_mb,
            environment=environment,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=security_groups,
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
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadDatabaseSecret", actions=["secretsmanager:GetSecretValue"], resources=[database_secret_arn]
            )
        )
        if config.embedder == "bedrock":
            self.role.add_to_policy(
                iam.PolicyStatement(
                    sid="InvokeEmbeddingModel",
                    actions=["bedrock:InvokeModel"],
                    resources=[_foundation_model_arn(self, Settings.from_env(environment).resolved_embedding_model)],
                )
            )
        self._trace()
        if vpc is not None:
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

    def _network(
        self, config: FileQueueConfig
    ) -> tuple[ec2.IVpc | None, ec2.SubnetSelection | None, list[ec2.ISecurityGroup] | None]:
        """Import the VPC by id, without a lookup, so synthesis needs no credentials."""
        if config.vpc_id is None:
            return None, None, None
        vpc = ec2.Vpc.from_vpc_attributes(self, "Vpc", vpc_id=config.vpc_id, availability_zones=Fn.get_azs())
        acknowledge(
            vpc,
            "Annotation::@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones",
            "The function is placed in explicit subnet ids; nothing here selects subnets by availability zone.",
        )
        subnets: list[ec2.ISubnet] = []
        for index, subnet_id in enumerate(config.subnet_ids):
            subnet = ec2.Subnet.from_subnet_id(self, f"Subnet{index}", subnet_id)
            acknowledge(
                subnet,
                "Annotation::@aws-cdk/aws-ec2:noSubnetRouteTableId",
                "Lambda's VpcConfig needs only the subnet id; nothing here reads the subnet's route table.",
            )
            subnets.append(subnet)
        security_groups: list[ec2.ISecurityGroup] | None = None
        if config.security_group_ids:
            security_groups = [
                ec2.SecurityGroup.from_security_group_id(self, f"SecurityGroup{index}", group_id, mutable=False)
                for index, group_id in enumerate(config.security_group_ids)
            ]
        return vpc, ec2.SubnetSelection(subnets=subnets), security_groups

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


def image_code(handler: str = HANDLER) -> lambda_.DockerImageCode:
    """The project's one image, staged at synth and built only at deploy (synthesis needs no Docker).

    Every function passes the same asset settings, so they share one image and differ in `handler`.
    """
    return lambda_.DockerImageCode.from_image_asset(
        directory=str(REPO_ROOT),
        file=DOCKERFILE,
        cmd=[handler],
        entrypoint=list(LAMBDA_ENTRYPOINT),
        exclude=list(IMAGE_EXCLUDES),
        platform=ecr_assets.Platform.LINUX_AMD64,
    )


def _foundation_model_arn(scope: Construct, model_id: str) -> str:
    return Stack.of(scope).format_arn(
        service="bedrock", account="", resource="foundation-model", resource_name=model_id
    )
