"""The Lambda runtime: image, event source, environment, secret, network, logs and tracing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from handlers.settings import Settings, env_names
from tests.infrastructure.conftest import FULL_CONTEXT, REGION
from tests.infrastructure.template_queries import (
    as_list,
    env_of,
    flatten,
    logical_id_by_prefix,
    only_resource,
    resource_by_prefix,
    resources,
    statements_of_role,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from aws_cdk.assertions import Template

    from tests.infrastructure.conftest import Synthesized

RUNTIME_ENV_PREFIXES = ("POWERTOOLS_", "AWS_")


def _function(template: Template) -> Mapping[str, Any]:
    return resource_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")


def _event_source_mapping(template: Template) -> dict[str, Any]:
    properties: dict[str, Any] = only_resource(template, "AWS::Lambda::EventSourceMapping")[1]["Properties"]
    return properties


def _role_statements(template: Template) -> list[dict[str, Any]]:
    return statements_of_role(template, logical_id_by_prefix(template, "AWS::IAM::Role", "LambdaConsumerRole"))


def _image_asset(assembly_dir: Path) -> dict[str, Any]:
    manifest = json.loads((assembly_dir / "FileQueue.assets.json").read_text())
    asset: dict[str, Any]
    (asset,) = manifest["dockerImages"].values()
    return asset


def test_function_runs_the_project_image_through_the_runtime_interface_client(any_synth: Synthesized) -> None:
    properties = _function(any_synth.template)["Properties"]

    assert properties["PackageType"] == "Image"
    assert properties["ImageConfig"] == {
        "Command": ["handlers.lambda_entry.lambda_handler"],
        "EntryPoint": ["/usr/local/bin/python", "-m", "awslambdaric"],
    }
    assert properties["Architectures"] == ["x86_64"]


def test_handler_path_names_a_real_function() -> None:
    import handlers.lambda_entry

    assert callable(handlers.lambda_entry.lambda_handler)


def test_image_is_staged_from_the_container_dockerfile_without_building_it(any_synth: Synthesized) -> None:
    asset = _image_asset(any_synth.assembly_dir)
    staged = any_synth.assembly_dir / asset["source"]["directory"]

    assert asset["source"]["dockerFile"] == "container/Dockerfile"
    assert asset["source"]["platform"] == "linux/amd64"
    assert (staged / "container" / "Dockerfile").is_file()
    assert (staged / "container" / "requirements.lock").is_file()
    assert (staged / "container" / "build.lock").is_file()
    assert (staged / "handlers" / "lambda_entry.py").is_file()
    assert (staged / "pyproject.toml").is_file()
    for excluded in ("tests", "cdk", "bench", ".git", "cdk.json"):
        assert not (staged / excluded).exists(), excluded


def test_event_source_reports_partial_batch_failures(any_synth: Synthesized) -> None:
    template = any_synth.template
    mapping = _event_source_mapping(template)
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestQueue")

    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["FunctionName"] == {
        "Ref": logical_id_by_prefix(template, "AWS::Lambda::Function", "LambdaConsumerFunction")
    }


def test_default_event_source_batches_for_five_seconds_with_at_most_five_concurrent_invocations(
    default_synth: Synthesized,
) -> None:
    mapping = _event_source_mapping(default_synth.template)

    assert mapping["MaximumBatchingWindowInSeconds"] == 5
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}


def test_maximum_concurrency_follows_context(full_synth: Synthesized) -> None:
    assert _event_source_mapping(full_synth.template)["ScalingConfig"] == {"MaximumConcurrency": 8}


def test_every_environment_variable_is_one_the_settings_read(any_synth: Synthesized) -> None:
    names = set(env_of(_function(any_synth.template)))

    unknown = {name for name in names - set(env_names()) if not name.startswith(RUNTIME_ENV_PREFIXES)}
    assert unknown == set()


def test_default_environment(default_synth: Synthesized) -> None:
    environment = env_of(_function(default_synth.template))

    assert environment == {
        "FILEQUEUE_DATABASE_SECRET_ARN": {"Ref": "DatabaseCredentialsArn"},
        "FILEQUEUE_EMBEDDER": "bedrock",
        "FILEQUEUE_EMBEDDING_DIMENSION": "1024",
        "FILEQUEUE_DEADLINE_MARGIN_SECONDS": "30",
        "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS": "120",
        "FILEQUEUE_WRITE_MARGIN_SECONDS": "10",
        # 2048 MB less what the handler process keeps: a memory bomb kills the child, not the function
        "FILEQUEUE_EXTRACT_MEMORY_MB": "1664",
        "FILEQUEUE_MAX_OBJECT_BYTES": str(100 * 1024 * 1024),
        "POWERTOOLS_SERVICE_NAME": "file-queue",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def test_environment_is_accepted_by_the_settings_object(any_synth: Synthesized) -> None:
    environment = env_of(_function(any_synth.template))
    literal = {name: value if isinstance(value, str) else flatten(value) for name, value in environment.items()}

    settings = Settings.from_env(literal)

    assert (settings.database_secret_arn, settings.database_url) == (literal["FILEQUEUE_DATABASE_SECRET_ARN"], None)


def test_database_secret_arn_is_a_parameter_defaulting_to_the_context_value(
    default_synth: Synthesized, full_synth: Synthesized
) -> None:
    default_parameter = default_synth.template.find_parameters("DatabaseCredentialsArn")["DatabaseCredentialsArn"]
    full_parameter = full_synth.template.find_parameters("DatabaseCredentialsArn")["DatabaseCredentialsArn"]

    assert "Default" not in default_parameter
    assert full_parameter["Default"] == FULL_CONTEXT["dbSecretArn"]
    assert default_parameter["AllowedPattern"].startswith("^arn:aws")


def test_bedrock_embedder_may_invoke_only_its_foundation_model(full_synth: Synthesized) -> None:
    template = full_synth.template
    environment = env_of(_function(template))

    bedrock = [s for s in _role_statements(template) if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]
    assert [(s["Action"], flatten(s["Resource"])) for s in bedrock] == [
        (
            "bedrock:InvokeModel",
            f"arn:aws:bedrock:{REGION}::foundation-model/amazon.titan-embed-text-v2:0",
        )
    ]
    assert environment["FILEQUEUE_EMBEDDER"] == "bedrock"
    assert environment["FILEQUEUE_EMBEDDING_DIMENSION"] == "1024"


def test_hashing_embedder_gets_no_bedrock_access(hashing_synth: Synthesized) -> None:
    environment = env_of(_function(hashing_synth.template))
    actions = {a for s in _role_statements(hashing_synth.template) for a in as_list(s["Action"])}

    assert (environment["FILEQUEUE_EMBEDDER"], environment["FILEQUEUE_EMBEDDING_DIMENSION"]) == ("hashing", "256")
    assert not {action for action in actions if action.startswith("bedrock:")}


def test_vpc_placement_uses_the_given_subnets_and_security_groups(full_synth: Synthesized) -> None:
    template = full_synth.template
    properties = _function(template)["Properties"]
    role = resource_by_prefix(template, "AWS::IAM::Role", "LambdaConsumerRole")

    assert properties["VpcConfig"] == {
        "SubnetIds": FULL_CONTEXT["subnetIds"].split(","),
        "SecurityGroupIds": FULL_CONTEXT["securityGroupIds"],
    }
    managed = [flatten(arn) for arn in role["Properties"]["ManagedPolicyArns"]]
    assert "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole" in managed


def test_default_function_runs_outside_any_vpc(default_synth: Synthesized) -> None:
    assert "VpcConfig" not in _function(default_synth.template)["Properties"]


def test_logs_go_to_a_retained_log_group_the_role_may_write(any_synth: Synthesized) -> None:
    template = any_synth.template
    log_group_id, log_group = only_resource(template, "AWS::Logs::LogGroup")

    assert _function(template)["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    assert log_group["Properties"]["RetentionInDays"] == 30
    log_grants = [s for s in _role_statements(template) if any(a.startswith("logs:") for a in as_list(s["Action"]))]
    assert [(sorted(as_list(s["Action"])), s["Resource"]) for s in log_grants] == [
        (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::GetAtt": [log_group_id, "Arn"]})
    ]


def test_tracing_is_active_and_its_wildcard_grant_stands_alone(any_synth: Synthesized) -> None:
    template = any_synth.template
    function = _function(template)
    tracing_policy_id = logical_id_by_prefix(template, "AWS::IAM::Policy", "LambdaConsumerTracingPolicy")
    tracing_policy = resources(template, "AWS::IAM::Policy")[tracing_policy_id]["Properties"]

    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    assert tracing_policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "WriteTraces",
            "Effect": "Allow",
            "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            "Resource": "*",
        }
    ]
    assert tracing_policy_id in function["DependsOn"]
    wildcard_grants = [s.get("Sid") for s in _role_statements(template) if "*" in as_list(s["Resource"])]
    assert wildcard_grants == ["WriteTraces"]


@pytest.mark.parametrize("name", ["FILEQUEUE_DATABASE_URL", "FILEQUEUE_OPENAI_API_KEY"])
def test_no_credential_travels_as_a_plain_environment_variable(any_synth: Synthesized, name: str) -> None:
    assert name not in env_of(_function(any_synth.template))


def test_the_function_runs_the_very_image_reference_the_workers_are_given(full_synth: Synthesized) -> None:
    # The workers' params.env IMAGE comes from the `image` output: one build, one reference for both runtimes.
    template = full_synth.template

    image_uri = _function(template)["Properties"]["Code"]["ImageUri"]

    template.has_output("image", {"Value": image_uri})
    assert flatten(image_uri).endswith(f":{full_synth.stack.image.asset_hash}")
