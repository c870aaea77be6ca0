r"""The hand-over from the stack to the Kubernetes manifests: `container/k8s/params.env` from stack outputs.

Every per-environment value of the manifests is one stack output; this table is the one place that pairs
them. After `cdk deploy`:

    aws cloudformation describe-stacks --stack-name FileQueue --query 'Stacks[0].Outputs' --output json \\
      | python3 -m cdk.k8s_params > container/k8s/params.env
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

# params.env name -> the stack output that holds its value.
PARAMS_FROM_OUTPUTS = {
    "QUEUE_URL": "queueUrl",
    "AWS_REGION": "awsRegion",
    "DATABASE_SECRET_ARN": "databaseSecretArn",
    "WORKER_ROLE_ARN": "workerRoleArn",
    "KEDA_ROLE_ARN": "kedaRoleArn",
    "IMAGE": "image",
    "EMBEDDER": "embedder",
    "EMBEDDING_DIMENSION": "embeddingDimension",
}


def params_env(outputs: Mapping[str, str]) -> str:
    """The params.env text for a deployed stack's outputs; raises KeyError naming a missing output."""
    missing = sorted(output for output in PARAMS_FROM_OUTPUTS.values() if output not in outputs)
    if missing:
        raise KeyError(f"the stack has no output {', '.join(missing)}: deploy it with runtime=eks or runtime=both")
    return "".join(f"{name}={outputs[output]}\n" for name, output in PARAMS_FROM_OUTPUTS.items())


def main() -> int:
    """Read `describe-stacks` outputs (a JSON list of OutputKey/OutputValue) on stdin, print params.env."""
    try:
        described: list[dict[str, Any]] = json.load(sys.stdin)
        text = params_env({entry["OutputKey"]: entry["OutputValue"] for entry in described})
    except (ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"cannot build params.env: {exc}\n")
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
