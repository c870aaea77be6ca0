"""OpenAICompatibleEmbedder against a real HTTP server on 127.0.0.1 speaking the OpenAI embeddings format.

The server's "model" is the hashing embedder, so every text has a distinct, known vector and the tests
can check that each vector comes back in the position of its text.
"""

from __future__ import annotations

import json
import math
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from handlers.adapters.embedders import build_embedder
from handlers.adapters.embedders._common import BACKOFF_BASE_SECONDS
from handlers.adapters.embedders.hashing import HashingEmbedder
from handlers.adapters.embedders.openai_compatible import RETRY_AFTER_CAP_SECONDS, OpenAICompatibleEmbedder
from handlers.errors import ConfigError, PermanentError, TransientError
from handlers.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

MODEL = "test-embedder"
TEXTS = ["the cat sat", "on the mat", "a dog barked", "at the moon", "all night long"]


@dataclass
class Reply:
    """A scripted answer, served before the server falls back to embedding the input."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False  # answer nothing until the test ends, so the client times out


@dataclass
class Seen:
    headers: dict[str, str]
    body: dict[str, Any]


class EmbeddingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, native_dimension: int) -> None:
        super().__init__(("127.0.0.1", 0), EmbeddingHandler)
        self.native_dimension = native_dimension
        self.dimensions_support = "honour"  # or "reject" (400, as vLLM for most models) or "ignore"
        self.reverse = False  # answer items in reverse order, each with its `index`
        self.scale = 1.0  # multiply vectors, as a server that does not normalise
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.released = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def answer(self, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        with self.lock:
            self.seen.append(Seen(headers, body))
            if self.replies:
                return self.replies.popleft()
        dimension = self.native_dimension
        if "dimensions" in body:
            if self.dimensions_support == "reject":
                message = "Model does not support matryoshka representation, changing output dimensions is not allowed."
                return Reply(400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400})
            if self.dimensions_support == "honour":
                dimension = body["dimensions"]
        vectors = HashingEmbedder(dimension).embed(body["input"])
        data = [
            {"object": "embedding", "index": index, "embedding": [value * self.scale for value in vector]}
            for index, vector in enumerate(vectors)
        ]
        if self.reverse:
            data.reverse()
        return Reply(200, {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1}})


class EmbeddingHandler(BaseHTTPRequestHandler):
    server: EmbeddingServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/embeddings":
            self.send_reply(Reply(404, {"error": {"message": f"no route {self.path}"}}))
            return
        self.send_reply(self.server.answer(dict(self.headers.items()), body))

    def send_reply(self, reply: Reply) -> None:
        if reply.hold:
            self.server.released.wait(timeout=30)
            return
        raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddingServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    running = EmbeddingServer(native_dimension=8)
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield running
    running.released.set()
    running.shutdown()
    running.server_close()
    thread.join(timeout=5)


class Sleeps(list[float]):
    """Stands in for `time.sleep`: records the pauses the embedder asked for, without waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def embedder_for(
    server: EmbeddingServer,
    sleeps: Sleeps,
    *,
    dimension: int = 8,
    batch_size: int = 32,
    api_key: str | None = None,
    timeout_seconds: float = 5.0,
    max_attempts: int = 3,
) -> OpenAICompatibleEmbedder:
    return OpenAICompatibleEmbedder(
        base_url=server.url,
        model=MODEL,
        dimension=dimension,
        batch_size=batch_size,
        api_key=api_key,
        timeout_seconds=timeout_seconds,
        max_attempts=max_attempts,
        sleep=sleeps,
    )


def expected(texts: list[str], dimension: int = 8) -> list[list[float]]:
    return HashingEmbedder(dimension).embed(texts)


def assert_vectors(actual: list[list[float]], wanted: list[list[float]]) -> None:
    assert len(actual) == len(wanted)
    for got, want in zip(actual, wanted, strict=True):
        assert got == pytest.approx(want)


