from __future__ import annotations

import pytest

from handlers.errors import ErrorCode, PermanentError
from handlers.model import ExtractLimits, Mentions
from handlers.stages.extract import extract_text
from handlers.stages.mentions import MAX_MENTIONS, MAX_TOKEN_CHARS, document_names, find_mentions

BUCKET = "docs-bucket"


def mentions(text: str, key: str = "uploads/notes/index.md", links: tuple[str, ...] = ()) -> Mentions:
    return find_mentions(text, bucket=BUCKET, key=key, links=links)


def test_s3_uri_is_one_mention_decoded_and_case_folded():
    assert mentions("Copied from s3://Docs-Bucket/Uploads/My%20Report.PDF.") == Mentions(
        uris=frozenset({"s3://docs-bucket/uploads/my report.pdf"})
    )


def test_s3_urls_virtual_hosted_and_path_style_become_uris():
    found = mentions(
        "https://docs-bucket.s3.amazonaws.com/uploads/a.pdf and "
        "https://s3.eu-west-1.amazonaws.com/other-bucket/uploads/b%20c.pdf?versionId=1"
    )
    assert found.uris == {"s3://docs-bucket/uploads/a.pdf", "s3://other-bucket/uploads/b c.pdf"}
    assert found.names == frozenset()


def test_a_url_on_another_host_mentions_nothing_not_even_its_file_name():
    assert mentions("Read https://example.com/files/q3/bitcoin.pdf?download=1#page=2, then") == Mentions()


def test_bare_file_names_are_names_with_trailing_punctuation_stripped():
    text = "Attach report-2024.pdf and notes.md. Also a.tar.gz; __init__.py! And 'quoted.txt'?"
    assert mentions(text).names == {"report-2024.pdf", "notes.md", "a.tar.gz", "__init__.py", "quoted.txt"}
    assert mentions(text).uris == frozenset()


def test_keys_in_prose_are_taken_as_written_and_against_the_documents_folder():
    assert mentions("Stored as papers/b.pdf.").uris == {
        "s3://docs-bucket/papers/b.pdf",
        "s3://docs-bucket/uploads/notes/papers/b.pdf",
    }
    assert mentions("See ../other/c.md").uris == {"s3://docs-bucket/uploads/other/c.md"}


def test_markdown_link_targets_resolve_relative_to_the_folder_and_absolute_to_the_root():
    found = mentions("See [the plan](plan.md), [a figure](./img/fig.png) and [root](/uploads/top.md).")
    assert found.uris == {
        "s3://docs-bucket/uploads/notes/img/fig.png",
        "s3://docs-bucket/uploads/top.md",
    }
    assert found.names == {"plan.md"}


def test_markup_links_resolve_and_other_schemes_are_ignored():
    links = ("../papers/x.pdf", "/top.md", "#section", "mailto:a@b.c", "https://example.org/y.pdf", "s3://b2/k.md")
    assert mentions("", links=links).uris == {
        "s3://docs-bucket/uploads/papers/x.pdf",
        "s3://docs-bucket/top.md",
        "s3://b2/k.md",
    }


def test_a_link_that_climbs_above_the_bucket_root_is_dropped():
    assert mentions("", key="top.md", links=("../../etc/passwd",)) == Mentions()


@pytest.mark.parametrize("text", ["pi is 3.14", "version v1.2 and 1/2 cup", "plain words only", "ratio 10.5x"])
def test_numbers_versions_fractions_and_words_are_not_mentions(text):
    assert mentions(text) == Mentions()


def test_percent_encoded_names_are_decoded_and_a_literal_percent_is_kept():
    assert mentions("the file my%20file.csv and 100%.csv").names == {"my file.csv", "100%.csv"}


def test_unicode_is_normalised_to_nfc_and_case_folded():
    assert mentions("open Cafe\u0301.MD now").names == {"caf\u00e9.md"}


def test_document_names_are_its_uri_and_file_name():
    assert document_names(BUCKET, "Uploads/My Report.PDF") == Mentions(
        uris=frozenset({"s3://docs-bucket/uploads/my report.pdf"}), names=frozenset({"my report.pdf"})
    )


@pytest.mark.parametrize(
    "text",
    [
        "see /uploads/q3/report%202024.pdf",
        "see s3://docs-bucket/uploads/q3/report%202024.pdf",
        "see https://docs-bucket.s3.amazonaws.com/uploads/q3/Report%202024.pdf",
        "see report%202024.pdf",
    ],
)
def test_each_way_of_mentioning_a_document_meets_one_of_its_names(text):
    found, names = mentions(text), document_names(BUCKET, "uploads/q3/report 2024.pdf")
    assert found.uris & names.uris or found.names & names.names


def test_html_extraction_keeps_href_and_src_targets_but_not_inline_data():
    inline = b"data:image/png;base64," + b"A" * 100_000
    page = (
        b'<html><body><a href="a.md">A</a><img src="/img/b.png"><link href="style.css"><img src="'
        + inline
        + b'"></body></html>'
    )
    extracted = extract_text(page, key="p.html", declared_content_type=None, limits=ExtractLimits())
    assert extracted.links == ("a.md", "/img/b.png", "style.css")


# Pathological text: every pass is linear and bounded, so these end with a bounded result.


def test_one_two_megabyte_token_is_skipped_unread():
    assert mentions("a" * 2_000_000 + ".pdf") == Mentions()
    assert mentions("see x/" * 1 + "y" * (MAX_TOKEN_CHARS + 1) + ".md and z.md").names == {"z.md"}


def test_a_megabyte_of_a_dot_finds_nothing():
    assert mentions("a." * 500_000) == Mentions()
    assert mentions("a. " * 350_000) == Mentions()


def test_a_megabyte_of_distinct_file_names_is_capped():
    text = " ".join(f"f{number}.md" for number in range(120_000))
    found = mentions(text)
    assert len(found.uris) + len(found.names) == MAX_MENTIONS


def test_deeply_nested_markup_extracts_and_yields_bounded_links():
    depth = 100_000
    page = ("<div>" * depth + '<a href="deep.md">deep</a>' + "</div>" * depth).encode()
    extracted = extract_text(page, key="deep.html", declared_content_type=None, limits=ExtractLimits())
    assert extracted.links == ("deep.md",)
    assert mentions(extracted.text, links=extracted.links).uris == {"s3://docs-bucket/uploads/notes/deep.md"}


def test_a_budget_that_runs_out_stops_with_a_permanent_error():
    calls = []

    def exhausted() -> None:
        calls.append(1)
        raise PermanentError("out of time", code=ErrorCode.EXTRACT_TIMEOUT)

    with pytest.raises(PermanentError, match="out of time"):
        find_mentions("word " * 100_000, bucket=BUCKET, key="k.md", check_budget=exhausted)
    assert calls == [1]
