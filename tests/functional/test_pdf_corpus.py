"""Every PDF of the real-world corpus through the bounded extractor, checked against EXPECTED.json.

EXPECTED.json records what plain pypdf 7.1.1 does with each file (see fixtures/pdf/SOURCES.md):
`expect` is `text`, `no-text` or `error`; `contains` are raw substrings of pypdf's output;
`pypdf_error` is the exception pypdf raised. The outcome each case expects is derived from those
fields here, never from a table of file names.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from typing import Any, Literal, cast

import pytest

from handlers.adapters.sandbox import extract_file
from handlers.errors import PermanentError
from handlers.model import ExtractedText, ExtractLimits
from handlers.settings import Settings
from tests.paths import PDF_FIXTURES

EXPECTED: dict[str, dict[str, Any]] = json.loads((PDF_FIXTURES / "EXPECTED.json").read_text(encoding="utf-8"))
SETTINGS = Settings()
LIMITS = ExtractLimits(max_pages=SETTINGS.max_pdf_pages, max_chars=SETTINGS.max_text_chars)
TIMEOUT_SECONDS = 60.0
NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]
# pypdf exceptions meaning "a password is needed" (pypdf_error starts with the exception's name).
PASSWORD_ERRORS = ("FileNotDecryptedError", "WrongPasswordError")
# Notes state normalised forms in two phrasings: "unicodedata.normalize('NFKC', text) gives 'S'"
# and "NFKC(raw) = 'S'".
NORMALISED_NOTE = re.compile(
    r"(?:normalize\('(?P<form>NFK?[CD])', text\) gives|(?P<form2>NFK?[CD])\(raw\) =) '(?P<s>[^']+)'"
)
# The corpus was verified without the optional `brotli` package; `*_with_brotli` keys say what
# pypdf does when it is installed.
BROTLI_INSTALLED = importlib.util.find_spec("brotli") is not None


def expectation(name: str) -> dict[str, Any]:
    entry = dict(EXPECTED[name])
    if BROTLI_INSTALLED:
        for key in [key for key in entry if key.endswith("_with_brotli")]:
            entry[key.removesuffix("_with_brotli")] = entry.pop(key)
    return entry


def extract(name: str) -> ExtractedText:
    return extract_file(
        str(PDF_FIXTURES / name),
        key=name,
        declared_content_type="application/pdf",
        limits=LIMITS,
        timeout_seconds=TIMEOUT_SECONDS,
        memory_mb=SETTINGS.extract_memory_mb,
    )


def test_every_corpus_pdf_has_an_expectation():
    assert sorted(path.name for path in PDF_FIXTURES.glob("*.pdf")) == sorted(EXPECTED)
    assert len(EXPECTED) == 118


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_pdf_outcome_matches_expected(name):
    entry = expectation(name)
    if entry["expect"] == "text":
        assert_text(name, entry)
    elif entry["expect"] == "no-text":
        assert_failure(name, "no_text", "no extractable text")
    else:
        assert_expected_error(name, entry)


def assert_text(name: str, entry: dict[str, Any]) -> None:
    extracted = extract(name)
    text = extracted.text
    assert extracted.page_count == entry["pages"]
    assert text.strip(), "expect=text must yield some text even when no string is given to look for"
    assert "\x00" not in text
    for expected in entry["contains"]:
        assert expected in text
    for match in NORMALISED_NOTE.finditer(str(entry.get("notes", ""))):
        form = cast("NormalForm", match.group("form") or match.group("form2"))
        assert match.group("s") in unicodedata.normalize(form, text)
    pages = [page.number for page in extracted.pages]
    assert pages == sorted(set(pages))
    assert all(1 <= number <= entry["pages"] for number in pages)


def assert_expected_error(name: str, entry: dict[str, Any]) -> None:
    pypdf_error = str(entry["pypdf_error"])
    pypdf_exception = pypdf_error.split(":", 1)[0]
    if entry["encrypted"] and pypdf_exception in PASSWORD_ERRORS:
        assert_failure(name, "encrypted_pdf", "PDF is encrypted with a password")
    else:
        # pypdf raised on a broken file: the record must name pypdf's exception as the reason.
        assert_failure(name, "corrupt_file", pypdf_exception)


def assert_failure(name: str, code: str, reason: str) -> None:
    with pytest.raises(PermanentError) as caught:
        extract(name)
    assert caught.value.code == code
    assert reason in str(caught.value)
