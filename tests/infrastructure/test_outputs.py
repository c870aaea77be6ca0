"""The stack's outputs: the four core names (queue URL and ARN, bucket, consumer policy) exactly, plus the
optional parts' ARNs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk.assertions import Annotations, Match

from tests.infrastructure.template_queries import logical_id_by_prefix, only_resource, outputs, resources

if TYPE_CHECKING:
    from pathlib import Path

    from tests.infrastructure.conftest import Synthesized


def test_irsa_role_arns_are_outputs(full_synth: Synthesized) -> None:
    template = full_synth.template

    for output, role_prefix in (("workerRoleArn", "IrsaWorkerRole"), ("kedaRoleArn", "IrsaKedaOperatorRole")):
        role_id = logical_id_by_prefix(template, "AWS::IAM::Role", role_prefix)
        template.has_output(output, {"Value": {"Fn::GetAtt": [role_id, "Arn"]}})


def test_core_outputs_exist_with_their_exact_names(any_synth: Synthesized) -> None:
    template = any_synth.template
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestQueue")

    template.has_output("queueUrl", {"Value": {"Ref": queue_id}})
    template.has_output("queueArn", {"Value": {"Fn::GetAtt": [queue_id, "Arn"]}})
    bucket_id = logical_id_by_prefix(template, "AWS::S3::Bucket", "IngestUploadsBucket")
    template.has_output("bucketName", {"Value": {"Ref": bucket_id}})
    template.has_output("policyArn", {"Value": {"Ref": only_resource(template, "AWS::IAM::ManagedPolicy")[0]}})


def test_default_stack_outputs_nothing_for_parts_it_does_not_create(default_synth: Synthesized) -> None:
    names = set(outputs(default_synth.template))

    assert names.isdisjoint({"workerRoleArn", "kedaRoleArn", "alarmTopicArn", "functionSecurityGroupIds"})


def test_vpc_placement_outputs_the_function_security_groups(full_synth: Synthesized) -> None:
    full_synth.template.has_output("functionSecurityGroupIds", {"Value": "sg-0123456789abcdef0"})


def test_an_eks_only_stack_has_no_lambda_and_outputs_what_the_manifests_need(eks_synth: Synthesized) -> None:
    template = eks_synth.template

    functions = resources(template, "AWS::Lambda::Function")
    assert [logical_id for logical_id in functions if logical_id.startswith("LambdaConsumer")] == []
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 0)
    template.has_output("runtime", {"Value": "eks"})
    assert outputs(template)["image"]["Value"]
    assert "functionName" not in outputs(template)


def test_a_lambda_only_stack_creates_no_worker_roles_even_with_an_oidc_provider(tmp_path: Path) -> None:
    from cdk.app import build_app
    from tests.infrastructure.conftest import FULL_CONTEXT, cdk_json_context

    _, stack = build_app(
        {**cdk_json_context(), "oidcProviderArn": FULL_CONTEXT["oidcProviderArn"]}, outdir=str(tmp_path)
    )

    assert stack.irsa is None
    assert stack.consumer is not None


def test_both_runtimes_are_flagged_as_a_migration_state(full_synth: Synthesized) -> None:
    Annotations.from_stack(full_synth.stack).has_info(
        "/FileQueue", Match.string_like_regexp("runtime=both is a migration state")
    )
