"""One error tree, translated at the seams (adapters raise these, never library errors)."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every code an error carries: on the document row (`error_code`), in log lines and in metrics.

    A code names what went wrong in File Queue's terms; a code that AWS or a library returned goes
    into the message. The codes are stable: operators filter on them (`filequeue failed --code`).
    """

    # The file itself is at fault: recorded on the document row, the message acknowledged.
    TOO_LARGE = "too_large"
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_TYPE = "unsupported_type"
    ENCRYPTED_PDF = "encrypted_pdf"
    CORRUPT_FILE = "corrupt_file"
    TOO_MANY_PAGES = "too_many_pages"
    TOO_MUCH_CONTENT = "too_much_content"
    TOO_MUCH_TEXT = "too_much_text"
    NO_TEXT = "no_text"
    OCR_PAGE_LIMIT = "ocr_page_limit"
    IMAGE_TOO_LARGE = "image_too_large"
    OCR_UNAVAILABLE = "ocr_unavailable"
    EMPTY_TEXT = "empty_text"
    OBJECT_MISSING = "object_missing"
    OBJECT_UNREADABLE = "object_unreadable"
    EXTRACT_TIMEOUT = "extract_timeout"
    EXTRACT_MEMORY = "extract_memory"
    EXTRACT_CRASHED = "extract_crashed"
    EMBEDDING_INVALID = "embedding_invalid"
    CONTENT_REJECTED = "content_rejected"
    # Retrying may help: the record is reported in batchItemFailures and SQS delivers it again.
    ACCESS_DENIED = "access_denied"
    TRUNCATED_DOWNLOAD = "truncated_download"
    S3_UNAVAILABLE = "s3_unavailable"
    AWS_UNAVAILABLE = "aws_unavailable"
    EMBEDDING_UNAVAILABLE = "embedding_unavailable"
    DB_UNAVAILABLE = "db_unavailable"
    DB_RECENTLY_UNAVAILABLE = "db_recently_unavailable"
    DB_CONFLICT = "db_conflict"
    DEADLINE = "deadline"
    RELEASED = "released"
    UNEXPECTED = "unexpected"
    # The message is not an event File Queue understands: it ends in the DLQ for review.
    EMPTY_BODY = "empty_body"
    INVALID_JSON = "invalid_json"
    UNKNOWN_SHAPE = "unknown_shape"
    INVALID_RECORD = "invalid_record"
    MALFORMED_RECORD = "malformed_record"
    # The defaults of the error classes, when a raiser gives no more specific code.
    ERROR = "error"
    CONFIG = "config"
    MALFORMED_EVENT = "malformed_event"
    PERMANENT = "permanent"
    TRANSIENT = "transient"


class FileQueueError(Exception):
    """Base of every error the project raises on purpose. `code` is stable and machine-readable."""

    code: ErrorCode = ErrorCode.ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(FileQueueError):
    """The configuration is invalid; names the environment variable at fault."""

    code = ErrorCode.CONFIG


class MalformedEventError(FileQueueError):
    """The SQS body is not an event we understand: the message must end in the DLQ for review."""

    code = ErrorCode.MALFORMED_EVENT


class PermanentError(FileQueueError):
    """Retrying cannot help: recorded on the document row and the message is acknowledged."""

    code = ErrorCode.PERMANENT


class TransientError(FileQueueError):
    """Retrying may help: the record is reported in batchItemFailures."""

    code = ErrorCode.TRANSIENT


PERMANENT_CODES = frozenset(
    {
        ErrorCode.TOO_LARGE,
        ErrorCode.EMPTY_FILE,
        ErrorCode.UNSUPPORTED_TYPE,
        ErrorCode.ENCRYPTED_PDF,
        ErrorCode.CORRUPT_FILE,
        ErrorCode.TOO_MANY_PAGES,
        ErrorCode.TOO_MUCH_CONTENT,
        ErrorCode.TOO_MUCH_TEXT,
        ErrorCode.NO_TEXT,
        ErrorCode.OCR_PAGE_LIMIT,
        ErrorCode.IMAGE_TOO_LARGE,
        ErrorCode.OCR_UNAVAILABLE,
        ErrorCode.EMPTY_TEXT,
        ErrorCode.OBJECT_MISSING,
        ErrorCode.OBJECT_UNREADABLE,
        ErrorCode.EXTRACT_TIMEOUT,
        ErrorCode.EXTRACT_MEMORY,
        ErrorCode.EXTRACT_CRASHED,
        ErrorCode.EMBEDDING_INVALID,
        ErrorCode.CONTENT_REJECTED,
    }
)
"""The codes a document row can show as `status='failed'` (docs/semantics.md lists each one)."""
