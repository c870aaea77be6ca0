"""The console's HTTP server: stdlib `http.server`, Jinja2 templates, every page read through `FileQueue`.

Read-only: GET only. It binds to 127.0.0.1 unless told otherwise, and refuses any other address
without a token; with a token every request must carry it (`?token=` once, then a cookie), so a
console reachable from a network is never open to it.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from handlers.console.graph_view import layout
from handlers.errors import ConfigError, FileQueueError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable

    import jinja2

    from handlers.api import FileQueue

_COOKIE = "filequeue_console_token"
_MAX_QUERY_CHARS = 1000
_DOCUMENTS_PER_PAGE = 50


def check_bind_address(host: str, token: str | None) -> None:
    """A non-loopback address needs a token: the console shows the store's content."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise ConfigError(
            f"the console refuses to listen on {host} (not loopback) without a token; "
            "set FILEQUEUE_CONSOLE_TOKEN or bind to 127.0.0.1"
        )


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: FileQueue, token: str | None) -> None:
        check_bind_address(address[0], token)
        super().__init__(address, _Handler)
        self.api = api
        self.token = token
        # One database connection serves every request, one at a time.
        self.api_lock = threading.Lock()
        self.templates = _templates()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


def _templates() -> jinja2.Environment:
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("handlers.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["quote"] = lambda value: quote(str(value), safe="")
    return environment


class _Handler(BaseHTTPRequestHandler):
    server: ConsoleServer
    server_version = "filequeue-console"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        if not self._authorised(query):
            self._send(
                HTTPStatus.UNAUTHORIZED, "error.html", {"message": "a token is required: open the URL with ?token="}
            )
            return
        pages: dict[str, Callable[[dict[str, str]], tuple[str, dict[str, Any]]]] = {
            "/": self._search,
            "/document": self._document,
            "/documents": self._documents,
            "/failed": self._failed,
            "/status": self._status,
        }
        if parts.path == "/object":
            self._redirect_to_object(query)
            return
        page = pages.get(parts.path)
        if page is None:
            self._send(HTTPStatus.NOT_FOUND, "error.html", {"message": f"no page {parts.path}"})
            return
        try:
            with self.server.api_lock:
                template, values = page(query)
        except LookupError as error:
            self._send(HTTPStatus.NOT_FOUND, "error.html", {"message": str(error.args[0])})
            return
        except TransientError as error:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "error.html", {"message": str(error)})
            return
        except (FileQueueError, ValueError) as error:
            self._send(HTTPStatus.BAD_REQUEST, "error.html", {"message": str(error)})
            return
        self._send(HTTPStatus.OK, template, values)

    def do_POST(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "the console is read-only")

    def _authorised(self, query: dict[str, str]) -> bool:
        expected = self.server.token
        if not expected:
            return True
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        given = query.get("token") or (cookie[_COOKIE].value if _COOKIE in cookie else "")
        return hmac.compare_digest(given.encode(), expected.encode())

    def _search(self, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        text = query.get("q", "")[:_MAX_QUERY_CHARS]
        hybrid = query.get("hybrid", "1") == "1"
        api = self.server.api
        hits = api.search(text, hybrid=hybrid, limit=20, prefix=query.get("prefix", "")) if text else []
        return "search.html", {
            "q": text,
            "hybrid": hybrid,
            "hits": hits,
            "prefix": query.get("prefix", ""),
            "formula": api.score_formula(hybrid=hybrid).removeprefix("score = "),
            "nothing": api.no_match_message(hybrid=hybrid),
        }

    def _document(self, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        key = query.get("key", "")
        if not key:
            raise ValueError("which document? give ?key=")
        hops = int(query.get("hops", "1"))
        document = self.server.api.document(key, bucket=query.get("bucket") or None, hops=hops)
        graph = layout(document.key, document.status, document.neighbours)
        return "document.html", {"document": document, "graph": graph, "hops": hops}

    def _documents(self, query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        from handlers.api import DOCUMENT_STATUSES

        status = query.get("status") or None
        offset = _whole_number(query.get("offset", "0"), "offset")
        page = self.server.api.documents(status=status, offset=offset, limit=_DOCUMENTS_PER_PAGE)
        return "documents.html", {"page": page, "status": status or "", "statuses": DOCUMENT_STATUSES}

    def _redirect_to_object(self, query: dict[str, str]) -> None:
        """Send the browser to a short-lived presigned URL of the object itself."""
        try:
            with self.server.api_lock:
                url = self.server.api.object_url(query.get("key", ""), bucket=query.get("bucket") or None)
        except LookupError as error:
            self._send(HTTPStatus.NOT_FOUND, "error.html", {"message": str(error.args[0])})
            return
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", url)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _failed(self, _query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return "failed.html", {"failed": self.server.api.failed()}

    def _status(self, _query: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return "status.html", {"status": self.server.api.status()}

    def _send(self, code: HTTPStatus, template: str, values: dict[str, Any]) -> None:
        body = self.server.templates.get_template(template).render(**values).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.server.token:
            self.send_header("Set-Cookie", f"{_COOKIE}={self.server.token}; HttpOnly; SameSite=Strict; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the console is a local tool; errors reach the page."""


def _whole_number(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None


def serve(api: FileQueue, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Serve until interrupted."""
    try:
        server = ConsoleServer((host, port), api, token)
    except OSError as error:
        # A port in use or an address this machine does not have: say which, not a traceback.
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    print(f"filequeue console on {server.url} (Ctrl-C to stop)")  # noqa: T201 - the command's output
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