def test_embed_batches_requests_and_keeps_input_order(server, sleeps):
    vectors = embedder_for(server, sleeps, batch_size=2).embed(TEXTS)

    assert_vectors(vectors, expected(TEXTS))
    assert [seen.body["input"] for seen in server.seen] == [TEXTS[0:2], TEXTS[2:4], TEXTS[4:5]]
    assert all(seen.body["model"] == MODEL for seen in server.seen)
    assert all(seen.body["encoding_format"] == "float" for seen in server.seen)
    assert all("dimensions" not in seen.body for seen in server.seen)


def test_embed_places_items_by_their_index_when_the_server_answers_out_of_order(server, sleeps):
    server.reverse = True

    assert_vectors(embedder_for(server, sleeps).embed(TEXTS), expected(TEXTS))


def test_embed_returns_unit_vectors_when_the_server_does_not_normalise(server, sleeps):
    server.scale = 7.5

    vectors = embedder_for(server, sleeps).embed(TEXTS)

    assert_vectors(vectors, expected(TEXTS))
    assert all(math.fsum(value * value for value in vector) == pytest.approx(1.0) for vector in vectors)


@pytest.mark.parametrize(("status", "retry_after"), [(429, "0"), (429, "1"), (503, "1")])
def test_embed_waits_as_long_as_retry_after_asks_then_succeeds(server, sleeps, status, retry_after):
    server.replies.append(Reply(status, {"error": {"message": "slow down"}}, {"Retry-After": retry_after}))

    vectors = embedder_for(server, sleeps).embed(TEXTS[:2])

    assert_vectors(vectors, expected(TEXTS[:2]))
    assert sleeps == [float(retry_after)]
    assert len(server.seen) == 2


def test_embed_caps_a_retry_after_date_far_in_the_future(server, sleeps):
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    server.replies.append(Reply(429, {"error": {"message": "quota"}}, {"Retry-After": later}))

    embedder_for(server, sleeps).embed(TEXTS[:1])

    assert sleeps == [RETRY_AFTER_CAP_SECONDS]


def test_embed_backs_off_when_a_429_gives_no_retry_after(server, sleeps):
    server.replies.append(Reply(429, {"error": {"message": "busy"}}))

    embedder_for(server, sleeps).embed(TEXTS[:1])

    assert len(sleeps) == 1
    assert 0.0 <= sleeps[0] <= BACKOFF_BASE_SECONDS


def test_embed_retries_server_errors_then_raises_transient_error(server, sleeps):
    server.replies.extend(Reply(500, {"error": {"message": "CUDA out of memory"}}) for _ in range(3))

    with pytest.raises(TransientError, match="CUDA out of memory") as caught:
        embedder_for(server, sleeps, max_attempts=3).embed(TEXTS[:1])

    assert caught.value.code == "embedding_unavailable"
    assert len(server.seen) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("status", "variable"),
    [(401, "FILEQUEUE_OPENAI_API_KEY"), (403, "FILEQUEUE_OPENAI_API_KEY"), (404, "FILEQUEUE_OPENAI_BASE_URL")],
)
def test_embed_raises_config_error_with_the_server_message_without_retrying(server, sleeps, status, variable):
    message = "Incorrect API key provided: sk-wrong"
    server.replies.append(Reply(status, {"error": {"message": message, "type": "invalid_request_error"}}))

    with pytest.raises(ConfigError, match=variable) as caught:
        embedder_for(server, sleeps).embed(TEXTS[:1])

    assert message in str(caught.value)
    assert len(server.seen) == 1
    assert sleeps == []


def test_embed_raises_config_error_on_a_bad_request_naming_the_model(server, sleeps):
    server.replies.append(Reply(400, {"detail": "model 'test-embedder' not found"}))

    with pytest.raises(ConfigError, match="model 'test-embedder' not found") as caught:
        embedder_for(server, sleeps).embed(TEXTS[:1])

    assert "FILEQUEUE_EMBEDDING_MODEL" in str(caught.value)


