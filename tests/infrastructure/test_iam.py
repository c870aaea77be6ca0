"""The consumer policy, the least-privilege guard over every IAM statement, and the IRSA roles."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aws_cdk.assertions import Match

from tests.infrastructure.conftest import FULL_CONTEXT, OIDC_ISSUER, REGION
from tests.infrastructure.template_queries import (
    as_list,
    flatten,
    identity_statements,
    logical_id_by_prefix,
    only_resource,
    resources,
    statements_of_role,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_cdk.assertions import Template

    from tests.infrastructure.conftest import Synthesized

CONSUMER_QUEUE_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}
# The one wildcard allowed on S3/SQS grants: objects under the uploads prefix of our own bucket.
OBJECTS_UNDER_PREFIX = re.compile(r"^<IngestUploadsBucket\w+\.Arn>/[A-Za-z0-9_-]+/\*$")


def _consumer_policy(template: Template) -> tuple[str, list[dict[str, Any]]]:
    policy_id, policy = only_resource(template, "AWS::IAM::ManagedPolicy")
    return policy_id, policy["Properties"]["PolicyDocument"]["Statement"]


def _trust_statement(template: Template, role_id: str) -> dict[str, Any]:
    statement: dict[str, Any]
    (statement,) = _role(template, role_id)["AssumeRolePolicyDocument"]["Statement"]
    return statement


def _role(template: Template, role_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = resources(template, "AWS::IAM::Role")[role_id]["Properties"]
    return properties


def _web_identity_roles(template: Template) -> dict[str, Mapping[str, Any]]:
    trusting_web_identities = {
        "AssumeRolePolicyDocument": {"Statement": [Match.object_like({"Action": "sts:AssumeRoleWithWebIdentity"})]}
    }
    return resources(template, "AWS::IAM::Role", trusting_web_identities)


def test_default_consumer_policy_grants_exactly_what_a_consumer_needs(default_synth: Synthesized) -> None:
    template = default_synth.template
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestQueue")
    _, statements = _consumer_policy(template)

    grants = {(frozenset(as_list(statement["Action"])), flatten(statement["Resource"])) for statement in statements}
    bucket_id = logical_id_by_prefix(template, "AWS::S3::Bucket", "IngestUploadsBucket")
    assert grants == {
        (frozenset(CONSUMER_QUEUE_ACTIONS), f"<{queue_id}.Arn>"),
        (frozenset({"s3:GetObject", "s3:GetObjectVersion"}), f"<{bucket_id}.Arn>/uploads/*"),
        (frozenset({"s3:ListBucket"}), f"<{bucket_id}.Arn>"),
    }
    assert all(statement["Effect"] == "Allow" for statement in statements)


def test_listing_is_granted_only_under_the_uploads_prefix(any_synth: Synthesized) -> None:
    # Without s3:ListBucket S3 answers 403 for a deleted key, and the handler could not record it as missing.
    _, statements = _consumer_policy(any_synth.template)
    prefix = "uploads/" if any_synth.stack.config.uploads_prefix == "uploads/" else "incoming/"

    (listing,) = [statement for statement in statements if "s3:ListBucket" in as_list(statement["Action"])]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    others = [statement for statement in statements if statement is not listing]
    assert all("Condition" not in statement for statement in others)


def test_consumer_policy_reads_only_the_configured_prefix(full_synth: Synthesized) -> None:
    _, statements = _consumer_policy(full_synth.template)

    object_resources = [flatten(s["Resource"]) for s in statements if "s3:GetObject" in as_list(s["Action"])]
    assert len(object_resources) == 1
    assert object_resources[0].endswith(".Arn>/incoming/*")


def test_no_s3_or_sqs_grant_has_a_wildcard_resource(any_synth: Synthesized) -> None:
    offending = []
    for statement in identity_statements(any_synth.template):
        actions = as_list(statement["Action"])
        if statement["Effect"] != "Allow" or not any(
            action == "*" or action.startswith(("s3:", "sqs:")) for action in actions
        ):
            continue
        for resource in as_list(statement["Resource"]):
            text = flatten(resource)
            if "*" in text and not OBJECTS_UNDER_PREFIX.match(text):
                offending.append((actions, text))
    assert offending == []


def test_no_grant_uses_an_action_wildcard_on_s3_or_sqs(any_synth: Synthesized) -> None:
    actions = {
        action for statement in identity_statements(any_synth.template) for action in as_list(statement["Action"])
    }

    assert not {action for action in actions if action == "*" or re.match(r"^(s3|sqs):.*\*", action)}


def test_lambda_role_gets_the_consumer_policy_and_no_aws_managed_policy_by_default(default_synth: Synthesized) -> None:
    template = default_synth.template
    policy_id, _ = _consumer_policy(template)
    role_id = logical_id_by_prefix(template, "AWS::IAM::Role", "LambdaConsumerRole")

    assert _role(template, role_id)["ManagedPolicyArns"] == [{"Ref": policy_id}]


def test_lambda_role_reads_only_the_database_secret(any_synth: Synthesized) -> None:
    template = any_synth.template
    role_id = logical_id_by_prefix(template, "AWS::IAM::Role", "LambdaConsumerRole")

    secret_grants = [
        statement
        for statement in statements_of_role(template, role_id)
        if any(action.startswith("secretsmanager:") for action in as_list(statement["Action"]))
    ]
    assert [(s["Action"], s["Resource"]) for s in secret_grants] == [
        ("secretsmanager:GetSecretValue", {"Ref": "DatabaseCredentialsArn"})
    ]


def test_default_stack_has_no_irsa_roles(default_synth: Synthesized) -> None:
    assert _web_identity_roles(default_synth.template) == {}


def test_worker_role_trusts_only_its_service_account_tokens_for_sts(full_synth: Synthesized) -> None:
    template = full_synth.template
    role_id = logical_id_by_prefix(template, "AWS::IAM::Role", "IrsaWorkerRole")

    assert _trust_statement(template, role_id) == {
        "Effect": "Allow",
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": FULL_CONTEXT["oidcProviderArn"]},
        "Condition": {
            "StringEquals": {
                f"{OIDC_ISSUER}:sub": "system:serviceaccount:file-queue:filequeue-worker",
                f"{OIDC_ISSUER}:aud": "sts.amazonaws.com",
            }
        },
    }


def test_worker_role_gets_what_its_settings_need_as_the_lambda_role_does(full_synth: Synthesized) -> None:
    # Both runtimes read the database secret and embed with Bedrock here: both roles get both grants.
    template = full_synth.template
    policy_id, _ = _consumer_policy(template)
    worker_id = logical_id_by_prefix(template, "AWS::IAM::Role", "IrsaWorkerRole")
    lambda_id = logical_id_by_prefix(template, "AWS::IAM::Role", "LambdaConsumerRole")

    assert _role(template, worker_id)["ManagedPolicyArns"] == [{"Ref": policy_id}]

    def settings_grants(role_id: str) -> set[tuple[str, str]]:
        return {
            (statement["Action"], flatten(statement["Resource"]))
            for statement in statements_of_role(template, role_id)
            if statement.get("Sid") in ("ReadDatabaseSecret", "InvokeEmbeddingModel")
        }

    expected = {
        ("secretsmanager:GetSecretValue", "<DatabaseCredentialsArn>"),
        ("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}::foundation-model/amazon.titan-embed-text-v2:0"),
    }
    assert settings_grants(worker_id) == expected
    assert settings_grants(lambda_id) == expected
    assert {statement.get("Sid") for statement in statements_of_role(template, worker_id)} == {
        "ReadDatabaseSecret",
        "InvokeEmbeddingModel",
    }


def test_keda_operator_role_may_only_read_queue_attributes(full_synth: Synthesized) -> None:
    template = full_synth.template
    queue_id = logical_id_by_prefix(template, "AWS::SQS::Queue", "IngestQueue")
    role_id = logical_id_by_prefix(template, "AWS::IAM::Role", "IrsaKedaOperatorRole")

    assert _trust_statement(template, role_id)["Condition"] == {
        "StringEquals": {
            f"{OIDC_ISSUER}:sub": "system:serviceaccount:keda:keda-operator",
            f"{OIDC_ISSUER}:aud": "sts.amazonaws.com",
        }
    }
    assert "ManagedPolicyArns" not in _role(template, role_id)
    grants = [
        (statement["Effect"], statement["Action"], statement["Resource"])
        for statement in statements_of_role(template, role_id)
    ]
    assert grants == [("Allow", "sqs:GetQueueAttributes", {"Fn::GetAtt": [queue_id, "Arn"]})]
