from handlers.cli.common import plural


def test_counts_take_their_noun_in_the_right_number():
    assert [plural(count, "chunk") for count in (0, 1, 2)] == ["0 chunks", "1 chunk", "2 chunks"]
    assert [plural(count, "batch", "batches") for count in (1, 3)] == ["1 batch", "3 batches"]
