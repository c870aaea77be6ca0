"""Real faults for the tests: a TCP proxy in front of PostgreSQL that can be cut, S3 wire errors, slow PDFs.

The proxy carries real PostgreSQL traffic; cutting it closes every live connection and refuses new
ones, which is what a database failover or a network partition looks like to the driver. S3 errors
are injected as raw HTTP responses at botocore's `before-send` hook, so botocore parses them exactly
as it parses AWS's own.
"""

from __future__ import annotations

import contextlib
import io
import math
import socket
import threading
import time
import zlib
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
        self.refused = 0  # connections turned away while cut
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**self.url_params, host="127.0.0.1", port=str(self.port))

    def cut(self) -> None:
        with self._lock:
            self._cut.set()
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
                self.refused += 1
                continue
            upstream = socket.socket(self._family, socket.SOCK_STREAM)
            upstream.connect(self._target)
            with self._lock:
                # A cut that came while this connection was being opened must close it too
                if self._cut.is_set():
                    client.close()
                    upstream.close()
                    self.refused += 1
                    continue
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


_SLOW_OPERATION = b"BT /F1 9 Tf 20 700 Td (ab) Tj ET\n"
_CALIBRATION_OPERATIONS = 3000
_OPERATIONS_PER_PAGE = 8000


def slow_pdf(seconds: float) -> bytes:
    """A valid text PDF whose extraction takes about `seconds` on this machine, as busy as it is now.

    Each page draws the same text thousands of times, each in its own text object, which pypdf's text
    extraction walks one by one; a one-page sample is timed first to choose the number of pages.
    """
    from pypdf import PdfReader

    sample = _text_object_pdf(1, _CALIBRATION_OPERATIONS)
    started = time.perf_counter()
    PdfReader(io.BytesIO(sample)).pages[0].extract_text()
    per_operation = (time.perf_counter() - started) / _CALIBRATION_OPERATIONS
    pages = max(1, math.ceil(seconds / (per_operation * _OPERATIONS_PER_PAGE)))
    return _text_object_pdf(pages, _OPERATIONS_PER_PAGE)


def _text_object_pdf(pages: int, operations: int) -> bytes:
    content = zlib.compress(_SLOW_OPERATION * operations)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * index} 0 R" for index in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            + f" /Contents {5 + 2 * index} 0 R >>".encode()
        )
        objects.append(
            f"<< /Length {len(content)} /Filter /FlateDecode >>\nstream\n".encode() + content + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
