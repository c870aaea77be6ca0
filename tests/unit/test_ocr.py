"""OCR in the extraction stage and the sandbox, with the real Tesseract: scans made from the fixtures' text PDFs."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import pytest

from handlers.adapters.ocr import mean_word_confidence, tesseract_reader
from handlers.adapters.sandbox import extract_file
from handlers.errors import PermanentError
from handlers.model import ExtractedText, ExtractLimits, OcrOptions, OcrText
from handlers.stages.extract import MIN_TEXT_LAYER_CHARS, Ocr, extract_text, needs_ocr
from tests.paths import PDF_FIXTURES
from tests.scans import (
    BITCOIN,
    image_bytes,
    image_only_pdf,
    multi_page_tiff,
    pdf_image_bomb,
    png_bomb,
    rendered_page,
    text_then_scan_pdf,
)
from tests.unit.test_extract import blank_pages_pdf

if TYPE_CHECKING:
    from pathlib import Path

    from PIL.Image import Image

LIMITS = ExtractLimits()
OPTIONS = OcrOptions()


class CountingReader:
    """The real Tesseract reader, counting the pages it is given (to show which pages were rendered)."""

    def __init__(self, options: OcrOptions = OPTIONS) -> None:
        self.options = options
        self.pages = 0
        self._read = tesseract_reader(options)

    def __call__(self, image: Image) -> OcrText:
        self.pages += 1
        return self._read(image)

    def ocr(self) -> Ocr:
        return Ocr(self.options, self)


def extract(data: bytes, ocr: Ocr | None, key: str = "scan") -> ExtractedText:
    return extract_text(data, key=key, declared_content_type=None, limits=LIMITS, ocr=ocr)


def error_of(data: bytes, ocr: Ocr | None, key: str = "scan") -> PermanentError:
    with pytest.raises(PermanentError) as caught:
        extract(data, ocr, key)
    return caught.value


def words(text: str) -> set[str]:
    return {word.strip(".,;:'").casefold() for word in text.split()}


def test_an_image_only_pdf_is_read_by_ocr_with_its_confidence():
    reader = CountingReader()
    extracted = extract(image_only_pdf(rendered_page()), reader.ocr(), "scan.pdf")

    assert (extracted.content_type, extracted.page_count, extracted.ocr_pages, reader.pages) == (
        "application/pdf",
        1,
        1,
        1,
    )
    [page] = extracted.pages
    assert page.number == 1
    assert page.text.startswith("The Crazy Ones\nOctober 14, 1998")
    assert {"misfits", "rebels", "troublemakers"} <= words(page.text)
    assert page.ocr_confidence is not None
    assert 80 < page.ocr_confidence <= 100


@pytest.mark.parametrize(("image_format", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_png_and_jpeg_uploads_are_read_by_ocr(image_format, content_type):
    extracted = extract(image_bytes(rendered_page(), image_format), CountingReader().ocr(), "scan.bin")

    assert (extracted.content_type, extracted.page_count, extracted.ocr_pages) == (content_type, 1, 1)
    assert extracted.pages[0].text.startswith("The Crazy Ones")
    assert extracted.pages[0].ocr_confidence is not None


def test_a_16_bit_greyscale_png_is_scaled_not_clipped_to_white():
    import numpy as np
    from PIL import Image as PillowImage

    samples = np.asarray(rendered_page(), dtype=np.uint16) * 257  # the same page, 16 bits a sample
    extracted = extract(image_bytes(PillowImage.fromarray(samples), "PNG"), CountingReader().ocr(), "deep.png")

    assert extracted.pages[0].text.startswith("The Crazy Ones")


def test_each_page_of_a_multi_page_tiff_is_read():
    tiff = multi_page_tiff(rendered_page(), rendered_page(BITCOIN))
    extracted = extract(tiff, CountingReader().ocr(), "scans.tiff")

    assert (extracted.content_type, extracted.page_count, extracted.ocr_pages) == ("image/tiff", 2, 2)
    assert [page.number for page in extracted.pages] == [1, 2]
    assert extracted.pages[1].text.startswith("Bitcoin: A Peer-to-Peer Electronic Cash System")


def test_in_a_mixed_pdf_only_the_page_without_a_text_layer_is_rendered():
    reader = CountingReader()
    extracted = extract(text_then_scan_pdf(), reader.ocr(), "mixed.pdf")

    assert reader.pages == 1
    assert extracted.ocr_pages == 1
    first, second = extracted.pages
    assert (first.number, first.ocr_confidence) == (1, None)
    assert "Bitcoin: A Peer-to-Peer Electronic Cash System" in first.text
    assert second.number == 2
    assert second.ocr_confidence is not None
    assert second.text.startswith("The Crazy Ones")


def test_a_text_layer_pdf_never_reaches_the_engine_even_a_missing_one():
    reader = CountingReader(OcrOptions(tesseract="/nonexistent/tesseract"))
    extracted = extract(BITCOIN.read_bytes(), reader.ocr(), "paper.pdf")

    assert reader.pages == 0
    assert extracted.ocr_pages == 0
    assert all(page.ocr_confidence is None for page in extracted.pages)


def test_pages_that_draw_no_image_are_not_rendered():
    reader = CountingReader()
    error = error_of(blank_pages_pdf(2, 1024), reader.ocr(), "blank.pdf")

    assert reader.pages == 0
    assert error.code == "no_text"
    assert str(error) == "no extractable text: the pages have no fonts, so they draw no text"


def test_a_thin_text_layer_counts_as_none():
    assert needs_ocr("")
    assert needs_ocr("  12  ")
    assert needs_ocr("Page 3 of 10")
    assert not needs_ocr("x" * MIN_TEXT_LAYER_CHARS)
    assert not needs_ocr("Bitcoin: A Peer-to-Peer Electronic Cash System")


def test_a_scan_in_which_ocr_finds_nothing_is_no_text_saying_so():
    blank = rendered_page().point(lambda _: 255)  # a white page
    error = error_of(image_only_pdf(blank), CountingReader().ocr(), "white.pdf")

    assert error.code == "no_text"
    assert str(error) == "no extractable text: OCR found no text on the 1 page(s) that hold only images"
    assert error_of(image_bytes(blank, "PNG"), CountingReader().ocr(), "white.png").code == "no_text"


def test_without_ocr_scans_and_images_fail_as_before():
    scan = image_only_pdf(rendered_page())
    error = error_of(scan, None, "scan.pdf")
    assert (error.code, str(error)) == (
        "no_text",
        "no extractable text: the pages hold only images (a scanned or image-only PDF?)",
    )
    error = error_of(image_bytes(rendered_page(), "PNG"), None, "scan.png")
    assert (error.code, str(error)) == ("unsupported_type", "unsupported file type: the content is a PNG image")


def test_more_scanned_pages_than_the_limit_fail_before_any_is_read():
    reader = CountingReader(OcrOptions(max_pages=1))
    page = rendered_page()

    error = error_of(image_only_pdf(page, page), reader.ocr(), "two.pdf")
    assert error.code == "ocr_page_limit"
    assert "2 pages hold only images, more than 1 allowed (FILEQUEUE_OCR_MAX_PAGES)" in str(error)
    error = error_of(multi_page_tiff(page, page), reader.ocr(), "two.tiff")
    assert error.code == "ocr_page_limit"
    assert reader.pages == 0


def test_an_image_over_the_pixel_limit_is_refused_before_decoding():
    page = rendered_page()  # 1275 x 1651
    reader = CountingReader(OcrOptions(max_pixels=2_000_000))

    error = error_of(image_bytes(page, "PNG"), reader.ocr(), "big.png")
    assert error.code == "image_too_large"
    assert "page 1 is 1275 x 1651 = 2105025 pixels, more than 2000000 (FILEQUEUE_OCR_MAX_PIXELS)" in str(error)
    assert reader.pages == 0


def test_a_decompression_bomb_image_is_image_too_large():
    bomb = png_bomb(20_000, 20_000)  # 400 million pixels in under 100 KB
    assert len(bomb) < 100_000
    reader = CountingReader()

    error = error_of(bomb, reader.ocr(), "bomb.png")
    assert error.code == "image_too_large"
    assert "refused before decoding" in str(error)
    assert reader.pages == 0


def test_a_pdf_page_drawing_a_bomb_image_is_refused_before_rendering():
    bomb = pdf_image_bomb(20_000, 20_000)  # 400 million pixels in under 100 KB, on a letter page
    assert len(bomb) < 100_000
    reader = CountingReader()

    error = error_of(bomb, reader.ocr(), "bomb.pdf")
    assert error.code == "image_too_large"
    assert "page 1 draws an image of 400000000 pixels, more than 50000000" in str(error)
    assert reader.pages == 0


def test_a_pdf_page_too_large_to_render_within_the_pixel_limit_is_image_too_large():
    huge = image_only_pdf(rendered_page(dpi=20), dpi=1)  # a page of 255 x 330 inches
    reader = CountingReader()

    error = error_of(huge, reader.ocr(), "poster.pdf")
    assert error.code == "image_too_large"
    assert "page 1 is too large to OCR" in str(error)
    assert reader.pages == 0


def test_a_large_pdf_page_is_rendered_at_a_lower_resolution_that_fits():
    seen: list[tuple[int, int]] = []
    read = tesseract_reader(OPTIONS)
    options = OcrOptions(max_pixels=4_000_000)

    def reader(image: Image) -> OcrText:
        seen.append(image.size)
        return read(image)

    extracted = extract(image_only_pdf(rendered_page(dpi=200), dpi=100), Ocr(options, reader), "a3.pdf")
    [(width, height)] = seen
    assert width * height <= options.max_pixels
    assert extracted.pages[0].text.startswith("The Crazy Ones")


def test_a_missing_engine_is_a_clear_ocr_unavailable():
    reader = CountingReader(OcrOptions(tesseract="/nonexistent/tesseract"))
    error = error_of(image_only_pdf(rendered_page()), reader.ocr(), "scan.pdf")

    assert error.code == "ocr_unavailable"
    assert "the OCR engine '/nonexistent/tesseract' was not found" in str(error)


def test_the_mean_confidence_counts_words_only():
    table = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t90\tgood\n"
        "5\t1\t1\t1\t1\t2\t0\t0\t10\t10\t70\tword\n"
        "5\t1\t1\t1\t1\t3\t0\t0\t10\t10\t95\t \n"
    )
    assert mean_word_confidence(table) == 80
    assert mean_word_confidence(table.splitlines()[0]) == 0


# Through the sandbox: the same bounds as every extraction


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_the_sandbox_reads_a_scan_with_ocr_and_not_without(tmp_path):
    path = write(tmp_path, "scan.pdf", image_only_pdf(rendered_page()))

    def bounded(ocr: OcrOptions | None) -> ExtractedText:
        return extract_file(
            path, key="scan.pdf", declared_content_type=None, limits=LIMITS, timeout_seconds=60, memory_mb=2048, ocr=ocr
        )

    assert bounded(OPTIONS).ocr_pages == 1
    with pytest.raises(PermanentError) as caught:
        bounded(None)
    assert caught.value.code == "no_text"


@pytest.mark.slow
def test_ocr_past_the_time_limit_is_extract_timeout_and_leaves_no_engine_running(tmp_path):
    page = rendered_page(dpi=300)
    path = write(tmp_path, "scans.tiff", multi_page_tiff(page, page, page, page, page, page))
    started = time.monotonic()

    with pytest.raises(PermanentError) as caught:
        extract_file(
            path,
            key="scans.tiff",
            declared_content_type=None,
            limits=LIMITS,
            timeout_seconds=0.5,
            memory_mb=2048,
            ocr=OPTIONS,
        )
    assert caught.value.code == "extract_timeout"
    from handlers.adapters.sandbox import _extraction_child

    # The child led its own process group: killing it took the engine it was running with it.
    group = _extraction_child(2048).pid
    assert group is not None
    while time.monotonic() - started < 30:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)


IMAGE_ONLY_CORPUS = sorted(
    name
    for name, entry in json.loads((PDF_FIXTURES / "EXPECTED.json").read_text(encoding="utf-8")).items()
    if entry["expect"] == "no-text"
)


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGE_ONLY_CORPUS)
def test_an_image_only_corpus_pdf_gives_text_or_no_text_with_ocr_never_another_failure(name):
    data = (PDF_FIXTURES / name).read_bytes()
    outcome: ExtractedText | PermanentError
    try:
        outcome = extract(data, CountingReader().ocr(), name)
    except PermanentError as error:
        outcome = error
    if isinstance(outcome, PermanentError):
        assert outcome.code == "no_text", str(outcome)
        return
    extracted = outcome
    assert extracted.ocr_pages >= 1
    assert all(page.ocr_confidence is not None for page in extracted.pages)


def test_a_pdf_pdfium_cannot_open_keeps_pypdfs_reading_and_says_why_there_was_no_ocr():
    reader = CountingReader()
    error = error_of((PDF_FIXTURES / "pdfjs-pr6531-2-user-password-only.pdf").read_bytes(), reader.ocr(), "p.pdf")

    assert error.code == "no_text"
    assert "no OCR: the PDF cannot be opened for rendering" in str(error)
    assert reader.pages == 0
