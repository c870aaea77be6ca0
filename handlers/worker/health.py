"""`/healthz`, `/readyz` and `/metrics` on one small threaded HTTP server.

- `/healthz` (liveness): every loop polled or is inside a record's time budget recently; while the
  worker starts (waiting for its database), alive, and it says "starting" and why.
- `/readyz` (readiness): not ready while starting; then, the database answers (`check_ready`) and SQS answers a cheap
  `GetQueueAttributes`; cached a few seconds so probes do not hammer either. Not ready while
  stopping, so no new traffic is routed to a pod that is going away.
- `/metrics`: Prometheus text format of the given registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.worker.sqs import SQS_ERRORS, aws_error_code, queue_missing

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_sqs import SQSClient
    from prometheus_client import CollectorRegistry

    from handlers.worker.shutdown import StopSignal

logger = Logger(service="filequeue")

Probe = Callable[[], tuple[bool, str]]


class LivenessBoard:
    """Each loop writes the time until which it counts as alive; healthy while every slot is in the future.

    Slots may live in shared memory (`multiprocessing.Array('d', n)`): CLOCK_MONOTONIC is system-wide
    on Linux, so a child's and the parent's monotonic clocks agree.
    """

    def __init__(self, slots: Sequence[float] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._slots: Sequence[float] = slots if slots is not None else [float("inf")]
        self._clock = clock

    def probe(self) -> tuple[bool, str]:
        now = self._clock()
        stale = [index for index, alive_until in enumerate(self._slots) if alive_until < now]
        if stale:
            return False, f"loop(s) {stale} made no progress in time"
        return True, "ok"


class Startup:
    """What the probes answer before the start-up checks have passed: alive, not ready, and why.

    The database wait may take minutes (a failover); the pod says so instead of failing its probes.
    """

    def __init__(self) -> None:
        self._detail: str | None = "starting"

    @property
    def done(self) -> bool:
        return self._detail is None

    def waiting(self, detail: str) -> None:
        if self._detail is not None:
            self._detail = detail

    def finish(self) -> None:
        self._detail = None

    def guard(self, probe: Probe, *, alive: bool) -> Probe:
        """`probe` once started; until then (`alive`, what the start is waiting for)."""

        def guarded() -> tuple[bool, str]:
            detail = self._detail
            if detail is not None:
                return alive, detail
            return probe()

        return guarded


class ReadinessProbe:
    def __init__(
        self,
        check_ready: Callable[[], None],
        sqs: SQSClient,
        queue_url: str,
        stop: StopSignal,
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check_ready = check_ready
        self._sqs = sqs
        self._queue_url = queue_url
        self._stop = stop
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[bool, str]] | None = None

    def probe(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "stopping"
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            result = self._evaluate()
            self._cached = (now, result)
            return result

    def _evaluate(self) -> tuple[bool, str]:
        try:
            self._check_ready()
        except Exception as exc:  # noqa: BLE001 - whatever the database check raises means "not ready"
            logger.warning("not_ready", extra={"component": "database", "error": str(exc)})
            return False, f"database: {exc}"
        try:
            self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        except SQS_ERRORS as exc:
            logger.warning("not_ready", extra={"component": "sqs", "aws_error_code": aws_error_code(exc)})
            if queue_missing(exc):
                return False, f"sqs: FILEQUEUE_QUEUE_URL names a queue that does not exist: {self._queue_url}"
            return False, f"sqs: {aws_error_code(exc)}"
        return True, "ok"


class HealthServer:
    def __init__(
        self,
        port: int,
        *,
        liveness: Probe,
        readiness: Probe,
        registry: CollectorRegistry,
        host: str = "0.0.0.0",  # noqa: S104 - kubelet probes and Prometheus reach the pod's IP
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/healthz": lambda: _probe_answer(liveness),
            "/readyz": lambda: _probe_answer(readiness),
            "/metrics": lambda: (HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(registry)),
        }
        self._server = ThreadingHTTPServer((host, port), _handler_class(routes))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)
        self._thread.start()
        logger.info("health_server_started", extra={"port": self.port})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _not_found() -> tuple[int, str, bytes]:
    return HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n"


def _probe_answer(probe: Probe) -> tuple[int, str, bytes]:
    ok, reason = probe()
    status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
    return status, "text/plain; charset=utf-8", (reason + "\n").encode()


def _handler_class(routes: dict[str, Callable[[], tuple[int, str, bytes]]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0], _not_found)
            status, content_type, body = route()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("health_request", extra={"request": format % args})

    return Handler
