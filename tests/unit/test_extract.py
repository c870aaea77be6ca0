"""Unit tests of the pure extraction stage: type detection, decoding, every content type."""

from __future__ import annotations

import io
import json
import tracemalloc

import pytest
from pypdf import PdfReader, PdfWriter

from handlers.errors import PermanentError
from handlers.model import ExtractedText, ExtractLimits
from handlers.stages.extract import detect_content_type, extract_text
from tests.paths import PDF_FIXTURES

HELLO_PDF = PDF_FIXTURES / "pdfjs-helloworld-bad.pdf"
FOURTEEN_PAGES_PDF = PDF_FIXTURES / "pdfjs-tracemonkey-14-pages-two-column.pdf"
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"
LIMITS = ExtractLimits()


def extract(
    data: bytes, key: str = "file", declared: str | None = None, limits: ExtractLimits = LIMITS
) -> ExtractedText:
    return extract_text(data, key=key, declared_content_type=declared, limits=limits)


def error_of(
    data: bytes, key: str = "file", declared: str | None = None, limits: ExtractLimits = LIMITS
) -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        extract(data, key, declared, limits)
    return caught.value


# Content type detection


@pytest.mark.parametrize(
    ("data", "key", "declared", "expected"),
    [
        pytest.param(b"%PDF-1.7\n...", "report.pdf", None, "application/pdf", id="pdf-by-magic"),
        pytest.param(b"garbage before\n%PDF-1.4\n", "x", None, "application/pdf", id="pdf-magic-after-junk"),
        pytest.param(b"hello", "notes.txt", None, "text/plain", id="txt-extension"),
        pytest.param(b"# Title", "README.md", None, "text/markdown", id="md-extension"),
        pytest.param(b"# Title", "README.MARKDOWN", None, "text/markdown", id="markdown-extension-upper"),
        pytest.param(b"a,b\n1,2", "table.csv", None, "text/csv", id="csv-extension"),
        pytest.param(b"a\tb\n1\t2", "table.tsv", None, "text/csv", id="tsv-as-csv"),
        pytest.param(b"<p>hi</p>", "page.htm", None, "text/html", id="htm-extension"),
        pytest.param(b"a,b\n1,2", "upload", "text/csv; charset=utf-8", "text/csv", id="declared-with-params"),
        pytest.param(b"# Title", "upload", "text/x-markdown", "text/markdown", id="declared-alias"),
        pytest.param(b"plain words", "upload", "application/octet-stream", "text/plain", id="octet-stream-text"),
        pytest.param(b"plain words", "upload", None, "text/plain", id="nothing-known"),
        pytest.param(b"a,b\n1,2", "table.csv", "text/markdown", "text/csv", id="extension-beats-declared"),
        pytest.param(b"%PDF-1.4\n", "notes.txt", "text/plain", "application/pdf", id="pdf-named-txt"),
        pytest.param(b"<!DOCTYPE html><html><body>x</body></html>", "data.csv", None, "text/html", id="html-named-csv"),
        pytest.param(b'  {"a": 1}', "data.txt", "text/plain", "application/json", id="json-named-txt"),
        pytest.param(b"[1, 2", "data.json", None, "application/json", id="broken-json-keeps-extension"),
        pytest.param(b"{not json", "notes.txt", None, "text/plain", id="brace-text-not-json"),
        pytest.param(b"oops\n", "broken.pdf", None, "application/pdf", id="pdf-name-without-header"),
    ],
)
def test_detect_content_type_sniffs_then_extension_then_declared(data, key, declared, expected):
    assert detect_content_type(data, key, declared) == expected


