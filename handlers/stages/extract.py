"""Text extraction per content type (pure: bytes and values in, `ExtractedText` out).

The content type comes from the bytes first, then from the key's extension, then from the
declared Content-Type, because uploads are often mislabelled. Every failure is a
`PermanentError` with a stable `code`; no library exception escapes. Time and memory bounds are
not enforced here: `handlers.adapters.sandbox` runs this code in a bounded child process.

With an `Ocr` (docs/ocr.md), PDF pages without a text layer that draw an image are rendered and read
by OCR, and PNG, JPEG and TIFF images are read page by page; without one, both fail as they always did.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import mimetypes
import re
import unicodedata
import warnings
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from handlers.errors import ErrorCode, PermanentError
from handlers.model import ExtractedText, ExtractLimits, OcrOptions, OcrText, Page

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from PIL.Image import Image
    from pypdf import PageObject, PdfReader

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
CSV = "text/csv"
JSON = "application/json"
SUPPORTED_TYPES = (PDF, TEXT, MARKDOWN, HTML, CSV, JSON)
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
# A page whose text layer holds fewer letters and digits than this has no text layer worth keeping: a page
# number, a Bates stamp, a scanner's stray glyphs. Such a page is read by OCR if it draws an image.
MIN_TEXT_LAYER_CHARS = 16
# Pages are rendered for OCR at this resolution, lowered for a page so large that it would pass the pixel
# limit, down to the floor below which text is too small to read.
RENDER_DPI = 300
MIN_RENDER_DPI = 100
_POINTS_PER_INCH = 72

# Spellings seen in Content-Type headers and extension tables, folded onto the types we handle.
_TYPE_ALIASES = {
    "application/x-pdf": PDF,
    "text/x-markdown": MARKDOWN,
    "application/xhtml+xml": HTML,
    "text/tab-separated-values": CSV,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "text/json": JSON,
    "application/ld+json": JSON,
}
# Python 3.11's built-in table lacks Markdown, and the system tables mimetypes may also read
# differ between machines, so the extensions we rely on are pinned here.
_EXTENSION_TYPES = {
    ".pdf": PDF,
    ".txt": TEXT,
    ".text": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".csv": CSV,
    ".tsv": CSV,
    ".json": JSON,
}

# Magic numbers of formats people upload by mistake, so the error can say what the file is.
_BINARY_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (8, b"WEBP", "a WebP image"),
    (0, b"PK\x03\x04", "a ZIP archive (or DOCX/XLSX/ODT, which are ZIP files)"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"BZh", "a bzip2 archive"),
    (0, b"\xfd7zXZ\x00", "an xz archive"),
    (0, b"(\xb5/\xfd", "a Zstandard archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office (OLE2) document"),
    (4, b"ftyp", "an MP4/QuickTime media file"),
    (0, b"\x7fELF", "an ELF executable"),
)
# The images OCR reads, by magic number.
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
)
_PDF_MAGIC = b"%PDF-"
_PDF_MAGIC_WINDOW = 1024  # PDF readers accept junk before the header within the first KiB
_SNIFF_BYTES = 64 * 1024
_HTML_MARKERS = ("<!doctype html", "<html", "<head", "<body", "<title")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with the UTF-16 LE BOM
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Text in UTF-16/32 without a BOM decodes as "valid" UTF-8 full of NULs: above this share of
# NUL bytes, the encoding is detected instead of assumed.
_NUL_SHARE_FOR_DETECTION = 0.1
# Share of control characters above which decoded "text" is really binary data.
_MAX_CONTROL_SHARE = 0.05
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v\x00")
_MARKDOWN_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(?P<title>.+?)(?:[ \t]+#+)?[ \t]*$")
_MARKDOWN_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# A decoded Python str holds a surrogate only when it is unpaired (UTF-16 pairs decode to one code point).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_NO_TEXT_IMAGES = "no extractable text: the pages hold only images (a scanned or image-only PDF?)"
_NO_TEXT_FONTS = "no extractable text: the pages have no fonts, so they draw no text"
_NO_TEXT_DRAWN = "no extractable text: the pages have fonts but draw no text"


@dataclass(frozen=True, slots=True)
class Ocr:
    """What extraction needs to read images: the bounds, and `read`, which turns one page image into text."""

    options: OcrOptions
    read: Callable[[Image], OcrText]


def detect_content_type(data: bytes, key: str, declared: str | None) -> str:
    """One of `SUPPORTED_TYPES`: content sniffing first, then the key's extension, then `declared`.

    Raises PermanentError(code=ErrorCode.UNSUPPORTED_TYPE) for binary content that is not a PDF,
    naming the format when its magic number is known.
    """
    if _PDF_MAGIC in data[:_PDF_MAGIC_WINDOW]:
        return PDF
    _reject_known_binary(data)
    labelled = _type_from_extension(key) or _normalise_declared(declared)
    sample = _decode(data[:_SNIFF_BYTES], sample=True)
    if sample is None or _looks_binary(sample):
        if labelled == PDF:
            return PDF  # named a PDF but without a header: let the PDF parser give the reason
        raise PermanentError(
            f"unsupported file type: binary content that is not text ({key})", code=ErrorCode.UNSUPPORTED_TYPE
        )
    head = sample.lstrip()
    if head.startswith("<") and any(marker in head[:1024].lower() for marker in _HTML_MARKERS):
        return HTML
    if head[:1] in ("{", "[") and _parses_as_json(data):
        return JSON
    return labelled or TEXT


def extract_text(
    data: bytes, *, key: str, declared_content_type: str | None, limits: ExtractLimits, ocr: Ocr | None = None
) -> ExtractedText:
    """Extract the text of one file; raises PermanentError with a stable `code` on failure.

    The text holds nothing PostgreSQL rejects (NUL characters, lone UTF-16 surrogates), whatever the format.
    With `ocr`, image-only PDF pages and PNG/JPEG/TIFF images are read by it; without, they fail as
    `no_text` and `unsupported_type`.
    """
    if not data:
        raise PermanentError("the file is empty (0 bytes)", code=ErrorCode.EMPTY_FILE)
    if ocr is not None and (image_type := _image_type(data)) is not None:
        return _extract_image(data, image_type, limits, ocr)
    content_type = detect_content_type(data, key, declared_content_type)
    if content_type == PDF:
        return _extract_pdf(data, limits, ocr)
    return _extract_markup_or_text(data, content_type, limits)


def clean_text(text: str) -> str:
    """`text` without the characters PostgreSQL cannot store: NUL, and surrogates not part of a pair."""
    return _UNSTORABLE.sub("", text)


def _extract_markup_or_text(data: bytes, content_type: str, limits: ExtractLimits) -> ExtractedText:
    text = _decode_text(data)
    title: str | None = None
    links: tuple[str, ...] = ()
    if content_type == HTML:
        text, title, links = _html_to_text(text)
    elif content_type == CSV:
        text = _csv_to_text(text)
    elif content_type == JSON:
        text = _json_to_text(text)
    elif content_type == MARKDOWN:
        title = _markdown_title(text)
    text = clean_text(text)
    if title is not None:
        title = clean_text(title).strip() or None
    if not text.strip():
        raise PermanentError("no extractable text (the file holds only whitespace or markup)", code=ErrorCode.NO_TEXT)
    _check_size(len(text), limits)
    return ExtractedText(content_type=content_type, pages=(Page(number=1, text=text),), title=title, links=links)


def _reject_known_binary(data: bytes) -> None:
    for offset, magic, description in _BINARY_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            raise PermanentError(
                f"unsupported file type: the content is {description}", code=ErrorCode.UNSUPPORTED_TYPE
            )


def _type_from_extension(key: str) -> str | None:
    suffix = PurePosixPath(key).suffix.lower()
    if suffix in _EXTENSION_TYPES:
        return _EXTENSION_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(PurePosixPath(key).name, strict=False)
    return _supported_or_none(guessed)


def _normalise_declared(declared: str | None) -> str | None:
    if not declared:
        return None
    return _supported_or_none(declared.split(";", 1)[0].strip().lower())


def _supported_or_none(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    content_type = _TYPE_ALIASES.get(content_type, content_type)
    return content_type if content_type in SUPPORTED_TYPES else None


def _parses_as_json(data: bytes) -> bool:
    text = _decode(data, sample=False)
    if text is None:
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _looks_binary(sample: str) -> bool:
    window = sample[:4096]
    if not window:
        return False
    controls = sum(1 for char in window if unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS)
    return controls / len(window) > _MAX_CONTROL_SHARE


def _decode_text(data: bytes) -> str:
    text = _decode(data, sample=False)
    if text is None:
        raise PermanentError("unsupported file type: binary content that is not text", code=ErrorCode.UNSUPPORTED_TYPE)
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes, *, sample: bool) -> str | None:
    """Decode text: a BOM wins, then strict UTF-8, then charset detection; None if not text.

    With `sample`, `data` may end in the middle of a multi-byte character.
    """
    errors = "ignore" if sample else "replace"
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding, errors=errors)
    if data.count(0) <= len(data) * _NUL_SHARE_FOR_DETECTION:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            if sample and error.start >= len(data) - 3:
                return data[: error.start].decode("utf-8")
    return _detect_and_decode(data)


def _detect_and_decode(data: bytes) -> str | None:
    from charset_normalizer import from_bytes  # only needed for non-UTF-8 text

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    # Short Western texts score the same in several single-byte code pages, and the detector then
    # picks e.g. cp1250 ("crème" -> "crčme"); like browsers (WHATWG), prefer Windows-1252 on a tie.
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos and match.coherence >= best.coherence:
            return str(match)
    return str(best)


def _check_size(chars: int, limits: ExtractLimits) -> None:
    if chars > limits.max_chars:
        raise PermanentError(f"too much text: more than {limits.max_chars} characters", code=ErrorCode.TOO_MUCH_TEXT)


def _markdown_title(text: str) -> str | None:
    in_fence = False
    for line in text.split("\n"):
        if _MARKDOWN_FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _MARKDOWN_HEADING.match(line)
        if match:
            return match.group("title").strip()
    return None


class _VisibleTextParser(HTMLParser):
    """Collects the text a browser would show; `<title>` is kept apart as the title."""

    _HIDDEN = frozenset({"script", "style", "head", "template", "noscript", "svg", "title"})
    _BLOCKS = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
            "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
            "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
            "tr", "ul",
        }
    )  # fmt: skip
    _CELLS = frozenset({"td", "th"})
    _LINK_ATTRIBUTES = frozenset({"href", "src"})
    # Enough for any real page; a generated page with millions of links keeps its first ones. A longer
    # target (an inline data: URI) cannot name a stored object.
    MAX_LINKS = 10_000
    MAX_LINK_CHARS = 2048

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._title_parts: list[str] = []
        self._hidden_depth = 0
        self._in_title = False
        self._title_seen = False  # an <svg> in the body may hold <title> elements of its own
        self._pre_depth = 0
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._keep_links(attrs)
        if tag == "body" and self._hidden_depth:
            self._hidden_depth = 0  # a <head> left open ends where the body starts
        if tag in self._HIDDEN:
            self._hidden_depth += 1
            if tag == "title" and not self._title_seen:
                self._in_title = self._title_seen = True
        elif tag in self._BLOCKS:
            self._parts.append("\n")
        elif tag in self._CELLS:
            self._parts.append(" ")
        if tag == "pre":
            self._pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._keep_links(attrs)
        if tag in self._BLOCKS:
            self._parts.append("\n")

    def _keep_links(self, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if (
                name in self._LINK_ATTRIBUTES
                and value
                and len(value) <= self.MAX_LINK_CHARS
                and len(self.links) < self.MAX_LINKS
            ):
                self.links.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1
            if tag == "title":
                self._in_title = False
        elif tag in self._BLOCKS:
            self._parts.append("\n")
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
        elif not self._hidden_depth:
            self._parts.append(data if self._pre_depth else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        lines = (line.strip() for line in "".join(self._parts).split("\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

    def title(self) -> str | None:
        title = " ".join("".join(self._title_parts).split())
        return title or None


def _html_to_text(markup: str) -> tuple[str, str | None, tuple[str, ...]]:
    parser = _VisibleTextParser()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, ValueError) as error:  # html.parser's reaction to some malformed markup
        raise PermanentError(f"corrupt HTML file: {error}", code=ErrorCode.CORRUPT_FILE) from None
    return parser.text(), parser.title(), tuple(parser.links)


def _csv_to_text(text: str) -> str:
    """One line per row, `header: value; header: value`, so a row stays meaningful in a chunk.

    The first row is taken as the header: `csv.Sniffer.has_header` guesses wrong on all-text tables.
    """
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:_SNIFF_BYTES], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise PermanentError(f"corrupt CSV file: {error}", code=ErrorCode.CORRUPT_FILE) from None
    if not rows:
        return ""
    header = [cell.strip() for cell in rows[0]]
    if len(rows) == 1:
        return "; ".join(header)
    return "\n".join(_csv_row_line(header, row) for row in rows[1:])


def _csv_row_line(header: list[str], row: list[str]) -> str:
    pairs = []
    for index, value in enumerate(row):
        name = header[index] if index < len(header) and header[index] else f"column {index + 1}"
        if value.strip():
            pairs.append(f"{name}: {value.strip()}")
    return "; ".join(pairs)


def _json_to_text(text: str) -> str:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise PermanentError(f"corrupt JSON file: {error}", code=ErrorCode.CORRUPT_FILE) from None
    return "\n".join(f"{path}: {value}" if path else value for path, value in _flatten_json(document))


def _flatten_json(document: object) -> Iterator[tuple[str, str]]:
    """(path, value) for every scalar, paths like `items[0].name`; iterative so depth cannot overflow."""
    stack: list[tuple[str, object]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            children = [(f"{path}.{key}" if path else str(key), child) for key, child in value.items()]
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{index}]", child) for index, child in enumerate(value)]))
        elif isinstance(value, str):
            yield path, value
        else:
            yield path, json.dumps(value)


def _extract_pdf(data: bytes, limits: ExtractLimits, ocr: Ocr | None) -> ExtractedText:
    from pypdf import PdfReader  # heavy import kept off the Lambda import path

    try:
        reader = PdfReader(io.BytesIO(data))
        _require_decrypted(reader)
        page_count = len(reader.pages)
    except (PermanentError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001  (broken files make pypdf raise many types)
        raise _corrupt_pdf(error) from None
    if page_count > limits.max_pages:
        raise PermanentError(
            f"too many pages: {page_count} > {limits.max_pages} allowed", code=ErrorCode.TOO_MANY_PAGES
        )
    layers = _pdf_text_layers(reader, page_count, limits)
    read, unrendered = _ocr_pdf_pages(data, layers, ocr) if ocr is not None else ({}, None)
    pages = _pdf_pages(layers, read, limits)
    if not pages:
        reason = _pdf_no_text_reason(reader, page_count, read)
        raise PermanentError(f"{reason}; no OCR: {unrendered}" if unrendered else reason, code=ErrorCode.NO_TEXT)
    return ExtractedText(
        content_type=PDF, pages=pages, title=_pdf_title(reader), page_count=page_count, ocr_pages=len(read)
    )


def _pdf_no_text_reason(reader: PdfReader, page_count: int, read: dict[int, OcrText]) -> str:
    if page_count == 0:
        return "no extractable text: the PDF has no pages"
    if read:
        return f"no extractable text: OCR found no text on the {len(read)} page(s) that hold only images"
    return _no_text_reason(reader)


def _require_decrypted(reader: PdfReader) -> None:
    """Accept an encrypted PDF only if the empty password opens it (what a viewer does silently)."""
    from pypdf import PasswordType

    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001  (unsupported or broken encryption dictionaries)
        raise PermanentError(f"PDF is encrypted and cannot be opened: {error}", code=ErrorCode.ENCRYPTED_PDF) from None
    if not opened:
        raise PermanentError("PDF is encrypted with a password", code=ErrorCode.ENCRYPTED_PDF)


def _pdf_text_layers(reader: PdfReader, page_count: int, limits: ExtractLimits) -> list[str]:
    """The text layer of every page, in order; one broken page fails the file rather than silently losing text."""
    layers: list[str] = []
    chars = 0
    decompressed = 0
    for number in range(1, page_count + 1):
        try:
            page = reader.pages[number - 1]
            decompressed += _content_bytes(page, limits.max_decompressed_bytes - decompressed)
            if decompressed > limits.max_decompressed_bytes:
                raise PermanentError(
                    f"the PDF's content decompresses to more than {limits.max_decompressed_bytes} bytes "
                    f"by page {number} (a decompression bomb?)",
                    code=ErrorCode.TOO_MUCH_CONTENT,
                )
            text = clean_text(page.extract_text())
        except (PermanentError, MemoryError):
            raise
        except Exception as error:  # noqa: BLE001  (broken pages make pypdf raise many types)
            raise _corrupt_pdf(error, page=number) from None
        chars += len(text)
        _check_size(chars, limits)
        layers.append(text)
    return layers


def _pdf_pages(layers: list[str], read: dict[int, OcrText], limits: ExtractLimits) -> tuple[Page, ...]:
    """Pages with text, 1-based: what OCR read where it read something, else the text layer."""
    pages: list[Page] = []
    chars = 0
    for number, layer in enumerate(layers, start=1):
        found = read.get(number)
        if found is not None and found.text.strip():
            page = Page(number=number, text=clean_text(found.text), ocr_confidence=found.confidence)
        elif layer.strip():
            page = Page(number=number, text=layer)
        else:
            continue  # blank or image-only page: skipped, later pages keep their numbers
        chars += len(page.text)
        _check_size(chars, limits)
        pages.append(page)
    return tuple(pages)


def needs_ocr(text_layer: str) -> bool:
    """Whether a page's text layer is too thin to count as one (`MIN_TEXT_LAYER_CHARS`)."""
    return sum(1 for char in text_layer if char.isalnum()) < MIN_TEXT_LAYER_CHARS


