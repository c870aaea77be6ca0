from __future__ import annotations

import math

import pytest

from handlers.budget import MIN_EXTRACT_MEMORY_MB, PARENT_RESERVE_MB, ExtractionTime, TimeBudget, extract_memory_mb


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


def test_an_extraction_limit_that_leaves_no_time_to_download_is_a_problem() -> None:
    problems = budget(total_seconds=130.0).problems("the function timeout")
    assert problems == [
        "the extraction limit (120 s) plus the write margin (10 s) exceed the function timeout (130 s) or leave "
        "nothing of it to download the file: no file could ever use its whole extraction limit"
    ]


def test_a_record_held_long_enough_gives_its_extraction_the_whole_limit_after_the_download() -> None:
    # Given a record whose runtime holds it for the deadline margin, the extraction limit and the write margin
    record = budget().record(remaining_seconds=160.0, now=1000.0)

    # When its extraction starts after a 4.9 s download
    allowed = record.extraction(now=1004.9)

    # Then the file has its whole limit: running past it is the file's own verdict
    assert allowed == ExtractionTime(120.0, whole_limit=True)
    assert record.work_deadline == 1150.0  # the write margin is kept after it


def test_a_record_with_less_time_left_than_the_limit_gets_what_is_left_and_a_timeout_is_not_the_files() -> None:
    record = budget().record(remaining_seconds=100.0, now=0.0)
    assert record.extraction(now=5.0) == ExtractionTime(85.0, whole_limit=False)
    assert record.extraction(now=95.0) == ExtractionTime(0.0, whole_limit=False)


def test_a_record_without_a_runtime_deadline_always_has_the_whole_limit() -> None:
    record = budget().record(remaining_seconds=math.inf, now=0.0)
    assert record.extraction(now=1e6) == ExtractionTime(120.0, whole_limit=True)


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


def test_the_lambda_refuses_a_timeout_that_leaves_no_time_to_download_before_the_whole_limit(monkeypatch) -> None:
    from handlers.batch import check_function_budget
    from handlers.errors import ConfigError
    from handlers.runtime_context import DeadlineContext
    from handlers.settings import get_settings

    # Given a 20 s extraction limit, a 2 s write margin and a function that times out after 22 s
    monkeypatch.setenv("FILEQUEUE_DEADLINE_MARGIN_SECONDS", "5")
    monkeypatch.setenv("FILEQUEUE_EXTRACT_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("FILEQUEUE_WRITE_MARGIN_SECONDS", "2")
    get_settings.cache_clear()
    try:
        # When the first invocation checks the budget, then the invocation fails, naming the variables
        with pytest.raises(ConfigError) as caught:
            check_function_budget(DeadlineContext.lasting(22))  # type: ignore[arg-type]  # Lambda's context shape
    finally:
        get_settings.cache_clear()
    message = str(caught.value)
    assert "the function timeout (22 s)" in message
    assert "FILEQUEUE_EXTRACT_TIMEOUT_SECONDS" in message
    assert "no file could ever use its whole extraction limit" in message
