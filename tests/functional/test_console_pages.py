"""The console's pages as HTML over HTTP from a server on a loopback port, without a browser."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

from handlers.api import FileQueue
from handlers.console.server import ConsoleServer
from tests.functional.ingest_helpers import Uploads

if TYPE_CHECKING:
    from collections.abc import Iterator

DOCUMENTS = {
    "uploads/a-bread.md": b"# Sourdough\n\nFeed the sourdough starter with flour and water.\n",
    "uploads/b-tides.md": b"# Tides\n\nThe moon pulls the ocean; spring tides come at full moon.\n",
    "uploads/c-broken.pdf": b"%PDF-1.7 this is not a PDF",
}


@pytest.fixture
def console(s3, handler_env) -> Iterator[str]:
    Uploads(s3).put(DOCUMENTS)
    with FileQueue.from_env() as store:
        server = ConsoleServer(("127.0.0.1", 0), store, token=None)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.url
        server.shutdown()
        server.server_close()


def page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def listed_keys(html: str) -> list[str]:
    return re.findall(r'<td class="document"><a href="[^"]*">([^<]+)</a>', html)


def test_the_documents_page_lists_every_document_in_key_order(console):
    html = page(console + "documents")
    assert listed_keys(html) == sorted(DOCUMENTS)
    assert "1 to 3 of 3" in html
    assert '<a href="/documents">Documents</a>' in page(console)


def test_the_documents_page_filters_by_status(console):
    failed = page(console + "documents?status=failed")
    assert listed_keys(failed) == ["uploads/c-broken.pdf"]
    assert "corrupt_file" in failed
    assert listed_keys(page(console + "documents?status=ready")) == ["uploads/a-bread.md", "uploads/b-tides.md"]


def test_the_documents_page_pages(console, monkeypatch):
    monkeypatch.setattr("handlers.console.server._DOCUMENTS_PER_PAGE", 2)
    first = page(console + "documents")
    assert listed_keys(first) == ["uploads/a-bread.md", "uploads/b-tides.md"]
    assert 'id="next" href="/documents?status=&amp;offset=2"' in first
    assert 'id="previous"' not in first
    second = page(console + "documents?offset=2")
    assert listed_keys(second) == ["uploads/c-broken.pdf"]
    assert "3 to 3 of 3" in second
    assert 'id="previous" href="/documents?status=&amp;offset=0"' in second
    assert 'id="next"' not in second


@pytest.mark.parametrize(
    ("query", "message"),
    [("status=lost", "unknown status &#39;lost&#39;"), ("offset=many", "offset must be a whole number")],
)
def test_a_bad_documents_query_is_a_400_naming_it(console, query, message):
    with pytest.raises(urllib.error.HTTPError) as error:
        page(console + "documents?" + query)
    assert error.value.code == 400
    assert message in error.value.read().decode()
