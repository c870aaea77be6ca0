"""What the poll loop puts in its Lambda context stand-in (`handlers.runtime_context.DeadlineContext`).

The deadline is the end of the time of the record in work (each record the handler claims gets the
time one record needs, the heartbeat holding its lease), or the end of the shutdown grace period once
a stop was requested, whichever comes first: the container's equivalent of a Lambda timeout. Without
a heartbeat it is the end of the messages' visibility lease.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.runtime_context import DeadlineContext

if TYPE_CHECKING:
    from collections.abc import Callable

FUNCTION_NAME = "filequeue-worker"
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


def worker_context(
    deadline: Callable[[], float],
    queue_arn: str,
    memory_mb: int,
    clock: Callable[[], float] = time.monotonic,
) -> DeadlineContext:
    """The context one batch of the poll loop gets: named as the worker, counting down to `deadline`."""
    return DeadlineContext(
        deadline=deadline,
        invoked_function_arn=function_arn(queue_arn),
        memory_limit_in_mb=memory_mb,
        function_name=FUNCTION_NAME,
        log_group_name=f"/filequeue/{FUNCTION_NAME}",
        clock=clock,
    )


def function_arn(queue_arn: str, function_name: str = FUNCTION_NAME) -> str:
    """A Lambda-style ARN in the queue's partition, region and account, for log correlation only."""
    _arn, partition, _service, region, account, _name = queue_arn.split(":", 5)
    return f"arn:{partition}:lambda:{region}:{account}:function:{function_name}"


def memory_limit_mb(cgroup_file: Path = CGROUP_MEMORY_MAX) -> int:
    """The container's memory limit (cgroup v2), else the machine's physical memory."""
    try:
        raw = cgroup_file.read_text().strip()
    except OSError:
        raw = "max"
    if raw.isdigit():
        return int(raw) // (1024 * 1024)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
