"""Each runtime role's permissions, derived from the settings that runtime runs with.

The Lambda role and the EKS worker role are both granted here, from their own environment, so a setting
that needs AWS access (the database secret, the Bedrock model) cannot be configured on one runtime and
granted only on the other. Queue and object access come from the shared consumer policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Stack
from aws_cdk import aws_iam as iam

from cdk.runtime_environment import settings_of

if TYPE_CHECKING:
    from constructs import Construct


def grant_settings_permissions(
    scope: Construct, role: iam.Role, environment: dict[str, str], database_secret_arn: str
) -> None:
    """Grant `role` exactly what the settings in `environment` make the handler call."""
    settings = settings_of(environment)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="ReadDatabaseSecret", actions=["secretsmanager:GetSecretValue"], resources=[database_secret_arn]
        )
    )
    if settings.embedder == "bedrock":
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="InvokeEmbeddingModel",
                actions=["bedrock:InvokeModel"],
                resources=[foundation_model_arn(scope, settings.resolved_embedding_model)],
            )
        )


def foundation_model_arn(scope: Construct, model_id: str) -> str:
    return Stack.of(scope).format_arn(
        service="bedrock", account="", resource="foundation-model", resource_name=model_id
    )
