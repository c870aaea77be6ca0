"""What a document refers to (the `references` relation), and the names it can be referred to by.

A document refers to another by a link (HTML `href`/`src`, a Markdown link target), an `s3://` URI,
an S3 URL, a key written in the text, or a bare file name. Links, URIs, URLs and keys all resolve
to one S3 URI: a relative link or key against the mentioning document's folder, an absolute one
against the bucket's root. A URL on any host other than S3 is not followed: a file name on another
web site says nothing about which object in the bucket is meant. A bare file name ("bitcoin.pdf")
is kept as a name and resolved when the graph is linked, where the documents that bear it are known.

Both sides go through the same normalisation (Unicode NFC, case-folded, percent-decoded), so a
mention and a name meet as equal strings in an indexed SQL join.

Every pass here is linear in the length of the text: the text is split at whitespace, a word
holding a dot or a slash is split into tokens by one regular expression without nested
repetition, a token longer than any S3 URI is skipped unread, and each kept token is examined with
string operations bounded by its length. At most `MAX_MENTIONS` are kept. `check_budget`, if
given, is called every `BUDGET_INTERVAL` words and may raise to stop.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from handlers.model import Mentions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

# A key is at most 1024 bytes; with "s3://", a bucket name of up to 63 characters and a URL's host,
# no token that names a stored object is longer than this.
MAX_TOKEN_CHARS = 1400
MAX_MENTIONS = 10_000
BUDGET_INTERVAL = 4096
_MAX_NAME_BYTES = 1024 + len("s3://") + 63 + 1
_MAX_FILE_NAME_CHARS = 255
_MAX_EXTENSION_CHARS = 8

# Tokens are runs of characters that can appear in a URI, key or file name; these separate them.
_TOKEN = re.compile(r"[^\s<>\"'`()\[\]{}|\\^]+")
_TRAILING_PUNCTUATION = ".,;:!?'\"*"
_LEADING_PUNCTUATION = "=+~*"
# S3 hosts: virtual-hosted (bucket.s3[.-]region.amazonaws.com) and path-style (s3[.-]region.amazonaws.com).
_S3_HOST = re.compile(r"(?:(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.)?s3(?:[.-][a-z0-9-]{1,40})?\.amazonaws\.com")


def find_mentions(
    text: str,
    *,
    bucket: str,
    key: str,
    links: Iterable[str] = (),
    check_budget: Callable[[], None] | None = None,
) -> Mentions:
    """What the document at s3://`bucket`/`key` with this `text` and these markup `links` refers to."""
    found = _Found(bucket, key.rpartition("/")[0])
    for count, target in enumerate(links, 1):
        if len(target) <= MAX_TOKEN_CHARS:
            found.link(target)
        if check_budget is not None and count % BUDGET_INTERVAL == 0:
            check_budget()
    text = unicodedata.normalize("NFC", text)
    for count, word in enumerate(text.split(), 1):
        if check_budget is not None and count % BUDGET_INTERVAL == 0:
            check_budget()
        if found.full:
            break
        # Every file name, key, URI and URL holds a dot or a slash inside it; most words hold
        # neither, or only the full stop that ends a sentence, and are skipped without a regex.
        if "/" in word or "." in word.rstrip(_TRAILING_PUNCTUATION):
            for match in _TOKEN.finditer(word):
                if match.end() - match.start() <= MAX_TOKEN_CHARS:
                    found.token(match.group(0))
    return Mentions(uris=frozenset(found.uris), names=frozenset(found.names))


def document_names(bucket: str, key: str) -> Mentions:
    """The names a stored document goes by: its S3 URI and its file name."""
    base = key.rpartition("/")[2]
    return Mentions(
        uris=frozenset({_normalised(f"s3://{bucket}/{key}")}),
        names=frozenset({_normalised(base)} if base else ()),
    )


def is_file_name(segment: str) -> bool:
    """Something, a dot and a short extension that starts with a letter: "notes.md", "a.tar.gz"; not "3.14"."""
    if len(segment) > _MAX_FILE_NAME_CHARS:
        return False
    stem, dot, extension = segment.rpartition(".")
    return (
        bool(dot)
        and 1 <= len(extension) <= _MAX_EXTENSION_CHARS
        and extension[0].isalpha()
        and extension.isalnum()
        and any(character.isalnum() for character in stem)
    )


class _Found:
    def __init__(self, bucket: str, folder: str) -> None:
        self.bucket = bucket
        self.folder = folder
        self.uris: set[str] = set()
        self.names: set[str] = set()

    @property
    def full(self) -> bool:
        return len(self.uris) + len(self.names) >= MAX_MENTIONS

    def link(self, target: str) -> None:
        """A link target as written in markup: a URI, a URL, or a path relative to the document."""
        target = target.strip()
        if "://" in target or target.startswith(("mailto:", "data:", "javascript:", "tel:", "#")):
            self._uri_or_url(target)
            return
        path = unquote(urlsplit(target).path)
        if path.startswith("/"):
            self._key(path.lstrip("/"))
        elif path:
            self._key(posixpath.join(self.folder, path))

    def token(self, token: str) -> None:
        """A run of text that may be a URI, a URL, a key or a file name."""
        token = token.lstrip(_LEADING_PUNCTUATION).rstrip(_TRAILING_PUNCTUATION)
        if "://" in token:
            self._uri_or_url(token)
            return
        path = unquote(token)
        segments = [segment for segment in path.split("/") if segment and segment != "."]
        if not segments:
            return
        if len(segments) == 1 and not path.startswith("/"):
            if is_file_name(segments[0]):
                self._add(self.names, segments[0])
            return
        if not (is_file_name(segments[-1]) or any(character.isalpha() for character in path)):
            return
        if path.startswith(("./", "../")):
            self._key(posixpath.join(self.folder, path))
        elif path.startswith("/"):
            self._key(path.lstrip("/"))
        else:
            # "papers/b.pdf" in prose may be a full key or a path from the document's folder.
            self._key(path)
            if self.folder:
                self._key(posixpath.join(self.folder, path))

    def _uri_or_url(self, target: str) -> None:
        scheme, _, rest = target.partition("://")
        scheme = scheme.casefold()
        if scheme == "s3":
            bucket, _, key = rest.partition("/")
            key = unquote(key.split("#", 1)[0])
            if bucket and key:
                self._add(self.uris, f"s3://{bucket}/{key}")
        elif scheme in ("http", "https"):
            self._s3_url(target)

    def _s3_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        host = (parts.hostname or "").casefold()
        match = _S3_HOST.fullmatch(host) if len(host) <= 255 else None
        if match is None:
            return  # another host: a file name on another site does not name an object here
        path = unquote(parts.path).lstrip("/")
        bucket = match.group("bucket")
        if bucket is None:
            bucket, _, path = path.partition("/")
        if bucket and path:
            self._add(self.uris, f"s3://{bucket}/{path}")

    def _key(self, path: str) -> None:
        key = posixpath.normpath(path)
        if key in (".", "") or key.startswith("../") or key == "..":
            return  # outside the bucket's root
        self._add(self.uris, f"s3://{self.bucket}/{key}")

    def _add(self, into: set[str], value: str) -> None:
        normalised = _normalised(value)
        if len(normalised.encode()) <= _MAX_NAME_BYTES and not self.full:
            into.add(normalised)


def _normalised(value: str) -> str:
    return unicodedata.normalize("NFC", value).casefold()
