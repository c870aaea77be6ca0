"""One error tree, translated at the seams (adapters raise these, never library errors)."""

from __future__ import annotations


class FileQueueError(Exception):
    """Base of every error the project raises on purpose. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(FileQueueError):
    """The configuration is invalid; names the environment variable at fault."""

    code = "config"


class MalformedEventError(FileQueueError):
    """The SQS body is not an event we understand: the message must end in the DLQ for review."""

    code = "malformed_event"


class PermanentError(FileQueueError):
    """Retrying cannot help: recorded on the document row and the message is acknowledged."""

    code = "permanent"


class TransientError(FileQueueError):
    """Retrying may help: the record is reported in batchItemFailures."""

    code = "transient"
