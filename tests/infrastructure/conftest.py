"""Synthesized variants of the CDK app, each built once per session (one synthesis takes about 20 s).

- `default_synth`: no context beyond cdk.json, as `cdk synth` runs on a fresh clone (Bedrock, 1024).
- `full_synth`: every optional part switched on (both runtimes, IRSA, VPC, alarm topic, Bedrock) and the
  tunables moved off their defaults, so the tests can tell configured values from hard-coded ones.
- `eks_synth`: the EKS runtime alone, with the context the shipped manifests (`container/k8s`) are written for.
- `aurora_synth`: `database=aurora` with both runtimes in a given VPC, the workers' security groups and
  KEDA's operator role.
- `aurora_vpc_synth`: `database=aurora` for Lambda alone and nothing else: the stack creates the VPC too.
- `hashing_synth`: `embedder=hashing` and nothing else.
- `local_synth`: `embedder=local` with a tiny model2vec model under `models/`, both runtimes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.paths import REPO_ROOT

# jsii starts its Node process on the first aws_cdk import; these keep its banners off stderr.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

if TYPE_CHECKING:
    from collections.abc import Iterator

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

WORKER_SECURITY_GROUPS = ["sg-0feedfacecafe0001", "sg-0feedfacecafe0002"]
KEDA_OPERATOR_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/keda-operator"
AURORA_CONTEXT: dict[str, Any] = {
    "account": ACCOUNT,
    "region": REGION,
    "runtime": "both",
    "database": "aurora",
    "oidcProviderArn": FULL_CONTEXT["oidcProviderArn"],
    "vpcId": FULL_CONTEXT["vpcId"],
    "subnetIds": FULL_CONTEXT["subnetIds"],
    "workerSecurityGroupIds": ",".join(WORKER_SECURITY_GROUPS),
    "kedaOperatorRoleArn": KEDA_OPERATOR_ROLE_ARN,
}

# docs/deploy.md's Lambda deployment with a new database: no VPC given, so the stack creates one.
AURORA_VPC_CONTEXT: dict[str, Any] = {"account": ACCOUNT, "region": REGION, "database": "aurora"}

# A folder of the tiny test model, made for the session and removed after it (the image build sees only models/).
LOCAL_MODEL_FOLDER = "models/tests-tiny-model2vec"
LOCAL_CONTEXT: dict[str, Any] = {
    "account": ACCOUNT,
    "region": REGION,
    "runtime": "both",
    "dbSecretArn": FULL_CONTEXT["dbSecretArn"],
    "oidcProviderArn": FULL_CONTEXT["oidcProviderArn"],
    "embedder": "local",
    "embeddingModelFolder": LOCAL_MODEL_FOLDER,
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


@pytest.fixture(scope="session")
def aurora_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize(AURORA_CONTEXT, tmp_path_factory.mktemp("cdk-aurora"))


@pytest.fixture(scope="session")
def aurora_vpc_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize(AURORA_VPC_CONTEXT, tmp_path_factory.mktemp("cdk-aurora-vpc"))


@pytest.fixture(scope="session")
def hashing_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize({"embedder": "hashing"}, tmp_path_factory.mktemp("cdk-hashing"))


@pytest.fixture(scope="session")
def local_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    from tests.model2vec_model import build_model

    folder = REPO_ROOT / LOCAL_MODEL_FOLDER
    assert not folder.exists(), f"{folder} exists; the test would overwrite a real model"
    build_model(folder)
    try:
        yield _synthesize(LOCAL_CONTEXT, tmp_path_factory.mktemp("cdk-local"))
    finally:
        shutil.rmtree(folder)


@pytest.fixture(params=["default", "full"])
def any_synth(request: pytest.FixtureRequest) -> Synthesized:
    """Both variants, for invariants that must hold whatever the context."""
    synth: Synthesized = request.getfixturevalue(f"{request.param}_synth")
    return synth


SCANNED_VARIANTS = ("default_synth", "full_synth", "eks_synth", "aurora_synth", "aurora_vpc_synth")


@pytest.fixture(params=SCANNED_VARIANTS)
def scanned_synth(request: pytest.FixtureRequest) -> Synthesized:
    """Every variant whose resources differ in kind: what cdk-nag, cfn-lint and checkov must pass."""
    synth: Synthesized = request.getfixturevalue(request.param)
    return synth
