"""The scheduled AWS Lambda entry point for chunk compaction: `handlers.compaction_entry.lambda_handler`.

The same container image as the consumer runs it with a different command. A run stopped by the
function's timeout leaves only a half-built segment that the next run drops.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(service="filequeue")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(_event: dict[str, Any], _context: Any) -> dict[str, Any]:
    from handlers.compaction import compact_options, report_as_dict, run_compaction
    from handlers.settings import get_settings

    settings = get_settings()
    report = report_as_dict(run_compaction(settings, compact_options(settings)))
    logger.info("compaction finished", extra={"compaction": report})
    return report
