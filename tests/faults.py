"""Real faults for the tests: a TCP proxy in front of PostgreSQL that can be cut, and S3 wire errors.

The proxy carries real PostgreSQL traffic; cutting it closes every live connection and refuses new
ones, which is what a database failover or a network partition looks like to the driver. S3 errors
are injected as raw HTTP responses at botocore's `before-send` hook, so botocore parses them exactly
as it parses AWS's own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

if TYPE_CHECKING:
    from collections.abc import Callable


class PostgresProxy:
    """Forwards 127.0.0.1:<port> to the server (Unix socket or TCP) until `cut()` is called.

    With `chaos`, the bytes of each message a client sends are first passed to it: when it answers
    True, that client's connection is dropped instead (a transient failure of that one database call).
    """

    def __init__(self, database_url: str, chaos: Callable[[bytes], bool] | None = None) -> None:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(database_url)
        host, port = str(params.get("host") or "localhost"), int(params.get("port") or 5432)
        self._family = socket.AF_UNIX if host.startswith("/") else socket.AF_INET
        self._target: str | tuple[str, int] = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        self.url_params = {key: str(value) for key, value in params.items() if key not in ("host", "port")}
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.port: int = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._chaos = chaos
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**self.url_params, host="127.0.0.1", port=str(self.port))

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            upstream = socket.socket(self._family, socket.SOCK_STREAM)
            upstream.connect(self._target)
            with self._lock:
                self._open.extend([client, upstream])
            threading.Thread(target=self._pipe, args=(client, upstream, self._chaos), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, chaos: Callable[[bytes], bool] | None) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if chaos is not None and chaos(data):
                    for sock in (source, sink):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def s3_error_response(status: int, code: str, message: str) -> AWSResponse:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
        "<RequestId>TEST</RequestId></Error>"
    ).encode()
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/xml"
    return AWSResponse("https://s3.test", status, headers, RawBody(body))


class RawBody:
    """The raw stream botocore reads a response body from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data


def on_get_object(session: Any, action: Callable[[str], AWSResponse | None]) -> Callable[..., AWSResponse | None]:
    """Register `action(key)` before every S3 GetObject sent by clients of `session`.

    Returning a response short-circuits the request with it (an injected error); returning None
    lets the real request go to moto.
    """

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        key = request.url.split("?", 1)[0].split("/", 4)[-1]
        from urllib.parse import unquote

        return action(unquote(key))

    session.events.register("before-send.s3.GetObject", hook)
    return hook
