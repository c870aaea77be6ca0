"""Frozen values passed between the stages: the innermost layer, importing nothing of the project."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime


class EventKind(StrEnum):
    CREATED = "created"
    REMOVED = "removed"


class OutcomeStatus(StrEnum):
    """How one record or object event ended: in log lines (`outcome`) and in the outcome metrics.

    `Outcome.status` is one of the first five; the batch layer adds the others for records that never
    reached an object (ignored), failed for a reason retrying may cure (retry), or were handed back by the
    runtime before they started (released).
    """

    STORED = "stored"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    DELETED = "deleted"
    FAILED = "failed"
    IGNORED = "ignored"
    RETRY = "retry"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One S3 object event, with its key already `unquote_plus`-decoded and its time parsed (timezone-aware)."""

    bucket: str
    key: str
    kind: EventKind
    event_name: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None
    event_time: datetime | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class FetchedObject:
    """An object downloaded to a local file, with what S3 said about it."""

    ref: ObjectRef
    path: str
    size: int
    sha256: str
    content_type: str | None
    version_id: str | None
    etag: str | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of text; `ocr_confidence` (the engine's mean word confidence, 0-100) is set when OCR read it."""

    number: int
    text: str
    ocr_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """Text of one file: pages are 1-based; non-paged formats have a single page 1.

    `links` are the targets of the markup's links as written (HTML `href` and `src`), which the
    visible text no longer holds. `ocr_pages` counts the pages OCR read, those where it found no text
    included.
    """

    content_type: str
    pages: tuple[Page, ...]
    title: str | None = None
    page_count: int | None = None
    links: tuple[str, ...] = ()
    ocr_pages: int = 0

    @property
    def separator(self) -> str:
        return "\n\n"

    @property
    def text(self) -> str:
        return self.separator.join(page.text for page in self.pages)

    def page_offsets(self) -> list[tuple[int, int]]:
        """(page number, start offset in `text`) for each page, in order."""
        offsets: list[tuple[int, int]] = []
        position = 0
        for page in self.pages:
            offsets.append((page.number, position))
            position += len(page.text) + len(self.separator)
        return offsets


@dataclass(frozen=True, slots=True)
class Mentions:
    """What a document refers to: S3 URIs (links, paths and URIs resolved to s3://bucket/key) and bare file names.

    Both are normalised (NFC, case-folded) like the names documents go by.
    """

    uris: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DocumentLinks:
    """How a document joins the graph: the names it goes by (`document_names`) and what it mentions."""

    names: Mentions
    mentions: Mentions


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of the document text: `text == document_text[char_start:char_end]`.

    `ocr_confidence` is its page's: set when the page it starts on was read by OCR.
    """

    ordinal: int
    text: str
    page: int
    char_start: int
    char_end: int
    ocr_confidence: float | None = None

    @property
    def origin(self) -> str:
        """`ocr` for text read from an image, `text` for a text layer or a text format."""
        return "text" if self.ocr_confidence is None else "ocr"


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    size: int = 1000
    overlap: int = 150


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    max_pages: int = 2000
    max_chars: int = 20_000_000
    max_decompressed_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """How images are read: at most `max_pages` pages a document, `max_pixels` a page, by the `tesseract` binary."""

    max_pages: int = 30
    max_pixels: int = 50_000_000
    tesseract: str = "tesseract"


@dataclass(frozen=True, slots=True)
class OcrText:
    """What OCR read on one page: its text and the engine's mean word confidence (0-100; 0 with no words)."""

    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing one object event did; logged once per record."""

    status: OutcomeStatus
    ref: ObjectRef
    detail: str = ""
    chunks: int = 0
    error_code: str | None = None