def _ocr_pdf_pages(data: bytes, layers: list[str], ocr: Ocr) -> tuple[dict[int, OcrText], str | None]:
    """What OCR reads on each page that has no text layer and draws an image, by page number, and why not.

    The reason is set when PDFium, which renders, cannot open the file or a page: pypdf's reading stands then.
    Pages with a text layer are never opened here; the PDF is opened a second time (by PDFium) only when some
    page has none. The page limit is checked before the first page is read.
    """
    candidates = [number for number, layer in enumerate(layers, start=1) if needs_ocr(layer)]
    if not candidates:
        return {}, None
    import pypdfium2  # heavy import kept off the Lambda import path, and off text-layer files

    _limit_image_pixels(ocr.options)
    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as error:
        return {}, f"the PDF cannot be opened for rendering: {error}"
    try:
        largest_images = {number: _largest_image_pixels(document, number) for number in candidates}
        scanned = [number for number, pixels in largest_images.items() if pixels]
        if len(scanned) > ocr.options.max_pages:
            raise PermanentError(
                f"too many pages to OCR: {len(scanned)} pages hold only images, more than "
                f"{ocr.options.max_pages} allowed (FILEQUEUE_OCR_MAX_PAGES)",
                code=ErrorCode.OCR_PAGE_LIMIT,
            )
        for number in scanned:
            if largest_images[number] > ocr.options.max_pixels:
                raise PermanentError(
                    f"image too large to OCR: page {number} draws an image of {largest_images[number]} pixels, more "
                    f"than {ocr.options.max_pixels} (FILEQUEUE_OCR_MAX_PIXELS); refused before rendering",
                    code=ErrorCode.IMAGE_TOO_LARGE,
                )
        read: dict[int, OcrText] = {}
        for number in scanned:
            try:
                image = _render(document[number - 1], number, ocr.options)
            except pypdfium2.PdfiumError as error:
                return read, f"page {number} cannot be rendered: {error}"
            read[number] = ocr.read(image)
        return read, None
    finally:
        document.close()