@pytest.mark.parametrize(
    ("data", "named"),
    [
        pytest.param(PNG_HEADER, "PNG", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG", id="jpeg"),
        pytest.param(b"PK\x03\x04\x14\x00\x06\x00", "ZIP", id="zip-or-docx"),
        pytest.param(b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip", id="gzip"),
    ],
)
def test_detect_content_type_names_known_binary_formats(data, named):
    with pytest.raises(PermanentError) as caught:
        detect_content_type(data, "upload.txt", "text/plain")
    assert caught.value.code == "unsupported_type"
    assert named in str(caught.value)


def test_detect_content_type_rejects_unknown_binary():
    noise = bytes(range(256)) * 64
    with pytest.raises(PermanentError) as caught:
        detect_content_type(noise, "blob.txt", None)
    assert caught.value.code == "unsupported_type"


# Failures common to every type


def test_extract_empty_file_is_permanent():
    assert error_of(b"", "empty.txt").code == "empty_file"


def test_extract_png_named_txt_is_unsupported():
    error = error_of(PNG_HEADER + bytes(200), "photo.txt", "text/plain")
    assert error.code == "unsupported_type"
    assert "PNG" in str(error)


def test_extract_whitespace_only_text_has_no_text():
    assert error_of(b"  \n\t\n", "blank.txt").code == "no_text"


def test_extract_over_max_chars_is_too_much_text():
    error = error_of(b"word " * 100, "big.txt", limits=ExtractLimits(max_chars=100))
    assert error.code == "too_much_text"


# Plain text: encodings, BOMs, newlines, NULs

FRENCH = "Le café crème est très bon à la française, naïve façade. Où est l'hôtel ?\n"


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom", "utf-32", "utf-16-le-no-bom"]
)
def test_extract_text_decodes_unicode_encodings_and_drops_the_bom(encoding):
    boms = {"utf-16-le-bom": (b"\xff\xfe", "utf-16-le"), "utf-16-be-bom": (b"\xfe\xff", "utf-16-be")}
    if encoding in boms:
        bom, codec = boms[encoding]
        data = bom + FRENCH.encode(codec)
    else:
        data = FRENCH.encode(encoding.replace("-no-bom", ""))

    extracted = extract(data, "notes.txt")

    assert extracted.content_type == "text/plain"
    assert extracted.text == FRENCH
    assert extracted.pages[0].number == 1
    assert extracted.page_count is None


def test_extract_text_detects_latin1():
    assert extract((FRENCH * 3).encode("latin-1"), "notes.txt").text == FRENCH * 3


def test_extract_text_detects_cp1250():
    czech = "Příliš žluťoučký kůň úpěl ďábelské ódy.\n" * 3
    assert extract(czech.encode("cp1250"), "notes.txt").text == czech


def test_extract_text_normalises_newlines():
    assert extract(b"one\r\ntwo\rthree\n", "notes.txt").text == "one\ntwo\nthree\n"


def test_extract_text_strips_nul_bytes():
    extracted = extract(b"null\x00 bytes\x00 are dropped", "notes.txt")
    assert extracted.text == "null bytes are dropped"


# Markdown


def test_extract_markdown_keeps_text_and_takes_first_heading_as_title():
    markdown = "```bash\n# not a heading\n```\n\n## Install guide ##\n\nRun `make`.\n\n# Later\n"

    extracted = extract(markdown.encode(), "docs/guide.md")

    assert extracted.content_type == "text/markdown"
    assert extracted.text == markdown
    assert extracted.title == "Install guide"


def test_extract_markdown_without_heading_has_no_title():
    assert extract(b"just a paragraph\n", "a.md").title is None


# HTML

HTML_PAGE = """<!DOCTYPE html>
<html><head><title>  The &amp; Title </title>
<style>body { color: red; }</style><script>var hidden = "script text";</script>
<meta charset="utf-8"></head>
<body><noscript>enable javascript</noscript><template><p>template text</p></template>
<h1>Caf&eacute; &lt;menu&gt;</h1><p>First   paragraph
spans lines.</p><div>Second&nbsp;block<br>after break</div>
<svg><title>svg title</title><text>svg label</text><path d="M0 0"/></svg>
<table><tr><th>Name</th><th>Price</th></tr><tr><td>Tea</td><td>2 &euro;</td></tr></table>
<pre>  keep   spacing</pre>
</body></html>"""


def test_extract_html_keeps_visible_text_only():
    extracted = extract(HTML_PAGE.encode(), "page.html")

    assert extracted.content_type == "text/html"
    assert extracted.title == "The & Title"
    lines = extracted.text.split("\n")
    for visible in ("Café <menu>", "First paragraph spans lines.", "Second block", "after break", "Tea 2 €"):
        assert visible in lines
    assert "keep   spacing" in lines  # <pre> keeps its inner spacing
    for hidden in ("color: red", "script text", "enable javascript", "template text", "svg", "Title"):
        assert hidden not in extracted.text


def test_extract_html_with_unclosed_head_keeps_the_body():
    extracted = extract(b"<html><head><title>T</title><body><p>Body text</p>", "page.html")
    assert extracted.text == "Body text"


def test_extract_html_of_only_scripts_has_no_text():
    assert error_of(b"<html><script>x()</script></html>", "page.html").code == "no_text"


# CSV


def test_extract_csv_writes_one_header_value_line_per_row():
    table = 'name,city,note\nAlice,Paris,"likes, commas"\n\nBob,Rome,\n'

    extracted = extract(table.encode(), "people.csv")

    assert extracted.content_type == "text/csv"
    assert extracted.text == "name: Alice; city: Paris; note: likes, commas\nname: Bob; city: Rome"


def test_extract_csv_sniffs_the_delimiter():
    extracted = extract(b"name;amount\nTea;2,50\nCake;4,00\n", "prices.csv")
    assert extracted.text == "name: Tea; amount: 2,50\nname: Cake; amount: 4,00"


def test_extract_csv_names_cells_beyond_the_header():
    extracted = extract(b"a,\n1,2,3\n", "wide.csv")
    assert extracted.text == "a: 1; column 2: 2; column 3: 3"


def test_extract_csv_with_only_a_header_keeps_it():
    assert extract(b"name,city\n", "empty.csv").text == "name; city"


# JSON


def test_extract_json_flattens_to_path_lines():
    document = {"title": "Doc", "tags": ["a", "b"], "author": {"name": "Ann", "age": 40, "active": True}, "x": None}

    extracted = extract(json.dumps(document).encode(), "doc.json")

    assert extracted.content_type == "application/json"
    assert extracted.text.split("\n") == [
        "title: Doc",
        "tags[0]: a",
        "tags[1]: b",
        "author.name: Ann",
        "author.age: 40",
        "author.active: true",
        "x: null",
    ]


def test_extract_json_survives_deep_nesting_once_parsed():
    nested = "[" * 500 + '"deep"' + "]" * 500
    assert extract(nested.encode(), "deep.json").text == "[0]" * 500 + ": deep"


def test_extract_broken_json_named_json_is_corrupt():
    assert error_of(b'{"a": ', "broken.json").code == "corrupt_file"


# PDF


def test_extract_pdf_keeps_pages_and_title():
    extracted = extract(FOURTEEN_PAGES_PDF.read_bytes(), "paper.pdf")

    assert extracted.content_type == "application/pdf"
    assert extracted.page_count == 14
    assert [page.number for page in extracted.pages] == list(range(1, 15))
    assert "Trace-based Just-in-Time Type Specialization" in extracted.pages[0].text


def test_extract_pdf_named_txt_is_read_as_pdf():
    extracted = extract(HELLO_PDF.read_bytes(), "hello.txt", "text/plain")
    assert extracted.content_type == "application/pdf"
    assert "Hello, world!" in extracted.text


def test_extract_pdf_skips_blank_pages_but_keeps_numbering():
    source = PdfReader(HELLO_PDF)
    writer = PdfWriter()
    writer.add_page(source.pages[0])
    writer.add_blank_page(width=200, height=200)
    writer.add_page(source.pages[0])
    writer.add_metadata({"/Title": "Two greetings"})
    buffer = io.BytesIO()
    writer.write(buffer)

    extracted = extract(buffer.getvalue(), "greetings.pdf")

    assert [page.number for page in extracted.pages] == [1, 3]
    assert extracted.page_count == 3
    assert extracted.title == "Two greetings"


def test_extract_pdf_over_max_pages_is_too_many_pages():
    error = error_of(FOURTEEN_PAGES_PDF.read_bytes(), "paper.pdf", limits=ExtractLimits(max_pages=5))
    assert error.code == "too_many_pages"
    assert "14" in str(error)


def test_extract_pdf_over_max_chars_is_too_much_text():
    error = error_of(FOURTEEN_PAGES_PDF.read_bytes(), "paper.pdf", limits=ExtractLimits(max_chars=1000))
    assert error.code == "too_much_text"


def test_extract_password_protected_pdf_is_encrypted_pdf():
    error = error_of((PDF_FIXTURES / "pypdf-enc-r4-aes128-user-password.pdf").read_bytes(), "secret.pdf")
    assert error.code == "encrypted_pdf"
    assert str(error) == "PDF is encrypted with a password"


def test_extract_pdf_with_empty_user_password_is_opened():
    extracted = extract((PDF_FIXTURES / "pdfminer-issue-625-polish-identity-cmap.pdf").read_bytes(), "invoice.pdf")
    assert "Faktura nr FV 1/2021" in extracted.text


def test_extract_image_only_pdf_has_no_text():
    error = error_of((PDF_FIXTURES / "sf-019-grayscale-image.pdf").read_bytes(), "scan.pdf")
    assert error.code == "no_text"
    assert "scanned or image-only" in str(error)


def test_extract_truncated_pdf_is_corrupt_with_the_reason():
    error = error_of(HELLO_PDF.read_bytes()[:200], "cut.pdf")
    assert error.code == "corrupt_file"
    assert "corrupt PDF" in str(error)


def blank_pages_pdf(pages: int, content_bytes: int) -> bytes:
    """A PDF whose pages have no resources and a Flate content stream of `content_bytes` spaces each."""
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    content = DecodedStreamObject()
    content.set_data(b" " * content_bytes)
    compressed = content.flate_encode()
    for _ in range(pages):
        page = writer.add_blank_page(200, 200)
        del page[NameObject("/Resources")]
        page[NameObject("/Contents")] = writer._add_object(compressed)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_whose_content_decompresses_past_the_document_bound_is_refused_naming_the_cause():
    # Four pages of 4 MiB each: every stream is far below pypdf's own per-stream cap
    data = blank_pages_pdf(4, 4 << 20)
    assert len(data) < 64 * 1024

    error = error_of(data, "bomb.pdf", limits=ExtractLimits(max_decompressed_bytes=10 << 20))

    assert error.code == "too_much_content"
    assert "more than 10485760 bytes by page 3" in str(error)


def bomb_page_pdf(streams: int, stream_bytes: int) -> bytes:
    """One page whose content is `streams` Flate streams of `stream_bytes` spaces each (one compressed copy)."""
    from pypdf.generic import ArrayObject, DecodedStreamObject, NameObject

    writer = PdfWriter()
    content = DecodedStreamObject()
    content.set_data(b" " * stream_bytes)
    compressed = content.flate_encode()
    page = writer.add_blank_page(200, 200)
    del page[NameObject("/Resources")]
    page[NameObject("/Contents")] = ArrayObject(writer._add_object(compressed) for _ in range(streams))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_bomb_page_is_refused_while_it_inflates_never_holding_more_than_the_bound():
    # One page of 16 streams of 8 MiB (128 MiB in all), each below pypdf's own per-stream cap, and a 1 MiB bound
    data = bomb_page_pdf(16, 8 << 20)
    limit = 1 << 20

    tracemalloc.start()
    try:
        error = error_of(data, "bomb.pdf", limits=ExtractLimits(max_decompressed_bytes=limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error.code == "too_much_content"
    assert "more than 1048576 bytes by page 1" in str(error)
    assert peak < 4 * limit  # inflating stopped at the bound, not after a stream (or the page's 128 MiB)


def test_a_pdf_whose_pages_have_no_fonts_says_so_instead_of_blaming_a_scan():
    error = error_of(blank_pages_pdf(2, 1024), "blank.pdf")
    assert error.code == "no_text"
    assert str(error) == "no extractable text: the pages have no fonts, so they draw no text"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"a": "x\\u0000y", "b\\u0000": ["\\ud800z", "\\udfff"]}', "data.json"),
        (b"name,value\nx\x00y,z\n", "data.csv"),
        (b"# T\x00itle\n\ntext \x00 here", "notes.md"),
    ],
)
def test_every_extractor_drops_nul_and_lone_surrogates(body, key):
    extracted = extract(body, key)
    texts = [extracted.text, extracted.title or ""]
    assert not any("\x00" in text or any("\ud800" <= char <= "\udfff" for char in text) for text in texts)
    assert "xy" in extracted.text or "Title" in (extracted.title or "")


def test_paired_surrogates_survive_cleaning():
    extracted = extract(b'{"emoji": "\\ud83d\\ude00 smile"}', "e.json")
    assert "\U0001f600 smile" in extracted.text
