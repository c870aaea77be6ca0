from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import aws_iam as iam
from constructs import Construct

if TYPE_CHECKING:
    from aws_cdk import aws_sqs as sqs

FILE_PROCESSOR_SERVICE_ACCOUNT = "file-processor"
STS_AUDIENCE = "sts.amazonaws.com"


class IrsaRolesConstruct(Construct):
    """IAM roles for Kubernetes service accounts (IRSA) of an existing EKS cluster's OIDC provider.

    The file processor gets the consumer policy. KEDA runs with `identityOwner: operator`, so its
    operator role only reads the queue's attributes to scale on depth.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        oidc_provider_arn: str,
        oidc_issuer: str,
        namespace: str,
        keda_namespace: str,
        keda_service_account: str,
        queue: sqs.IQueue,
        consumer_policy: iam.IManagedPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self._oidc_provider_arn = oidc_provider_arn
        self._oidc_issuer = oidc_issuer
        self.file_processor_role = iam.Role(
            self,
            "FileProcessorRole",
            description=f"File queue consumer pods ({namespace}/{FILE_PROCESSOR_SERVICE_ACCOUNT})",
            assumed_by=self._service_account_principal(namespace, FILE_PROCESSOR_SERVICE_ACCOUNT),
            managed_policies=[consumer_policy],
        )
        self.keda_operator_role = iam.Role(
            self,
            "KedaOperatorRole",
            description=f"KEDA operator reading the file queue depth ({keda_namespace}/{keda_service_account})",
            assumed_by=self._service_account_principal(keda_namespace, keda_service_account),
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