def _largest_image_pixels(document: Any, number: int) -> int:  # a pypdfium2 PdfDocument (no type hints)
    """The pixel count of the largest image the page draws (its form XObjects' included), 0 if it draws none.

    The sizes come from the images' dictionaries: nothing is decoded. A page without an image cannot be a
    scan; a page PDFium cannot load draws nothing it could render.
    """
    from pypdfium2 import PdfiumError, raw

    try:
        sizes = [image.get_px_size() for image in document[number - 1].get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,))]
    except PdfiumError:
        return 0
    return max((max(width, 1) * max(height, 1) for width, height in sizes), default=0)


def _render(page: Any, number: int, options: OcrOptions) -> Image:
    """The page as a greyscale image at `RENDER_DPI`, or at the resolution that fits `options.max_pixels`."""
    width, height = page.get_size()  # in points
    dpi = min(float(RENDER_DPI), _POINTS_PER_INCH * (options.max_pixels / max(width * height, 1.0)) ** 0.5)
    # PDFium rounds each side up to whole pixels: step down until the bitmap itself fits.
    while dpi >= MIN_RENDER_DPI and _pixels(width, height, dpi) > options.max_pixels:
        dpi *= 0.99
    if dpi < MIN_RENDER_DPI:
        raise PermanentError(
            f"page {number} is too large to OCR: {width / _POINTS_PER_INCH:.0f} x {height / _POINTS_PER_INCH:.0f} "
            f"inches at {MIN_RENDER_DPI} dpi passes {options.max_pixels} pixels (FILEQUEUE_OCR_MAX_PIXELS)",
            code=ErrorCode.IMAGE_TOO_LARGE,
        )
    image: Image = page.render(scale=dpi / _POINTS_PER_INCH, grayscale=True).to_pil()
    return image


