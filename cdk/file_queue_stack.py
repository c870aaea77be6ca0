from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from aws_cdk import Annotations, Aws, CfnOutput, CfnParameter, Fn, Stack
from aws_cdk import aws_ec2 as ec2

from cdk.acknowledge import acknowledge
from cdk.alarms_construct import AlarmsConstruct
from cdk.compaction_construct import CompactionConstruct
from cdk.config import DATABASE_CREDENTIALS_ARN_PATTERN, RECOMMENDED_MIN_RECEIVE_COUNT, local_model
from cdk.connection_budget import check_connection_budget, database_connection_limit
from cdk.consumer_construct import LambdaConsumerConstruct
from cdk.database_construct import PROXY_MAX_CONNECTIONS_PERCENT, AuroraDatabaseConstruct
from cdk.image_asset import project_image
from cdk.ingest_construct import IngestConstruct
from cdk.irsa_construct import IrsaRolesConstruct
from cdk.network import build_network
from cdk.runtime_environment import lambda_environment, settings_of, worker_environment
from cdk.runtime_permissions import grant_settings_permissions

if TYPE_CHECKING:
    from constructs import Construct

    from cdk.config import FileQueueConfig

# CDK's singleton Lambda behind Custom::S3BucketNotifications is created in the stack's scope.
NOTIFICATIONS_HANDLER_PREFIX = "BucketNotificationsHandler"


