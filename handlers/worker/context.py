"""A stand-in for Lambda's context object, for the container poll loop.

It has the attributes Powertools reads (function name, memory, ARN, request id, log group and
stream) and `get_remaining_time_in_millis`, which here counts down to the batch's deadline: the
end of the messages' visibility lease, or the end of the shutdown grace period once a stop was
requested, whichever comes first. That is the moment another consumer (or SIGKILL) may take over,
the container's equivalent of a Lambda timeout.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

FUNCTION_NAME = "filequeue-worker"
CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


@dataclass(frozen=True, slots=True)
class WorkerContext:
    deadline: Callable[[], float]
    """Monotonic time at which the batch must be finished."""
    invoked_function_arn: str
    memory_limit_in_mb: int
    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = f"/filequeue/{FUNCTION_NAME}"
    log_stream_name: str = field(default_factory=lambda: f"{socket.gethostname()}/{os.getpid()}")
    clock: Callable[[], float] = time.monotonic
    identity: None = None
    client_context: None = None
    tenant_id: None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline() - self.clock()) * 1000))


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
