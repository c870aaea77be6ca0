"""`database=aurora`: Aurora PostgreSQL Serverless v2 with pgvector, RDS Proxy in front, migrated at deploy.

- The cluster keeps its generated credentials in a secret of its own, which only RDS Proxy reads.
- Both runtimes read the **connection secret**: the same user and password (CloudFormation dynamic references
  to the cluster's secret, resolved at deploy) with the proxy's endpoint as host. The handler reads the RDS JSON
  shape, so the Lambda functions and the pods connect through the proxy with no setting of their own.
- RDS Proxy takes the connection storms of Lambda scaling out (many short-lived environments) and holds the
  database's connections below the limit the synthesis-time connection budget checks.
- A `triggers.Trigger` runs `filequeue migrate`'s Lambda counterpart from the project's image once the proxy
  answers and before the consumer functions (and so the queue's event source) exist; a failed migration fails
  the deployment. Its `CREATE EXTENSION vector` needs `rds_superuser`, which the cluster's master user has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration, RemovalPolicy, SecretValue, triggers
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk.acknowledge import acknowledge
from cdk.consumer_construct import LAMBDA_ENTRYPOINT, allow_network_interfaces
from cdk.runtime_environment import lambda_environment
from cdk.runtime_permissions import grant_settings_permissions

if TYPE_CHECKING:
    from aws_cdk import aws_ecr_assets as ecr_assets

    from cdk.config import FileQueueConfig
    from cdk.network import Network

# The image's deploy-time migration entry point: what `filequeue migrate` does, as a Lambda handler.
MIGRATE_HANDLER = "handlers.lambda_entry.migrate_handler"
# Aurora PostgreSQL 16.8 ships pgvector 0.8.0 (HNSW needs >= 0.5.0).
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_16_8
DATABASE_NAME = "filequeue"
MASTER_USER = "filequeue"
PORT = 5432
# Share of the database's max_connections the proxy may open; the rest stays for an operator's session.
PROXY_MAX_CONNECTIONS_PERCENT = 90
MIGRATION_TIMEOUT = Duration.minutes(10)
MIGRATION_MEMORY_MB = 1024


class AuroraDatabaseConstruct(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FileQueueConfig,
        network: Network,
        image: ecr_assets.DockerImageAsset,
    ) -> None:
        super().__init__(scope, construct_id)
        cluster_secret = rds.DatabaseSecret(self, "ClusterSecret", username=MASTER_USER)
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION),
            credentials=rds.Credentials.from_secret(cluster_secret),
            default_database_name=DATABASE_NAME,
            writer=rds.ClusterInstance.serverless_v2("Writer"),
            serverless_v2_min_capacity=config.database_min_capacity,
            serverless_v2_max_capacity=config.database_max_capacity,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            port=PORT,
            storage_encrypted=True,
            deletion_protection=True,
            backup=rds.BackupProps(retention=Duration.days(7)),
            cloudwatch_logs_exports=["postgresql"],
            iam_authentication=False,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        self.proxy = rds.DatabaseProxy(
            self,
            "Proxy",
            proxy_target=rds.ProxyTarget.from_cluster(self.cluster),
            secrets=[cluster_secret],
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            require_tls=True,
            iam_auth=False,
            client_password_auth_type=rds.ClientPasswordAuthType.POSTGRES_SCRAM_SHA_256,
            max_connections_percent=PROXY_MAX_CONNECTIONS_PERCENT,
            debug_logging=False,
        )
        self.connection_secret = secretsmanager.Secret(
            self,
            "ConnectionSecret",
            description="File queue database: the proxy's endpoint with the cluster's user (RDS JSON shape)",
            secret_object_value={
                "engine": SecretValue.unsafe_plain_text("postgres"),
                "host": SecretValue.unsafe_plain_text(self.proxy.endpoint),
                "port": SecretValue.unsafe_plain_text(str(PORT)),
                "dbname": SecretValue.unsafe_plain_text(DATABASE_NAME),
                "username": cluster_secret.secret_value_from_json("username"),
                "password": cluster_secret.secret_value_from_json("password"),
            },
        )
        self._acknowledge(cluster_secret)
        self.migration = self._migration(config, network, image)

    @property
    def secret_arn(self) -> str:
        return self.connection_secret.secret_arn

    def allow_clients(self, peers: list[ec2.IConnectable], description: str) -> None:
        """Let these security groups (or functions) reach the proxy on the database port."""
        for peer in peers:
            self.proxy.connections.allow_from(peer, ec2.Port.tcp(PORT), description)

    def _migration(
        self, config: FileQueueConfig, network: Network, image: ecr_assets.DockerImageAsset
    ) -> triggers.Trigger:
        role = iam.Role(
            self,
            "MigrationRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="File queue deploy-time database migrations",
        )
        environment = {
            name: value
            for name, value in lambda_environment(config, self.secret_arn).items()
            if name != "FILEQUEUE_EXTRACT_MEMORY_MB"
        }
        function = lambda_.DockerImageFunction(
            self,
            "Migration",
            description="File queue: applies database migrations at deploy (filequeue migrate)",
            code=lambda_.DockerImageCode.from_ecr(
                image.repository,
                tag_or_digest=image.asset_hash,
                cmd=[MIGRATE_HANDLER],
                entrypoint=list(LAMBDA_ENTRYPOINT),
            ),
            architecture=lambda_.Architecture.X86_64,
            role=role,
            timeout=MIGRATION_TIMEOUT,
            memory_size=MIGRATION_MEMORY_MB + config.model_memory_mb,
            reserved_concurrent_executions=1,
            environment=environment,
            vpc=network.vpc,
            vpc_subnets=network.subnets,
            security_groups=network.function_security_groups,
        )
        grant_settings_permissions(self, role, environment, self.secret_arn)
        allow_network_interfaces(role)
        self.allow_clients([function], "Deploy-time migrations to the proxy")
        trigger = triggers.Trigger(
            self,
            "Migrate",
            handler=function,
            timeout=MIGRATION_TIMEOUT,
            execute_after=[self.cluster, self.proxy, self.connection_secret],
            execute_on_handler_change=True,
        )
        return trigger

    def _acknowledge(self, cluster_secret: secretsmanager.ISecret) -> None:
        no_rotation = (
            "The connection secret holds a copy of the cluster's password (resolved at deploy); rotating the "
            "cluster's secret would leave both runtimes with a stale copy, so the password changes by replacing "
            "the secret with a deploy. Only the proxy and the runtime roles may read either secret."
        )
        acknowledge(cluster_secret, "AwsSolutions-SMG4", no_rotation)
        acknowledge(self.connection_secret, "AwsSolutions-SMG4", no_rotation)
        acknowledge(
            self.cluster,
            "AwsSolutions-RDS6",
            "The handler authenticates with the password from the connection secret through RDS Proxy; IAM "
            "database authentication would need a token per connection from every runtime.",
        )
        acknowledge(
            self.cluster,
            "AwsSolutions-RDS11",
            "PostgreSQL's default port: the cluster is reachable only from the proxy's security group, so another "
            "port would hide nothing.",
        )