def _pixels(width: float, height: float, dpi: float) -> int:
    scale = dpi / _POINTS_PER_INCH
    return math.ceil(width * scale) * math.ceil(height * scale)


def _limit_image_pixels(options: OcrOptions) -> None:
    """Pillow refuses to decode images past its own bomb limit: the setting's, not its default."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = options.max_pixels


def _image_type(data: bytes) -> str | None:
    return next((image_type for magic, image_type in _IMAGE_SIGNATURES if data.startswith(magic)), None)


def _extract_image(data: bytes, content_type: str, limits: ExtractLimits, ocr: Ocr) -> ExtractedText:
    """An image read by OCR, page by page (a TIFF may hold several): the size of each checked before decoding."""
    from PIL import Image, ImageOps, ImageSequence

    _limit_image_pixels(ocr.options)
    pages: list[Page] = []
    chars = 0
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice it; the size is checked below, page by page.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            frame_count = int(getattr(image, "n_frames", 1))
            _check_image_pages(frame_count, limits, ocr.options)
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                _check_image_pixels(frame.size, number, ocr.options)
                found = ocr.read(_greyscale(ImageOps.exif_transpose(frame)))
                if not found.text.strip():
                    continue
                page = Page(number=number, text=clean_text(found.text), ocr_confidence=found.confidence)
                chars += len(page.text)
                _check_size(chars, limits)
                pages.append(page)
    except (PermanentError, MemoryError):
        raise
    except Image.DecompressionBombError:
        raise PermanentError(
            f"image too large to OCR: more than twice {ocr.options.max_pixels} pixels (FILEQUEUE_OCR_MAX_PIXELS), "
            "refused before decoding (a decompression bomb?)",
            code=ErrorCode.IMAGE_TOO_LARGE,
        ) from None
    except Exception as error:  # noqa: BLE001  (broken images make Pillow raise many types)
        raise PermanentError(
            f"corrupt image: {type(error).__name__}: {error or 'no details'}", code=ErrorCode.CORRUPT_FILE
        ) from None
    if not pages:
        raise PermanentError("no extractable text: OCR found no text in the image", code=ErrorCode.NO_TEXT)
    return ExtractedText(content_type=content_type, pages=tuple(pages), page_count=frame_count, ocr_pages=frame_count)


def _greyscale(image: Image) -> Image:
    """8-bit greyscale; 16-bit samples are scaled down, since Pillow's conversion would clip them to white."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda value: value / 256)
    return image.convert("L")


