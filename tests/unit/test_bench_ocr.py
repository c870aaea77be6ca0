"""bench/ocr.py's measures: the edit distance against the textbook recurrence, and what CER normalises."""

from __future__ import annotations

import random

import pytest

from bench.ocr import cer, edit_distance, word_recall


def textbook_distance(reference: str, hypothesis: str) -> int:
    previous = list(range(len(hypothesis) + 1))
    for row, char in enumerate(reference, start=1):
        current = [row]
        for column, other in enumerate(hypothesis, start=1):
            current.append(min(previous[column] + 1, current[column - 1] + 1, previous[column - 1] + (char != other)))
        previous = current
    return previous[-1]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "distance"),
    [("kitten", "sitting", 3), ("flaw", "lawn", 2), ("", "abc", 3), ("abc", "", 3), ("same", "same", 0)],
)
def test_known_distances(reference, hypothesis, distance):
    assert edit_distance(reference, hypothesis) == distance


def test_the_row_at_a_time_distance_equals_the_textbook_one():
    generator = random.Random(7)  # noqa: S311 - reproducible test strings, not secrets
    for _ in range(200):
        reference = "".join(generator.choice("abcé ") for _ in range(generator.randint(0, 30)))
        hypothesis = "".join(generator.choice("abcé ") for _ in range(generator.randint(0, 30)))
        assert edit_distance(reference, hypothesis) == textbook_distance(reference, hypothesis)


def test_cer_ignores_layout_whitespace_and_ligatures_but_counts_characters():
    assert cer("The  misﬁts\nrebels", "The misfits rebels") == 0
    assert cer("abcd", "abed") == 0.25
    assert word_recall("b a c", "a b") == pytest.approx(2 / 3)
