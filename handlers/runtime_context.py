"""A stand-in for the Lambda context object, for runtimes that are not Lambda.

The poll loop and `filequeue invoke` pass it to the handler, so the deadline guard works the same
way everywhere: `get_remaining_time_in_millis` counts down to a deadline the caller chooses (in the
worker, the visibility timeout of the batch).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class DeadlineContext:
    deadline_monotonic: float
    function_name: str = "filequeue"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:filequeue"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "filequeue"
    log_stream_name: str = "local"

    @classmethod
    def lasting(cls, seconds: float, **fields: str) -> DeadlineContext:
        return cls(deadline_monotonic=time.monotonic() + seconds, **fields)  # type: ignore[arg-type]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - time.monotonic()) * 1000))
