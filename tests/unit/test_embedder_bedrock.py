"""BedrockEmbedder against a real `bedrock-runtime` client whose requests never leave the process.

Most tests use botocore's Stubber, which validates every request against the real service model. The
Stubber hands out its queued responses in call order, so it cannot pair responses with requests made
from several threads; the concurrency test and the wire-level error tests answer from a `before-send`
hook instead: botocore still serialises the request and parses the raw HTTP answer, only the socket is
replaced, and the answer is computed from the request body, so it is right whatever the order.
"""

from __future__ import annotations

import io
import json
import math
import threading
from typing import TYPE_CHECKING, Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from handlers.adapters.embedders import build_embedder
from handlers.adapters.embedders._common import BACKOFF_CAP_SECONDS
from handlers.adapters.embedders.bedrock import MAX_INPUT_CHARS, BedrockEmbedder, make_client
from handlers.errors import ConfigError, PermanentError, TransientError
from handlers.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from botocore.awsrequest import AWSPreparedRequest
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

MODEL = "amazon.titan-embed-text-v2:0"
DIMENSION = 256


class JsonBody:
    """Matches the `body` parameter by its JSON content (the Stubber compares parameters with `!=`)."""

    def __init__(self, expected: dict[str, Any]) -> None:
        self.expected = expected

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str | bytes) and json.loads(other) == self.expected

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JsonBody({self.expected!r})"


class RawBody(io.BytesIO):
    """An HTTP body as botocore's parsers read it (urllib3's response offers `stream`)."""

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self.getvalue()


