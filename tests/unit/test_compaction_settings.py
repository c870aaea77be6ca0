"""Settings of the segmented vector index and its compaction: each bad value names its variable."""

from __future__ import annotations

import pytest

from handlers.errors import ConfigError
from handlers.ops.compaction import CompactOptions, Segment, next_merge
from handlers.settings import Settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FILEQUEUE_VECTOR_INDEX", "lazy"),
        ("FILEQUEUE_COMPACTION_INTERVAL_SECONDS", "-1"),
        ("FILEQUEUE_COMPACTION_SEAL_ROWS", "0"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_defaults_are_segmented_with_a_leader_every_minute():
    settings = Settings.from_env({})
    assert (settings.vector_index, settings.compaction_interval_seconds, settings.compaction_seal_rows) == (
        "segmented",
        60.0,
        2000,
    )


def test_a_full_size_tier_is_merged_smallest_first():
    options = CompactOptions(seal_rows=100, merge_factor=3)
    small = [Segment(2, 100), Segment(3, 150), Segment(5, 120)]
    assert next_merge([Segment(4, 1000), *small], options) == [2, 3, 5]
    assert next_merge([Segment(4, 1000), *small[:2]], options) == []
    four_small = [*small, Segment(6, 110)]
    assert next_merge(four_small, options) == [2, 5, 6]


def test_merge_all_takes_every_segment_but_never_one_alone():
    options = CompactOptions(merge_all=True)
    assert next_merge([Segment(2, 10), Segment(3, 5000)], options) == [2, 3]
    assert next_merge([Segment(2, 10)], options) == []


@pytest.mark.parametrize("options", [{"seal_rows": 0}, {"merge_factor": 1}])
def test_compact_options_reject_values_that_cannot_work(options):
    with pytest.raises(ValueError, match="must be at least"):
        CompactOptions(**options)
