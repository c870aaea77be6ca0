from __future__ import annotations

import pytest

from handlers.budget import MIN_EXTRACT_MEMORY_MB, PARENT_RESERVE_MB, TimeBudget, extract_memory_mb


def budget(**overrides: float) -> TimeBudget:
    values = {
        "total_seconds": 300.0,
        "deadline_margin_seconds": 30.0,
        "extract_timeout_seconds": 120.0,
        "write_margin_seconds": 10.0,
    }
    values.update(overrides)
    return TimeBudget(**values)


def test_consistent_limits_have_no_problem() -> None:
    assert budget().problems("the function timeout") == []


def test_deadline_margin_not_above_write_margin_is_a_problem() -> None:
    problems = budget(deadline_margin_seconds=10.0).problems("the function timeout")
    assert len(problems) == 1
    assert "deadline margin (10 s) must exceed the write margin (10 s)" in problems[0]


def test_timeout_within_the_deadline_margin_is_a_problem() -> None:
    problems = budget(total_seconds=30.0, extract_timeout_seconds=5.0).problems("the function timeout")
    assert problems == [
        "the function timeout (30 s) must exceed the deadline margin (30 s), or no record would ever start"
    ]


def test_extraction_limit_that_cannot_fit_is_a_problem_named_after_the_total() -> None:
    problems = budget(total_seconds=100.0).problems("the shutdown grace")
    assert len(problems) == 1
    assert "exceed the shutdown grace (100 s)" in problems[0]


def test_non_positive_write_margin_is_a_problem() -> None:
    assert "the write margin must be positive" in budget(write_margin_seconds=0.0).problems("t")


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(500.0, 120.0), (100.0, 90.0), (10.0, 0.0), (3.0, 0.0)],
)
def test_work_seconds_is_clamped_to_the_time_left_before_the_write(remaining: float, expected: float) -> None:
    assert budget().work_seconds(remaining) == expected


def test_extract_memory_leaves_the_parent_reserve() -> None:
    assert extract_memory_mb(2048) == 2048 - PARENT_RESERVE_MB


def test_extract_memory_is_shared_between_processes() -> None:
    assert extract_memory_mb(4096, processes=2) == 2048 - PARENT_RESERVE_MB


def test_extract_memory_too_small_names_the_figures() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_EXTRACT_MEMORY_MB} MB"):
        extract_memory_mb(500)


def test_extract_memory_needs_a_process() -> None:
    with pytest.raises(ValueError, match="processes must be at least 1"):
        extract_memory_mb(2048, processes=0)