def test_embed_times_out_then_raises_transient_error(server, sleeps):
    server.replies.extend(Reply(200, hold=True) for _ in range(2))

    with pytest.raises(TransientError) as caught:
        embedder_for(server, sleeps, timeout_seconds=0.2, max_attempts=2).embed(TEXTS[:1])

    assert caught.value.code == "embedding_unavailable"
    assert len(server.seen) == 2


def test_embed_raises_transient_error_when_the_connection_is_refused(sleeps):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = OpenAICompatibleEmbedder(
        base_url=f"http://127.0.0.1:{port}/v1", model=MODEL, dimension=8, batch_size=4, max_attempts=2, sleep=sleeps
    )

    with pytest.raises(TransientError, match="unreachable"):
        embedder.embed(TEXTS[:1])

    assert len(sleeps) == 1


def test_embed_sends_the_api_key_as_a_bearer_token_only_when_set(server, sleeps):
    embedder_for(server, sleeps, api_key="sk-test-123").embed(TEXTS[:1])
    embedder_for(server, sleeps).embed(TEXTS[:1])

    with_key, without_key = (seen.headers for seen in server.seen)
    assert with_key["Authorization"] == "Bearer sk-test-123"
    assert "Authorization" not in without_key


def test_embed_asks_for_the_configured_dimension_once_the_server_shows_another(server, sleeps):
    embedder = embedder_for(server, sleeps, dimension=4)

    first = embedder.embed(TEXTS[:2])
    second = embedder.embed(TEXTS[2:3])

    assert_vectors(first, expected(TEXTS[:2], dimension=4))
    assert_vectors(second, expected(TEXTS[2:3], dimension=4))
    assert ["dimensions" in seen.body for seen in server.seen] == [False, True, True]
    assert server.seen[1].body["dimensions"] == 4


@pytest.mark.parametrize("support", ["reject", "ignore"])
def test_embed_raises_config_error_when_the_server_cannot_give_the_configured_dimension(server, sleeps, support):
    server.dimensions_support = support

    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDING_DIMENSION") as caught:
        embedder_for(server, sleeps, dimension=4).embed(TEXTS[:1])

    assert "8" in str(caught.value)


def test_embed_raises_config_error_when_the_answer_is_not_an_embeddings_response(server, sleeps):
    server.replies.append(Reply(200, b"<html>welcome to nginx</html>"))

    with pytest.raises(ConfigError, match="FILEQUEUE_OPENAI_BASE_URL"):
        embedder_for(server, sleeps).embed(TEXTS[:1])


def test_embed_rejects_empty_text_without_a_request(server, sleeps):
    with pytest.raises(PermanentError):
        embedder_for(server, sleeps).embed(["fine", ""])

    assert server.seen == []


def test_embedder_refuses_a_base_url_that_is_not_http():
    with pytest.raises(ConfigError, match="FILEQUEUE_OPENAI_BASE_URL"):
        OpenAICompatibleEmbedder(base_url="file:///etc", model=MODEL, dimension=8, batch_size=1)


def test_build_embedder_makes_an_openai_embedder_from_settings(server):
    settings = Settings(
        embedder="openai",
        openai_base_url=server.url + "/",
        openai_api_key="sk-from-settings",
        embedding_model=MODEL,
        embedding_dimension=8,
        embedding_batch_size=3,
    )

    embedder = build_embedder(settings)

    assert (embedder.model, embedder.dimension) == (MODEL, 8)
    assert_vectors(embedder.embed(TEXTS), expected(TEXTS))
    assert [len(seen.body["input"]) for seen in server.seen] == [3, 2]
    assert server.seen[0].headers["Authorization"] == "Bearer sk-from-settings"


def test_build_embedder_refuses_an_unknown_kind_from_unvalidated_settings():
    with pytest.raises(ConfigError, match="FILEQUEUE_EMBEDDER"):
        build_embedder(Settings(embedder="word2vec"))
