"""The scheduled chunk compaction of the Lambda runtime: schedule, image command, network, permissions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdk.compaction_construct import COMPACTION_HANDLER
from tests.infrastructure.template_queries import (
    as_list,
    env_of,
    flatten,
    logical_id_by_prefix,
    resources,
    statements_of_role,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_cdk.assertions import Template

    from tests.infrastructure.conftest import Synthesized


def _function(template: Template, prefix: str) -> tuple[str, Mapping[str, Any]]:
    function_id = logical_id_by_prefix(template, "AWS::Lambda::Function", prefix)
    return function_id, resources(template, "AWS::Lambda::Function")[function_id]


def test_a_schedule_invokes_the_compaction_function(any_synth: Synthesized) -> None:
    template = any_synth.template
    function_id, _ = _function(template, "CompactionFunction")
    [rule] = resources(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["Properties"]["State"] == "ENABLED"
    [target] = rule["Properties"]["Targets"]
    assert flatten(target["Arn"]) == f"<{function_id}.Arn>"
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    permissions = [
        permission["Properties"]
        for permission in resources(template, "AWS::Lambda::Permission", {"Principal": "events.amazonaws.com"}).values()
    ]
    assert [flatten(permission["FunctionName"]) for permission in permissions] == [f"<{function_id}.Arn>"]


def test_the_compaction_runs_the_consumer_image_with_its_own_command(any_synth: Synthesized) -> None:
    template = any_synth.template
    _, compaction = _function(template, "CompactionFunction")
    _, consumer = _function(template, "LambdaConsumerFunction")
    assert compaction["Properties"]["Code"] == consumer["Properties"]["Code"]
    assert compaction["Properties"]["ImageConfig"]["Command"] == [COMPACTION_HANDLER]
    assert compaction["Properties"]["ImageConfig"]["EntryPoint"] == consumer["Properties"]["ImageConfig"]["EntryPoint"]
    assert compaction["Properties"]["Timeout"] == 900
    assert compaction["Properties"]["ReservedConcurrentExecutions"] == 1
    # the consumer's settings less its extraction cap: compaction never extracts, and has less memory
    assert env_of(compaction) == {
        name: value for name, value in env_of(consumer).items() if name != "FILEQUEUE_EXTRACT_MEMORY_MB"
    }
    assert compaction["Properties"]["LoggingConfig"] == consumer["Properties"]["LoggingConfig"]


def test_the_compaction_reaches_the_database_through_the_consumers_network(full_synth: Synthesized) -> None:
    template = full_synth.template
    _, compaction = _function(template, "CompactionFunction")
    _, consumer = _function(template, "LambdaConsumerFunction")
    assert compaction["Properties"]["VpcConfig"] == consumer["Properties"]["VpcConfig"]


def test_without_a_vpc_the_compaction_has_none(default_synth: Synthesized) -> None:
    _, compaction = _function(default_synth.template, "CompactionFunction")
    assert "VpcConfig" not in compaction["Properties"]


def test_the_compaction_may_only_read_the_database_secret_and_write_its_logs(any_synth: Synthesized) -> None:
    template = any_synth.template
    role_id = logical_id_by_prefix(template, "AWS::IAM::Role", "CompactionRole")
    actions = {action for statement in statements_of_role(template, role_id) for action in as_list(statement["Action"])}
    assert actions == {"secretsmanager:GetSecretValue", "logs:CreateLogStream", "logs:PutLogEvents"}
    consumer_policy_id = logical_id_by_prefix(template, "AWS::IAM::ManagedPolicy", "IngestConsumerPolicy")
    role = resources(template, "AWS::IAM::Role")[role_id]
    attached = [flatten(arn) for arn in role["Properties"].get("ManagedPolicyArns", [])]
    assert f"<{consumer_policy_id}>" not in attached  # no access to the queue or the bucket


def test_a_cronjob_compacts_while_the_workers_are_scaled_to_zero() -> None:
    from tests.infrastructure.test_k8s import container, one, validate

    cronjob = one("CronJob")
    validate(cronjob)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [job_container] = pod["containers"]
    assert job_container["command"] == ["filequeue", "compact"]
    assert job_container["image"] == container()["image"]
    assert job_container["envFrom"] == container()["envFrom"]
    assert pod["serviceAccountName"] == one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert pod["securityContext"] == one("Deployment")["spec"]["template"]["spec"]["securityContext"]


def test_the_worker_pods_run_the_segmented_index_with_a_compaction_leader() -> None:
    from tests.infrastructure.test_k8s import worker_env

    environment = worker_env()
    assert environment["FILEQUEUE_VECTOR_INDEX"] == "segmented"
    assert float(environment["FILEQUEUE_COMPACTION_INTERVAL_SECONDS"]) > 0
