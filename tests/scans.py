"""Scans made from the text PDFs of the fixtures: pages rendered to images, saved as image-only PDFs, PNG, JPEG, TIFF.

The text each scan shows is known (the PDF's text layer), so OCR's output can be checked against it.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import TYPE_CHECKING

import pypdfium2
from pypdf import PdfReader, PdfWriter

from tests.paths import PDF_FIXTURES

if TYPE_CHECKING:
    from PIL.Image import Image

CRAZY_ONES = PDF_FIXTURES / "pypdf-crazyones-ligatures.pdf"
BITCOIN = PDF_FIXTURES / "pdfjs-issue13201-bitcoin-paper.pdf"


def rendered_page(path: object = CRAZY_ONES, index: int = 0, dpi: int = 150) -> Image:
    """One page of a fixture PDF as a greyscale image, as a scanner at `dpi` would give it."""
    document = pypdfium2.PdfDocument(str(path))
    try:
        image: Image = document[index].render(scale=dpi / 72, grayscale=True).to_pil()
        return image
    finally:
        document.close()


def image_only_pdf(*images: Image, dpi: int = 150) -> bytes:
    """A PDF whose pages are `images` and nothing else (no fonts, no text layer)."""
    buffer = io.BytesIO()
    first, *rest = images
    first.save(buffer, "PDF", resolution=dpi, save_all=True, append_images=rest)
    return buffer.getvalue()


def image_bytes(image: Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def multi_page_tiff(*images: Image) -> bytes:
    buffer = io.BytesIO()
    first, *rest = images
    first.save(buffer, "TIFF", save_all=True, append_images=rest, compression="tiff_deflate")
    return buffer.getvalue()


def text_then_scan_pdf(dpi: int = 150) -> bytes:
    """Two pages: page 1 the bitcoin paper's text layer, page 2 a scan of the crazy ones page."""
    writer = PdfWriter()
    writer.add_page(PdfReader(BITCOIN).pages[0])
    for page in PdfReader(io.BytesIO(image_only_pdf(rendered_page(CRAZY_ONES, dpi=dpi), dpi=dpi))).pages:
        writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A real PNG of `width` x `height` black-and-white pixels, all white: kilobytes that decode to far more."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte "none", then the packed pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def pdf_image_bomb(width: int, height: int) -> bytes:
    """A one-page PDF drawing one black-and-white image of `width` x `height` pixels, all white, Flate-compressed."""
    from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    image = DecodedStreamObject()
    image.set_data(b"\xff" * ((width + 7) // 8) * height)
    compressed = image.flate_encode()
    compressed.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(width),
            NameObject("/Height"): NumberObject(height),
            NameObject("/ColorSpace"): NameObject("/DeviceGray"),
            NameObject("/BitsPerComponent"): NumberObject(1),
        }
    )
    xobjects = DictionaryObject({NameObject("/Im0"): writer._add_object(compressed)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/XObject"): xobjects})
    content = DecodedStreamObject()
    content.set_data(b"q 612 0 0 792 0 0 cm /Im0 Do Q")
    page[NameObject("/Contents")] = writer._add_object(content)
    page[NameObject("/MediaBox")] = ArrayObject(
        [NumberObject(0), NumberObject(0), NumberObject(612), NumberObject(792)]
    )
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
