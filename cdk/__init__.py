"""The AWS side of File Queue as a CDK app: `python3 -m cdk.app` (run by `cdk synth` through cdk.json)."""

import os

# CI machines run Debian's packaged Node 20, the newest it ships; jsii prints a multi-line end-of-life
# banner for it on every synthesis. In CI (CI is set) that major version is acknowledged here, before
# aws_cdk starts jsii; elsewhere the warning stays visible. jsii reads a list of acknowledged majors.
if os.environ.get("CI"):
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