class Sleeps(list[float]):
    """Stands in for `time.sleep`: records the backoff the embedder asked for, without waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture
def client(aws_env: None) -> BedrockRuntimeClient:
    """The client exactly as production builds it (adaptive mode, botocore retries off)."""
    return make_client(concurrency=4, timeout_seconds=5.0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def embedder_for(
    client: BedrockRuntimeClient, sleeps: Sleeps, *, concurrency: int = 1, max_attempts: int = 4
) -> BedrockEmbedder:
    return BedrockEmbedder(
        model=MODEL,
        dimension=DIMENSION,
        concurrency=concurrency,
        client=client,
        max_attempts=max_attempts,
        sleep=sleeps,
    )


def one_hot(position: int, dimension: int = DIMENSION) -> list[float]:
    vector = [0.0] * dimension
    vector[position] = 1.0
    return vector


def invoke_model_response(document: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(document).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def titan_response(embedding: list[float]) -> dict[str, Any]:
    return invoke_model_response({"embedding": embedding, "inputTextTokenCount": 3})


def titan_request(text: str) -> dict[str, Any]:
    return {
        "modelId": MODEL,
        "body": JsonBody({"inputText": text, "dimensions": DIMENSION, "normalize": True}),
        "contentType": "application/json",
        "accept": "application/json",
    }


def test_embed_sends_titan_v2_requests_and_returns_vectors_in_order(client, sleeps):
    embedder = embedder_for(client, sleeps)
    with Stubber(client) as stubber:
        stubber.add_response("invoke_model", titan_response(one_hot(0)), titan_request("alpha"))
        stubber.add_response("invoke_model", titan_response(one_hot(1)), titan_request("beta"))

        vectors = embedder.embed(["alpha", "beta"])

        stubber.assert_no_pending_responses()
    assert vectors == [one_hot(0), one_hot(1)]
    assert (embedder.model, embedder.dimension) == (MODEL, DIMENSION)


def test_embed_returns_unit_vectors(client, sleeps):
    with Stubber(client) as stubber:
        stubber.add_response("invoke_model", titan_response([3.0, 4.0] + [0.0] * (DIMENSION - 2)), titan_request("x"))

        [vector] = embedder_for(client, sleeps).embed(["x"])

    assert vector[:2] == pytest.approx([0.6, 0.8])
    assert math.fsum(value * value for value in vector) == pytest.approx(1.0)


def test_embed_truncates_inputs_beyond_the_titan_character_limit(client, sleeps):
    long_text = "word " * (MAX_INPUT_CHARS // 4)
    with Stubber(client) as stubber:
        stubber.add_response("invoke_model", titan_response(one_hot(2)), titan_request(long_text[:MAX_INPUT_CHARS]))

        assert embedder_for(client, sleeps).embed([long_text]) == [one_hot(2)]

        stubber.assert_no_pending_responses()


def test_embed_retries_throttling_then_succeeds(client, sleeps):
    with Stubber(client) as stubber:
        for _ in range(2):
            stubber.add_client_error("invoke_model", "ThrottlingException", "Too many requests", 429)
        stubber.add_response("invoke_model", titan_response(one_hot(3)), titan_request("busy"))

        assert embedder_for(client, sleeps).embed(["busy"]) == [one_hot(3)]

        stubber.assert_no_pending_responses()
    assert len(sleeps) == 2
    assert all(0.0 <= pause <= BACKOFF_CAP_SECONDS for pause in sleeps)


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 429), ("ServiceUnavailableException", 503), ("InternalServerException", 500)],
)
def test_embed_raises_transient_error_when_retries_run_out(client, sleeps, code, status):
    with Stubber(client) as stubber:
        for _ in range(3):
            stubber.add_client_error("invoke_model", code, "try later", status)

        with pytest.raises(TransientError) as caught:
            embedder_for(client, sleeps, max_attempts=3).embed(["busy"])

        stubber.assert_no_pending_responses()
    assert caught.value.code == "embedding_unavailable"
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [("ValidationException", 400), ("ResourceNotFoundException", 404), ("AccessDeniedException", 403)],
)
def test_embed_raises_config_error_at_once_when_bedrock_refuses_the_model(client, sleeps, code, status):
    with Stubber(client) as stubber:
        stubber.add_client_error("invoke_model", code, "The provided model identifier is invalid.", status)

        with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_MODEL") as caught:
            embedder_for(client, sleeps).embed(["text"])

    assert "The provided model identifier is invalid." in str(caught.value)
    assert sleeps == []


def test_embed_raises_config_error_on_a_vector_of_another_dimension(client, sleeps):
    with Stubber(client) as stubber:
        stubber.add_response("invoke_model", titan_response(one_hot(0, 1024)), titan_request("text"))

        with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_DIMENSION") as caught:
            embedder_for(client, sleeps).embed(["text"])

    assert "1024" in str(caught.value)


def test_embed_raises_config_error_on_an_answer_that_is_not_titan_v2(client, sleeps):
    cohere_shaped = invoke_model_response({"embeddings": [[0.1, 0.2]], "id": "x", "texts": ["t"]})
    with Stubber(client) as stubber:
        stubber.add_response("invoke_model", cohere_shaped, titan_request("t"))

        with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_MODEL"):
            embedder_for(client, sleeps).embed(["t"])


def test_embed_rejects_empty_text_without_calling_bedrock(client, sleeps):
    with Stubber(client), pytest.raises(PermanentError) as caught:
        embedder_for(client, sleeps).embed(["fine", "  "])

    assert caught.value.code == "empty_text"


def test_embed_of_nothing_makes_no_call(client, sleeps):
    with Stubber(client):
        assert embedder_for(client, sleeps, concurrency=4).embed([]) == []


def answer_from_request(
    client: BedrockRuntimeClient, answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Replace the socket: each InvokeModel gets `answer(request body)` as a raw HTTP response."""
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(request: AWSPreparedRequest, **_: object) -> AWSResponse:
        assert isinstance(request.body, bytes)
        body = json.loads(request.body)
        with lock:
            seen.append(body)
        status, document = answer(body)
        raw = json.dumps(document).encode()
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(raw))
        if status >= 400:
            headers["x-amzn-ErrorType"] = document["__type"]
        return AWSResponse(request.url, status, headers, RawBody(raw))

    # botocore-stubs types event handlers as returning None; a before-send handler may return the response.
    client.meta.events.register("before-send.bedrock-runtime.InvokeModel", send)  # type: ignore[arg-type]
    return seen