def _check_image_pages(frame_count: int, limits: ExtractLimits, options: OcrOptions) -> None:
    if frame_count > limits.max_pages:
        raise PermanentError(
            f"too many pages: {frame_count} > {limits.max_pages} allowed", code=ErrorCode.TOO_MANY_PAGES
        )
    if frame_count > options.max_pages:
        raise PermanentError(
            f"too many pages to OCR: the image holds {frame_count} pages, more than {options.max_pages} "
            "allowed (FILEQUEUE_OCR_MAX_PAGES)",
            code=ErrorCode.OCR_PAGE_LIMIT,
        )


def _check_image_pixels(size: tuple[int, int], number: int, options: OcrOptions) -> None:
    width, height = size
    if width * height > options.max_pixels:
        raise PermanentError(
            f"image too large to OCR: page {number} is {width} x {height} = {width * height} pixels, more than "
            f"{options.max_pixels} (FILEQUEUE_OCR_MAX_PIXELS)",
            code=ErrorCode.IMAGE_TOO_LARGE,
        )


def _pdf_title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = None if metadata is None else metadata.title
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001  (a broken Info dictionary must not lose the text)
        return None
    if not isinstance(title, str):
        return None
    return clean_text(title).strip() or None


def _content_bytes(page: PageObject, allowed: int) -> int:
    """Decompressed size of what text extraction decodes for `page`: its content streams and form XObjects.

    The streams are inflated here, before extraction, each under pypdf's own output limits lowered to
    the `allowed` bytes the document has left: inflating stops as soon as the document's total would pass
    it, so a bomb page never holds more than that in memory: the total returned is then `allowed` + 1.
    The decoded streams stay cached in the reader, so extraction does not decode them again.
    """
    total = 0
    pending: list[object] = [page.get("/Contents"), *_form_xobjects(page.get("/Resources"))]
    seen: set[int] = set()
    while pending:
        item = _resolve(pending.pop())
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, list):
            pending.extend(item)
        elif hasattr(item, "get_data"):
            total += _decoded_size(item.get_data, allowed - total)
            if total > allowed:
                return total
            if hasattr(item, "get"):
                pending.extend(_form_xobjects(item.get("/Resources")))
    return total


