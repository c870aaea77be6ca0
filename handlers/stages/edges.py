"""What a document mentions, and the names it can be mentioned by (the `references` relation).

Both sides go through the same normalisation (Unicode NFC, case-folded, URL-decoded where the text
came from a URL), so a mention and a name meet as equal strings in an indexed SQL join. Mentions
are candidates: most never match a stored document and cost one row each; a name that is mentioned
but not stored yet is what lets a later upload be linked to the documents that mentioned it.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit

_URL = re.compile(r"\bhttps?://[^\s<>\"'`()\[\]{}|\\^]+", re.IGNORECASE)
_S3_URI = re.compile(r"\bs3://([a-z0-9][a-z0-9.-]{1,62})/([^\s<>\"'`()\[\]{}|\\^]+)", re.IGNORECASE)
# A run of characters that can make up a key or file name; the separators around it do not.
_PATH_TOKEN = re.compile(r"[\w.%+~=-]+(?:/[\w.%+~=-]+)*", re.UNICODE)
# A file name: something, a dot, and an extension that starts with a letter ("notes.md", "a.tar.gz";
# not "3.14" nor "v1.2").
_FILE_NAME = re.compile(r"[^/]*[^\W_][^/]*\.[^\W\d_][^\W_]{0,7}", re.UNICODE)
_TRAILING_PUNCTUATION = ".,;:!?'\"-"
_LEADING_PUNCTUATION = ".-~=+/"
# An S3 key is at most 1024 bytes; with "s3://" and a bucket name of up to 63 characters no stored
# name is longer than this, so longer candidates (and btree's row size limit) need not be kept.
_MAX_NAME_BYTES = 1024 + len("s3://") + 63 + 1


def find_mentions(text: str) -> frozenset[str]:
    """Candidate references in `text`: URIs, URLs, keys with slashes and file names, normalised."""
    # Composed first, so that a name typed with combining accents is one token, like its composed form.
    text = unicodedata.normalize("NFC", text)
    mentions: set[str] = set()
    for match in _S3_URI.finditer(text):
        key = _decoded(match.group(2).rstrip(_TRAILING_PUNCTUATION))
        if key:
            mentions.add(_normalised(f"s3://{match.group(1)}/{key}"))
    text = _S3_URI.sub(" ", text)
    for match in _URL.finditer(text):
        mentions.update(_url_mentions(match.group(0).rstrip(_TRAILING_PUNCTUATION)))
    text = _URL.sub(" ", text)
    for match in _PATH_TOKEN.finditer(text):
        mentions.update(_path_mentions(match.group(0)))
    return frozenset(mention for mention in mentions if len(mention.encode()) <= _MAX_NAME_BYTES)


def document_names(bucket: str, key: str) -> frozenset[str]:
    """The names a stored document can be mentioned by: its key, its file name and its S3 URI."""
    base = key.rsplit("/", 1)[-1]
    names = {key, f"s3://{bucket}/{key}"}
    if base:
        names.add(base)
    return frozenset(_normalised(name) for name in names)


def _url_mentions(url: str) -> set[str]:
    path = _decoded(urlsplit(url).path).strip("/")
    if not path:
        return set()
    found = {_normalised(path)}
    last = path.rsplit("/", 1)[-1]
    if last:
        found.add(_normalised(last))
    return found


def _path_mentions(token: str) -> set[str]:
    path = _decoded(token.strip(_LEADING_PUNCTUATION).rstrip(_TRAILING_PUNCTUATION))
    segments = [segment for segment in path.split("/") if segment]
    found: set[str] = set()
    if len(segments) >= 2 and any(character.isalpha() for character in path):
        found.add(_normalised("/".join(segments)))
    if segments and _FILE_NAME.fullmatch(segments[-1]):
        found.add(_normalised(segments[-1]))
    return found


def _decoded(value: str) -> str:
    # unquote, not unquote_plus: in URLs and prose a "+" is a plus sign ("a+b.txt").
    return unquote(value)


def _normalised(value: str) -> str:
    return unicodedata.normalize("NFC", value).casefold()