class FileQueueStack(Stack):
    """S3 uploads -> SQS -> the chosen runtime (Lambda, EKS workers or both), their IAM, alarms and a dashboard."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FileQueueConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.ingest = IngestConstruct(self, "Ingest", config=config)
        self.image = project_image(
            self,
            "Image",
            model_folder=local_model(config.embedding_model_folder).folder
            if config.embedder == "local" and config.embedding_model_folder is not None
            else None,
        )
        self.network = build_network(self, config)
        self.database: AuroraDatabaseConstruct | None = None
        if config.creates_database and self.network is not None:
            self.database = AuroraDatabaseConstruct(
                self, "Database", config=config, network=self.network, image=self.image
            )
            self.database_secret_arn = self.database.secret_arn
        else:
            # Not named "...Secret...": CloudFormation Validate would take it for a password wanting NoEcho,
            # and the ARN of a secret is no secret.
            self.database_secret_arn = CfnParameter(
                self,
                "DatabaseCredentialsArn",
                type="String",
                description="ARN of the Secrets Manager secret holding the PostgreSQL URL or the RDS JSON credentials",
                allowed_pattern=DATABASE_CREDENTIALS_ARN_PATTERN,
                default=config.db_secret_arn,
            ).value_as_string
        self._check_connection_budget()
        self.consumer: LambdaConsumerConstruct | None = None
        self.compaction: CompactionConstruct | None = None
        if config.runs_lambda:
            self.consumer = LambdaConsumerConstruct(
                self,
                "LambdaConsumer",
                config=config,
                queue=self.ingest.queue,
                consumer_policy=self.ingest.consumer_policy,
                database_secret_arn=self.database_secret_arn,
                image=self.image,
                network=self.network,
            )
            self.compaction = CompactionConstruct(
                self,
                "Compaction",
                config=config,
                consumer=self.consumer,
                database_secret_arn=self.database_secret_arn,
                image=self.image,
            )
            if self.database is not None:
                self.database.allow_clients([self.consumer.function], "File queue Lambda functions to the proxy")
                # Migrated before the functions exist, so the event source starts on the migrated schema.
                self.database.migration.execute_before(
                    *(
                        cast("Construct", function.node.default_child)
                        for function in (self.consumer.function, self.compaction.function)
                    )
                )
        self.irsa: IrsaRolesConstruct | None = None
        if config.runs_eks and config.oidc_provider_arn is not None and config.oidc_issuer is not None:
            self.irsa = IrsaRolesConstruct(
                self,
                "Irsa",
                oidc_provider_arn=config.oidc_provider_arn,
                oidc_issuer=config.oidc_issuer,
                namespace=config.k8s_namespace,
                service_account=config.k8s_service_account,
                keda_namespace=config.keda_namespace,
                keda_service_account=config.keda_service_account,
                keda_operator_role_arn=config.keda_operator_role_arn,
                queue=self.ingest.queue,
                consumer_policy=self.ingest.consumer_policy,
            )
            grant_settings_permissions(
                self.irsa,
                self.irsa.worker_role,
                worker_environment(config, self.database_secret_arn),
                self.database_secret_arn,
            )
            if self.database is not None:
                self.database.allow_clients(
                    [ec2.Peer.security_group_id(group_id) for group_id in config.worker_security_group_ids],
                    "File queue worker pods to the proxy",
                )
        self.alarms = AlarmsConstruct(
            self,
            "Alarms",
            config=config,
            queue=self.ingest.queue,
            dead_letter_queue=self.ingest.dead_letter_queue,
            function=self.consumer.function if self.consumer is not None else None,
            function_log_group=self.consumer.log_group if self.consumer is not None else None,
        )
        self._flag_low_receive_count()
        self._flag_both_runtimes()
        self._flag_hashing_embedder()
        self._acknowledge_notifications_handler()
        self._outputs()

    def _check_connection_budget(self) -> None:
        lambda_pool = settings_of(lambda_environment(self.config, "budget")).db_pool_max_size
        worker_pool = settings_of(worker_environment(self.config, "budget")).db_pool_max_size
        limit, limit_name = database_connection_limit(self.config, PROXY_MAX_CONNECTIONS_PERCENT)
        check_connection_budget(
            self.config, limit=limit, limit_name=limit_name, lambda_pool_size=lambda_pool, worker_pool_size=worker_pool
        )

    def _flag_hashing_embedder(self) -> None:
        if self.config.embedder == "hashing":
            Annotations.of(self).add_warning_v2(
                "filequeue:hashingEmbedder",
                "embedder=hashing is the demo and test embedder: its vectors match words, not meaning, so search "
                "and similar-document edges are lexical only. Deploy embedder=bedrock (the default) or "
                "embedder=local with embeddingModelFolder for a semantic store.",
            )

    def _flag_low_receive_count(self) -> None:
        if self.config.runs_lambda and self.config.max_receive_count < RECOMMENDED_MIN_RECEIVE_COUNT:
            Annotations.of(self.ingest.queue).add_info(
                f"maxReceiveCount is {self.config.max_receive_count} (one delivery and "
                f"{self.config.max_receive_count - 1} retries); AWS recommends at least "
                f"{RECOMMENDED_MIN_RECEIVE_COUNT} for a Lambda trigger, because a throttled poll also uses a "
                "receive. maxConcurrency caps the trigger below the function's concurrency, which keeps such "
                "throttles rare; watch the DLQ alarm, or raise it with -c maxReceiveCount=5."
            )

    def _flag_both_runtimes(self) -> None:
        if self.config.runtime == "both":
            Annotations.of(self).add_info(
                "runtime=both is a migration state: the Lambda trigger and the EKS workers consume the same "
                "queue, and KEDA counts the messages Lambda holds as work for pods. Deploy runtime=eks or "
                "runtime=lambda once the move is done."
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
        CfnOutput(self, "runtime", value=self.config.runtime, description="Which runtime consumes the queue")
        CfnOutput(
            self,
            "image",
            # The expression the Lambda function's ImageUri uses, so both runtimes name one reference.
            value=self.image.repository.repository_uri_for_tag(self.image.asset_hash),
            description="The image both runtimes run (params.env IMAGE)",
        )
        CfnOutput(self, "awsRegion", value=Aws.REGION, description="Region of the stack (params.env AWS_REGION)")
        CfnOutput(
            self,
            "databaseSecretArn",
            value=self.database_secret_arn,
            description="The database secret (params.env DATABASE_SECRET_ARN)",
        )
        if self.consumer is not None:
            function = self.consumer.function
            CfnOutput(self, "functionName", value=function.function_name, description="Lambda consumer")
            if self.network is not None:
                CfnOutput(
                    self,
                    "functionSecurityGroupIds",
                    value=Fn.join(",", [group.security_group_id for group in function.connections.security_groups]),
                    description="Security groups of the Lambda consumer: allow them into the database's security group",
                )
        if self.irsa is not None:
            account = f"{self.config.k8s_namespace}/{self.config.k8s_service_account}"
            CfnOutput(
                self,
                "workerRoleArn",
                value=self.irsa.worker_role.role_arn,
                description=f"eks.amazonaws.com/role-arn of the {account} ServiceAccount (params.env WORKER_ROLE_ARN)",
            )
            CfnOutput(
                self,
                "kedaRoleArn",
                value=self.irsa.keda_operator_role.role_arn,
                description="Role KEDA's TriggerAuthentication assumes (params.env KEDA_ROLE_ARN)",
            )
        if self.database is not None:
            CfnOutput(
                self,
                "databaseProxyEndpoint",
                value=self.database.proxy.endpoint,
                description="RDS Proxy endpoint both runtimes connect to (the host in databaseSecretArn)",
            )
            CfnOutput(
                self,
                "databaseClusterEndpoint",
                value=self.database.cluster.cluster_endpoint.hostname,
                description="Aurora cluster writer endpoint, for an operator's session (the runtimes use the proxy)",
            )
        CfnOutput(self, "embedder", value=self.config.embedder, description="params.env EMBEDDER")
        CfnOutput(
            self,
            "embeddingDimension",
            value=str(self.config.resolved_embedding_dimension),
            description="params.env EMBEDDING_DIMENSION",
        )
        if self.alarms.topic is not None:
            CfnOutput(self, "alarmTopicArn", value=self.alarms.topic.topic_arn, description="SNS topic of the alarms")
