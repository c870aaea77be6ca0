"""An OpenAI-compatible `POST {base_url}/embeddings` client (vLLM, TEI, Ollama, OpenAI), stdlib only.

One request per batch of FILEQUEUE_EMBEDDING_BATCH_SIZE texts. Errors are translated here: the answers a
retry cannot change (400, 401, 403, 404, 413, 422, a body that is not an embeddings response, vectors of
the wrong size) are ConfigErrors carrying the server's message, because every record would fail the same
way; 408, 429, 5xx, timeouts and refused connections are retried, then raised as TransientError.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from handlers.adapters.embedders._common import (
    DEFAULT_MAX_ATTEMPTS,
    EmbedderIdentity,
    backoff_seconds,
    require_text,
    unit_vector,
)
from handlers.errors import ConfigError, ErrorCode, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# A server asking for a longer pause than this is waited on for this long only: the record has a deadline,
# and if the server still refuses, the message goes back to the queue and is retried later anyway.
RETRY_AFTER_CAP_SECONDS = 10.0
_HONOURS_RETRY_AFTER = frozenset({429, 503})
_RETRYABLE_STATUSES = frozenset({408, 429})
_MESSAGE_LIMIT = 500

_CONFIG_HINTS = {
    401: "check FILEQUEUE_OPENAI_API_KEY",
    403: "check FILEQUEUE_OPENAI_API_KEY and the key's access to FILEQUEUE_EMBEDDING_MODEL",
    404: "check FILEQUEUE_OPENAI_BASE_URL (usually ending in /v1) and FILEQUEUE_EMBEDDING_MODEL",
    413: "lower FILEQUEUE_EMBEDDING_BATCH_SIZE or FILEQUEUE_CHUNK_SIZE",
}
_DEFAULT_CONFIG_HINT = "check FILEQUEUE_EMBEDDING_MODEL, FILEQUEUE_EMBEDDING_DIMENSION and FILEQUEUE_CHUNK_SIZE"


class _RetryableError(Exception):
    """One failed attempt that another attempt may fix, with the pause the server asked for, if any."""

    def __init__(self, error: TransientError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class OpenAICompatibleEmbedder(EmbedderIdentity):
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimension: int,
        batch_size: int,
        api_key: str | None = None,
        timeout_seconds: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"FILEQUEUE_OPENAI_BASE_URL must be an http(s) URL, got {base_url!r}")
        self._url = base_url.rstrip("/") + "/embeddings"
        super().__init__(model, dimension)
        self._batch_size = max(1, batch_size)
        self._timeout = timeout_seconds
        self._max_attempts = max(1, max_attempts)
        self._sleep = sleep
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "filequeue"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # `dimensions` is sent only once the server has shown that its native size differs from the
        # configured one: OpenAI's text-embedding-3 and Matryoshka models shorten vectors on request, but
        # servers for other models (vLLM among them) reject the field.
        self._send_dimensions = False

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        require_text(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._embed_batch(texts[start : start + self._batch_size]))
        return vectors

    def _embed_batch(self, batch: Sequence[str]) -> list[list[float]]:
        raw_vectors = self._request_vectors(batch)
        sizes = {len(vector) for vector in raw_vectors}
        if not self._send_dimensions and sizes != {self._dimension}:
            self._send_dimensions = True
            try:
                raw_vectors = self._request_vectors(batch)
            except ConfigError as error:
                native = "/".join(str(size) for size in sorted(sizes))
                raise ConfigError(
                    f"model {self._model} at {self._url} returns {native}-dimensional vectors and refused "
                    f"dimensions={self._dimension} ({error}); set FILEQUEUE_EMBEDDING_DIMENSION to the model's size"
                ) from error
        source = f"model {self._model} at {self._url}"
        return [unit_vector(vector, self._dimension, source) for vector in raw_vectors]

    def _request_vectors(self, batch: Sequence[str]) -> list[list[float]]:
        payload: dict[str, object] = {"model": self._model, "input": list(batch), "encoding_format": "float"}
        if self._send_dimensions:
            payload["dimensions"] = self._dimension
        return _parse_vectors(self._post(json.dumps(payload).encode()), len(batch), self._url)

    def _post(self, body: bytes) -> bytes:
        attempt = 1
        while True:
            try:
                return self._post_once(body)
            except _RetryableError as failure:
                if attempt >= self._max_attempts:
                    raise failure.error from failure.__cause__
                self._sleep(backoff_seconds(attempt) if failure.retry_after is None else failure.retry_after)
            attempt += 1

    def _post_once(self, body: bytes) -> bytes:
        # The scheme is checked in the constructor: only http(s) URLs reach urllib.
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                content: bytes = response.read()
                return content
        except urllib.error.HTTPError as error:
            raise self._http_failure(error) from error
        except (OSError, http.client.HTTPException) as error:
            # URLError (refused, DNS), TimeoutError and resets are OSErrors; a cut-off body is an HTTPException.
            reason = getattr(error, "reason", None) or error
            raise _RetryableError(_unavailable(f"embedding server {self._url} unreachable: {reason}")) from error

    def _http_failure(self, error: urllib.error.HTTPError) -> Exception:
        status = error.code
        try:
            message = _server_message(error)
        finally:
            error.close()
        if status in _RETRYABLE_STATUSES or status >= 500:
            asked = _retry_after_seconds(error.headers.get("Retry-After")) if status in _HONOURS_RETRY_AFTER else None
            return _RetryableError(_unavailable(f"embedding server {self._url} answered {status}: {message}"), asked)
        hint = _CONFIG_HINTS.get(status, _DEFAULT_CONFIG_HINT)
        return ConfigError(f"embedding server {self._url} answered {status} for model {self._model}: {message}; {hint}")


def _retry_after_seconds(header: str | None) -> float | None:
    """The pause a `Retry-After` header asks for (delta-seconds or HTTP-date), capped; None if absent or invalid."""
    value = (header or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def _server_message(error: urllib.error.HTTPError) -> str:
    """The error text of the common server shapes: OpenAI, vLLM, TEI, FastAPI; else the raw body."""
    try:
        raw = error.read()
    except (OSError, http.client.HTTPException):
        return error.reason or ""
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        detail = document.get("error", document.get("message", document.get("detail")))
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        if detail:
            text = detail if isinstance(detail, str) else json.dumps(detail)
    return text[:_MESSAGE_LIMIT] or str(error.reason)


def _parse_vectors(raw: bytes, count: int, url: str) -> list[list[float]]:
    """The vectors of an embeddings response, in input order (servers may answer out of order)."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise _not_embeddings(url, f"expected a 'data' list of {count} items")
    vectors: list[list[float] | None] = [None] * count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        embedding = item.get("embedding") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < count or vectors[index] is not None:
            raise _not_embeddings(url, f"item index {index!r} is not a distinct position below {count}")
        if not isinstance(embedding, list) or not all(_is_number(value) for value in embedding):
            raise _not_embeddings(url, "an 'embedding' is not a list of numbers (encoding_format=float unsupported?)")
        vectors[index] = [float(value) for value in embedding]
    return [vector for vector in vectors if vector is not None]


def _unavailable(message: str) -> TransientError:
    return TransientError(message, code=ErrorCode.EMBEDDING_UNAVAILABLE)


def _not_embeddings(url: str, reason: str) -> ConfigError:
    return ConfigError(
        f"the answer of {url} is not an OpenAI embeddings response ({reason}); check FILEQUEUE_OPENAI_BASE_URL"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
