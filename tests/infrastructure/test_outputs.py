"""The stack's outputs: the seed's four names exactly, plus the optional parts' ARNs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.infrastructure.template_queries import logical_id_by_prefix, only_resource

if TYPE_CHECKING:
    from tests.infrastructure.conftest import Synthesized


def test_irsa_role_arns_are_outputs(full_synth: Synthesized) -> None:
    template = full_synth.template_json
    outputs = template["Outputs"]

    assert outputs["fileProcessorRoleArn"]["Value"] == {
        "Fn::GetAtt": [logical_id_by_prefix(template, "AWS::IAM::Role", "IrsaFileProcessorRole"), "Arn"]
    }
    assert outputs["kedaOperatorRoleArn"]["Value"] == {
        "Fn::GetAtt": [logical_id_by_prefix(template, "AWS::IAM::Role", "IrsaKedaOperatorRole"), "Arn"]
    }


def test_seed_outputs_exist_with_their_exact_names(any_synth: Synthesized) -> None:
    template = any_synth.template_json
    outputs = template["Outputs"]
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestQueue")

    assert outputs["queueUrl"]["Value"] == {"Ref": queue_id}
    assert outputs["queueArn"]["Value"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert outputs["bucketName"]["Value"] == {
        "Ref": logical_id_by_prefix(template, "AWS::S3::Bucket", "IngestUploadsBucket")
    }
    assert outputs["policyArn"]["Value"] == {"Ref": only_resource(template, "AWS::IAM::ManagedPolicy")[0]}


def test_default_stack_outputs_nothing_for_parts_it_does_not_create(default_synth: Synthesized) -> None:
    outputs = set(default_synth.template_json["Outputs"])

    assert outputs.isdisjoint(
        {"fileProcessorRoleArn", "kedaOperatorRoleArn", "alarmTopicArn", "functionSecurityGroupIds"}
    )


def test_vpc_placement_outputs_the_function_security_groups(full_synth: Synthesized) -> None:
    output = full_synth.template_json["Outputs"]["functionSecurityGroupIds"]

    assert output["Value"] == "sg-0123456789abcdef0"
