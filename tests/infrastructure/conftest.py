"""Two synthesized variants of the CDK app, each built once per session (one synthesis takes seconds).

- `default_synth`: no context beyond cdk.json, as `cdk synth` runs on a fresh clone.
- `full_synth`: every optional part switched on (both runtimes, IRSA, VPC, alarm topic, Bedrock) and the
  tunables moved off their defaults, so the tests can tell configured values from hard-coded ones.
- `eks_synth`: the EKS runtime alone, with the context the shipped manifests (`container/k8s`) are written for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.paths import REPO_ROOT

# jsii starts its Node process on the first aws_cdk import; these keep its banners off stderr.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

if TYPE_CHECKING:
    from aws_cdk.assertions import Template

    from cdk.file_queue_stack import FileQueueStack

ACCOUNT = "123456789012"
REGION = "eu-west-1"
OIDC_ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
FULL_CONTEXT: dict[str, Any] = {
    "account": ACCOUNT,
    "region": REGION,
    "dbSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:filequeue/database-AbCdEf",
    "oidcProviderArn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_ISSUER}",
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    # The CLI form: `-c subnetIds=a,b` arrives as one string.
    "subnetIds": "subnet-0aaa1111bbbb2222c,subnet-0ddd3333eeee4444f",
    "securityGroupIds": ["sg-0123456789abcdef0"],
    "alarmEmail": "ops@example.com",
    "embedder": "bedrock",
    "embeddingDimension": 1024,
    "uploadsPrefix": "incoming/",
    "functionTimeoutSeconds": "120",
    "extractTimeoutSeconds": 90,
    "runtime": "both",
    "batchingWindowSeconds": 10,
    "maxConcurrency": 8,
    "maxReceiveCount": 5,
    "oldestMessageAlarmSeconds": 900,
}

# The deployment container/k8s/params.env describes: same account, region, secret and embedder.
EKS_CONTEXT: dict[str, Any] = {
    "account": ACCOUNT,
    "region": REGION,
    "runtime": "eks",
    "dbSecretArn": FULL_CONTEXT["dbSecretArn"],
    "oidcProviderArn": FULL_CONTEXT["oidcProviderArn"],
    "embedder": "bedrock",
    "embeddingDimension": 1024,
    "workerLogGroupName": "/aws/containerinsights/filequeue/application",
}


@dataclass(frozen=True)
class Synthesized:
    stack: FileQueueStack
    template: Template
    assembly_dir: Path

    @property
    def template_json(self) -> dict[str, Any]:
        """A copy of the template document, for the tests that change it before checking it."""
        return dict(self.template.to_json())

    @property
    def validation_report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.assembly_dir / "validation-report.json").read_text())
        return report


def cdk_json_context() -> dict[str, Any]:
    """The feature flags `cdk synth` passes in from cdk.json, so the tests see the same template."""
    context: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return context


def _synthesize(extra_context: dict[str, Any], outdir: Path) -> Synthesized:
    from aws_cdk.assertions import Template

    from cdk.app import build_app

    app, stack = build_app({**cdk_json_context(), **extra_context}, outdir=str(outdir))
    # Synthesis runs cdk-nag and raises on any unacknowledged error finding.
    assembly = app.synth()
    return Synthesized(stack=stack, template=Template.from_stack(stack), assembly_dir=Path(assembly.directory))


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize({}, tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def full_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize(FULL_CONTEXT, tmp_path_factory.mktemp("cdk-full"))


@pytest.fixture(scope="session")
def eks_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize(EKS_CONTEXT, tmp_path_factory.mktemp("cdk-eks"))


@pytest.fixture(params=["default", "full"])
def any_synth(request: pytest.FixtureRequest) -> Synthesized:
    """Both variants, for invariants that must hold whatever the context."""
    synth: Synthesized = request.getfixturevalue(f"{request.param}_synth")
    return synth
