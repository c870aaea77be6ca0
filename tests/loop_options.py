"""Poll-loop options for the tests, built from `Settings` as the worker builds them.

Overrides named like a `LoopOptions` field that `Settings` configures are passed through the
environment variable that sets it, so a test never relies on defaults of its own.
"""

from __future__ import annotations

from typing import Any

from handlers.settings import Settings
from handlers.worker.poll_loop import LoopOptions

SETTINGS_VARIABLES = {
    "wait_time_seconds": "FILEQUEUE_WORKER_WAIT_TIME_SECONDS",
    "batch_size": "FILEQUEUE_WORKER_BATCH_SIZE",
    "visibility_timeout_seconds": "FILEQUEUE_WORKER_VISIBILITY_TIMEOUT_SECONDS",
    "shutdown_grace_seconds": "FILEQUEUE_WORKER_SHUTDOWN_GRACE_SECONDS",
    "start_wait_seconds": "FILEQUEUE_WORKER_START_WAIT_SECONDS",
    "handler_margin_seconds": "FILEQUEUE_DEADLINE_MARGIN_SECONDS",
}


def loop_options(queue_url: str, **overrides: Any) -> LoopOptions:
    """`LoopOptions.from_settings` of the default settings with `overrides` applied."""
    environ = {"FILEQUEUE_QUEUE_URL": queue_url}
    mechanics: dict[str, Any] = {}
    for name, value in overrides.items():
        if name in SETTINGS_VARIABLES:
            environ[SETTINGS_VARIABLES[name]] = str(value)
        else:
            mechanics[name] = value
    return LoopOptions.from_settings(Settings.from_env(environ), **mechanics)
