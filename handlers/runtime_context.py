"""A stand-in for the Lambda context object, for the runtimes that are not Lambda.

It has the attributes Powertools reads (function name, memory, ARN, request id, log group and
stream) and `get_remaining_time_in_millis`, which counts down to a deadline the caller chooses, so
the handler's deadline guard works the same everywhere. `filequeue invoke` gives it a fixed
deadline; the poll loop gives it a moving one: the end of the time of the record in work (renewed
for each record the handler claims, the heartbeat holding the lease meanwhile) or of the shutdown
grace period, whichever comes first.

`RecordGate` is the other thing a runtime may hand the handler: the worker's way of saying, record
by record, whether a message is still its own. Lambda has none.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

FUNCTION_NAME = "filequeue"


class RecordGate(Protocol):
    """Asked by the handler before it starts a record, by message id.

    False if the runtime handed the message back to the queue meanwhile (another consumer will process
    it); True if the record is now the handler's.
    """

    def __call__(self, message_id: str, /) -> bool: ...


@dataclass(frozen=True, slots=True)
class DeadlineContext:
    deadline: Callable[[], float]
    """Monotonic time at which the work must be finished."""
    invoked_function_arn: str = f"arn:aws:lambda:local:000000000000:function:{FUNCTION_NAME}"
    memory_limit_in_mb: int = 0
    function_name: str = FUNCTION_NAME
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = f"/filequeue/{FUNCTION_NAME}"
    log_stream_name: str = field(default_factory=lambda: f"{socket.gethostname()}/{os.getpid()}")
    clock: Callable[[], float] = time.monotonic
    identity: None = None
    client_context: None = None
    tenant_id: None = None

    @classmethod
    def lasting(cls, seconds: float) -> DeadlineContext:
        """A context whose deadline is `seconds` from now, like a Lambda function's timeout."""
        end = time.monotonic() + seconds
        return cls(deadline=lambda: end)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline() - self.clock()) * 1000))
