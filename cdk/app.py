from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from aws_cdk import App, Aspects, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from cdk.acknowledge import ScannerAcknowledgments
from cdk.config import ContextError, FileQueueConfig
from cdk.file_queue_stack import FileQueueStack

if TYPE_CHECKING:
    from collections.abc import Mapping


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, FileQueueStack]:
    """Build the app with cdk-nag's AWS Solutions checks; synthesis fails on any unacknowledged error."""
    app = App(context=dict(context) if context is not None else None, outdir=outdir)
    config = FileQueueConfig.from_context(app.node.try_get_context)
    stack = FileQueueStack(app, config.stack_name, config=config, env=_environment(app))
    Aspects.of(stack).add(ScannerAcknowledgments())
    # Acknowledgments are also written to each resource's Metadata (`cdk_nag.rules_to_suppress`) for audit.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))
    return app, stack


def _environment(app: App) -> Environment:
    """Account and region from context, else from the CLI's defaults; never a lookup, so no credentials needed."""
    account = app.node.try_get_context("account") or os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION")
    return Environment(account=account, region=region)


def main() -> int:
    """Synthesize; a bad context value is one line naming it (the CDK CLI shows the app's stderr), exit 2."""
    try:
        app, _ = build_app()
        app.synth()
    except ContextError as error:
        sys.stderr.write(f"filequeue cdk: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
