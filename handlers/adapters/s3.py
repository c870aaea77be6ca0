"""The boto3 S3 object store: the exact version, streamed to disk, size-limited and length-checked."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handlers.errors import ErrorCode, PermanentError, TransientError
from handlers.model import FetchedObject

if TYPE_CHECKING:
    from collections.abc import Iterator

    from handlers.model import ObjectRef

_READ_SIZE = 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchVersion", "404", "NotFound", "NoSuchBucket"}
_PERMANENT = {"InvalidObjectState", "InvalidRange", "MethodNotAllowed"}
_DENIED = {"AccessDenied", "403", "Forbidden"}


class S3ObjectStore:
    def __init__(self, client: Any, max_bytes: int) -> None:
        self._client = client
        self._max_bytes = max_bytes

    def fetch(self, ref: ObjectRef, directory: str) -> FetchedObject:
        if ref.size is not None and ref.size > self._max_bytes:
            raise _too_large(ref.size, self._max_bytes)
        request: dict[str, str] = {"Bucket": ref.bucket, "Key": ref.key}
        if ref.version_id:
            request["VersionId"] = ref.version_id
        try:
            with _translated_errors(ref):
                response = self._client.get_object(**request)
        except TransientError as error:
            if error.code != ErrorCode.ACCESS_DENIED:
                raise
            # S3 answers 403, not 404, for a missing key to a caller who may not list the bucket; a listing
            # under the key tells a deleted object (permanent) from a real lack of permission (transient).
            if not self._key_is_listed(ref):
                raise PermanentError(
                    f"{ref.uri} (version {ref.version_id or 'latest'}) no longer exists: 403 on GetObject and "
                    "not listed",
                    code=ErrorCode.OBJECT_MISSING,
                ) from error
            raise
        expected = int(response.get("ContentLength", -1))
        if expected > self._max_bytes:
            response["Body"].close()
            raise _too_large(expected, self._max_bytes)
        descriptor, path = tempfile.mkstemp(prefix="filequeue-", dir=directory)
        digest = hashlib.sha256()
        received = 0
        try:
            with os.fdopen(descriptor, "wb") as sink, _translated_errors(ref):
                for block in response["Body"].iter_chunks(_READ_SIZE):
                    received += len(block)
                    if received > self._max_bytes:
                        raise _too_large(received, self._max_bytes)
                    digest.update(block)
                    sink.write(block)
        except Exception:
            Path(path).unlink()
            raise
        if expected >= 0 and received != expected:
            Path(path).unlink()
            raise TransientError(
                f"download of {ref.uri} ended after {received} of {expected} bytes", code=ErrorCode.TRUNCATED_DOWNLOAD
            )
        return FetchedObject(
            ref=ref,
            path=path,
            size=received,
            sha256=digest.hexdigest(),
            content_type=response.get("ContentType"),
            version_id=response.get("VersionId") or ref.version_id,
            etag=(response.get("ETag") or "").strip('"') or ref.etag,
        )

    def _key_is_listed(self, ref: ObjectRef) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            listing = self._client.list_objects_v2(Bucket=ref.bucket, Prefix=ref.key, MaxKeys=1)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            raise TransientError(
                f"S3 denied GetObject on {ref.uri} and ListObjectsV2 under it ({code}): grant s3:GetObject, "
                "s3:GetObjectVersion and s3:ListBucket on the uploads prefix",
                code=ErrorCode.ACCESS_DENIED,
            ) from exc
        except BotoCoreError as exc:
            raise TransientError(
                f"S3 ListObjectsV2 {ref.uri} failed: {type(exc).__name__}: {exc}", code=ErrorCode.S3_UNAVAILABLE
            ) from exc
        return any(entry.get("Key") == ref.key for entry in listing.get("Contents", []))


@contextmanager
def _translated_errors(ref: ObjectRef) -> Iterator[None]:
    """Translate botocore failures into our error tree: missing objects are permanent, the rest transient."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        if code in _MISSING:
            raise PermanentError(
                f"{ref.uri} (version {ref.version_id or 'latest'}) no longer exists: {code}",
                code=ErrorCode.OBJECT_MISSING,
            ) from exc
        if code in _PERMANENT:
            raise PermanentError(f"{ref.uri} cannot be read: {code}", code=ErrorCode.OBJECT_UNREADABLE) from exc
        if code in _DENIED:
            raise TransientError(
                f"S3 denied GetObject on {ref.uri} ({code}): the role lacks s3:GetObject or s3:GetObjectVersion "
                "on it, or the object's key policy denies it",
                code=ErrorCode.ACCESS_DENIED,
            ) from exc
        raise TransientError(f"S3 GetObject {ref.uri} failed: {code}", code=ErrorCode.S3_UNAVAILABLE) from exc
    except BotoCoreError as exc:
        raise TransientError(
            f"S3 GetObject {ref.uri} failed: {type(exc).__name__}: {exc}", code=ErrorCode.S3_UNAVAILABLE
        ) from exc


def build_s3_client() -> Any:
    """A client with bounded retries and timeouts; endpoint and region from the standard AWS environment."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30),
    )


def _too_large(size: int, limit: int) -> PermanentError:
    return PermanentError(
        f"object is {size} bytes, over the limit of {limit} bytes (FILEQUEUE_MAX_OBJECT_BYTES)",
        code=ErrorCode.TOO_LARGE,
    )