def test_embed_runs_calls_concurrently_and_keeps_input_order(client, sleeps):
    concurrency = 4
    # The first `concurrency` calls wait here for one another: with sequential calls the barrier would
    # time out and break, so passing proves that four requests were in flight at the same time.
    all_in_flight = threading.Barrier(concurrency, timeout=10)
    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()

    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        nonlocal in_flight, most_in_flight
        position = int(body["inputText"].removeprefix("text "))
        with lock:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
        if position < concurrency:
            all_in_flight.wait()
        with lock:
            in_flight -= 1
        return 200, {"embedding": one_hot(position), "inputTextTokenCount": 2}

    seen = answer_from_request(client, answer)
    texts = [f"text {position}" for position in range(12)]

    vectors = embedder_for(client, sleeps, concurrency=concurrency).embed(texts)

    assert vectors == [one_hot(position) for position in range(12)]
    assert sorted(body["inputText"] for body in seen) == sorted(texts)
    assert most_in_flight == concurrency


def test_embed_concurrent_batch_fails_on_a_refused_request(client, sleeps):
    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body["inputText"] == "bad":
            return 400, {"__type": "ValidationException", "message": "Malformed input request"}
        return 200, {"embedding": one_hot(0), "inputTextTokenCount": 1}

    answer_from_request(client, answer)

    with pytest.raises(ConfigError, match="Malformed input request"):
        embedder_for(client, sleeps, concurrency=3).embed(["good", "bad", "good", "good"])


def test_embed_retries_throttling_answered_on_the_wire(client, sleeps):
    answers = iter([(429, {"__type": "ThrottlingException", "message": "Too many requests"})])

    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return next(answers, (200, {"embedding": one_hot(5), "inputTextTokenCount": 1}))

    seen = answer_from_request(client, answer)

    assert embedder_for(client, sleeps).embed(["x"]) == [one_hot(5)]
    assert len(seen) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    "failure",
    [
        EndpointConnectionError(endpoint_url="https://bedrock-runtime.eu-west-1.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://bedrock-runtime.eu-west-1.amazonaws.com", error="timed out"),
    ],
)
def test_embed_raises_transient_error_when_bedrock_is_unreachable(client, sleeps, failure):
    attempts: list[str] = []

    def fail(request: AWSPreparedRequest, **_: object) -> None:
        attempts.append(request.url)
        raise failure

    client.meta.events.register("before-send.bedrock-runtime.InvokeModel", fail)

    with pytest.raises(TransientError) as caught:
        embedder_for(client, sleeps, max_attempts=3).embed(["x"])

    assert caught.value.code == "embedding_unavailable"
    # Only our loop retries: botocore's own retries are off, so attempts do not multiply.
    assert len(attempts) == 3


@pytest.mark.parametrize(("model", "dimension"), [("cohere.embed-english-v3", 256), (MODEL, 300)])
def test_embedder_refuses_a_model_or_dimension_titan_v2_cannot_serve(client, model, dimension):
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_"):
        BedrockEmbedder(model=model, dimension=dimension, concurrency=1, client=client)


def test_build_embedder_makes_a_bedrock_embedder_from_settings(aws_env):
    embedder = build_embedder(Settings(embedder="bedrock", embedding_dimension=512, embedding_concurrency=8))

    assert isinstance(embedder, BedrockEmbedder)
    assert (embedder.model, embedder.dimension) == (MODEL, 512)


def test_build_embedder_without_a_region_is_a_config_error(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(ConfigError, match="AWS_REGION"):
        build_embedder(Settings(embedder="bedrock"))