def _decoded_size(get_data: Callable[[], bytes], allowed: int) -> int:
    """`len(get_data())`, inflating at most `allowed` + 1 bytes: `allowed` + 1 means "more than allowed"."""
    from pypdf import apply_configuration, get_configuration
    from pypdf.errors import LimitReachedError

    # One byte over what is left: reaching it proves the limit passed (0 would mean "no limit" to pypdf).
    ceiling = max(0, allowed) + 1
    current = get_configuration()
    bounded = current.with_overwrites(
        **{name: min(getattr(current, name) or ceiling, ceiling) for name in _OUTPUT_LIMITS}
    )
    try:
        with apply_configuration(bounded):
            return min(len(get_data()), ceiling)
    except LimitReachedError:
        return ceiling


# pypdf's per-stream output limits, one per filter that can inflate, and the work bound across a stream's filters.
_OUTPUT_LIMITS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "brotli_maximum_output_length",
    "array_based_stream_maximum_output_length",
    "stream_decoding_work_maximum_length",
)


def _form_xobjects(resources: object) -> list[object]:
    resources = _resolve(resources)
    xobjects = _resolve(resources.get("/XObject")) if isinstance(resources, dict) else None
    if not isinstance(xobjects, dict):
        return []
    return [_resolve(value) for value in xobjects.values() if _subtype(value) == "/Form"]


def _subtype(xobject: object) -> object:
    resolved = _resolve(xobject)
    return resolved.get("/Subtype") if isinstance(resolved, dict) else None


def _resolve(value: object) -> object:
    get_object = getattr(value, "get_object", None)
    return get_object() if get_object is not None else value


def _no_text_reason(reader: PdfReader) -> str:
    """Why a PDF without text has none, from what its pages use: images, fonts, or neither."""
    has_fonts = False
    for page in reader.pages:
        resources = _resolve(page.get("/Resources"))
        if not isinstance(resources, dict):
            continue
        xobjects = _resolve(resources.get("/XObject"))
        if isinstance(xobjects, dict) and any(_subtype(value) == "/Image" for value in xobjects.values()):
            return _NO_TEXT_IMAGES
        has_fonts = has_fonts or isinstance(_resolve(resources.get("/Font")), dict)
    return _NO_TEXT_DRAWN if has_fonts else _NO_TEXT_FONTS


def _corrupt_pdf(error: Exception, *, page: int | None = None) -> PermanentError:
    where = f" (page {page})" if page is not None else ""
    reason = str(error) or "no details"
    return PermanentError(f"corrupt PDF{where}: {type(error).__name__}: {reason}", code=ErrorCode.CORRUPT_FILE)
