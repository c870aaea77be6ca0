from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import aws_iam as iam
from constructs import Construct

if TYPE_CHECKING:
    from aws_cdk import aws_sqs as sqs

STS_AUDIENCE = "sts.amazonaws.com"


class IrsaRolesConstruct(Construct):
    """IAM roles for Kubernetes service accounts (IRSA) of an existing EKS cluster's OIDC provider.

    The workers' role gets the consumer policy; the caller grants what the workers' settings need.

    The scaler role is what KEDA's TriggerAuthentication names (`podIdentity.provider: aws` with `roleArn`):
    KEDA's operator assumes it with its own service account token (AssumeRoleWithWebIdentity), or, when that
    fails, with the credentials it already has (AssumeRole, trusted only for `keda_operator_role_arn`). The
    operator's own service account and role are never changed, so other teams' scalers on a shared cluster
    keep theirs; the scaler role only reads the queue's attributes to scale on depth.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        oidc_provider_arn: str,
        oidc_issuer: str,
        namespace: str,
        service_account: str,
        keda_namespace: str,
        keda_service_account: str,
        keda_operator_role_arn: str | None,
        queue: sqs.IQueue,
        consumer_policy: iam.IManagedPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._oidc_provider_arn = oidc_provider_arn
        self._oidc_issuer = oidc_issuer
        self.worker_role = iam.Role(
            self,
            "WorkerRole",
            description=f"File queue worker pods and migration job ({namespace}/{service_account})",
            assumed_by=self._service_account_principal(namespace, service_account),
            managed_policies=[consumer_policy],
        )
        self.keda_operator_role = iam.Role(
            self,
            "KedaOperatorRole",
            description=f"KEDA operator reading the file queue depth ({keda_namespace}/{keda_service_account})",
            assumed_by=self._keda_principal(keda_namespace, keda_service_account, keda_operator_role_arn),
            inline_policies={
                "ReadQueueDepth": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="ReadQueueDepth", actions=["sqs:GetQueueAttributes"], resources=[queue.queue_arn]
                        )
                    ]
                )
            },
        )

    def _keda_principal(self, namespace: str, service_account: str, operator_role_arn: str | None) -> iam.IPrincipal:
        token = self._service_account_principal(namespace, service_account)
        if operator_role_arn is None:
            return token
        return iam.CompositePrincipal(token, iam.ArnPrincipal(operator_role_arn))

    def _service_account_principal(self, namespace: str, service_account: str) -> iam.IPrincipal:
        """Trust bound to one service account's token, and only tokens minted for STS."""
        return iam.WebIdentityPrincipal(
            self._oidc_provider_arn,
            conditions={
                "StringEquals": {
                    f"{self._oidc_issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                    f"{self._oidc_issuer}:aud": STS_AUDIENCE,
                }
            },
        )
