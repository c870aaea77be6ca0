from __future__ import annotations

import pytest
from handlers.stages.edges import document_names, find_mentions


def test_s3_uri_is_one_mention_decoded_and_case_folded():
    assert find_mentions("Copied from s3://Docs-Bucket/Uploads/My%20Report.PDF.") == {
        "s3://docs-bucket/uploads/my report.pdf"
    }


def test_url_gives_its_path_and_its_last_segment_without_host_query_or_fragment():
    assert find_mentions("Read https://example.com/files/q3/Report-2024.pdf?download=1#page=2, then") == {
        "files/q3/report-2024.pdf",
        "report-2024.pdf",
    }


def test_url_without_a_path_mentions_nothing():
    assert find_mentions("See https://example.com/ and http://example.org") == frozenset()


def test_bare_file_names_with_an_extension_are_found_with_trailing_punctuation_stripped():
    text = "Attach report-2024.pdf and notes.md. Also a.tar.gz; __init__.py! And 'quoted.txt'?"
    assert find_mentions(text) == {"report-2024.pdf", "notes.md", "a.tar.gz", "__init__.py", "quoted.txt"}


def test_keys_with_slashes_give_the_key_and_its_file_name():
    assert find_mentions("Stored as uploads/a/b.pdf (and ./local/thing.txt).") == {
        "uploads/a/b.pdf",
        "b.pdf",
        "local/thing.txt",
        "thing.txt",
    }


def test_a_key_without_an_extension_is_found_only_whole():
    assert find_mentions("The raw dump is under exports/2024/full-dump") == {"exports/2024/full-dump"}


@pytest.mark.parametrize("text", ["pi is 3.14", "version v1.2 and 1/2 cup", "plain words only", "ratio 10.5x"])
def test_numbers_versions_fractions_and_words_are_not_mentions(text):
    assert find_mentions(text) == frozenset()


def test_percent_encoded_names_in_prose_are_decoded():
    assert find_mentions("the file my%20file.csv") == {"my file.csv"}


def test_a_literal_percent_that_is_not_an_escape_is_kept():
    assert find_mentions("see 100%.csv") == {"100%.csv"}


def test_unicode_is_normalised_to_nfc_and_case_folded():
    decomposed = "Cafe\u0301.MD"
    assert find_mentions(f"open {decomposed} now") == {"caf\u00e9.md"}


def test_candidates_longer_than_any_s3_name_are_dropped():
    long_key = "a/" * 600 + "b.pdf"
    assert find_mentions(f"x {long_key} y") == {"b.pdf"}


def test_document_names_are_key_file_name_and_uri():
    assert document_names("docs-bucket", "Uploads/My Report.PDF") == {
        "uploads/my report.pdf",
        "my report.pdf",
        "s3://docs-bucket/uploads/my report.pdf",
    }
    assert document_names("b", "top.md") == {"top.md", "s3://b/top.md"}


@pytest.mark.parametrize(
    "text",
    [
        "see uploads/q3/report%202024.pdf",
        "see s3://docs-bucket/uploads/q3/report%202024.pdf",
        "see https://docs-bucket.s3.amazonaws.com/uploads/q3/Report%202024.pdf",
        "see https://intranet.example.com/archive/report%202024.pdf?v=2",
    ],
)
def test_each_way_of_mentioning_a_document_meets_one_of_its_names(text):
    assert find_mentions(text) & document_names("docs-bucket", "uploads/q3/report 2024.pdf")


def test_a_name_with_a_space_written_plainly_in_prose_is_not_recognised():
    # Prose cannot tell "report 2024.pdf" from the word "report" and a file "2024.pdf".
    mentions = find_mentions("see report 2024.pdf")
    assert mentions == {"2024.pdf"}
    assert not mentions & document_names("docs-bucket", "uploads/q3/report 2024.pdf")


def test_a_uri_into_another_bucket_does_not_meet_the_names():
    names = document_names("docs-bucket", "uploads/q3/summary.md")
    assert find_mentions("s3://other-bucket/uploads/q3/summary.md") & names == frozenset()
