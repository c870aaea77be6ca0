"""The web console in a real headless Chromium (Debian's package) driven by Selenium.

Documents go in through moto's S3 and the handler; the console serves them from the same database
through the Python API, on a loopback port of its own.
"""

from __future__ import annotations

import io
import shutil
import threading
import urllib.error
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from handlers.api import FileQueue
from handlers.console.server import ConsoleServer
from handlers.errors import ConfigError
from tests.functional.ingest_helpers import Uploads

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
    reason="Chromium and chromedriver come from Debian's packages; .ci/test installs them",
)

DOCUMENTS = {
    "uploads/bread.md": b"# Sourdough\n\nFeed the sourdough starter with flour and water. See tides.md and oven.md.\n",
    "uploads/tides.md": b"# Tides\n\nThe moon pulls the ocean; spring tides come at full moon.\n",
    "uploads/oven.md": b"# Oven\n\nBake the sourdough loaf hot. Notes in bread.md.\n",
    "uploads/broken.pdf": b"%PDF-1.7 this is not a PDF",
}


@pytest.fixture
def console(s3, handler_env, ingest, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("FILEQUEUE_QUEUE_URL", ingest.queue_url)
    from handlers.settings import get_settings

    get_settings.cache_clear()
    Uploads(s3).put(DOCUMENTS)
    with FileQueue.from_env() as store:
        server = ConsoleServer(("127.0.0.1", 0), store, token=None)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.url
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser(tmp_path) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    # A click that submits a form or follows a link returns before the next page has loaded: lookups
    # wait (up to this long) for the element to appear instead of reading the page being left.
    driver.implicitly_wait(10)
    yield driver
    driver.quit()


def test_search_shows_key_page_snippet_score_and_links_to_the_document(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(console)
    browser.find_element(By.ID, "q").send_keys("how do I feed a sourdough starter")
    browser.find_element(By.ID, "go").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tr.hit")
    assert rows
    first = rows[0]
    assert first.find_element(By.CSS_SELECTOR, "a.key").text == "uploads/bread.md"
    assert "sourdough starter" in first.find_element(By.CSS_SELECTOR, ".snippet").text.lower()
    assert float(first.find_element(By.CSS_SELECTOR, ".score").text) > 0
    object_link = first.find_element(By.CSS_SELECTOR, "a.object")
    assert object_link.text == "s3://graph-bucket/uploads/bread.md"
    with urllib.request.urlopen(object_link.get_attribute("href"), timeout=10) as response:  # follows the redirect
        assert response.read() == DOCUMENTS["uploads/bread.md"]
    first.find_element(By.CSS_SELECTOR, "a.key").click()
    assert browser.find_element(By.ID, "key").text == "uploads/bread.md"
    assert browser.find_element(By.ID, "status").text == "ready"


def test_a_search_nothing_matches_shows_the_no_match_sentence(console, browser):
    from selenium.webdriver.common.by import By

    from handlers.api import FileQueue

    with FileQueue.from_env() as store:
        sentence = store.no_match_message(hybrid=True)
    browser.get(console)
    browser.find_element(By.ID, "q").send_keys("zzzzqqq nothing")
    browser.find_element(By.ID, "go").click()
    assert browser.find_element(By.ID, "no-match").text == sentence
    assert sentence.startswith("no match:")
    assert browser.find_elements(By.CSS_SELECTOR, "#results") == []


def test_document_page_draws_the_neighbours_as_a_graph(console, browser, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    browser.get(f"{console}document?key={quote('uploads/bread.md')}")
    graph = browser.find_element(By.ID, "graph")
    nodes = {node.get_attribute("data-key") for node in graph.find_elements(By.CSS_SELECTOR, "g.node")}
    assert nodes == {"uploads/bread.md", "uploads/tides.md", "uploads/oven.md"}
    edges = [edge.get_attribute("class") for edge in graph.find_elements(By.CSS_SELECTOR, "line.edge")]
    # Each neighbour once: oven is both referenced and referring, drawn by one path.
    assert sorted(edges) == ["edge referenced_by", "edge references"]
    assert browser.find_elements(By.CSS_SELECTOR, ".chunk")

    screenshot = Image.open(io.BytesIO(graph.screenshot_as_png)).convert("RGB")
    screenshot.save(tmp_path / "graph.png")
    assert screenshot.size[0] >= 600
    colours = screenshot.getcolors(maxcolors=1 << 16) or []
    # Not blank: the white background, the dark centre node, green neighbours and coloured edges.
    assert len(colours) > 20
    assert any(_close(colour, (0x1D, 0x2B, 0x4F)) for _, colour in colours)  # the centre node
    assert any(_close(colour, (0x2F, 0x9E, 0x6E)) for _, colour in colours)  # a neighbour node


def test_failed_documents_and_the_queue_status_are_listed(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{console}failed")
    rows = browser.find_elements(By.CSS_SELECTOR, "#failed tr.failed-document")
    assert [row.find_element(By.TAG_NAME, "a").text for row in rows] == ["uploads/broken.pdf"]
    assert "corrupt_file" in rows[0].text
    rows[0].find_element(By.TAG_NAME, "a").click()
    assert browser.find_element(By.ID, "status").text == "failed"
    assert browser.find_element(By.ID, "error").text.startswith("corrupt_file: ")

    browser.get(f"{console}status")
    assert browser.find_element(By.ID, "ready").text == "3"
    assert browser.find_element(By.ID, "failed-count").text == "1"
    # Waiting: the s3:TestEvent that S3 sent when the bucket's notification was configured.
    assert browser.find_element(By.ID, "visible").text == "1"
    assert browser.find_element(By.ID, "dead-letters").text == "0"


def test_unknown_document_suggests_keys_and_the_console_is_read_only(console, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{console}document?key=uploads/bread")
    assert "did you mean uploads/bread.md?" in browser.find_element(By.ID, "message").text
    request = urllib.request.Request(console, data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 405


def test_a_non_loopback_address_needs_a_token_and_then_every_request_carries_it(handler_env):
    with FileQueue.from_env() as store:
        with pytest.raises(ConfigError, match=r"refuses to listen on 0\.0\.0\.0"):
            ConsoleServer(("0.0.0.0", 0), store, token=None)  # noqa: S104 - the address refused
        server = ConsoleServer(("127.0.0.1", 0), store, token="s3cret")
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.url + "status", timeout=10)
            refused.value.close()
            assert refused.value.code == 401
            with urllib.request.urlopen(server.url + "status?token=s3cret", timeout=10) as response:
                assert response.status == 200
                assert "filequeue_console_token=s3cret" in response.headers["Set-Cookie"]
        finally:
            server.shutdown()
            server.server_close()


def _close(colour: object, wanted: tuple[int, int, int]) -> bool:
    assert isinstance(colour, tuple)
    return all(abs(a - b) <= 12 for a, b in zip(colour, wanted, strict=True))
