"""The AWS Lambda entry points: the queue consumer, scheduled compaction and the deploy-time migration.

`lambda_handler`, `compaction_handler` and `migrate_handler` run from one image with different commands.

Importing this module must stay cheap (no pypdf, no psycopg): cold starts pay for what they import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from handlers import outcome_metrics
from handlers.batch import check_function_budget, handle_batch, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.typing import LambdaContext


_outcomes = outcome_metrics.EmfOutcomes()
outcome_metrics.install(_outcomes)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    try:
        check_function_budget(context)
        return handle_batch(event, context)
    finally:
        _outcomes.flush()


@logger.inject_lambda_context(clear_state=True)
def compaction_handler(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """The scheduled compaction function: the consumer's image run with this handler instead."""
    from handlers.ops.compaction import scheduled_compaction
    from handlers.settings import get_settings

    report = scheduled_compaction(get_settings())
    logger.info("compaction finished", extra={"compaction": report})
    return report


@logger.inject_lambda_context(clear_state=True)
def migrate_handler(_event: dict[str, Any], _context: LambdaContext) -> dict[str, list[str]]:
    """What `filequeue migrate` does, for the CDK app's deploy-time trigger: an error fails the deployment."""
    from handlers.ops.db import migrate_store
    from handlers.settings import get_settings

    applied = migrate_store(get_settings())
    logger.info("migrations applied" if applied else "database is up to date", extra={"migrations": applied})
    return {"applied": applied}
