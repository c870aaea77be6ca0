"""Every deploy-time knob of the stack, read once from CDK context and validated.

Context values arrive as JSON values from `cdk.json` and as plain strings from `cdk synth -c key=value`,
so every reader accepts both. Each error names the context key a user must change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdk.local_model import LocalModel, LocalModelError, read_local_model
from handlers.budget import TimeBudget, extract_memory_mb

if TYPE_CHECKING:
    from collections.abc import Callable

# The function timeout: a message's processing budget, five minutes.
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 300
# The SQS event source hands the function at most 10 messages per batch when a batching window is set.
BATCH_SIZE = 10
# One delivery plus three retries: the product's promise before a message goes to the DLQ.
DEFAULT_MAX_RECEIVE_COUNT = 4
# AWS recommends maxReceiveCount >= 5 for a Lambda trigger without maximum concurrency (a throttled poll
# also uses a receive); below it the stack prints an info annotation.
RECOMMENDED_MIN_RECEIVE_COUNT = 5
# `both` runs the Lambda trigger and the EKS workers on one queue: only while moving from one to the other.
RUNTIMES = ("lambda", "eks", "both")
# S3 event notifications are at most 64 KiB; a smaller MaximumMessageSize silently drops events.
S3_NOTIFICATION_MAX_BYTES = 64 * 1024
# The least the extraction child gets in the function once the handler process and a local model are paid for.
MIN_EXTRACT_MEMORY_MB = 512
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922)
EMBEDDERS = ("bedrock", "local", "openai", "hashing")
DEFAULT_DIMENSIONS = {"bedrock": 1024}
FALLBACK_DIMENSION = 256
# `external`: bring your own PostgreSQL (dbSecretArn); `aurora`: the stack creates Aurora Serverless v2 and RDS Proxy.
DATABASES = ("external", "aurora")
_OIDC_PROVIDER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/(?P<issuer>[^\s]+)$")
# Also the CloudFormation parameter's AllowedPattern, so it avoids regex features CloudFormation lacks.
DATABASE_CREDENTIALS_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# Aurora Serverless v2 capacity range, in Aurora capacity units (1 ACU ~ 2 GiB of memory).
AURORA_MIN_ACU = 0.5
AURORA_MAX_ACU = 256
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RESOURCE_ID = {kind: re.compile(rf"^{kind}-[0-9a-f]{{8,17}}$") for kind in ("vpc", "subnet", "sg")}


class ContextError(ValueError):
    """A context value the stack cannot be built from."""


@dataclass(frozen=True, slots=True)
class FileQueueConfig:
    """The stack's configuration; field `foo_bar` is the context key `fooBar`."""

    stack_name: str = "FileQueue"
    uploads_prefix: str = "uploads/"
    function_timeout_seconds: int = DEFAULT_FUNCTION_TIMEOUT_SECONDS
    function_memory_mb: int = 2048
    batching_window_seconds: int = 5
    max_concurrency: int = 5
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
    runtime: str = "lambda"
    queue_retention_days: int = 1
    dlq_retention_days: int = 14
    log_retention_days: int = 30
    log_level: str = "INFO"
    noncurrent_version_days: int = 30
    access_log_retention_days: int = 90
    db_secret_arn: str | None = None
    database: str = "external"
    database_min_capacity: float = 0.5
    database_max_capacity: float = 4.0
    database_max_connections: int | None = None
    worker_security_group_ids: tuple[str, ...] = ()
    worker_max_replicas: int = 20
    worker_processes: int = 2
    embedder: str = "bedrock"
    embedding_model: str = ""
    embedding_dimension: int | None = None
    embedding_model_folder: str | None = None
    openai_base_url: str | None = None
    max_object_bytes: int = 100 * 1024 * 1024
    deadline_margin_seconds: int = 30
    extract_timeout_seconds: int = 120
    write_margin_seconds: int = 10
    worker_shutdown_grace_seconds: int = 85
    worker_deadline_margin_seconds: int = 75
    worker_extract_timeout_seconds: int = 60
    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    oidc_provider_arn: str | None = None
    k8s_namespace: str = "file-queue"
    k8s_service_account: str = "filequeue-worker"
    keda_namespace: str = "keda"
    keda_service_account: str = "keda-operator"
    keda_operator_role_arn: str | None = None
    alarm_email: str | None = None
    worker_log_group_name: str | None = None
    alarm_topic: bool = False
    oldest_message_alarm_seconds: int = 3600

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> FileQueueConfig:
        """Build the configuration from a context getter such as `node.try_get_context`."""
        defaults = cls()
        config = cls(
            stack_name=_text(get, "stackName", defaults.stack_name),
            uploads_prefix=_text(get, "uploadsPrefix", defaults.uploads_prefix),
            function_timeout_seconds=_integer(get, "functionTimeoutSeconds", defaults.function_timeout_seconds),
            function_memory_mb=_integer(get, "functionMemoryMb", defaults.function_memory_mb),
            batching_window_seconds=_integer(get, "batchingWindowSeconds", defaults.batching_window_seconds),
            max_concurrency=_integer(get, "maxConcurrency", defaults.max_concurrency),
            max_receive_count=_integer(get, "maxReceiveCount", defaults.max_receive_count),
            runtime=_text(get, "runtime", defaults.runtime).lower(),
            queue_retention_days=_integer(get, "queueRetentionDays", defaults.queue_retention_days),
            dlq_retention_days=_integer(get, "dlqRetentionDays", defaults.dlq_retention_days),
            log_retention_days=_integer(get, "logRetentionDays", defaults.log_retention_days),
            log_level=_text(get, "logLevel", defaults.log_level).upper(),
            noncurrent_version_days=_integer(get, "noncurrentVersionDays", defaults.noncurrent_version_days),
            access_log_retention_days=_integer(get, "accessLogRetentionDays", defaults.access_log_retention_days),
            db_secret_arn=_optional_text(get, "dbSecretArn"),
            database=_text(get, "database", defaults.database).lower(),
            database_min_capacity=_number(get, "databaseMinCapacity", defaults.database_min_capacity),
            database_max_capacity=_number(get, "databaseMaxCapacity", defaults.database_max_capacity),
            database_max_connections=_optional_integer(get, "databaseMaxConnections"),
            worker_security_group_ids=_text_list(get, "workerSecurityGroupIds"),
            worker_max_replicas=_integer(get, "workerMaxReplicas", defaults.worker_max_replicas),
            worker_processes=_integer(get, "workerProcesses", defaults.worker_processes),
            embedder=_text(get, "embedder", defaults.embedder).lower(),
            embedding_model=_text(get, "embeddingModel", defaults.embedding_model),
            embedding_dimension=_optional_integer(get, "embeddingDimension"),
            embedding_model_folder=_optional_text(get, "embeddingModelFolder"),
            openai_base_url=_optional_text(get, "openaiBaseUrl"),
            max_object_bytes=_integer(get, "maxObjectBytes", defaults.max_object_bytes),
            deadline_margin_seconds=_integer(get, "deadlineMarginSeconds", defaults.deadline_margin_seconds),
            extract_timeout_seconds=_integer(get, "extractTimeoutSeconds", defaults.extract_timeout_seconds),
            write_margin_seconds=_integer(get, "writeMarginSeconds", defaults.write_margin_seconds),
            worker_shutdown_grace_seconds=_integer(
                get, "workerShutdownGraceSeconds", defaults.worker_shutdown_grace_seconds
            ),
            worker_deadline_margin_seconds=_integer(
                get, "workerDeadlineMarginSeconds", defaults.worker_deadline_margin_seconds
            ),
            worker_extract_timeout_seconds=_integer(
                get, "workerExtractTimeoutSeconds", defaults.worker_extract_timeout_seconds
            ),
            vpc_id=_optional_text(get, "vpcId"),
            subnet_ids=_text_list(get, "subnetIds"),
            security_group_ids=_text_list(get, "securityGroupIds"),
            oidc_provider_arn=_optional_text(get, "oidcProviderArn"),
            k8s_namespace=_text(get, "k8sNamespace", defaults.k8s_namespace),
            k8s_service_account=_text(get, "k8sServiceAccount", defaults.k8s_service_account),
            keda_namespace=_text(get, "kedaNamespace", defaults.keda_namespace),
            keda_service_account=_text(get, "kedaServiceAccount", defaults.keda_service_account),
            keda_operator_role_arn=_optional_text(get, "kedaOperatorRoleArn"),
            alarm_email=_optional_text(get, "alarmEmail"),
            worker_log_group_name=_optional_text(get, "workerLogGroupName"),
            alarm_topic=_flag(get, "alarmTopic", defaults.alarm_topic),
            oldest_message_alarm_seconds=_integer(
                get, "oldestMessageAlarmSeconds", defaults.oldest_message_alarm_seconds
            ),
        )
        config.validate()
        return config

    @property
    def visibility_timeout_seconds(self) -> int:
        """AWS's rule for Lambda consumers: at least six function timeouts plus the batching window."""
        return 6 * self.function_timeout_seconds + self.batching_window_seconds

    @property
    def oidc_issuer(self) -> str | None:
        """The provider's issuer host and path (`oidc.eks.<region>.amazonaws.com/id/<id>`), the IRSA key prefix."""
        if self.oidc_provider_arn is None:
            return None
        match = _OIDC_PROVIDER_ARN.match(self.oidc_provider_arn)
        if match is None:
            raise ContextError(f"context oidcProviderArn is not an IAM OIDC provider ARN: {self.oidc_provider_arn!r}")
        return match["issuer"]

    @property
    def wants_alarm_topic(self) -> bool:
        return self.alarm_topic or self.alarm_email is not None

    @property
    def runs_lambda(self) -> bool:
        return self.runtime in ("lambda", "both")

    @property
    def runs_eks(self) -> bool:
        return self.runtime in ("eks", "both")

    @property
    def resolved_embedding_dimension(self) -> int:
        """The context's dimension, else the embedder's: Titan V2's largest, the local model's own, or 256."""
        if self.embedding_dimension is not None:
            return self.embedding_dimension
        if self.embedder == "local" and self.embedding_model_folder is not None:
            return local_model(self.embedding_model_folder).dimension
        return DEFAULT_DIMENSIONS.get(self.embedder, FALLBACK_DIMENSION)

    @property
    def creates_database(self) -> bool:
        return self.database == "aurora"

    def validate(self) -> None:
        _check(1 <= self.function_timeout_seconds <= 900, "functionTimeoutSeconds", "must be in 1..900")
        _check(128 <= self.function_memory_mb <= 10240, "functionMemoryMb", "must be in 128..10240")
        _check(0 <= self.batching_window_seconds <= 300, "batchingWindowSeconds", "must be in 0..300")
        _check(2 <= self.max_concurrency <= 1000, "maxConcurrency", "must be in 2..1000 (an SQS event source limit)")
        _check(1 <= self.max_receive_count <= 1000, "maxReceiveCount", "must be in 1..1000")
        _check(self.runtime in RUNTIMES, "runtime", f"must be one of {', '.join(RUNTIMES)}")
        _check(
            not self.runs_eks or self.oidc_provider_arn is not None,
            "oidcProviderArn",
            f"is required with runtime={self.runtime}: the EKS workers get their role through IRSA",
        )
        _check(1 <= self.queue_retention_days <= 14, "queueRetentionDays", "must be in 1..14")
        _check(
            self.queue_retention_days < self.dlq_retention_days <= 14,
            "dlqRetentionDays",
            "must be longer than queueRetentionDays and at most 14",
        )
        _check(
            self.log_retention_days in LOG_RETENTION_DAYS, "logRetentionDays", f"must be one of {LOG_RETENTION_DAYS}"
        )
        _check(
            self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"), "logLevel", "must be DEBUG, INFO, WARNING or ERROR"
        )
        _check(self.noncurrent_version_days >= 1, "noncurrentVersionDays", "must be at least 1")
        _check(self.access_log_retention_days >= 1, "accessLogRetentionDays", "must be at least 1")
        _check(
            self.uploads_prefix.endswith("/")
            and not self.uploads_prefix.startswith("/")
            and "*" not in self.uploads_prefix,
            "uploadsPrefix",
            "must be a key prefix such as 'uploads/' (ends with '/', no leading '/', no '*')",
        )
        _check(self.embedder in EMBEDDERS, "embedder", f"must be one of {', '.join(EMBEDDERS)}")
        self._check_database()
        self._check_local_model()
        self._check_budgets()
        _check(self.oldest_message_alarm_seconds >= 60, "oldestMessageAlarmSeconds", "must be at least 60")
        if self.db_secret_arn is not None:
            _check(
                bool(re.match(DATABASE_CREDENTIALS_ARN_PATTERN, self.db_secret_arn)),
                "dbSecretArn",
                "must be a Secrets Manager secret ARN",
            )
        _check(
            (self.vpc_id is None) == (not self.subnet_ids),
            "vpcId",
            "and subnetIds must be given together (security groups are optional)",
        )
        _check(not self.security_group_ids or self.vpc_id is not None, "securityGroupIds", "needs vpcId and subnetIds")
        for key, kind, ids in (
            ("vpcId", "vpc", (self.vpc_id,) if self.vpc_id else ()),
            ("subnetIds", "subnet", self.subnet_ids),
            ("securityGroupIds", "sg", self.security_group_ids),
            ("workerSecurityGroupIds", "sg", self.worker_security_group_ids),
        ):
            for resource_id in ids:
                _check(bool(_RESOURCE_ID[kind].match(resource_id)), key, f"has {resource_id!r}, not a {kind}-... id")
        for key, name in (
            ("k8sNamespace", self.k8s_namespace),
            ("k8sServiceAccount", self.k8s_service_account),
            ("kedaNamespace", self.keda_namespace),
            ("kedaServiceAccount", self.keda_service_account),
        ):
            _check(bool(_K8S_NAME.match(name)), key, "must be a Kubernetes name (lower case letters, digits, '-')")
        if self.keda_operator_role_arn is not None:
            _check(
                bool(_ROLE_ARN.match(self.keda_operator_role_arn)),
                "kedaOperatorRoleArn",
                "must be an IAM role ARN (the role KEDA's operator already runs as)",
            )
        _check(1 <= self.worker_max_replicas <= 1000, "workerMaxReplicas", "must be in 1..1000")
        _check(1 <= self.worker_processes <= 64, "workerProcesses", "must be in 1..64")
        # Parsing the issuer validates the ARN's shape.
        _ = self.oidc_issuer

    def _check_database(self) -> None:
        _check(self.database in DATABASES, "database", f"must be one of {', '.join(DATABASES)}")
        if self.database_max_connections is not None:
            _check(self.database_max_connections >= 1, "databaseMaxConnections", "must be at least 1")
        if not self.creates_database:
            _check(
                not self.worker_security_group_ids,
                "workerSecurityGroupIds",
                "is only used with database=aurora (they are let into the database's proxy)",
            )
            return
        _check(
            self.db_secret_arn is None,
            "dbSecretArn",
            "cannot be given with database=aurora: the stack creates the database and its secret",
        )
        _check(
            AURORA_MIN_ACU <= self.database_min_capacity <= self.database_max_capacity <= AURORA_MAX_ACU
            and self.database_max_capacity >= 1,
            "databaseMaxCapacity",
            f"and databaseMinCapacity must satisfy {AURORA_MIN_ACU} <= min <= max <= {AURORA_MAX_ACU} ACU, max >= 1",
        )
        _check(
            (self.database_min_capacity * 2).is_integer() and (self.database_max_capacity * 2).is_integer(),
            "databaseMinCapacity",
            "and databaseMaxCapacity must be multiples of 0.5 ACU",
        )
        if self.runs_eks:
            _check(
                self.vpc_id is not None,
                "vpcId",
                "and subnetIds are required with database=aurora and runtime="
                f"{self.runtime}: the cluster's VPC, where the pods reach the database",
            )
            _check(
                bool(self.worker_security_group_ids),
                "workerSecurityGroupIds",
                f"is required with database=aurora and runtime={self.runtime}: the security groups of the "
                "worker pods (the nodes' or the pods' own), let into the database's proxy",
            )

    def _check_local_model(self) -> None:
        if self.embedder != "local":
            _check(
                self.embedding_model_folder is None,
                "embeddingModelFolder",
                "is only used with embedder=local",
            )
            return
        _check(
            self.embedding_model_folder is not None,
            "embeddingModelFolder",
            "is required with embedder=local: a model2vec model folder inside the repository, baked into the image",
        )
        model = local_model(self.embedding_model_folder or "")
        _check(
            self.embedding_dimension in (None, model.dimension),
            "embeddingDimension",
            f"is {self.embedding_dimension}, but the model in {model.folder} has {model.dimension} dimensions",
        )

    @property
    def model_memory_mb(self) -> int:
        """What the handler process holds for a local model; 0 for an embedder behind an API."""
        if self.embedder != "local" or self.embedding_model_folder is None:
            return 0
        return local_model(self.embedding_model_folder).memory_mb

    @property
    def lambda_extract_memory_mb(self) -> int:
        """The extraction child's cap in the function: its memory less the handler process's reserve and model."""
        try:
            cap = extract_memory_mb(self.function_memory_mb, processes=1) - self.model_memory_mb
        except ValueError as exc:
            raise ContextError(f"context functionMemoryMb is too small: {exc}") from None
        if cap < MIN_EXTRACT_MEMORY_MB:
            raise ContextError(
                f"context functionMemoryMb is too small: {self.function_memory_mb} MB leaves {cap} MB for "
                f"extraction once the local model ({self.model_memory_mb} MB) is loaded; at least "
                f"{MIN_EXTRACT_MEMORY_MB} MB are needed"
            )
        return cap

    def time_budgets(self) -> dict[str, TimeBudget]:
        """The time budget of each runtime this stack deploys, keyed by the name of its total."""
        budgets: dict[str, TimeBudget] = {}
        if self.runs_lambda:
            budgets["the function timeout, functionTimeoutSeconds"] = TimeBudget(
                total_seconds=self.function_timeout_seconds,
                deadline_margin_seconds=self.deadline_margin_seconds,
                extract_timeout_seconds=self.extract_timeout_seconds,
                write_margin_seconds=self.write_margin_seconds,
            )
        if self.runs_eks:
            budgets["the worker shutdown grace, workerShutdownGraceSeconds"] = TimeBudget(
                total_seconds=self.worker_shutdown_grace_seconds,
                deadline_margin_seconds=self.worker_deadline_margin_seconds,
                extract_timeout_seconds=self.worker_extract_timeout_seconds,
                write_margin_seconds=self.write_margin_seconds,
            )
        return budgets

    def _check_budgets(self) -> None:
        problems = [problem for name, budget in self.time_budgets().items() for problem in budget.problems(name)]
        if problems:
            raise ContextError("context time limits contradict each other: " + "; ".join(problems))
        if self.runs_lambda:
            _ = self.lambda_extract_memory_mb


