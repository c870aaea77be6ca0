"""The AWS side of File Queue as a CDK app: `python3 -m cdk.app` (run by `cdk synth` through cdk.json)."""
