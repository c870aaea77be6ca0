"""Context parsing and validation: no synthesis needed, so every error case is cheap to check."""

from __future__ import annotations

from typing import Any

import pytest

from cdk.config import ContextError, FileQueueConfig
from cdk.runtime_environment import lambda_environment, worker_environment

OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"


def config_from(**context: Any) -> FileQueueConfig:
    return FileQueueConfig.from_context(context.get)


def test_no_context_gives_the_documented_defaults() -> None:
    config = config_from()

    assert config == FileQueueConfig()
    assert (config.uploads_prefix, config.function_timeout_seconds, config.max_receive_count) == ("uploads/", 300, 4)
    assert config.runtime == "lambda"
    assert (config.k8s_namespace, config.k8s_service_account) == ("file-queue", "filequeue-worker")
    assert config.lambda_extract_memory_mb == 2048 - 384
    assert config.visibility_timeout_seconds == 1805
    assert config.oidc_issuer is None
    assert not config.wants_alarm_topic


def test_cli_strings_are_parsed_like_json_values() -> None:
    from_cli = config_from(
        maxConcurrency="7",
        alarmTopic="true",
        subnetIds="subnet-0aaa1111bbbb2222c, subnet-0ddd3333eeee4444f",
        vpcId="vpc-0a1b2c3d4e5f60718",
    )
    from_json = config_from(
        maxConcurrency=7,
        alarmTopic=True,
        subnetIds=["subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"],
        vpcId="vpc-0a1b2c3d4e5f60718",
    )

    assert from_cli == from_json
    assert from_cli.subnet_ids == ("subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f")


def test_issuer_is_derived_from_the_provider_arn() -> None:
    config = config_from(oidcProviderArn=OIDC_ARN)

    assert config.oidc_issuer == "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"


def test_an_alarm_email_implies_a_topic() -> None:
    assert config_from(alarmEmail="ops@example.com").wants_alarm_topic


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"maxConcurrency": 1}, "maxConcurrency"),
        ({"maxConcurrency": "many"}, "maxConcurrency"),
        ({"functionTimeoutSeconds": 901}, "functionTimeoutSeconds"),
        ({"maxReceiveCount": 0}, "maxReceiveCount"),
        ({"dlqRetentionDays": 1}, "dlqRetentionDays"),
        ({"logRetentionDays": 31}, "logRetentionDays"),
        ({"uploadsPrefix": "uploads"}, "uploadsPrefix"),
        ({"uploadsPrefix": "/uploads/"}, "uploadsPrefix"),
        ({"embedder": "word2vec"}, "embedder"),
        ({"alarmTopic": "maybe"}, "alarmTopic"),
        ({"oidcProviderArn": "arn:aws:iam::123456789012:role/eks"}, "oidcProviderArn"),
        ({"dbSecretArn": "arn:aws:ssm:us-east-1:123456789012:parameter/db"}, "dbSecretArn"),
        ({"vpcId": "vpc-0a1b2c3d4e5f60718"}, "vpcId"),
        ({"subnetIds": "subnet-0aaa1111bbbb2222c"}, "vpcId"),
        ({"vpcId": "vpc-0a1b2c3d4e5f60718", "subnetIds": "subnet-1"}, "subnetIds"),
        ({"k8sNamespace": "File_Queue"}, "k8sNamespace"),
        ({"runtime": "fargate"}, "runtime"),
        ({"runtime": "eks"}, "oidcProviderArn"),
        ({"runtime": "both"}, "oidcProviderArn"),
        ({"k8sServiceAccount": "File_Processor"}, "k8sServiceAccount"),
        ({"functionMemoryMb": 256}, "functionMemoryMb"),
    ],
)
def test_bad_context_names_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(ContextError, match=f"context {key} "):
        config_from(**context)


def test_environment_the_handler_would_reject_fails_at_synth() -> None:
    config = config_from(embedder="bedrock", embeddingDimension=300)

    with pytest.raises(ContextError, match="FILEQUEUE_EMBEDDING_DIMENSION"):
        lambda_environment(config, "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf")


def test_openai_embedder_passes_its_endpoint_but_never_a_key() -> None:
    config = config_from(embedder="openai", openaiBaseUrl="https://embeddings.internal/v1")

    environment = lambda_environment(config, "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf")

    assert environment["FILEQUEUE_OPENAI_BASE_URL"] == "https://embeddings.internal/v1"
    assert "FILEQUEUE_OPENAI_API_KEY" not in environment


@pytest.mark.parametrize(
    ("context", "text"),
    [
        # the deadline margin must exceed the write margin, or a record could start with no time to extract
        ({"deadlineMarginSeconds": 10}, "deadline margin (10 s) must exceed the write margin (10 s)"),
        ({"deadlineMarginSeconds": 300}, "functionTimeoutSeconds (300 s) must exceed the deadline margin (300 s)"),
        (
            {"functionTimeoutSeconds": 120},
            "extraction limit (120 s) plus the write margin (10 s) exceed the function timeout, functionTimeoutSeconds",
        ),
        (
            {"runtime": "eks", "oidcProviderArn": OIDC_ARN, "workerShutdownGraceSeconds": 65},
            "exceed the worker shutdown grace, workerShutdownGraceSeconds (65 s)",
        ),
    ],
)
def test_contradicting_time_limits_fail_at_synth_with_the_budgets_words(context: dict[str, Any], text: str) -> None:
    with pytest.raises(ContextError, match="context time limits contradict each other") as error:
        config_from(**context)

    assert text in str(error.value)


def test_a_lambda_only_stack_does_not_check_the_workers_budget() -> None:
    assert config_from(workerShutdownGraceSeconds=30).runtime == "lambda"


def test_the_lambdas_extraction_cap_leaves_the_handler_its_reserve() -> None:
    environment = lambda_environment(config_from(functionMemoryMb=3008), "arn:aws:secretsmanager:x")

    assert environment["FILEQUEUE_EXTRACT_MEMORY_MB"] == str(3008 - 384)


def test_the_workers_expected_environment_carries_its_budget_and_no_fixed_memory_cap() -> None:
    environment = worker_environment(config_from(runtime="eks", oidcProviderArn=OIDC_ARN), "arn:aws:secretsmanager:x")

    assert environment["FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS"] == "85"
    assert environment["FILEQUEUE_EXTRACT_TIMEOUT_SECONDS"] == "60"
    assert environment["FILEQUEUE_WRITE_MARGIN_SECONDS"] == "10"
    assert environment["FILEQUEUE_AUTO_MIGRATE"] == "false"
    assert "FILEQUEUE_EXTRACT_MEMORY_MB" not in environment