def local_model(folder: str) -> LocalModel:
    """The model2vec folder `embeddingModelFolder` names, read once per synthesis."""
    try:
        return read_local_model(folder)
    except LocalModelError as exc:
        raise ContextError(f"context embeddingModelFolder {exc}") from None


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ContextError(f"context {key} {message}")


def _optional_integer(get: Callable[[str], Any], key: str) -> int | None:
    return None if get(key) is None else _integer(get, key, 0)


def _number(get: Callable[[str], Any], key: str, default: float) -> float:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise ContextError(f"context {key} must be a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise ContextError(f"context {key} must be a number, got {value!r}") from None


def _optional_text(get: Callable[[str], Any], key: str) -> str | None:
    value = get(key)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str):
        raise ContextError(f"context {key} must be a string, got {value!r}")
    return value.strip()


def _text(get: Callable[[str], Any], key: str, default: str) -> str:
    value = _optional_text(get, key)
    return default if value is None else value


def _integer(get: Callable[[str], Any], key: str, default: int) -> int:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        raise ContextError(f"context {key} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ContextError(f"context {key} must be an integer, got {value!r}") from None


def _flag(get: Callable[[str], Any], key: str, default: bool) -> bool:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ContextError(f"context {key} must be true or false, got {value!r}")


def _text_list(get: Callable[[str], Any], key: str) -> tuple[str, ...]:
    """Accept a JSON list from cdk.json or a comma-separated string from `-c key=a,b`."""
    value = get(key)
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ContextError(f"context {key} must be a list of strings or a comma-separated string, got {value!r}")
    return tuple(item.strip() for item in items if item.strip())
