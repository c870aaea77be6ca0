"""Tesseract through pytesseract: one page image in, its text and the engine's mean word confidence out.

It runs inside the extraction child (`handlers.adapters.sandbox`). Tesseract is a process of its own,
started by that child: it inherits the child's address-space limit, belongs to its process group (the
sandbox kills the group on a timeout) and runs one thread, since every handler process of a runtime
already has a core to itself.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from handlers.errors import ErrorCode, PermanentError
from handlers.model import OcrText

if TYPE_CHECKING:
    from collections.abc import Callable

    from PIL.Image import Image

    from handlers.model import OcrOptions

LANGUAGE = "eng"
_WORD_LEVEL = "5"


def tesseract_reader(options: OcrOptions) -> Callable[[Image], OcrText]:
    """A reader of page images by `options.tesseract`; raises `ocr_unavailable` on first use if it is missing."""
    return _TesseractReader(options.tesseract)


class _TesseractReader:
    """Finds the binary at the first page that needs OCR, so files with a text layer never depend on it."""

    def __init__(self, tesseract: str) -> None:
        self._tesseract = tesseract
        self._found: str | None = None

    def __call__(self, image: Image) -> OcrText:
        if self._found is None:
            self._found = _require_engine(self._tesseract)
        return _read(image, self._found)


def _require_engine(tesseract: str) -> str:
    found = shutil.which(tesseract)
    if found is None:
        raise PermanentError(
            f"the file needs OCR, but the OCR engine {tesseract!r} was not found "
            "(install tesseract-ocr and tesseract-ocr-eng, set FILEQUEUE_OCR_TESSERACT, or FILEQUEUE_OCR=off)",
            code=ErrorCode.OCR_UNAVAILABLE,
        )
    return found


def _read(image: Image, tesseract: str) -> OcrText:
    import pytesseract

    pytesseract.pytesseract.tesseract_cmd = tesseract
    # OpenMP in Debian's build would start a thread per core for each page; one handler process per core
    # is the runtimes' layout, so more threads only contend. Set in the extraction child, for its engine.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        # One run writes both the text (Tesseract's own line and paragraph layout) and the word table.
        text, table = pytesseract.run_and_get_multiple_output(image, extensions=["txt", "tsv"], lang=LANGUAGE)
    except pytesseract.TesseractNotFoundError:
        raise _not_started(tesseract, "not found") from None
    except PermissionError as error:
        raise _not_started(tesseract, str(error)) from None
    except pytesseract.TesseractError as error:
        raise _engine_failure(error.status, str(error.message)) from None
    return OcrText(text=_tidy(str(text)), confidence=mean_word_confidence(str(table)))


def _not_started(tesseract: str, reason: str) -> PermanentError:
    return PermanentError(
        f"the file needs OCR, but the OCR engine {tesseract!r} could not be started: {reason}",
        code=ErrorCode.OCR_UNAVAILABLE,
    )


def _engine_failure(status: int, message: str) -> PermanentError:
    """Tesseract ended without a result: out of the memory its cap leaves (killed, or `bad_alloc`), or the image."""
    if status < 0 or "alloc" in message.lower():
        return PermanentError(
            f"OCR ran out of memory (tesseract ended with status {status}: {message})", code=ErrorCode.EXTRACT_MEMORY
        )
    return PermanentError(f"OCR failed: tesseract ended with status {status}: {message}", code=ErrorCode.CORRUPT_FILE)


def mean_word_confidence(table: str) -> float:
    """The mean confidence (0-100) of the words in Tesseract's TSV output; 0 when it found none."""
    confidences: list[float] = []
    for line in table.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 12 or fields[0] != _WORD_LEVEL or not fields[11].strip():
            continue
        confidence = float(fields[10])
        if confidence >= 0:
            confidences.append(confidence)
    return sum(confidences) / len(confidences) if confidences else 0.0


def _tidy(text: str) -> str:
    """Tesseract's text without the form feed it ends a page with and without trailing blanks."""
    lines = [line.rstrip() for line in text.replace("\f", "\n").split("\n")]
    return "\n".join(lines).strip()
