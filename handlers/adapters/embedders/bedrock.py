"""Amazon Bedrock, Titan Text Embeddings V2 (`InvokeModel` on `bedrock-runtime`), behind the Embedder port.

Titan V2 embeds one text per call, so the calls of a batch run concurrently on a small thread pool (boto3
clients are thread-safe). Errors are translated here: a request Bedrock refuses outright (unknown model,
no access, invalid parameters) is a ConfigError because every record would fail the same way; throttling
that outlasts the retries, server errors, timeouts and connection errors are TransientErrors.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from handlers.adapters.embedders._common import (
    DEFAULT_MAX_ATTEMPTS,
    EmbedderIdentity,
    backoff_seconds,
    require_text,
    unit_vector,
)
from handlers.errors import ConfigError, ErrorCode, FileQueueError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

TITAN_V2_DIMENSIONS = (256, 512, 1024)

# Titan V2 takes at most 8,192 tokens or 50,000 characters per input. Longer inputs are cut at 50,000
# characters rather than failing the document. Chunks are about FILEQUEUE_CHUNK_SIZE characters (1,000 by
# default), far below the token limit; a chunk size large enough to pass it makes Bedrock answer
# ValidationException, reported as a ConfigError that names the settings to check.
MAX_INPUT_CHARS = 50_000

# Worth retrying in-process: the service is busy, warming up, or failed on its side.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ServiceQuotaExceededException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelErrorException",
        "InternalServerException",
        "ServiceUnavailableException",
    }
)
_CONFIG_HINTS = {
    "ValidationException": "check FILEQUEUE_EMBEDDING_MODEL (a Titan Text Embeddings V2 model id), "
    "FILEQUEUE_EMBEDDING_DIMENSION (256, 512 or 1024) and FILEQUEUE_CHUNK_SIZE",
    "ResourceNotFoundException": "FILEQUEUE_EMBEDDING_MODEL names no model available in this region",
    "AccessDeniedException": "grant bedrock:InvokeModel on the model to this role and enable access to the "
    "model in the Bedrock console (FILEQUEUE_EMBEDDING_MODEL)",
    "UnrecognizedClientException": "the AWS credentials are not valid",
}


class BedrockEmbedder(EmbedderIdentity):
    def __init__(
        self,
        *,
        model: str,
        dimension: int,
        concurrency: int,
        timeout_seconds: float = 30.0,
        client: BedrockRuntimeClient | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_model(model)
        if dimension not in TITAN_V2_DIMENSIONS:
            raise ConfigError(f"FILEQUEUE_EMBEDDING_DIMENSION must be 256, 512 or 1024 for Titan V2, got {dimension}")
        super().__init__(model, dimension)
        self._concurrency = max(1, concurrency)
        self._client = client if client is not None else make_client(self._concurrency, timeout_seconds)
        self._max_attempts = max(1, max_attempts)
        self._sleep = sleep

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        require_text(texts)
        if self._concurrency == 1 or len(texts) <= 1:
            return [self._embed_one(text) for text in texts]
        pool = ThreadPoolExecutor(max_workers=min(self._concurrency, len(texts)), thread_name_prefix="bedrock-embed")
        try:
            futures = [pool.submit(self._embed_one, text) for text in texts]
            return [future.result() for future in futures]
        finally:
            # After a failure the batch fails anyway: calls not yet started are dropped, not sent.
            pool.shutdown(wait=True, cancel_futures=True)

    def _embed_one(self, text: str) -> list[float]:
        body = json.dumps({"inputText": text[:MAX_INPUT_CHARS], "dimensions": self._dimension, "normalize": True})
        payload = self._invoke(body)
        return unit_vector(_parse_embedding(payload, self._model), self._dimension, f"Bedrock model {self._model}")

    def _invoke(self, body: str) -> bytes:
        attempt = 1
        while True:
            try:
                response = self._client.invoke_model(
                    modelId=self._model, body=body, contentType="application/json", accept="application/json"
                )
                return response["body"].read()
            except (ClientError, BotoConnectionError, HTTPClientError) as error:
                failure, retryable = self._translate(error)
                if not retryable or attempt >= self._max_attempts:
                    raise failure from error
            except (NoCredentialsError, PartialCredentialsError) as error:
                raise ConfigError(f"no usable AWS credentials for Bedrock: {error}") from error
            self._sleep(backoff_seconds(attempt))
            attempt += 1

    def _translate(self, error: ClientError | BotoConnectionError | HTTPClientError) -> tuple[FileQueueError, bool]:
        """The project error for a botocore failure, and whether another attempt may succeed."""
        region = self._client.meta.region_name
        if not isinstance(error, ClientError):
            return TransientError(
                f"Bedrock in {region} unreachable: {error}", code=ErrorCode.EMBEDDING_UNAVAILABLE
            ), True
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _CONFIG_HINTS:
            hint = _CONFIG_HINTS[code]
            return ConfigError(f"Bedrock refused {self._model} in {region} ({code}: {message}); {hint}"), False
        retryable = code in _RETRYABLE_CODES or status >= 500
        failure = TransientError(
            f"Bedrock {code or status} for {self._model}: {message}", code=ErrorCode.EMBEDDING_UNAVAILABLE
        )
        return failure, retryable


def _check_model(model: str) -> None:
    # The request body is Titan V2's; another model would reject it or answer in another shape. ARNs
    # (provisioned throughput, inference profiles) do not name the model, so they are trusted.
    if "titan-embed-text-v2" not in model and not model.startswith("arn:"):
        raise ConfigError(
            f"FILEQUEUE_EMBEDDING_MODEL={model!r} is not Titan Text Embeddings V2; the Bedrock embedder sends "
            "Titan V2 requests (use amazon.titan-embed-text-v2:0 or an ARN serving it)"
        )


def make_client(concurrency: int, timeout_seconds: float) -> BedrockRuntimeClient:
    """The `bedrock-runtime` client, region and credentials from the standard AWS environment."""
    import boto3
    from botocore.config import Config

    config = Config(
        # Adaptive mode for its client-side rate limiter (a token bucket shared by the pool's threads that
        # slows sending once Bedrock throttles); retries are ours, in one layer, so attempts do not multiply.
        retries={"mode": "adaptive", "total_max_attempts": 1},
        max_pool_connections=max(10, concurrency),
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
    )
    try:
        return boto3.client("bedrock-runtime", config=config)
    except NoRegionError as error:
        raise ConfigError("no AWS region for Bedrock: set AWS_REGION (or AWS_DEFAULT_REGION)") from error


def _parse_embedding(payload: bytes, model: str) -> list[float]:
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    embedding = document.get("embedding") if isinstance(document, dict) else None
    if not isinstance(embedding, list) or not all(_is_number(value) for value in embedding):
        raise ConfigError(
            f"Bedrock model {model} did not answer with a Titan V2 embedding; FILEQUEUE_EMBEDDING_MODEL must "
            "name Titan Text Embeddings V2"
        )
    return [float(value) for value in embedding]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
