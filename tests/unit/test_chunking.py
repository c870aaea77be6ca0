from __future__ import annotations

import itertools

import pytest

from handlers.model import ChunkingOptions, ExtractedText, Page
from handlers.stages.chunking import chunk_document


def _doc(*pages: str) -> ExtractedText:
    return ExtractedText(content_type="text/plain", pages=tuple(Page(i + 1, t) for i, t in enumerate(pages)))


def test_chunk_spans_are_exact_slices_of_the_document_text():
    doc = _doc("First paragraph here.\n\nSecond one.", "Page two starts. " * 40)
    chunks = chunk_document(doc, ChunkingOptions(size=200, overlap=40))
    assert chunks
    for chunk in chunks:
        assert doc.text[chunk.char_start : chunk.char_end] == chunk.text
        assert len(chunk.text) <= 200
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_short_document_is_one_chunk_on_page_one():
    chunks = chunk_document(_doc("  Hello world.  "), ChunkingOptions(size=100, overlap=10))
    assert [(c.text, c.page, c.char_start) for c in chunks] == [("Hello world.", 1, 2)]


def test_chunks_keep_the_page_they_start_on():
    doc = _doc("alpha " * 30, "beta " * 30, "gamma " * 30)
    chunks = chunk_document(doc, ChunkingOptions(size=120, overlap=0))
    pages_by_word = {c.text.split()[0]: c.page for c in chunks}
    assert pages_by_word["alpha"] == 1
    assert pages_by_word["beta"] == 2
    assert pages_by_word["gamma"] == 3


def test_paragraphs_are_not_split_when_they_fit():
    paragraphs = [f"Paragraph {i} " + "word " * 15 for i in range(6)]
    chunks = chunk_document(_doc("\n\n".join(paragraphs)), ChunkingOptions(size=200, overlap=0))
    assert len(chunks) > 1
    for paragraph in paragraphs:
        assert any(paragraph.strip() in chunk.text for chunk in chunks)


def test_long_paragraph_is_split_at_sentences_before_hard_cuts():
    sentences = [f"Sentence number {i} ends here." for i in range(20)]
    chunks = chunk_document(_doc(" ".join(sentences)), ChunkingOptions(size=100, overlap=0))
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.endswith("here.")


def test_unbroken_run_is_hard_cut_at_the_size():
    chunks = chunk_document(_doc("x" * 1000), ChunkingOptions(size=300, overlap=0))
    assert [len(c.text) for c in chunks] == [300, 300, 300, 100]


def test_overlap_repeats_the_tail_of_the_previous_chunk():
    text = " ".join(f"w{i}" for i in range(400))
    chunks = chunk_document(_doc(text), ChunkingOptions(size=200, overlap=50))
    for previous, current in itertools.pairwise(chunks):
        assert current.char_start < previous.char_end
        assert previous.char_end - current.char_start <= 50
        assert current.text.split()[0] in previous.text.split()


def test_markdown_heading_starts_a_new_chunk_when_current_is_half_full():
    body = "Some text. " * 14
    doc = _doc(f"# Intro\n\n{body}\n\n# Second section\n\nShort.")
    assert len(doc.text) < 300
    chunks = chunk_document(doc, ChunkingOptions(size=300, overlap=0))
    assert [c.text.splitlines()[0] for c in chunks] == ["# Intro", "# Second section"]


@pytest.mark.parametrize("text", ["", "   \n\n  \t "])
def test_blank_text_gives_no_chunks(text):
    assert chunk_document(_doc(text), ChunkingOptions(size=100, overlap=10)) == []
