"""Ordering of S3 events on one key by their `sequencer`.

The S3 user guide (notification-content-structure, "sequencer") says: "The sequencers can be of
different lengths. So, to compare these values, first right pad the shorter value with zeros, and
then do a lexicographical comparison." Right, not left: the digits are significant from the left,
so "00A" is newer than "009F" ("00A0" > "009F"), which left padding would invert ("000A" < "009F").
Sequencers order events on the same key only.
"""

from __future__ import annotations

import string

_HEX_DIGITS = frozenset(string.hexdigits)


def is_sequencer(value: str) -> bool:
    """True for a non-empty hexadecimal string, the only form S3 produces."""
    return bool(value) and all(character in _HEX_DIGITS for character in value)


def compare_sequencers(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, the same event as, or newer than `b` (same key only).

    Raises ValueError if either value is not a hexadecimal string.
    """
    for value in (a, b):
        if not is_sequencer(value):
            raise ValueError(f"sequencer must be a non-empty hexadecimal string, got {value!r}")
    width = max(len(a), len(b))
    left = a.upper().ljust(width, "0")
    right = b.upper().ljust(width, "0")
    return (left > right) - (left < right)
