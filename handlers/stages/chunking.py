"""Structure-aware chunking: headings, then paragraphs, then sentences, then hard cuts.

Every chunk is an exact slice of the document text, so its character span can be shown, highlighted
and re-derived. Pieces are packed greedily up to the size; a heading starts a new chunk when the
current one is already half full, so sections stay together. Overlap repeats the tail of the previous
chunk (cut at a word boundary) so a sentence split across chunks is still found by search.
"""

from __future__ import annotations

import bisect
import re
from typing import TYPE_CHECKING

from handlers.model import Chunk, ChunkingOptions

if TYPE_CHECKING:
    from collections.abc import Iterator

    from handlers.model import ExtractedText

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile("(?<=[.!?\u3002\uff01\uff1f])[\"')\\]]*\\s+")
_HEADING = re.compile(r"#{1,6}\s|[A-Z0-9][^\n]{0,80}\n[=-]{3,}\s*$")


def chunk_document(extracted: ExtractedText, options: ChunkingOptions) -> list[Chunk]:
    """Split the document text into chunks that carry their page, its OCR confidence and their character span."""
    text = extracted.text
    page_starts = extracted.page_offsets()
    starts = [start for _, start in page_starts]
    chunks: list[Chunk] = []
    for start, end in _pack(text, options):
        stripped_start, stripped_end = _strip_span(text, start, end)
        if stripped_start >= stripped_end:
            continue
        page_index = max(bisect.bisect_right(starts, stripped_start) - 1, 0)
        page = extracted.pages[page_index] if extracted.pages else None
        chunks.append(
            Chunk(
                ordinal=len(chunks),
                text=text[stripped_start:stripped_end],
                page=page.number if page else 1,
                char_start=stripped_start,
                char_end=stripped_end,
                ocr_confidence=page.ocr_confidence if page else None,
            )
        )
    return chunks


def _pack(text: str, options: ChunkingOptions) -> Iterator[tuple[int, int]]:
    """Yield (start, end) spans of at most `options.size` characters, overlapping by up to `overlap`.

    Pieces are cut to `size - overlap` so that a piece plus the carried-over tail always fits.
    """
    current_start: int | None = None
    current_end = 0
    for start, end, is_heading in _pieces(text, options.size - options.overlap):
        if current_start is None:
            current_start, current_end = start, end
            continue
        too_long = end - current_start > options.size
        new_section = is_heading and (current_end - current_start) >= options.size // 2
        if too_long or new_section:
            yield current_start, current_end
            current_start = _overlap_start(text, current_start, current_end, start, options.overlap)
            if end - current_start > options.size:
                current_start = start
        current_end = end
    if current_start is not None:
        yield current_start, current_end


def _overlap_start(text: str, previous_start: int, previous_end: int, next_start: int, overlap: int) -> int:
    """Where the next chunk starts: `next_start`, pulled back by the overlap to a word boundary."""
    if overlap <= 0:
        return next_start
    candidate = max(previous_end - overlap, previous_start + 1)
    boundary = text.find(" ", candidate, previous_end)
    if boundary == -1:
        return next_start
    return min(boundary + 1, next_start)


def _pieces(text: str, size: int) -> Iterator[tuple[int, int, bool]]:
    """Yield (start, end, is_heading) pieces no longer than `size`, in document order."""
    for start, end in _split(text, 0, len(text), _PARAGRAPH_BREAK):
        is_heading = bool(_HEADING.match(text, start, end))
        if end - start <= size:
            yield start, end, is_heading
            continue
        for sentence_start, sentence_end in _split(text, start, end, _SENTENCE_END):
            if sentence_end - sentence_start <= size:
                yield sentence_start, sentence_end, False
            else:
                yield from ((a, b, False) for a, b in _hard_cut(text, sentence_start, sentence_end, size))


def _split(text: str, start: int, end: int, separator: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    position = start
    for match in separator.finditer(text, start, end):
        if match.start() > position:
            yield position, match.start()
        position = match.end()
    if position < end:
        yield position, end


def _hard_cut(text: str, start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """Cut at the last whitespace before the limit, or exactly at the limit for unbroken runs."""
    position = start
    while end - position > size:
        limit = position + size
        cut = text.rfind(" ", position + size // 2, limit)
        cut = limit if cut == -1 else cut + 1
        yield position, cut
        position = cut
    if position < end:
        yield position, end


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
